"""Encrypted off-site copies with restic, when RESTIC_REPOSITORY and RESTIC_PASSWORD are set.
restic reads both (and any backend credentials) from the environment."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from urllib.parse import urlsplit

from . import BackupError, store

# Backend errors make restic retry for minutes; a backup run should report them sooner.
TIMEOUT_SECONDS = int(os.environ.get("RESTIC_TIMEOUT_SECONDS", "600"))
# restic's exit code when the repository does not exist yet.
NO_REPOSITORY = 10


def shown_repository():
    """The repository as the operator wrote it in .env, without a password in its URL."""
    where = os.environ.get("RESTIC_REPOSITORY_ON_HOST") or os.environ.get("RESTIC_REPOSITORY", "")
    return re.sub(r"//[^/@]+@", "//***@", where)


def configured():
    return bool(os.environ.get("RESTIC_REPOSITORY") and os.environ.get("RESTIC_PASSWORD"))


def _host():
    return os.environ.get("STACK_NAME", "otree")


def _restic(*args, failure):
    try:
        result = subprocess.run(["restic", *args],
                                capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise BackupError(f"{failure}: restic gave no answer within {TIMEOUT_SECONDS} s. Is the repository "
                          f"{shown_repository()} reachable from this server?")
    if result.returncode:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise BackupError(f"{failure}: {lines[-1] if lines else 'restic exit ' + str(result.returncode)}")
    return result.stdout


def network_endpoint(repository):
    """(host, port) of a repository on a server (rest, s3, sftp); None for the others, whose
    reachability restic itself reports quickly enough."""
    backend, _, rest = repository.partition(":")
    defaults = {"rest": None, "s3": 443, "sftp": 22}
    if backend not in defaults:
        return None
    if backend == "sftp" and not rest.startswith("//"):
        host = rest.split(":", 1)[0].rpartition("@")[2]  # sftp:user@host:/path
        return (host, 22) if host else None
    url = urlsplit(rest if "//" in rest else "https://" + rest)
    if not url.hostname:
        return None
    return url.hostname, url.port or defaults[backend] or (443 if url.scheme == "https" else 80)


def _check_reachable():
    """restic retries a server that does not answer for many minutes; find that out in seconds."""
    endpoint = network_endpoint(os.environ.get("RESTIC_REPOSITORY", ""))
    if not endpoint:
        return
    try:
        socket.create_connection(endpoint, timeout=15).close()
    except OSError as error:
        raise BackupError(f"The restic repository {shown_repository()} cannot be reached: {endpoint[0]} port "
                          f"{endpoint[1]} does not answer ({error.strerror or error}). Check RESTIC_REPOSITORY, "
                          "the network and the firewall")


def ensure_repository():
    """Create the repository on first use; say clearly when it cannot be reached."""
    _check_reachable()
    try:
        check = subprocess.run(["restic", "cat", "config"], capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise BackupError(f"The restic repository {shown_repository()} gave no answer within {TIMEOUT_SECONDS} s")
    if check.returncode == NO_REPOSITORY:
        _restic("init", failure="Could not create the restic repository")
    elif check.returncode:
        lines = [line for line in check.stderr.strip().splitlines() if line.strip()]
        raise BackupError(f"The restic repository {shown_repository()} cannot be used: "
                          f"{lines[-1] if lines else 'exit ' + str(check.returncode)}. Check RESTIC_REPOSITORY, "
                          "RESTIC_PASSWORD and the network")


def push(manifest):
    """Copy one backup folder into the repository; returns the snapshot id."""
    ensure_repository()
    output = _restic("backup", "--json", "--host", _host(), "--tag", "otree-backup",
                     "--tag", f"reason={manifest['reason']}", "--tag", f"id={manifest['id']}",
                     store.folder(manifest["id"]), failure="Copying the backup to the restic repository failed")
    for line in output.splitlines():
        message = json.loads(line) if line.startswith("{") else {}
        if message.get("message_type") == "summary":
            return message["snapshot_id"][:8]
    raise BackupError("restic did not report a snapshot for the copied backup")


def forget(daily, weekly, monthly):
    """The local rotation, applied to the repository's scheduled copies."""
    _restic("forget", "--host", _host(), "--tag", "reason=scheduled", "--group-by", "host",
            "--keep-daily", str(daily), "--keep-weekly", str(weekly), "--keep-monthly", str(monthly),
            "--prune", failure="Rotating the restic repository failed")


def snapshots():
    ensure_repository()
    output = _restic("snapshots", "--json", "--host", _host(), "--tag", "otree-backup",
                     failure="Listing the restic repository failed")
    return json.loads(output or "[]")


def fetch(snapshot):
    """Restore a snapshot's backup folder into the local backup folder; returns its id."""
    found = [item for item in snapshots() if snapshot in ("latest", item["short_id"], item["id"])]
    if not found:
        raise BackupError(f"The restic repository has no snapshot {snapshot!r} of this stack. "
                          "`invoke backups --offsite` lists them.")
    chosen = sorted(found, key=lambda item: item["time"])[-1]
    target = tempfile.mkdtemp(prefix=store.INCOMPLETE_PREFIX, dir=store.ROOT)
    try:
        _restic("restore", chosen["id"], "--target", target, failure="Restoring from the restic repository failed")
        manifests = [os.path.join(root, store.MANIFEST) for root, _, files in os.walk(target) if store.MANIFEST in files]
        if len(manifests) != 1:
            raise BackupError(f"Snapshot {chosen['short_id']} does not hold exactly one backup of this stack")
        manifest = store.read_json(manifests[0])
        backup_id = manifest["id"] if not os.path.exists(store.folder(manifest["id"])) else \
            store.new_id(store.now()) + "-offsite"
        manifest.update(id=backup_id, fetched_from_offsite=chosen["short_id"])
        source = os.path.dirname(manifests[0])
        store.save(manifest, where=source)
        os.rename(source, store.folder(backup_id))
        return backup_id
    finally:
        shutil.rmtree(target, ignore_errors=True)
