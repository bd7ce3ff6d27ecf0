"""Several studies on one server, on real containers: the example study and a second project,
each reached on its own HTTPS port of one proxy (a server without DNS names), played at the same
time by participants through nginx; each study's rows in its own database only; admin passwords,
databases and backups kept apart; one study's backup, resetdb and removal leave the other's data
byte-identical; bad `study add` input refused before anything is built; limits in docker inspect."""
import hashlib
import json
import os
import shutil
import subprocess
import threading

import pytest
import requests

from stack import settings
from tests.conftest import Stack, start_stack, stop_stack
from tests.helpers import REPO_ROOT, compose, invoke
from tests.participants import join, play_together
from tests.test_https_proxy import login

pytestmark = pytest.mark.docker

SERVER = "otreestudies"
SECOND = "second"
SECOND_PORT = 18449
SECOND_PROJECT = os.path.join(".test-projects", "second-study")


def export_digest(stack, study, tmp_path, name):
    """sha256 of every exported file of a study (the manifest's export time left out)."""
    out = tmp_path / name
    invoke(stack.env_path, "export-data", "--study", study, "--output", str(out))
    (folder,) = [path for path in out.iterdir() if path.is_dir()]
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())
            if path.name != "manifest.json"}


def rest(stack, study, method, path, **kwargs):
    values = settings.load(stack.env_path).study(study).values
    port = SECOND_PORT if study == SECOND else int(stack.values["HTTPS_PORT"])
    response = requests.request(method, f"https://127.0.0.1:{port}{path}", verify=False, timeout=60,
                                headers={"otree-rest-key": values["OTREE_REST_KEY"]}, **kwargs)
    response.raise_for_status()
    return response.json()


def sql(stack, study, query):
    result = compose(stack.env_path, study, "exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "otree", "-At",
                     "-c", query)
    return result.stdout.split()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    shutil.rmtree(os.path.join(REPO_ROOT, SECOND_PROJECT), ignore_errors=True)
    shutil.copytree(os.path.join(REPO_ROOT, "otree_project"), os.path.join(REPO_ROOT, SECOND_PROJECT))
    first = start_stack(str(tmp_path_factory.mktemp("studies")), SERVER, port_shift=5)
    try:
        added = invoke(first.env_path, "study", "add", SECOND, "--project", SECOND_PROJECT,
                       "--port", str(SECOND_PORT))
        assert f"The study '{SECOND}' is up: https://127.0.0.1:{SECOND_PORT}/" in added.stdout
        yield first
    finally:
        invoke(first.env_path, "down", "--study", SECOND, "--delete-data", "--confirm", SECOND, check=False)
        stop_stack(first)
        shutil.rmtree(os.path.join(REPO_ROOT, SECOND_PROJECT), ignore_errors=True)


def test_a_task_that_changes_data_refuses_to_guess_between_studies(server):
    for args in (["backup"], ["resetdb", "--confirm", SERVER], ["restore", "latest"], ["export-data"]):
        refused = server.invoke(*args, check=False)
        assert refused.returncode == 1, args
        assert "several studies" in refused.stderr and f"Studies: {SERVER}, {SECOND}" in refused.stderr
    listing = server.invoke("studies").stdout
    assert f"https://127.0.0.1:{SECOND_PORT}/" in listing and "6.0.15" in listing


def test_participants_play_both_studies_at_once_and_each_studys_rows_stay_in_its_database(server):
    first = rest(server, SERVER, "POST", "/api/sessions", json={"session_config_name": "prolific_study",
                                                                "num_participants": 3})
    second = rest(server, SECOND, "POST", "/api/sessions", json={"session_config_name": "prolific_study",
                                                                 "num_participants": 3})
    assert str(SECOND_PORT) in second["session_wide_url"]
    players = join(first, 3, "first") + join(second, 3, "second")
    threads = [threading.Thread(target=play_together, args=(group,)) for group in (players[:3], players[3:])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert first["code"] in sql(server, SERVER, "SELECT code FROM otree_session")
    assert first["code"] not in sql(server, SECOND, "SELECT code FROM otree_session")
    assert second["code"] in sql(server, SECOND, "SELECT code FROM otree_session")
    assert second["code"] not in sql(server, SERVER, "SELECT code FROM otree_session")
    assert set(sql(server, SECOND, "SELECT label FROM otree_participant WHERE label IS NOT NULL")) == \
        {"second0", "second1", "second2"}


def test_each_admin_password_opens_its_own_study_only(server):
    own = settings.load(server.env_path).study(SECOND).values["OTREE_ADMIN_PASSWORD"]
    other = Stack(server.env_path)
    other.https = f"https://127.0.0.1:{SECOND_PORT}"
    _, right = login(other, own)
    assert right.status_code == 302
    _, wrong = login(other, server.values["OTREE_ADMIN_PASSWORD"])
    assert wrong.status_code == 200 and 'name="password"' in wrong.text
    # And the first study's admin cookie is no key to the second's admin pages.
    first, _ = login(server, server.values["OTREE_ADMIN_PASSWORD"])
    response = first.get(f"https://127.0.0.1:{SECOND_PORT}/sessions", timeout=30)
    assert response.url.endswith("/login") or 'name="password"' in response.text


def test_a_studys_otree_cannot_resolve_or_reach_the_other_studys_database(server):
    probe = ("import socket, sys\ntry:\n    socket.create_connection((sys.argv[1], 5432), timeout=3)\n"
             "except OSError:\n    sys.exit(7)")
    own = compose(server.env_path, SERVER, "exec", "-T", "otree", "python", "-c", probe, "postgres", check=False)
    assert own.returncode == 0
    other = f"{SERVER}-{SECOND}-postgres-1"
    reach = compose(server.env_path, SERVER, "exec", "-T", "otree", "python", "-c", probe, other, check=False)
    assert reach.returncode != 0
    address = json.loads(subprocess.run(["docker", "inspect", other], capture_output=True, text=True,
                                        check=True).stdout)[0]["NetworkSettings"]["Networks"]
    for network in address.values():
        by_ip = compose(server.env_path, SERVER, "exec", "-T", "otree", "python", "-c", probe, network["IPAddress"],
                        check=False)
        assert by_ip.returncode != 0


def test_backup_and_resetdb_of_one_study_leave_the_others_data_byte_identical(server, tmp_path):
    before = export_digest(server, SECOND, tmp_path, "before")
    server.invoke("backup", "--study", SERVER)
    server.invoke("resetdb", "--study", SERVER, "--confirm", SERVER)
    assert sql(server, SERVER, "SELECT count(*) FROM otree_session") == ["0"]
    assert export_digest(server, SECOND, tmp_path, "after") == before
    backups_of_first = settings.load(server.env_path).study(SERVER).backup_dir
    backups_of_second = settings.load(server.env_path).study(SECOND).backup_dir
    assert os.path.commonpath([backups_of_first, backups_of_second]) not in (backups_of_first, backups_of_second)


def test_cpu_and_memory_limits_are_set_per_study(server):
    for service in ("otree", "postgres"):
        container = f"{SERVER}-{SECOND}-{service}-1"
        host = json.loads(subprocess.run(["docker", "inspect", container], capture_output=True, text=True,
                                         check=True).stdout)[0]["HostConfig"]
        assert host["NanoCpus"] == 1_500_000_000
        assert host["Memory"] == 2 * 1024 ** 3


@pytest.mark.parametrize("args, message", [
    (["Bad_Name", "--project", "otree_project"], "is not a valid study name"),
    ([SECOND, "--project", "otree_project"], "There is already a study named 'second'"),
    (["third", "--project", "no-such-folder"], "does not exist"),
    (["third", "--project", "tests/.old-otree"], "pins oTree before 5"),
])
def test_study_add_refuses_bad_input_before_anything_is_built(server, args, message):
    old = os.path.join(REPO_ROOT, "tests", ".old-otree")
    os.makedirs(old, exist_ok=True)
    for name, text in (("settings.py", ""), ("requirements.txt", "otree==3.4.0\n")):
        with open(os.path.join(old, name), "w") as handle:
            handle.write(text)
    try:
        result = server.invoke("study", "add", *args, check=False)
    finally:
        shutil.rmtree(old)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert "third" not in [study.name for study in settings.load(server.env_path).studies]
    assert "Building" not in result.stdout


def test_study_remove_takes_a_verified_backup_needs_the_name_and_leaves_the_other(server, tmp_path):
    before = export_digest(server, SERVER, tmp_path, "first-before")
    refused = server.invoke("study", "remove", SECOND, "--confirm", "wrong", check=False)
    assert refused.returncode == 1 and "Nothing was changed" in refused.stderr
    removed = server.invoke("study", "remove", SECOND, "--confirm", SECOND)
    assert "before-remove" in removed.stdout and f"Removed the study '{SECOND}'" in removed.stdout
    backup_dir = [line for line in removed.stdout.splitlines() if "Its data as it was is backup" in line][0]
    path = backup_dir.split(": ", 1)[1].strip()
    assert os.path.isfile(os.path.join(path, "otree.dump"))
    assert [study.name for study in settings.load(server.env_path).studies] == [SERVER]
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"https://127.0.0.1:{SECOND_PORT}/login", verify=False, timeout=10)
    assert export_digest(server, SERVER, tmp_path, "first-after") == before
