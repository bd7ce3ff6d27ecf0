"""Take a backup: save oTree's buffered page times, dump, write the manifest, verify, copy
off-site, and rotate. A backup counts as good only once it has been verified."""
import errno
import os
import shutil
import urllib.request

from . import BackupError, database, offsite, rotation, store, verify


def flush_page_times():
    """Ask the oTree server to write the page times it buffers in memory (its page-time export
    does that under its lock). A stopped server holds none, so failing here is not fatal."""
    request = urllib.request.Request(os.environ.get("OTREE_URL", "http://otree:8000") + "/api/export_page_times",
                                     headers={"otree-rest-key": os.environ.get("OTREE_REST_KEY", "")})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
        return "flushed"
    except Exception as error:  # stopped or restarting: say so in the manifest
        return f"not flushed: oTree did not answer ({error}); a stopped server holds none"


FULL = ("The backup folder (BACKUP_DIR) is full, so no backup was made{detail}. Free some space there or point "
        "BACKUP_DIR at a larger disk. The database itself is untouched.")


def _dump_into(incoming):
    try:
        return database.dump(os.path.join(incoming, store.DUMP))
    except BackupError as error:
        if "No space left" in str(error) or _is_full(incoming):
            raise BackupError(FULL.format(detail=f": {error}"))
        raise


def _is_full(path):
    try:
        stats = os.statvfs(path)
        return stats.f_bavail == 0
    except OSError as error:
        return error.errno == errno.ENOSPC


def take(reason):
    """Returns the manifest; raises BackupError when no verified backup could be made, and records
    the failure for the healthcheck and `invoke status`."""
    try:
        return _take(reason)
    except BackupError as error:
        try:
            store.update_status(last_failure={"at": store.now().isoformat(), "error": str(error)})
        except OSError:
            pass  # a full or unwritable folder: the error itself says so
        raise


def _take(reason):
    store.check_writable()
    with store.exclusive():
        started = store.now()
        page_times = flush_page_times()
        incoming = os.path.join(store.ROOT, store.INCOMPLETE_PREFIX + started.strftime("%Y%m%d%H%M%S"))
        try:
            os.makedirs(incoming, exist_ok=True)
            counts, server_version = _dump_into(incoming)
            dump_path = os.path.join(incoming, store.DUMP)
            manifest = {
                "id": store.new_id(started), "reason": reason, "created_at": started.isoformat(),
                "otree_version": os.environ.get("OTREE_VERSION") or None,
                "project_revision": os.environ.get("PROJECT_REVISION") or None,
                "postgres_version": server_version, "database": database.LIVE,
                "page_times": page_times, "tables": counts,
                "dump": {"file": store.DUMP, "bytes": os.path.getsize(dump_path), "sha256": store.sha256(dump_path)},
                "verification": {"status": "pending"},
            }
            store.save(manifest, where=incoming)
            os.rename(incoming, store.folder(manifest["id"]))
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise BackupError(FULL.format(detail=""))
            raise
        finally:
            shutil.rmtree(incoming, ignore_errors=True)

        verify.run(manifest)
        if not store.is_good(manifest):
            raise BackupError(f"Backup {manifest['id']} FAILED verification and does not count as a backup: "
                              f"{manifest['verification']['detail']}")
        store.update_status(last_success={"at": manifest["created_at"], "id": manifest["id"]}, last_failure=None)
        _copy_offsite(manifest)
        return manifest


def _copy_offsite(manifest):
    """Record the copy's result in the manifest. A failure leaves the local backup good, so it is
    reported (status file, healthcheck, the caller) rather than raised."""
    if not offsite.configured():
        manifest["offsite"] = {"status": "off"}
    else:
        try:
            manifest["offsite"] = {"status": "copied", "snapshot": offsite.push(manifest)}
        except BackupError as error:
            manifest["offsite"] = {"status": "failed", "detail": str(error)}
            store.update_status(last_failure={"at": store.now().isoformat(), "id": manifest["id"],
                                              "error": f"off-site copy failed: {error}"})
    store.save(manifest)


def rotate(daily, weekly, monthly):
    """Prune scheduled backups beyond the rotation. Called only after a good backup, so a run of
    failures never deletes the last good ones. Backups taken by hand or before a restore,
    resetdb or migration are kept until you delete them. Returns the ids removed."""
    manifests = store.all_backups()
    scheduled = [(m["id"], store.parse_time(m["created_at"])) for m in manifests
                 if m["reason"] == "scheduled" and store.is_good(m)]
    kept = rotation.keep(scheduled, daily, weekly, monthly)
    newest_good = max((store.parse_time(m["created_at"]) for m in manifests if store.is_good(m)), default=None)
    removed = []
    for manifest in manifests:
        failed_and_superseded = (manifest.get("verification", {}).get("status") == "failed" and newest_good
                                 and store.parse_time(manifest["created_at"]) < newest_good)
        if (manifest["reason"] == "scheduled" and store.is_good(manifest) and manifest["id"] not in kept) \
                or failed_and_superseded:
            store.remove(manifest["id"])
            removed.append(manifest["id"])
    if offsite.configured():
        offsite.forget(daily, weekly, monthly)
    return removed
