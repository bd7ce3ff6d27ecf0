"""What a laptop ships to a server (stack/remote.py's bundle), whatever the laptop: modes come from
git's index, or from the stack's own list (stack/executables.txt) where git is missing or refuses
to run, never from the file system; scripts go with LF line ends; secrets, settings and local state
never go, whatever git says; Windows paths arrive as '/' paths. And what comes back: a copy from
a server cut short is an error that says to run the command again."""
import fnmatch
import io
import os
import stat
import subprocess
import tarfile

import pytest

from stack import remote
from stack.console import StackError
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.unit

SCRIPT = b"#!/bin/sh\r\necho ready\r\n"
# Files a laptop may hold in the stack's folder that must never reach a server.
PLANTED = [".env", ".env.before-studies", "studies/lab.env", "studies/proxy/edge.conf", "lab.env", "servers.ini",
           "downloads/lab/2026-01-01T000000Z.zip", "exports/lab/data.csv", "backups/lab/otree.dump",
           "releases/lab/v1/settings.py", "loadtests/report.html", ".venv-laptop/bin/python",
           "stack/__pycache__/remote.cpython-313.pyc", ".pytest_cache/README.md", "otree_project/db.sqlite3"]


def write(folder, path, content=b"x", mode=0o644):
    target = folder / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    target.chmod(mode)


def git(folder, *args):
    subprocess.run(["git", "-C", str(folder), "-c", "user.name=Researcher", "-c", "user.email=r@example.edu",
                    *args], check=True, capture_output=True)


def small_stack(folder, mode=0o644):
    """A stack's folder as a laptop might hold it: every file with one mode, scripts CRLF."""
    for path in ("setup.sh", "nginx/entrypoint.sh", "otree_server/bin/otree", "install/lib.sh"):
        write(folder, path, SCRIPT, mode)
    for path in ("tasks.py", "README.md", ".env.example", "study.env.example", "stack/__init__.py"):
        write(folder, path, b"text\n", mode)
    write(folder, "nginx/logo.png", b"\x89PNG\r\n\x1a\n\x00\r\n", mode)  # binary: its bytes untouched
    write(folder, "stack/executables.txt", b"# the stack's programs\r\nsetup.sh\r\nnginx/entrypoint.sh\r\n"
                                           b"otree_server/bin/otree\r\n", mode)
    write(folder, ".gitattributes", b"*.sh text eol=lf\r\notree_server/bin/otree text eol=lf\r\n", mode)
    return folder


def shipped(monkeypatch, stack_folder, project=None):
    """{name: (mode, uid, gid, uname, content)} of the bundle made with stack_folder as the stack."""
    monkeypatch.setattr(remote, "REPO_ROOT", str(stack_folder))
    entries = {}
    with tarfile.open(fileobj=remote.bundle(str(project) if project else None, "abc-1"), mode="r:gz") as archive:
        for member in archive.getmembers():
            entries[member.name] = (stat.S_IMODE(member.mode), member.uid, member.gid, member.uname,
                                    archive.extractfile(member).read() if member.isfile() else None)
    return entries


def modes(entries):
    return {name: entry[0] for name, entry in entries.items()}


EXPECTED_MODES = {"setup.sh": 0o755, "nginx/entrypoint.sh": 0o755, "otree_server/bin/otree": 0o755,
                  "install/lib.sh": 0o644, "tasks.py": 0o644, "README.md": 0o644, ".env.example": 0o644,
                  "study.env.example": 0o644, "stack/__init__.py": 0o644, "nginx/logo.png": 0o644,
                  "stack/executables.txt": 0o644, ".gitattributes": 0o644}


def test_modes_come_from_gits_index_not_from_the_file_system(tmp_path, monkeypatch):
    folder = small_stack(tmp_path / "stack", mode=0o644)  # as a Windows checkout has them
    git(folder, "init", "-q")
    git(folder, "add", ".")
    git(folder, "update-index", "--chmod=+x", "setup.sh", "nginx/entrypoint.sh", "otree_server/bin/otree")
    git(folder, "commit", "-q", "-m", "stack")
    (folder / "README.md").chmod(0o755)  # the file system says so; the index does not
    entries = shipped(monkeypatch, folder)
    assert modes(entries) == EXPECTED_MODES
    assert {(uid, gid, uname) for _, uid, gid, uname, _ in entries.values()} == {(0, 0, "")}


@pytest.mark.parametrize("git_state", ["no git", "git refuses to run"])
def test_without_a_working_git_modes_come_from_the_stacks_list(tmp_path, monkeypatch, git_state):
    folder = small_stack(tmp_path / "stack", mode=0o777)  # as a FAT drive or /mnt/c shows every file
    if git_state == "git refuses to run":
        git(folder, "init", "-q")
        git(folder, "add", ".")
        git(folder, "commit", "-q", "-m", "stack")
        bin_folder = tmp_path / "bin"
        write(bin_folder, "git", b"#!/bin/sh\necho 'xcrun: error: invalid active developer path' >&2\nexit 1\n",
              0o755)
        monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
    entries = shipped(monkeypatch, folder)
    assert modes(entries) == EXPECTED_MODES
    assert {(uid, gid, uname) for _, uid, gid, uname, _ in entries.values()} == {(0, 0, "")}


def test_scripts_are_shipped_with_lf_and_other_files_byte_for_byte(tmp_path, monkeypatch):
    entries = shipped(monkeypatch, small_stack(tmp_path / "stack"))
    for path in ("setup.sh", "nginx/entrypoint.sh", "otree_server/bin/otree", "install/lib.sh"):
        assert entries[path][4] == b"#!/bin/sh\necho ready\n", path
    assert entries["nginx/logo.png"][4] == b"\x89PNG\r\n\x1a\n\x00\r\n"


@pytest.mark.parametrize("git_state", ["git tracks them", "no git"])
def test_secrets_settings_and_local_state_are_never_shipped(tmp_path, monkeypatch, git_state):
    folder = small_stack(tmp_path / "stack")
    for path in PLANTED:
        write(folder, path, b"secret=1\n", 0o600)
    project = tmp_path / "project"
    for path in ("settings.py", ".env", "lab.env", "__pycache__/settings.cpython-313.pyc", ".venv/bin/python"):
        write(project, path)
    if git_state == "git tracks them":
        for repository in (folder, project):
            git(repository, "init", "-q")
            git(repository, "add", "-f", ".")  # even forced into git's index
            git(repository, "commit", "-q", "-m", "everything")
    names = set(shipped(monkeypatch, folder, project))
    assert not {name for name in names for path in PLANTED if name == path}
    assert set(EXPECTED_MODES) <= names  # .env.example and study.env.example go
    assert {name for name in names if name.startswith(remote.INCOMING)} == {f"{remote.INCOMING}/abc-1/settings.py"}


def test_windows_paths_arrive_as_slash_paths_and_their_settings_stay(tmp_path, monkeypatch):
    """os.walk on Windows gives 'studies\\lab.env'; on Linux a file can be named so, which makes
    the same paths here."""
    folder = small_stack(tmp_path / "stack")
    for path in ("studies\\lab.env", "downloads\\lab\\2026-01-01T000000Z.zip", "Servers.ini", "exports\\x.csv"):
        write(folder, path, b"secret=1\n")
    write(folder, "certbot\\acme.sh", SCRIPT)
    write(folder, "stack/executables.txt", b"setup.sh\nnginx/entrypoint.sh\notree_server/bin/otree\ncertbot/acme.sh\n")
    entries = shipped(monkeypatch, folder)
    assert not [name for name in entries if "\\" in name]
    assert not [name for name in entries if name.lower().startswith(("studies", "downloads", "exports", "servers"))]
    assert entries["certbot/acme.sh"][0] == 0o755 and entries["certbot/acme.sh"][4] == b"#!/bin/sh\necho ready\n"


def test_the_stacks_list_of_programs_is_gits_index_and_each_keeps_lf():
    if not os.path.isdir(os.path.join(REPO_ROOT, ".git")):
        pytest.skip("not a git checkout")
    index = subprocess.run(["git", "-C", REPO_ROOT, "ls-files", "-s", "-z"], capture_output=True, check=True).stdout
    executables = sorted(entry.split(b"\t", 1)[1].decode() for entry in index.split(b"\0")
                         if entry.startswith(b"100755 "))
    with open(os.path.join(REPO_ROOT, "stack", "executables.txt"), encoding="utf-8") as handle:
        listed = sorted(line.strip() for line in handle if line.strip() and not line.startswith("#"))
    assert listed == executables, "stack/executables.txt must list exactly git's 100755 files"
    with open(os.path.join(REPO_ROOT, ".gitattributes"), encoding="utf-8") as handle:
        lf = [line.split()[0] for line in handle if "eol=lf" in line and not line.startswith("#")]
    assert [path for path in listed if not any(fnmatch.fnmatch(path if "/" in pattern else os.path.basename(path),
                                                               pattern) for pattern in lf)] == []


def tar_of(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_a_copy_from_the_server_cut_short_is_an_error_that_says_to_run_it_again(tmp_path):
    """Cut inside a file. (Cut between two files, a tar stream looks complete: the file list the
    server sends first is what tells, in the end-to-end test.)"""
    whole = tar_of({"./2026T/data.csv": b"a,b\n" * 4000, "./2026T.zip": b"PK" * 4000})
    for stream in (whole[:len(whole) // 2], whole[:700], whole[:20000]):
        with pytest.raises(StackError, match="run the command again"):
            remote._extract(io.BytesIO(stream), str(tmp_path / "staging"))
    assert sorted(remote._extract(io.BytesIO(whole), str(tmp_path / "whole"))) == ["2026T.zip", "2026T/data.csv"]
