"""`invoke export-data`: the admin's downloads byte for byte, every page time, safe while
participants play, and clear refusals. Participants are plain HTTP clients through nginx."""
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import threading
import time
import zipfile

import pytest
import requests

from otree_server import export_data as container_script
from stack import export_data as host
from stack.console import StackError
from tests.participants import LAST_PAGE, PAGES_PER_PARTICIPANT, Participant, join, play_together

def export(stack, out, *options):
    """Run `invoke export-data`; return its manifest and files, after checking the zip holds the
    same files and the manifest's checksums hold."""
    before = set(os.listdir(out)) if os.path.isdir(out) else set()
    stack.invoke("export-data", "--output", str(out), *options)
    new = sorted(set(os.listdir(out)) - before)
    assert len(new) == 2 and new[1] == new[0] + ".zip", new  # the folder and its zip, nothing half-done
    folder = os.path.join(out, new[0])
    files = {}
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as handle:
            files[name] = handle.read()
    with zipfile.ZipFile(os.path.join(out, new[1])) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == files
    manifest = json.loads(files.pop("manifest.json"))
    assert {entry["name"]: entry["sha256"] for entry in manifest["files"]} == \
        {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    return manifest, files


def page_time_rows(files, session_code):
    """PageTimes rows of one session as (participant code, page index, page name)."""
    [text] = [data.decode() for name, data in files.items() if name.startswith("PageTimes-")]
    rows = [line.split(",") for line in text.splitlines()[1:]]
    return sorted((row[2], int(row[3]), row[5]) for row in rows if row[0] == session_code)


def admin_login(stack):
    """The admin's cookie, as in the browser (/login allows only a few attempts a minute, so wait)."""
    http = requests.Session()
    http.verify = False
    http.trust_env = False
    deadline = time.time() + 120
    while True:
        form = http.get(stack.https + "/login", timeout=30)
        if form.status_code != 429:
            token = re.search(r'name="csrftoken" value="([^"]+)"', form.text).group(1)
            response = http.post(stack.https + "/login", allow_redirects=False, timeout=30,
                                 data=dict(username="admin", password=stack.values["OTREE_ADMIN_PASSWORD"],
                                           csrftoken=token))
            if response.status_code != 429:
                assert response.status_code == 302
                return http
        assert time.time() < deadline, "the admin login stayed rate-limited"
        time.sleep(3)


def download(stack, http, path, rest=False):
    headers = {"otree-rest-key": stack.values["OTREE_REST_KEY"]} if rest else {}
    response = http.get(stack.https + path, headers=headers, timeout=60)
    response.raise_for_status()
    name = re.search(r'filename="([^"]+)"', response.headers["Content-Disposition"]).group(1)
    return name, response.content


# --- End to end, on the shared test stack --------------------------------------------------------

def test_export_equals_the_admin_downloads_and_has_every_page_time(stack, tmp_path):
    played = stack.create_session(3)
    other = stack.create_session(3)  # never played: its rows must stay out of a --session export
    participants = join(played, 3, "E")
    play_together(participants)
    completed = sorted(page for participant in participants for page in participant.completed)
    assert len(completed) == 3 * PAGES_PER_PARTICIPANT

    # 27 rows, fewer than the 50 oTree buffers: without the flush before the export, some are missing.
    manifest, files = export(stack, tmp_path)
    assert page_time_rows(files, played["code"]) == completed

    admin = admin_login(stack)
    page_times_name, page_times = download(stack, admin, "/ExportPageTimes")
    date = page_times_name[len("PageTimes-"):-len(".csv")]
    index = admin.get(stack.https + "/ExportIndex", timeout=30).text
    apps = re.findall(r'data-app="(\w+)">CSV<', index)
    customs = re.findall(r'data-app="(\w+)" data-custom="1" data-export-name="(\w+)">CSV<', index)
    assert ("public_goods", "custom_export") in customs
    chat_name, chat = download(stack, admin, "/ExportChat")
    # The admin's page downloads the others over its websocket, named prefix_DATE.csv (oTree's naming).
    expected = {f"all_apps_wide_{date}.csv": download(stack, admin, "/ExportWide")[1],
                page_times_name: page_times, chat_name: chat}
    for app in apps:
        expected[f"{app}_{date}.csv"] = download(stack, admin, f"/api/export_app?app={app}", rest=True)[1]
    for app, function in customs:
        expected[f"{app}_{function}_{date}.csv"] = download(
            stack, admin, f"/api/export_app_custom?app={app}&function_name={function}", rest=True)[1]
    assert files == expected
    assert {played["code"], other["code"]} <= {session["code"] for session in manifest["sessions"]}
    assert manifest["otree_version"] == "6.0.15" and manifest["options"] == {"session": None, "app": None}

    # One session: what the admin's "one session only" links give, and only its page times.
    manifest, files = export(stack, tmp_path, "--session", played["code"])
    assert [(s["code"], s["config_name"], s["participants"], s["participants_started"])
            for s in manifest["sessions"]] == [(played["code"], "prolific_study", 3, 3)]
    query = f"session_code={played['code']}"
    assert files[f"all_apps_wide_{date}.csv"] == download(stack, admin, f"/api/export_wide?{query}",
                                                         rest=True)[1]
    assert files[f"public_goods_custom_export_{date}.csv"] == download(
        stack, admin, f"/api/export_app_custom?app=public_goods&{query}", rest=True)[1]
    assert other["code"].encode() not in b"".join(files.values())
    assert page_time_rows(files, played["code"]) == completed
    # One app: its table and its custom export, nothing else.
    _, files = export(stack, tmp_path, "--app", "public_goods")
    assert sorted(files) == [f"public_goods_{date}.csv", f"public_goods_custom_export_{date}.csv"]


def test_export_while_participants_play_fails_none_of_their_requests(stack, tmp_path):
    threads_count, rounds = 6, 8
    # Stragglers left without a group at the end play alone after a few seconds.
    session = stack.create_session(threads_count * rounds, grouping_max_wait_seconds=4)
    log, errors, started, export_done = [], [], threading.Event(), threading.Event()
    labels = iter(range(threads_count * rounds))
    lock = threading.Lock()

    def play_participants():
        # Each thread plays one participant after another until the export is over (or the cap).
        try:
            for _ in range(rounds):
                with lock:
                    label = next(labels)
                participant = Participant(f"{session['session_wide_url']}?participant_label=L{label}",
                                          think_seconds=0.1, log=log)
                started.set()
                participant.play_until(LAST_PAGE)
                if export_done.is_set():
                    return
        except Exception as error:
            errors.append(repr(error))

    threads = [threading.Thread(target=play_participants) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    started.wait(60)
    time.sleep(1)
    begun = time.time()
    try:
        manifest, _ = export(stack, tmp_path)
    finally:
        ended = time.time()
        export_done.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert {status for _, status in log} == {200}
    assert any(begun <= when <= ended for when, _ in log), "no participant request ran during the export"
    assert session["code"] in [s["code"] for s in manifest["sessions"]]


def test_no_page_time_is_lost_across_down_and_up_and_a_stopped_stack_is_refused(stack, tmp_path):
    session = stack.create_session(3)
    participants = join(session, 3, "R")
    play_together(participants, "Contribute")  # a few pages each, held in oTree's memory
    before = sorted(page for participant in participants for page in participant.completed)

    stack.invoke("down")
    refused = stack.invoke("export-data", "--output", str(tmp_path), check=False)
    assert refused.returncode == 1 and "is not running, so there is nothing to export from" in refused.stderr
    assert "invoke up" in refused.stderr and os.listdir(tmp_path) == []
    stack.invoke("up")
    assert saved_page_times(stack, session["code"]) == before

    play_together(participants)
    _, files = export(stack, tmp_path)
    completed = sorted(page for participant in participants for page in participant.completed)
    assert len(completed) == 3 * PAGES_PER_PARTICIPANT
    assert page_time_rows(files, session["code"]) == completed


def saved_page_times(stack, session_code):
    """The page-time rows in the database (not in oTree's memory) of one session."""
    saved = stack.sql("SELECT line FROM otree_pagetimebatch, regexp_split_to_table(text, E'\\n') AS line "
                      f"WHERE line LIKE '{session_code},%'")
    return sorted((row[2], int(row[3]), row[5]) for row in (line.split(",") for [line] in saved))


def test_a_crash_of_otree_mid_session_loses_no_page_time_of_an_acknowledged_page(stack):
    session = stack.create_session(3)
    participants = join(session, 3, "K")
    play_together(participants, "Contribute")  # every page before it acknowledged
    acknowledged = sorted(page for participant in participants for page in participant.completed)
    container = stack.compose("ps", "--quiet", "otree").stdout.strip()
    pid = subprocess.run(["docker", "inspect", "--format", "{{.State.Pid}}", container], capture_output=True,
                         text=True, check=True).stdout.strip()
    # A crash (killed from the host, so Docker's restart policy starts it again), not a stop: no
    # flush of oTree's memory can run.
    os.kill(int(pid), signal.SIGKILL)
    deadline = time.time() + 120
    while subprocess.run(["docker", "inspect", "--format", "{{.State.Pid}}", container], capture_output=True,
                         text=True).stdout.strip() in (pid, "0"):
        assert time.time() < deadline, "oTree was not restarted after its crash"
        time.sleep(0.5)
    assert saved_page_times(stack, session["code"]) == acknowledged
    assert "Page times are saved with each page" in stack.otree_log()
    wait_healthy(stack, container)
    play_together(participants)  # they finish after the restart, and nothing was counted twice
    completed = sorted(page for participant in participants for page in participant.completed)
    assert saved_page_times(stack, session["code"]) == completed


def wait_healthy(stack, container, timeout=120):
    deadline = time.time() + timeout
    while subprocess.run(["docker", "inspect", "--format", "{{.State.Health.Status}}", container],
                         capture_output=True, text=True).stdout.strip() != "healthy":
        assert time.time() < deadline, f"oTree was not healthy again after {timeout} s"
        time.sleep(0.5)


@pytest.mark.parametrize("options, message", [
    (["--session", "nosuchcode"], "There is no session 'nosuchcode'"),
    (["--app", "public_good"], "There is no app 'public_good' in this project. Its apps are: consent,"),
    (["--output", "/sys/otree-exports"], "Cannot write to the output folder /sys/otree-exports"),
    (["--output", "/etc/passwd"], "--output /etc/passwd is a file, not a folder"),
])
def test_bad_input_is_refused_with_a_clear_message_and_leaves_nothing(stack, tmp_path, options, message):
    args = ["--output", str(tmp_path)] if "--output" not in options else []
    result = stack.invoke("export-data", *args, *options, check=False)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []


# --- Pure logic, no containers --------------------------------------------------------------------

def test_file_names_are_the_admins():
    name = container_script.admin_file_name
    assert name("all_apps_wide", "2026-05-04", True) == "all_apps_wide_2026-05-04.csv"
    assert name("PageTimes", "2026-05-04", False) == "PageTimes-2026-05-04.csv"
    assert host.folder_name("2026-05-04T10:11:12Z") == "2026-05-04T101112Z"


def test_page_times_of_one_session_keep_the_header_and_its_lines_byte_for_byte():
    text = "session_code,page_index\r\nAAA,1\nBBB,1\nAAA,2\n"
    assert container_script.page_times_of_session(text, "AAA") == "session_code,page_index\r\nAAA,1\nAAA,2\n"


def test_manifest_counts_and_checksums():
    sessions = [dict(code="a", participants=3, participants_started=2),
                dict(code="b", participants=5, participants_started=0)]
    manifest = container_script.build_manifest("2026-05-04T10:11:12Z", "6.0.15", {"session": None},
                                               sessions, [("x.csv", "x", b"1,2\r\n")])
    assert manifest["participants"] == 8 and manifest["participants_started"] == 2
    assert manifest["files"] == [{"name": "x.csv", "what": "x", "bytes": 5,
                                  "sha256": hashlib.sha256(b"1,2\r\n").hexdigest()}]


def test_a_damaged_export_is_refused_and_publishing_never_overwrites(tmp_path):
    files = [("x.csv", "x", b"1,2\r\n")]
    manifest = container_script.build_manifest("2026-05-04T10:11:12Z", "6.0.15", {}, [], files)
    good = container_script.make_zip(files, manifest, (2026, 5, 4, 10, 11, 12))
    damaged = container_script.make_zip([("x.csv", "x", b"1,3\r\n")], manifest, (2026, 5, 4, 10, 11, 12))
    staging = tmp_path / ".staging"
    staging.mkdir()
    with pytest.raises(StackError, match="x.csv does not match its checksum"):
        host._unpack(damaged, str(staging))
    with pytest.raises(StackError, match="no readable export"):
        host._unpack(good[:len(good) // 2], str(staging))

    names = []
    for _ in range(2):
        staging = tmp_path / f".staging{len(names)}"
        staging.mkdir()
        assert host._unpack(good, str(staging))["files"][0]["name"] == "x.csv"
        folder = host._publish(str(tmp_path), str(staging), good, manifest["exported_at"])
        names.append(os.path.basename(folder))
    assert names == ["2026-05-04T101112Z", "2026-05-04T101112Z-2"]
    published = [name for name in os.listdir(tmp_path) if not name.startswith(".")]
    assert sorted(published) == sorted(names + [name + ".zip" for name in names])
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        assert archive.read("x.csv") == (tmp_path / names[1] / "x.csv").read_bytes()
