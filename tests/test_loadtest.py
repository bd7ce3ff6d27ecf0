"""`invoke loadtest` against the test stack: the example study's single-player part and its group
game with wait pages, played by the project's own bots through nginx. Each run finishes with a
capacity line, writes Locust's CSVs and a report whose plots render in Chromium, and leaves no
session behind, in oTree or in an export, also when stopped by Ctrl-C. Bounded: a few
participants, 5 s per step."""
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import requests
from playwright.sync_api import sync_playwright

from tests.helpers import REPO_ROOT
from tests.test_export_data import export
from tests.test_study_in_browser import CHROMIUM_ARGS

# On a busy machine even the first step may pass 1 s: that is a capacity line too.
CAPACITY = re.compile(r"(?:Capacity: about (\d+) participants, each submitting a page every [\d.]+ seconds, at p95 "
                      r"under 1 s for|Not even \d+ participants of) '(\w+)'")
pytestmark = pytest.mark.docker

FOLDER = re.compile(r"report.html \(plots\) are in (\S+)/")


def loadtest(stack, *args):
    """Run `invoke loadtest ARGS`; return its output and report folder (removed after the test).
    With --force: the shared test server's participants of other test modules may have been
    active in the last 10 minutes (the refusal has its own test, last in this file)."""
    result = stack.invoke("loadtest", "--force", *args)
    print(result.stdout)
    folder = os.path.join(REPO_ROOT, FOLDER.search(result.stdout)[1])
    return result.stdout, folder


@pytest.fixture
def reports():
    made = []
    yield made
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


def session_codes(stack):
    return {row[0] for row in stack.sql("SELECT code FROM otree_session")}


def check_run(stack, output, folder, config, tmp_path):
    """The capacity line, the files, and no trace of the load test's sessions."""
    capacity = CAPACITY.search(output)
    assert capacity and capacity[2] == config, output
    with open(os.path.join(folder, "summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["config"] == config
    assert summary["capacity"]["participants"] == (int(capacity[1]) if capacity[1] else None)
    for number, step in enumerate(summary["steps"], 1):
        assert step["requests"] > 0 and step["submits_per_second"] > 0 and step["otree_cpu"] > 0
        for kind in ("stats", "stats_history", "failures", "exceptions"):
            assert os.path.exists(os.path.join(folder, f"step{number:02d}-{step['participants']}_{kind}.csv"))
    created = set(summary["sessions_deleted"])
    assert created, "the load test created no session"
    assert not created & session_codes(stack)
    assert not created & {session["code"] for session in stack.rest("GET", "/api/sessions")}
    manifest, files = export(stack, tmp_path / "export")
    assert not created & {session["code"] for session in manifest["sessions"]}
    [page_times] = [data.decode() for name, data in files.items() if name.startswith("PageTimes-")]
    assert not created & {line.split(",")[0] for line in page_times.splitlines()}
    # The browser-bot start link no longer hands out the load test's participants.
    start = requests.get(stack.https + "/browser_bot_start", verify=False, timeout=30)
    assert "/InitializeParticipant/" not in start.url
    return summary


def requests_of(folder, summary, name):
    """How many requests of this name (e.g. 'submit public_goods/Results') all steps made."""
    total = 0
    for number, step in enumerate(summary["steps"], 1):
        with open(os.path.join(folder, f"step{number:02d}-{step['participants']}_stats.csv"), newline="") as handle:
            total += sum(int(row["Request Count"]) for row in csv.DictReader(handle) if row["Name"] == name)
    return total


def check_report_renders(folder, summary):
    steps = len(summary["steps"])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto("file://" + os.path.join(folder, "report.html"))
        plots = page.locator("svg.plot")
        assert plots.count() == 2
        for index in range(2):
            box = plots.nth(index).bounding_box()
            assert box["width"] > 100 and box["height"] > 100
            points = plots.nth(index).locator("circle.point")
            assert points.count() == 2 * steps  # two series, a point per step
            assert all(points.nth(n).bounding_box()["width"] > 0 for n in range(points.count()))
        assert page.locator("#capacity").inner_text() == summary["capacity_line"]
        browser.close()


def test_bad_input_is_refused_before_anything_is_created(stack):
    before = session_codes(stack)
    for args, message in [(["--participants", "0"], "--participants must be a whole number above 0"),
                          (["--duration", "-5"], "--duration must be a whole number above 0"),
                          (["--config", "nope"], "There is no session config 'nope'. The project has: "
                                                 "prolific_study, survey_only, mturk_survey")]:
        result = stack.invoke("loadtest", *args, check=False)
        assert result.returncode == 1 and message in result.stderr, result.stderr
    assert session_codes(stack) == before


def test_the_single_player_part(stack, reports, tmp_path):
    output, folder = loadtest(stack, "--config", "survey_only", "--participants", "10", "--duration", "5")
    reports.append(folder)
    summary = check_run(stack, output, folder, "survey_only", tmp_path)
    assert [step["participants"] for step in summary["steps"]][:1] == [5]
    assert sum(step["participants_finished"] for step in summary["steps"]) > 0
    check_report_renders(folder, summary)


def test_the_group_game_with_wait_pages(stack, reports, tmp_path):
    output, folder = loadtest(stack, "--config", "prolific_study", "--participants", "12", "--duration", "5")
    reports.append(folder)
    summary = check_run(stack, output, folder, "prolific_study", tmp_path)
    # Whole groups of 3, who got through the game's wait pages (the results come after them).
    assert [step["participants"] for step in summary["steps"]][:1] == [6]
    assert requests_of(folder, summary, "wait public_goods/ResultsWaitPage") > 0
    assert requests_of(folder, summary, "submit public_goods/Results") >= 3
    check_report_renders(folder, summary)


def test_ctrl_c_stops_it_and_deletes_its_sessions(stack):
    before = session_codes(stack)
    running = subprocess.Popen(["invoke", "loadtest", "--force", "--config", "survey_only", "--participants", "5", "--duration",
                                "120"], cwd=REPO_ROOT, env=dict(os.environ, OTREE_STACK_ENV=stack.env_path),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not session_codes(stack) - before:  # the step's session: Locust starts right after
            assert time.monotonic() < deadline and running.poll() is None, running.communicate()
            time.sleep(1)
        time.sleep(5)
        os.killpg(running.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        output, errors = running.communicate(timeout=120)
    finally:
        if running.poll() is None:
            os.killpg(running.pid, signal.SIGKILL)
    assert running.returncode == 1, output + errors
    assert "The load test stopped before its first step finished; its sessions were deleted." in errors
    assert session_codes(stack) == before


def test_refused_while_a_real_participant_is_active(stack):
    """Last in this file: the participant stays active for 10 minutes."""
    session = stack.create_session(3)
    requests.get(session["session_wide_url"], verify=False, timeout=30).raise_for_status()
    before = session_codes(stack)
    result = stack.invoke("loadtest", "--participants", "5", "--duration", "5", check=False)
    assert result.returncode == 1
    # Other test modules' participants on the shared server may be listed too.
    assert "Participants were active in the last 10 minutes, in session(s) " in result.stderr
    assert f"{session['code']} (1 participant)" in result.stderr
    assert "add --force" in result.stderr
    assert session_codes(stack) == before
