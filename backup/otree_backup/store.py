"""The backup folder: one folder per backup (otree.dump + manifest.json), a status file for the
healthcheck, and a lock so that a scheduled and a manual backup never run at once."""
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil

from . import BackupError

ROOT = os.environ.get("BACKUP_ROOT", "/backups")
DUMP = "otree.dump"
MANIFEST = "manifest.json"
STATUS = os.path.join(ROOT, ".status.json")
# Folders that are not finished backups: a dump being written, a file being imported.
INCOMPLETE_PREFIX = ".incoming-"


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def parse_time(text):
    return datetime.datetime.fromisoformat(text)


def folder(backup_id):
    return os.path.join(ROOT, backup_id)


def new_id(moment):
    base = moment.strftime("%Y-%m-%dT%H-%M-%SZ")
    backup_id, number = base, 1
    while os.path.exists(folder(backup_id)):
        number += 1
        backup_id = f"{base}-{number}"
    return backup_id


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path, data):
    """Write whole or not at all: a crash mid-write must not leave half a manifest."""
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def load(backup_id):
    path = os.path.join(folder(backup_id), MANIFEST)
    if not os.path.isfile(path):
        raise BackupError(f"There is no backup {backup_id!r}. `invoke backups` lists them.")
    return read_json(path)


def save(manifest, where=None):
    write_json(os.path.join(where or folder(manifest["id"]), MANIFEST), manifest)


def all_backups():
    """Every finished backup's manifest, oldest first."""
    manifests = []
    for name in sorted(os.listdir(ROOT)):
        path = os.path.join(ROOT, name, MANIFEST)
        if not name.startswith(".") and os.path.isfile(path):
            try:
                manifests.append(read_json(path))
            except (OSError, ValueError):
                continue  # not ours, or damaged: never counted as a backup
    return sorted(manifests, key=lambda manifest: manifest["created_at"])


def is_good(manifest):
    return manifest.get("verification", {}).get("status") == "passed"


def latest_good():
    good = [manifest for manifest in all_backups() if is_good(manifest)]
    if not good:
        raise BackupError("There is no verified backup yet. Take one with: invoke backup")
    return good[-1]


def remove(backup_id):
    shutil.rmtree(folder(backup_id), ignore_errors=True)


@contextlib.contextmanager
def exclusive():
    """Hold the backup folder's lock; wait for a backup that is already running."""
    with open(os.path.join(ROOT, ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def read_status():
    try:
        return read_json(STATUS)
    except (OSError, ValueError):
        return {}


def update_status(**changes):
    status = read_status()
    status.update(changes)
    write_json(STATUS, status)


def check_writable():
    """A clear message for the common set-up mistakes, before pg_dump says something obscure."""
    if not os.path.isdir(ROOT):
        raise BackupError(f"The backup folder {ROOT} is missing in the backup container; run `invoke up`.")
    if not os.access(ROOT, os.W_OK):
        raise BackupError("The backup folder (BACKUP_DIR) is not writable by the backup service; run "
                          "`invoke up`, which gives it to the service's user.")
