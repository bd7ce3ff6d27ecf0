"""The stack's version: what a server records when a laptop installs the stack there
(stack/stack_install.py), what `invoke servers` and `invoke status` show, and the rule that
refuses an older stack.

A version is the number in the VERSION file beside tasks.py, then the time of the last git commit
that changed the stack's folder (the committer's date, in UTC) with that commit's short hash, and
whether the checkout had uncommitted changes. One stack is older than another when its number
is lower, or the number is the same and its commit is earlier. A checkout without git has the
number alone, and is told apart from others by the number alone. The server never sees the
laptop's git history, so the commit's date stands for it: raise VERSION with a change that a
laptop which missed it must never undo, whatever its commit's date."""
import json
import os
import re
import subprocess
import threading
import time

VERSION_FILE = "VERSION"
# Beside tasks.py on a server: the installed stack's version and its files (stack/stack_install.py).
RECORD = ".stack-version.json"
# Beside it while an install is under way: what that install does (stack/stack_install.py).
JOURNAL = ".stack-install.json"
ASK_SECONDS = 5  # `invoke servers` waits this long for each server (all asked at once)


def read_number(folder):
    """The VERSION file's number ("1", "1.2"); "0" when there is none (a stack from before it)."""
    try:
        with open(os.path.join(folder, VERSION_FILE), encoding="utf-8") as handle:
            number = handle.read().strip()
    except OSError:
        return "0"
    return number if re.fullmatch(r"\d+(\.\d+)*", number) else "0"


def _git(folder, *args):
    try:
        result = subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def of_checkout(folder):
    """The version of the stack in folder, as a laptop ships it."""
    version = {"number": read_number(folder), "commit": None, "date": None, "dirty": False}
    last = _git(folder, "log", "-1", "--format=%h %ct", "--", ".")
    if last:
        commit, seconds = last.split()
        version.update(commit=commit, date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(seconds))),
                       dirty=bool(_git(folder, "status", "--porcelain", "--", ".")))
    return version


def _number_key(number):
    return tuple(int(part) for part in (number or "0").split("."))


def is_older(candidate, recorded):
    """True when the stack `candidate` is older than `recorded` (the module's docstring says how)."""
    if _number_key(candidate.get("number")) != _number_key(recorded.get("number")):
        return _number_key(candidate.get("number")) < _number_key(recorded.get("number"))
    if candidate.get("date") and recorded.get("date"):
        return candidate["date"] < recorded["date"]  # ISO 8601 in UTC: the text sorts as the time
    return False


def describe(version):
    """'1 (git 37442eb of 2026-12-04 16:38 UTC, with uncommitted changes)', or '1 (not from git)'."""
    if not version.get("commit"):
        return f"{version.get('number') or '0'} (not from git)"
    when = version["date"].replace("T", " ")[:16] + " UTC" if version.get("date") else "an unknown date"
    dirty = ", with uncommitted changes" if version.get("dirty") else ""
    return f"{version.get('number') or '0'} (git {version['commit']} of {when}{dirty})"


def compared(laptop, server):
    """How the server's stack stands to the laptop's, in words."""
    if is_older(server, laptop):
        return "older than this laptop's: a deploy from here installs this laptop's"
    if is_older(laptop, server):
        return "newer than this laptop's: update this checkout (e.g. `git pull`) before deploying from it"
    return "the same as this laptop's" if (server.get("number"), server.get("commit")) == (
        laptop.get("number"), laptop.get("commit")) else "as new as this laptop's"


def parse_record(text):
    """The record's dict, or None when the text is not one (no record, or a damaged one)."""
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "number" in record else None


def read_record(folder):
    try:
        with open(os.path.join(folder, RECORD), encoding="utf-8") as handle:
            return parse_record(handle.read())
    except OSError:
        return None


def installed_line(folder):
    """`invoke status`'s line on the stack in folder: the version recorded at its install, else
    (a checkout that runs its own stack) the checkout's."""
    record = read_record(folder)
    checkout = None if record else of_checkout(folder)
    if record:
        line = f"{describe(record)}, installed {record.get('installed', '?')} by {record.get('by', '?')}"
    elif checkout["commit"]:
        line = f"{describe(checkout)}, this checkout"
    else:
        line = (f"{describe(checkout)}; no install recorded (the stack was copied here by hand, or before versions "
                "were recorded)")
    if os.path.exists(os.path.join(folder, JOURNAL)):
        line += ("; AN INSTALL WAS INTERRUPTED and is finished by the next one: deploy again, or run `invoke "
                 "server setup NAME` from the laptop")
    return line


def _ask(server, answers):
    from . import ssh  # here: ssh is for the laptop's side only
    argv = ssh.command(server, f"{ssh.enter_stack(server)}; cat {RECORD} 2>/dev/null; exit 0")
    argv[1:1] = ["-o", f"ConnectTimeout={ASK_SECONDS}"]  # ssh takes an option's first value
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=ASK_SECONDS + 5,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        answers[server.name] = (None, f"unreachable (no answer within {ASK_SECONDS + 5} s)")
        return
    except OSError:
        answers[server.name] = (None, "unknown: OpenSSH's `ssh` command is not installed on this computer")
        return
    if result.returncode == ssh.NO_STACK:
        answers[server.name] = (None, f"none: there is no stack in {server.path} (`invoke server setup "
                                      f"{server.name}` installs it)")
    elif result.returncode:
        last = (result.stderr.strip().splitlines() or [f"ssh exited with {result.returncode}"])[-1]
        answers[server.name] = (None, f"unreachable ({last})")
    else:
        record = parse_record(result.stdout)
        answers[server.name] = (record, None if record else "not recorded (installed before versions were "
                                                            "recorded, or by hand)")


def on_servers(known):
    """{server name: (its recorded version or None, why there is none)}, asked over SSH of all
    servers at once, each with a short timeout."""
    answers = {}
    threads = [threading.Thread(target=_ask, args=(server, answers), daemon=True) for server in known]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers
