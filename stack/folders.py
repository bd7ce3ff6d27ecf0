"""Folders that a study's settings name for its backup service (BACKUP_DIR, a local restic
repository). The service's user gets them (owner uid 10002, mode 700), which locks everyone else
out, so the stack takes a folder over only when it made the folder itself (a marker file inside
says so), the service owns it already, or it is empty. The user's home, the stack's folder, `/`
and any folder holding one of them are refused whatever they hold."""
import os
import pwd
import stat

from . import compose
from .envfile import REPO_ROOT

# Written into a folder the stack creates, so that a takeover interrupted before the folder
# changed owner can be finished; the backup service skips names starting with a dot.
MARKER = ".otree-stack-folder"


def _homes():
    homes = {os.path.expanduser("~")}
    try:
        homes.add(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        pass  # a uid without a passwd entry (a container's) has only $HOME
    return {os.path.realpath(home) for home in homes if home and home != "~"}


def _protected():
    """(folder, what it is) that must never be taken over, nor any folder that holds one."""
    return [("/", "the root of the file system")] + [(home, "your home folder") for home in sorted(_homes())] + \
        [(os.path.realpath(REPO_ROOT), "the stack's folder")]


def problem(key, path, owner_uid, instead):
    """Why the folder `path` (named by setting `key`) may not be given to the user `owner_uid`, as a
    message that ends with what to set `instead`; None when it may."""
    real = os.path.realpath(path)
    for folder, what in _protected():
        if os.path.commonpath([real, folder]) == real:
            held = what if real == folder else f"a folder that holds {what} ({folder})"
            return (f"{key} names {path}, which is {held}. The backup service would take it over (owner uid "
                    f"{owner_uid}, mode 700) and lock you out. Set {instead}.")
    try:
        info = os.stat(real)
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"{key} names {path}, which this user cannot look into ({error.strerror}). Set {instead}."
    if not stat.S_ISDIR(info.st_mode):
        return f"{key} names {path}, which is a file, not a folder. Set {instead}."
    if info.st_uid == owner_uid:
        return None
    try:
        entries = sorted(os.listdir(real))
    except PermissionError:
        return (f"{key} names {path}, a folder this user cannot read, so the stack cannot tell whether it holds "
                f"anything. Set {instead}.")
    if not entries or MARKER in entries:
        return None
    return (f"{key} names {path}, a folder the stack did not make, holding {len(entries)} entries (e.g. "
            f"{entries[0]!r}). The backup service would take it over (owner uid {owner_uid}, mode 700) and lock "
            f"everyone else out. Set {instead}, or empty the folder first.")


def create(path, note):
    """Make the folder (private), with the marker that says the stack made it. False when it was
    there already."""
    try:
        os.makedirs(path, mode=0o700)
    except FileExistsError:
        return False
    with open(os.path.join(path, MARKER), "w", encoding="utf-8") as handle:
        handle.write(note + "\n")
    return True


def of_study(study):
    """(setting, folder, what to set instead) for each folder the study's backup service is given."""
    found = [("BACKUP_DIR", study.backup_dir,
              f"BACKUP_DIR to a new folder of its own, e.g. BACKUP_DIR=backups/{study.name} (or leave it empty "
              "for the default)")]
    local = compose.local_restic_path(study.get("RESTIC_REPOSITORY"))
    if local:
        found.append(("RESTIC_REPOSITORY", os.path.normpath(local),
                      f"RESTIC_REPOSITORY to a new folder of its own, e.g. /srv/restic/{study.name}, or to a remote "
                      "repository (s3:..., rest:..., sftp:...)"))
    return found
