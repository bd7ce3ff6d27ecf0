"""Pure logic of deploys from the laptop: the SSH command lines, what ssh's failures are told as,
the servers file, what is shipped, which releases' images are pruned, which release a rollback
picks, and how a settings file is changed."""
import os
import stat
import tarfile

import pytest

from stack import envfile, releases, remote, rollback, servers, ssh
from stack.console import StackError

pytestmark = pytest.mark.unit

LAB = servers.Server("lab", "deploy@203.0.113.7", 2222, "otree stack")


def test_ssh_never_asks_for_a_password_and_notices_a_lost_connection(monkeypatch):
    monkeypatch.delenv("OTREE_SSH_CONFIG", raising=False)
    argv = ssh.command(LAB, "true")
    assert argv[0] == "ssh" and argv[-2:] == ["deploy@203.0.113.7", "true"]
    assert "BatchMode=yes" in argv and "ServerAliveInterval=10" in argv and "StrictHostKeyChecking=accept-new" in argv
    assert argv[argv.index("-p") + 1] == "2222" and "-t" not in argv and "-F" not in argv
    monkeypatch.setenv("OTREE_SSH_CONFIG", "/tmp/config")
    assert ssh.command(LAB, "true", tty=True)[1:3] == ["-F", "/tmp/config"] and "-t" in ssh.command(LAB, "x", tty=True)


def test_commands_run_in_the_stacks_folder_or_say_it_is_missing():
    assert ssh.in_stack(LAB, "invoke", "status", "--study", "a b") == (
        f"cd 'otree stack' 2>/dev/null && test -f tasks.py || exit {ssh.NO_STACK}; exec invoke status --study 'a b'")
    detached = ssh.detached_invoke(LAB, "releases/.incoming/x.log", "deploy", "--revision", "abc")
    assert detached.startswith(ssh.enter_stack(LAB)) and "setsid nohup" in detached
    assert "tail -n +1 -f --pid=$!" in detached and "deploy --revision abc" in detached


def test_task_options_become_the_same_command_line_on_the_server():
    assert ssh.task_args("export_data", {"study": "trust", "session": None, "offsite": False, "no_follow": True},
                         ["test", "x"]) == ["export-data", "--study", "trust", "--no-follow", "--", "test", "x"]
    assert ssh.task_args("config", {"set_": ["A=1", "B=2"], "unset": []}) == ["config", "--set", "A=1", "--set", "B=2"]


@pytest.mark.parametrize("stderr, message", [
    ("deploy@203.0.113.7: Permission denied (publickey).", "refused your SSH key"),
    ("ssh: connect to host 203.0.113.7 port 2222: Connection refused", "cannot be reached"),
    ("ssh: connect to host 203.0.113.7 port 2222: Connection timed out", "cannot be reached"),
    ("ssh: Could not resolve hostname nowhere: Name or service not known", "does not resolve"),
    ("Host key verification failed.", "different host key"),
    ("Timeout, server 203.0.113.7 not responding.", "connection to the server 'lab' was lost"),
])
def test_ssh_failures_are_told_with_what_to_do(stderr, message):
    assert message in ssh.diagnose(LAB, stderr)


def test_servers_are_added_listed_and_refused_when_bad(tmp_path, monkeypatch):
    monkeypatch.setattr(servers, "SERVERS_FILE", str(tmp_path / "servers.ini"))
    with pytest.raises(StackError, match="There is no server named 'lab'.*known: none yet"):
        servers.get("lab")
    servers.add("lab", "deploy@203.0.113.7", port=2222)
    assert servers.get("lab") == servers.Server("lab", "deploy@203.0.113.7", 2222, "otree-stack")
    with pytest.raises(StackError, match="already a server named 'lab'"):
        servers.add("lab", "deploy@203.0.113.8")
    with pytest.raises(StackError) as refused:
        servers.add("Bad Name", "not an address", port="x", path="../up")
    assert all(part in str(refused.value) for part in ("not a valid server name", "not an SSH address",
                                                       "not a port number", "no .."))
    assert "password" not in (tmp_path / "servers.ini").read_text().lower()
    servers.remove("lab")
    assert servers.all_servers() == []


def test_only_the_project_and_the_stacks_own_files_are_shipped(tmp_path):
    project = tmp_path / "project"
    for path in ("settings.py", "requirements.txt", "app/__init__.py", "app/Page.html", ".env", "db.sqlite3",
                 "app/__pycache__/x.pyc", "venv/bin/python", ".git/config"):
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text("x")
    assert remote.files_of(str(project)) == ["app/Page.html", "app/__init__.py", "requirements.txt", "settings.py"]
    with tarfile.open(fileobj=remote.bundle(str(project), "abc123-1"), mode="r:gz") as archive:
        names = archive.getnames()
    assert "releases/.incoming/abc123-1/settings.py" in names and "tasks.py" in names and "setup.sh" in names
    assert not [name for name in names if name.endswith((".env", "servers.ini")) or name.startswith("studies/")]


def record(number, outcome="replaced", kept=True):
    return {"number": number, "outcome": outcome, "image_kept": kept, "project_dir": f"releases/s/v{number}"}


def test_the_images_of_the_last_five_releases_and_the_live_one_are_kept():
    records = [record(n) for n in range(1, 7)] + [record(7, "failed", kept=False), record(8, "live")]
    assert [r["number"] for r in releases.to_prune(records)] == [1, 2]
    records = [record(1, "live")] + [record(n) for n in range(2, 8)]  # rolled back to v1
    assert [r["number"] for r in releases.to_prune(records)] == [2]


def test_a_rollback_goes_to_the_newest_earlier_release_with_an_image(monkeypatch):
    monkeypatch.setattr(releases, "image_id", lambda reference: "sha256:x")
    study = type("Study", (), {"project": "lab-s"})()
    records = [record(1, kept=False), record(2), record(3, "failed", kept=False), record(4, "live")]
    assert rollback._target(study, records, None)["number"] == 2
    assert rollback._target(study, records, "v2")["number"] == 2
    for version, message in (("v4", "is the one running"), ("v1", "no longer kept"), ("v9", "no release v9"),
                             ("three", "not a release")):
        with pytest.raises(StackError, match=message):
            rollback._target(study, records, version)
    with pytest.raises(StackError, match="no earlier release"):
        rollback._target(study, [record(1, "live")], None)


def test_a_settings_file_is_changed_in_place_keeping_its_comments(tmp_path):
    path = tmp_path / "study.env"
    path.write_text("# the project\nOTREE_PROJECT_DIR=otree_project\nDOMAIN=\n")
    envfile.set_values(str(path), {"OTREE_PROJECT_DIR": "releases/s/v2", "DOMAIN": None, "CPU_LIMIT": "1"})
    assert path.read_text() == "# the project\nOTREE_PROJECT_DIR=releases/s/v2\nCPU_LIMIT=1\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
