"""Live load and errors in `invoke status`, and alerts: participants play a test app whose pages
are slow on purpose and then raise; `invoke status` shows the requests, p95 and the error (page,
exception type), and the monitor's alert reaches a real SMTP server and a webhook receiver (both
in a container of their own, tests/receiver) exactly once for all the errors."""
import email
import email.policy
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import requests

from tests.conftest import TEST_STACK, start_stack, stop_stack
from tests.helpers import REPO_ROOT

NAME = f"{TEST_STACK}-alerts"
RECEIVER = f"{NAME}-receiver"
# Inside the repository (Docker builds only from there) but outside tests/ (not in the build context).
PROJECT = os.path.join(".test-projects", NAME)
PARTICIPANTS = 3
# A page that takes 1.2 s (then is skipped), and one that raises: only in this test's project.
CRASH_APP = '''import time

from otree.api import *


class C(BaseConstants):
    NAME_IN_URL = 'crash'
    PLAYERS_PER_GROUP = None
    NUM_ROUNDS = 1


class Subsession(BaseSubsession):
    pass


class Group(BaseGroup):
    pass


class Player(BasePlayer):
    pass


class Slow(Page):
    @staticmethod
    def is_displayed(player):
        time.sleep(1.2)
        return False


class Crash(Page):
    @staticmethod
    def vars_for_template(player):
        return dict(ratio=1 / 0)


page_sequence = [Slow, Crash]
'''
CRASH_CONFIG = ("SESSION_CONFIGS = [dict(name='crash', display_name='Crash', app_sequence=['crash'], "
                "num_demo_participants=1)] + SESSION_CONFIGS\n")


def make_project():
    folder = os.path.join(REPO_ROOT, PROJECT)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(os.path.join(REPO_ROOT, "otree_project"), folder,
                    ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3"))
    os.makedirs(os.path.join(folder, "crash"))
    with open(os.path.join(folder, "crash", "__init__.py"), "w", encoding="utf-8") as handle:
        handle.write(CRASH_APP)
    with open(os.path.join(folder, "settings.py"), "a", encoding="utf-8") as handle:
        handle.write(CRASH_CONFIG)
    return folder


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=600)


def received(kind):
    lines = docker("logs", RECEIVER).stdout.splitlines()
    return [entry for entry in map(json.loads, lines) if entry["kind"] == kind]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = make_project()
    docker("build", "-q", "-t", RECEIVER, os.path.join(REPO_ROOT, "tests", "receiver"))
    shared = start_stack(str(tmp_path_factory.mktemp("alerts")), NAME, port_shift=6, OTREE_PROJECT_DIR=PROJECT,
                         MONITOR_INTERVAL="2", ALERT_EMAIL="researcher@example.edu", SMTP_HOST=RECEIVER,
                         SMTP_PORT="2525", SMTP_TLS="off", SMTP_FROM="otree@example.edu",
                         ALERT_WEBHOOK_URL=f"http://{RECEIVER}:8080/hooks/alerts")
    # On the proxy's network, where the monitor sends its alerts; only for this test.
    docker("rm", "--force", RECEIVER, check=False)
    docker("run", "--detach", "--name", RECEIVER, "--network", f"{NAME}_outside", "--read-only", RECEIVER)
    yield shared
    docker("rm", "--force", RECEIVER, check=False)
    stop_stack(shared)
    shutil.rmtree(folder, ignore_errors=True)


def wait_for(condition, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(1)
    return condition()


def test_status_shows_requests_p95_and_the_error_and_one_alert_reaches_mail_and_webhook(stack):
    session = stack.rest("POST", "/api/sessions", json=dict(session_config_name="crash",
                                                            num_participants=PARTICIPANTS))
    codes = [participant["code"] for participant in stack.rest("GET", f"/api/sessions/{session['code']}")["participants"]]
    # Each participant's start link leads, through the slow page, to the page that raises.
    for code in codes:
        response = requests.get(f"{stack.https}/InitializeParticipant/{code}", verify=False, timeout=60)
        assert response.status_code == 500 and response.url.endswith("/crash/Crash/2"), response.url
    for _ in range(5):
        assert requests.get(f"{stack.https}/room/prolific", verify=False, timeout=60).status_code == 200

    # 3 start links, 3 slow pages, 3 errors and 5 room pages: 14 in the last 5 minutes, once the
    # monitor has read them all (it reads nginx's log every MONITOR_INTERVAL).
    def status():
        result = stack.invoke("status")
        return result if "last  5 min: 2.8 requests/min, page time p50 " in result.stdout else None
    result = wait_for(status, 30)
    assert result, stack.invoke("status").stdout
    lines = [line.split(None, 1)[1] for line in result.stdout.splitlines() if line.strip().startswith(("load", "errors"))]
    five, sixty, error = lines
    p95 = float(five.split(" p95 ")[1].split(" s,")[0])
    assert 1.2 <= p95 < 4, five
    assert f"{PARTICIPANTS} server errors, {PARTICIPANTS} participants active" in five
    assert sixty.startswith("last 60 min: 0.2 requests/min")
    assert "/crash/Crash/2 (HTTP 500): ZeroDivisionError: division by zero" in error
    # p95 over 1 s: the warning says what to do.
    assert "participants waited over 1 s for 5% of their pages" in result.stderr
    assert "invoke loadtest" in result.stderr

    # One alert for all the errors, by mail through the SMTP server and to the webhook.
    assert wait_for(lambda: received("mail") and received("webhook"), 30)
    # More errors within the hour send nothing more.
    requests.get(f"{stack.https}/InitializeParticipant/{codes[0]}", verify=False, timeout=60)
    assert wait_for(lambda: "4 server errors" in stack.invoke("status").stdout, 30)
    time.sleep(5)  # a few more of the monitor's checks (MONITOR_INTERVAL=2)
    mails, hooks = received("mail"), received("webhook")
    assert len(mails) == 1 and len(hooks) == 1, (mails, hooks)
    assert mails[0]["to"] == ["researcher@example.edu"] and mails[0]["from"] == "otree@example.edu"
    # As a mail client reads it: a long subject is folded onto a second line in transit.
    subject = email.message_from_string(mails[0]["data"], policy=email.policy.default)["Subject"].strip()
    assert subject.startswith(f"[oTree {NAME}] Participants of study {NAME} hit"), subject
    body = hooks[0]["body"]
    assert hooks[0]["path"] == "/hooks/alerts"
    assert body["cause"] == f"server-errors:{NAME}" and body["status"] == 500
    assert body["page"] == "/p/*/crash/Crash/2" and body["text"].startswith(f"[{NAME}] Participants of study")
    # A participant's code is a link that logs in as them: no alert carries one.
    assert not [code for code in codes if code in mails[0]["data"] or code in json.dumps(body)], codes


def test_status_watch_refreshes_until_ctrl_c(stack):
    watching = subprocess.Popen(["invoke", "status", "--watch"], cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=dict(os.environ, OTREE_STACK_ENV=stack.env_path))
    time.sleep(20)  # a status takes a few seconds here, then 5 s until the next
    watching.send_signal(signal.SIGINT)
    output, _ = watching.communicate(timeout=60)
    assert watching.returncode == 0, output
    assert output.count("Every 5 s; Ctrl-C to stop.") >= 2, output
    assert output.count("load      last  5 min:") >= 2


def test_the_backup_service_reports_the_studys_health_to_the_monitor(stack):
    def report():
        found = stack.compose("exec", "-T", "monitor", "cat", f"/var/lib/otree-health/{NAME}.json", check=False)
        return json.loads(found.stdout) if found.returncode == 0 else None
    # The backup service's healthcheck writes it every minute.
    found = wait_for(report, 90)
    assert found and found["study"] == NAME, found
    assert found["otree_problem"] is None and found["backup_problem"] is None
    assert time.time() - found["t"] < 120
