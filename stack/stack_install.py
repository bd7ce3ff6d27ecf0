"""Installs the stack a laptop shipped (stack/remote.py) without ever leaving a half-written one.

The laptop unpacks its bundle into a staging folder in the stack's folder (.stack-staging-RANDOM/:
one file system, so every move below is a rename). Only when that copy is complete does it run
this module from there, with the code it shipped (a first install has no other):

    cd .stack-staging-RANDOM && python3 -B -m stack.stack_install --by WHO [--commit C --date D]
        [--dirty] [--allow-downgrade]

Under the server's operations lock (stack/lock.py: every deploy, rollback, restore ... holds it,
so a second laptop's stack never lands under a running one), it:
  1. finishes an install that a crash interrupted (its journal, step 3), and removes staging
     folders that copies cut off more than a day ago left behind;
  2. refuses a stack older than the one recorded (stack/stack_version.py), naming both, unless
     --allow-downgrade: nothing changes, and the staging folder goes;
  3. writes a journal (stack_version.JOURNAL: the staging folder, the files to put in place and
     the recorded files the new stack no longer has), removes those, renames each staged file
     into place (a rename replaces a file whole: each is the old one or the new one), moves a
     shipped project into releases/.incoming/ for the deploy that follows, writes the record
     (stack_version.RECORD: the version and the file list), then deletes the journal and the
     staging folder.
A crash during 3 leaves the journal and the staging folder with the files not moved yet; the next
install rolls them forward before anything else (every step can be done twice), and until then
`invoke status` says so. The server's own state (.env, studies/, releases/, backups/, exports/,
downloads/, loadtests/, servers.ini, these records) is never installed over nor removed. A stack
installed before versions were recorded has no file list: none of its files is removed the first
time."""
import argparse
import json
import os
import re
import shutil
import signal
import sys
import time
import types

from . import envfile, lock, stack_version
from .console import StackError, info, step, warn

STAGING_PREFIX = ".stack-staging-"
PROJECTS = "releases/.incoming"  # where a shipped project waits for its deploy (stack/deploy.py)
STATE = {".env", ".env.before-studies", "studies", "releases", "backups", "exports", "downloads", "loadtests",
         "servers.ini", stack_version.RECORD, stack_version.JOURNAL}
STALE_SECONDS = 24 * 3600


def command(version, by, allow_downgrade=False):
    """The installer's argv, as the laptop runs it in the staging folder."""
    argv = ["python3", "-B", "-m", "stack.stack_install", "--by", by]
    if version.get("commit"):
        argv += ["--commit", version["commit"], "--date", version["date"]] + (["--dirty"] if version["dirty"] else [])
    return argv + (["--allow-downgrade"] if allow_downgrade else [])


def is_state(path, studies_top="studies"):
    """True for a path ('/'-separated, relative to the stack's folder) that is the server's own
    state, or not a plain relative path at all: an install never touches it."""
    parts = path.split("/")
    return (any(part in ("", ".", "..") for part in parts) or parts[0] in STATE or parts[0] == studies_top
            or parts[0].startswith(STAGING_PREFIX))


def _studies_dir(target):
    """STUDIES_DIR as the server's settings give it (stack/settings.py reads it the same way, from
    a folder this code, running in staging, cannot use): the operations lock is in it."""
    try:
        with open(os.path.join(target, ".env"), encoding="utf-8") as handle:
            values = envfile.parse(handle.read())
    except (OSError, StackError):
        values = {}
    return os.path.normpath(os.path.join(target, os.path.expanduser(values.get("STUDIES_DIR", "").strip() or "studies")))


def staged_files(staging, studies_top="studies"):
    """The stack's files in the staging folder, '/'-separated and sorted; its state left out."""
    found = []
    for root, dirs, names in os.walk(staging):
        relative = os.path.relpath(root, staging).replace(os.sep, "/")
        links = [name for name in dirs if os.path.islink(os.path.join(root, name))]
        for name in names + links:
            path = name if relative == "." else f"{relative}/{name}"
            if not is_state(path, studies_top):
                found.append(path)
    return sorted(found)


def _write(path, data):
    """path holds data whole, or what it held before: written beside it, synced, renamed."""
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    folder = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _move(source, destination):
    if os.path.lexists(source):  # else moved already, before a crash
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        os.replace(source, destination)


def _remove(target, path):
    """The file, then its folders while they are empty."""
    full = os.path.join(target, path)
    if os.path.islink(full) or os.path.isfile(full):
        os.remove(full)
    folder = os.path.dirname(path)
    while folder:
        try:
            os.rmdir(os.path.join(target, folder))
        except FileNotFoundError:
            pass
        except OSError:  # not empty: it holds files of the new stack, or the server's own
            return
        folder = os.path.dirname(folder)


def _apply(target, plan):
    """Step 3 after the journal: every part can be done twice, so a crash is finished by doing it again."""
    staging = os.path.join(target, plan["staging"])
    for path in plan["remove"]:
        _remove(target, path)
    for path in plan["install"]:
        _move(os.path.join(staging, path), os.path.join(target, path))
    for name in plan["projects"]:
        _move(os.path.join(staging, PROJECTS, name), os.path.join(target, PROJECTS, name))
    _write(os.path.join(target, stack_version.RECORD), plan["record"])
    os.remove(os.path.join(target, stack_version.JOURNAL))
    shutil.rmtree(staging, ignore_errors=True)


def finish_interrupted(target):
    """Roll forward an install a crash interrupted; returns its version, or None when there was none."""
    try:
        with open(os.path.join(target, stack_version.JOURNAL), encoding="utf-8") as handle:
            plan = json.load(handle)
    except FileNotFoundError:
        return None
    _apply(target, plan)
    return plan["record"]


def _sweep(target, keep):
    for name in os.listdir(target):
        path = os.path.join(target, name)
        if name.startswith(STAGING_PREFIX) and path != keep and time.time() - os.path.getmtime(path) > STALE_SECONDS:
            shutil.rmtree(path, ignore_errors=True)


def _plan(target, staging, version, by, recorded, studies_top):
    files = staged_files(staging, studies_top)
    if "tasks.py" not in files:
        raise StackError("The shipped stack has no tasks.py, so it is not a whole stack; nothing was changed. Run the "
                         "command again from the stack's folder on your laptop.")
    old = (recorded or {}).get("files") or []
    projects = os.path.join(staging, PROJECTS)
    return {"staging": os.path.basename(staging),
            "remove": sorted(path for path in set(old) - set(files) if not is_state(path, studies_top)),
            "install": files,
            "projects": sorted(os.listdir(projects)) if os.path.isdir(projects) else [],
            "record": {**version, "installed": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "by": by,
                       "files": files}}


def install(staging, commit=None, date=None, dirty=False, by="?", allow_downgrade=False):
    """Install the stack in the staging folder into its parent, the stack's folder (the module's
    docstring says how). A refusal changes nothing there and removes the staging folder."""
    staging = os.path.abspath(staging)
    if not os.path.basename(staging).startswith(STAGING_PREFIX):
        raise StackError(f"{staging} is not a staging folder ({STAGING_PREFIX}...): the stack is installed from "
                         "the laptop, with `invoke deploy --on NAME` or `invoke server setup NAME`.")
    target = os.path.dirname(staging)
    studies = _studies_dir(target)
    studies_top = os.path.relpath(studies, target).split(os.sep)[0]
    version = {"number": stack_version.read_number(staging), "commit": commit, "date": date, "dirty": dirty}
    journaled = False
    try:
        with lock.held(types.SimpleNamespace(studies_dir=studies), f"an install of the stack from {by}"):
            finished = finish_interrupted(target)
            if finished:
                step(f"Finished the install of the stack {stack_version.describe(finished)} that was interrupted")
            _sweep(target, staging)
            recorded = stack_version.read_record(target)
            older = recorded and stack_version.is_older(version, recorded)
            if older and not allow_downgrade:
                raise StackError(
                    f"This laptop's stack, {stack_version.describe(version)}, is older than the server's, "
                    f"{stack_version.describe(recorded)}, installed {recorded.get('installed', '?')} by "
                    f"{recorded.get('by', '?')}. Nothing was changed. Update this checkout (e.g. `git pull`) and "
                    "run the command again, or add --allow-downgrade to install the older stack anyway.")
            plan = _plan(target, staging, version, by, recorded, studies_top)
            _write(os.path.join(target, stack_version.JOURNAL), plan)
            journaled = True
            _apply(target, plan)
    finally:
        if not journaled:
            shutil.rmtree(staging, ignore_errors=True)
    replaced = f", replacing {stack_version.describe(recorded)}" if recorded else ""
    step(f"Installed the stack {stack_version.describe(version)}{replaced}")
    if older:
        warn("It is older than the stack it replaces (--allow-downgrade).")
    if plan["remove"]:
        info(f"Removed {len(plan['remove'])} file(s) it no longer has: {', '.join(plan['remove'][:10])}"
             f"{' ...' if len(plan['remove']) > 10 else ''}")


def _matching(pattern):
    def checked(text):
        if not re.fullmatch(pattern, text):
            raise ValueError(text)
        return text
    return checked


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m stack.stack_install",
                                     description="Install the stack in this staging folder (run by the laptop).")
    parser.add_argument("--by", default="?", help="who installs it, user@laptop")
    parser.add_argument("--commit", type=_matching(r"[0-9a-f]{4,40}"), help="the stack's git commit, short")
    parser.add_argument("--date", type=_matching(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), help="its date, UTC")
    parser.add_argument("--dirty", action="store_true")
    parser.add_argument("--allow-downgrade", action="store_true")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a dropped connection must not stop it half-way
    try:
        install(envfile.REPO_ROOT, commit=args.commit, date=args.date, dirty=args.dirty, by=args.by,
                allow_downgrade=args.allow_downgrade)
    except StackError as error:
        print(f"\033[31merror:\033[0m {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
