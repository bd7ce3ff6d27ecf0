"""The one rule for each kind of name that reaches a path, Docker, nginx or a shell: study and
server names, releases, backup and snapshot IDs, session codes, setting names. Each is checked on the laptop
before anything is sent, and again on the server before anything is created, moved or removed,
so a name like `lab/`, `..`, `/home/x` or one with a newline never reaches `os.path.join`, a
Compose project, an nginx file or a command line. A refusal names the rule and changes nothing."""
import dataclasses
import os
import re

from .console import StackError

UNCHANGED = "Nothing was changed."


@dataclasses.dataclass(frozen=True)
class Rule:
    what: str        # "valid study name", "release"
    pattern: str     # matched whole, ASCII only
    allowed: str     # the characters it may hold, to point at the first one that is not
    wording: str     # the rule as the message says it, with an example

    def matches(self, value):
        return isinstance(value, str) and re.fullmatch(self.pattern, value, re.ASCII) is not None

    def problem(self, value):
        """None when value follows the rule, else the message (without "Nothing was changed")."""
        if self.matches(value):
            return None
        stray = next((char for char in value or "" if char not in self.allowed), None)
        where = f" (it holds {shown(stray)}, U+{ord(stray):04X})" if stray else ""
        return f"{shown(value)} is not a {self.what}{where}: {self.wording}"

    def check(self, value, outcome=UNCHANGED):
        found = self.problem(value)
        if found:
            raise StackError(f"{found} {outcome}")
        return value


LOWER = "abcdefghijklmnopqrstuvwxyz"
DIGITS = "0123456789"
STUDY = Rule("valid study name", r"[a-z][a-z0-9-]{0,29}", LOWER + DIGITS + "-",
             "use 1 to 30 lower-case letters, digits and -, starting with a letter (it becomes part of folder, "
             "container and network names), e.g. ultimatum-2026.")
SERVER = Rule("valid server name", r"[a-z][a-z0-9-]{0,29}", LOWER + DIGITS + "-",
              "1 to 30 lower-case letters, digits and -, starting with a letter (e.g. lab or uni-vm).")
RELEASE = Rule("release", r"v?[1-9][0-9]{0,5}", "v" + DIGITS,
               "write it as `invoke releases` shows it, e.g. v3.")
# otree_backup's store.new_id: the UTC time, then -2, -imported, -offsite as needed.
BACKUP_ID = Rule("backup ID", r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}-[0-9]{2}-[0-9]{2}Z(-[a-z0-9]{1,16}){0,4}",
                 DIGITS + LOWER + "TZ-",
                 "a backup ID is its UTC time, e.g. 2026-05-01T03-00-00Z; `invoke backups` lists them.")
# restic's: its short form or the whole hash.
SNAPSHOT = Rule("snapshot ID", r"latest|[0-9a-f]{8,64}", DIGITS + "abcdef" + "latest",
                "use latest or an ID from `invoke backups --offsite` (8 or more hex digits).")
# oTree's own session codes; `prolific bonuses` names its file after one.
SESSION = Rule("session code", r"[a-z0-9]{1,64}", LOWER + DIGITS,
               "lower-case letters and digits, as the admin's Sessions page shows it, e.g. 7kq2xw9p.")
CONFIG_KEY = Rule("setting name", r"[A-Z][A-Z0-9_]{0,63}", LOWER.upper() + DIGITS + "_",
                  "capital letters, digits and _, e.g. CPU_LIMIT; `invoke config` lists them.")


def shown(value, limit=40):
    """A value as a message shows it: quoted, control characters escaped, a long one cut."""
    text = repr(value)
    return text if len(text) <= limit + 2 else f"{repr(value[:limit])}... ({len(value)} characters)"


def check_study(name):
    return STUDY.check(name)


def check_server(name):
    return SERVER.check(name)


def release_number(version):
    """The number of a release given as v3 or 3."""
    return int(RELEASE.check(version).lstrip("v"))


def check_backup_id(backup_id):
    return BACKUP_ID.check(backup_id)


def check_config_key(key):
    return CONFIG_KEY.check(key)


def _path_like(source):
    return "/" in source or "\\" in source or source.endswith(".dump")


def check_restore_source(source, offsite=False, here=True):
    """`invoke restore SOURCE`: with --offsite a snapshot ID; else latest, a backup ID, or a
    backup's otree.dump or folder. `here` when the files are on this machine (not with --on):
    then a name that is no file must be a backup ID; elsewhere only a path's shape is known."""
    if offsite:
        return SNAPSHOT.check(source)
    if any(ord(char) < 32 or ord(char) == 127 for char in source or ""):
        raise StackError(f"{shown(source)} holds control characters, so it is neither a backup ID nor a file. "
                         f"{UNCHANGED}")
    if source == "latest" or (here and os.path.exists(source)):
        return source
    if _path_like(source):
        if here:
            raise StackError(f"There is no file {shown(source)}. A file must be a backup's otree.dump or its "
                             f"folder; `invoke backups` lists the backups by ID. {UNCHANGED}")
        return source
    found = BACKUP_ID.problem(source)
    if found:
        raise StackError(f"{found} A backup's otree.dump or its folder is written as a path, e.g. ./old-backup. "
                         f"{UNCHANGED}")
    return source
