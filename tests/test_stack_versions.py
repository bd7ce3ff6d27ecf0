"""The stack's version and its install on a server (stack/stack_version.py, stack/stack_install.py),
on folders of their own: what is older, what a refused install leaves (nothing), what an install
removes (what the stack no longer has, never the server's state), the lock, and a real crash
half-way through the swap, finished by the next install. The end-to-end cases over SSH are in
tests/test_deploy.py."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from stack import lock, stack_install, stack_version
from stack.console import StackError
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.unit

OLD = {"number": "1", "commit": "aaaaaaa", "date": "2026-11-01T10:00:00Z", "dirty": False}
NEW = {"number": "1", "commit": "bbbbbbb", "date": "2026-12-01T10:00:00Z", "dirty": False}


@pytest.mark.parametrize("candidate, recorded, older", [
    (OLD, NEW, True),
    (NEW, OLD, False),
    (NEW, NEW, False),
    ({**NEW, "number": "0"}, OLD, True),  # the number decides before the date
    ({**OLD, "number": "2"}, NEW, False),
    ({**NEW, "number": "1.9"}, {**OLD, "number": "1.10"}, True),  # numbers, not text
    ({"number": "1", "commit": None, "date": None}, NEW, False),  # without git: the number alone
    (NEW, {"number": "1", "commit": None, "date": None}, False),
    ({"number": "1"}, {"number": "2"}, True),
])
def test_older_is_a_lower_number_or_the_same_number_and_an_earlier_commit(candidate, recorded, older):
    assert stack_version.is_older(candidate, recorded) is older


def test_a_version_is_described_with_its_number_commit_date_and_changes():
    assert stack_version.describe({**NEW, "dirty": True}) == \
        "1 (git bbbbbbb of 2026-12-01 10:00 UTC, with uncommitted changes)"
    assert stack_version.describe({"number": "3", "commit": None}) == "3 (not from git)"
    assert stack_version.compared(NEW, OLD).startswith("older than this laptop's")
    assert stack_version.compared(OLD, NEW).startswith("newer than this laptop's")
    assert stack_version.compared(NEW, dict(NEW)) == "the same as this laptop's"


def git(folder, *args, **environment):
    subprocess.run(["git", "-C", str(folder), "-c", "user.name=R", "-c", "user.email=r@example.edu", *args],
                   check=True, capture_output=True, env={**os.environ, **environment})


def test_a_checkouts_version_comes_from_its_version_file_and_its_last_commit(tmp_path):
    (tmp_path / "VERSION").write_text("4\n")
    (tmp_path / "tasks.py").write_text("")
    assert stack_version.of_checkout(str(tmp_path)) == {"number": "4", "commit": None, "date": None, "dirty": False}
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "x", GIT_COMMITTER_DATE="2021-05-06T07:08:09+02:00")
    version = stack_version.of_checkout(str(tmp_path))
    commit = subprocess.run(["git", "-C", str(tmp_path), "log", "-1", "--format=%h"], capture_output=True,
                            text=True).stdout.strip()
    assert version == {"number": "4", "commit": commit, "date": "2021-05-06T05:08:09Z", "dirty": False}
    (tmp_path / "tasks.py").write_text("changed")
    assert stack_version.of_checkout(str(tmp_path))["dirty"] is True
    assert stack_version.read_number(str(tmp_path / "nowhere")) == "0"


def test_the_server_state_is_never_a_stack_file():
    for path in (".env", "studies/x.env", "releases/s/v1/a.py", "backups/x", "exports/y", "downloads/z",
                 "loadtests/r", "servers.ini", ".env.before-studies", stack_version.RECORD, stack_version.JOURNAL,
                 ".stack-staging-1/tasks.py", "../tasks.py", "a/../b", "/etc/passwd", "a//b", "data/x"):
        assert stack_install.is_state(path, studies_top="data"), path
    for path in ("tasks.py", ".env.example", "stack/remote.py", "nginx/studies.conf"):
        assert not stack_install.is_state(path), path


def write_tree(folder, files):
    for path, content in files.items():
        os.makedirs(os.path.dirname(os.path.join(folder, path)) or folder, exist_ok=True)
        with open(os.path.join(folder, path), "w", encoding="utf-8") as handle:
            handle.write(content)


def tree(folder):
    """{path: sha256} of every file under folder but the operations lock (whose note of its holder
    every operation rewrites): a hashed listing to compare before and after."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in (name for name in names if name != ".operations.lock"):
            with open(os.path.join(root, name), "rb") as handle:
                found[os.path.relpath(os.path.join(root, name), folder)] = hashlib.sha256(handle.read()).hexdigest()
    return found


STATE = {".env": "STACK_NAME=x\n", "studies/s.env": "secret", "releases/s/v1/settings.py": "v1",
         "backups/b/otree.dump": "dump", "exports/e.csv": "e", "downloads/d": "d", "loadtests/l": "l"}


def stage(target, files, name="one"):
    staging = os.path.join(target, f"{stack_install.STAGING_PREFIX}{name}")
    write_tree(staging, files)
    return staging


@pytest.fixture
def server(tmp_path):
    """A server's stack folder with its own state and an installed stack (version OLD)."""
    target = str(tmp_path / "otree-stack")
    write_tree(target, STATE)
    stack_install.install(stage(target, {"tasks.py": "old", "VERSION": "1", "stack/a.py": "a", "stack/gone.py": "g",
                                         "nginx/old/only.conf": "o"}),
                          commit=OLD["commit"], date=OLD["date"], by="first@laptop")
    return target


def test_an_install_puts_the_new_stack_in_place_removes_what_it_no_longer_has_and_keeps_the_state(server):
    staging = stage(server, {"tasks.py": "new", "VERSION": "1", "stack/a.py": "a2", "stack/b.py": "b",
                             "studies/evil.env": "never installed", ".env": "never installed",
                             "releases/.incoming/abc-1/settings.py": "the project"}, "two")
    stack_install.install(staging, commit=NEW["commit"], date=NEW["date"], by="second@laptop")
    files = tree(server)
    assert {path: files[path] for path in STATE} == {path: hashlib.sha256(content.encode()).hexdigest()
                                                     for path, content in STATE.items()}
    with open(os.path.join(server, "tasks.py")) as handle:
        assert handle.read() == "new"
    assert not os.path.exists(os.path.join(server, "stack", "gone.py"))
    assert not os.path.exists(os.path.join(server, "nginx"))  # emptied folders go too
    assert os.path.isfile(os.path.join(server, "stack", "b.py"))
    with open(os.path.join(server, "releases", ".incoming", "abc-1", "settings.py")) as handle:
        assert handle.read() == "the project"
    assert not os.path.exists(staging) and not os.path.exists(os.path.join(server, stack_version.JOURNAL))
    record = stack_version.read_record(server)
    assert (record["commit"], record["by"]) == (NEW["commit"], "second@laptop")
    assert record["files"] == ["VERSION", "stack/a.py", "stack/b.py", "tasks.py"]
    assert set(tree(server)) - set(STATE) == {"VERSION", "stack/a.py", "stack/b.py", "tasks.py",
                                              stack_version.RECORD, "releases/.incoming/abc-1/settings.py"}


def test_an_older_stack_is_refused_naming_both_and_changes_nothing_unless_allowed(server):
    before = tree(server)
    staging = stage(server, {"tasks.py": "older", "VERSION": "1"}, "older")
    with pytest.raises(StackError) as refused:
        stack_install.install(staging, commit="ccccccc", date="2026-10-01T00:00:00Z", by="late@laptop")
    message = str(refused.value)
    assert "1 (git ccccccc of 2026-10-01 00:00 UTC)" in message and "1 (git aaaaaaa of 2026-11-01 10:00 UTC)" in message
    assert "--allow-downgrade" in message and "Nothing was changed" in message
    assert not os.path.exists(staging)
    assert tree(server) == before
    staging = stage(server, {"tasks.py": "older", "VERSION": "1"}, "older")
    stack_install.install(staging, commit="ccccccc", date="2026-10-01T00:00:00Z", by="late@laptop",
                          allow_downgrade=True)
    assert stack_version.read_record(server)["commit"] == "ccccccc"


def test_an_install_while_another_operation_holds_the_lock_is_refused_and_changes_nothing(server):
    before = tree(server)
    staging = stage(server, {"tasks.py": "new", "VERSION": "1"}, "while-locked")

    class Server:
        studies_dir = os.path.join(server, "studies")
    # The lock is taken by another process, as a running deploy holds it.
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                               lock.path(Server)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StackError, match="Another operation is running"):
            stack_install.install(staging, commit=NEW["commit"], date=NEW["date"])
    finally:
        holder.kill()
        holder.wait()
    assert not os.path.exists(staging)
    assert tree(server) == before


def test_a_bundle_without_tasks_py_is_not_a_stack(server):
    before = tree(server)
    with pytest.raises(StackError, match="no tasks.py"):
        stack_install.install(stage(server, {"VERSION": "1", "stack/a.py": "a"}, "partial"))
    assert tree(server) == before


def test_only_a_staging_folder_is_installed_from(tmp_path):
    with pytest.raises(StackError, match="not a staging folder"):
        stack_install.install(str(tmp_path))


def run_installer(staging, *args):
    """The module as the laptop runs it over SSH: in the staging folder, with the staged code."""
    return subprocess.Popen([sys.executable, "-B", "-m", "stack.stack_install", "--by", "me@laptop", *args],
                            cwd=staging, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def copy_of_the_stack(staging, extra=0):
    """This checkout's stack code in the staging folder (what the installer runs), and `extra` files."""
    import shutil
    shutil.copytree(os.path.join(REPO_ROOT, "stack"), os.path.join(staging, "stack"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    write_tree(staging, {"tasks.py": "staged", "VERSION": "1",
                         **{f"many/{number // 1000}/{number}.txt": str(number) for number in range(extra)}})


def test_the_installer_run_from_staging_refuses_with_exit_1_and_installs_with_0(server):
    staging = os.path.join(server, f"{stack_install.STAGING_PREFIX}cli")
    copy_of_the_stack(staging)
    refused = run_installer(staging, "--commit", "ddddddd", "--date", "2020-01-01T00:00:00Z")
    out, err = refused.communicate(timeout=60)
    assert refused.returncode == 1 and "is older than the server's" in err and "Traceback" not in err
    assert not os.path.exists(staging)
    copy_of_the_stack(staging)
    installed = run_installer(staging, "--commit", "eeeeeee", "--date", "2030-01-01T00:00:00Z", "--dirty")
    out, err = installed.communicate(timeout=60)
    assert installed.returncode == 0, err
    assert "Installed the stack 1 (git eeeeeee of 2030-01-01 00:00 UTC, with uncommitted changes)" in out
    assert "stack/gone.py" in out  # said what it removed
    assert not any(name.endswith(".pyc") for name in tree(server))  # -B: the staged code leaves no caches


def test_a_crash_half_way_through_the_swap_is_finished_by_the_next_install(server):
    staging = os.path.join(server, f"{stack_install.STAGING_PREFIX}crash")
    copy_of_the_stack(staging, extra=3000)
    expected = tree(staging)
    installer = run_installer(staging, "--commit", NEW["commit"], "--date", NEW["date"])
    journal = os.path.join(server, stack_version.JOURNAL)
    deadline = time.monotonic() + 60
    while not os.path.exists(journal):
        assert installer.poll() is None and time.monotonic() < deadline, installer.communicate()
    installer.send_signal(signal.SIGKILL)  # half-way through the renames
    installer.wait()
    assert os.path.exists(journal), "the installer finished before it was killed"
    assert "INTERRUPTED" in stack_version.installed_line(server)
    # The next install (here: an older one, refused) finishes the interrupted one first.
    later = stage(server, {"tasks.py": "older", "VERSION": "1"}, "later")
    with pytest.raises(StackError, match="is older"):
        stack_install.install(later, commit="fffffff", date="2000-01-01T00:00:00Z")
    files = tree(server)
    assert {path: files.get(path) for path in expected} == expected
    assert not os.path.exists(os.path.join(server, "stack", "gone.py"))
    assert stack_version.read_record(server)["commit"] == NEW["commit"]
    assert not os.path.exists(journal) and not os.path.exists(staging)
    assert "INTERRUPTED" not in stack_version.installed_line(server)
