"""Restore: bring a dump from outside into the backup folder, prove it, and put it live; and the
empty database of `invoke resetdb`. The database either replaces is kept until the next restore
or resetdb, and noted for `invoke backups`. The steps around them (the maintenance page, stopping
oTree, the backup of the state before) are run by the invoke tasks."""
import os
import shutil
import tarfile
import tempfile

from . import BackupError, database, store, verify

# Tables every oTree database has; a dump without them is not a backup of a study.
OTREE_TABLES = {"otree_session", "otree_participant"}
# What the database kept as database.REPLACED is: when, by which task, and the backup of it.
REPLACED_NOTE = os.path.join(store.ROOT, ".replaced.json")


def import_archive(stream):
    """Read a tar (otree.dump, and manifest.json if the backup came with one) from `stream` into
    a new backup folder. Without a manifest, the counts come from restoring it. Returns the id."""
    incoming = tempfile.mkdtemp(prefix=store.INCOMPLETE_PREFIX, dir=store.ROOT)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            archive.extractall(incoming, filter="data")
        dump_path = os.path.join(incoming, store.DUMP)
        tables = set(database.archive_tables(dump_path))
        if not OTREE_TABLES <= tables:
            raise BackupError("This file is a Postgres dump but not of an oTree database (it has no "
                              "otree_session or otree_participant table); nothing was restored")
        manifest_path = os.path.join(incoming, store.MANIFEST)
        if os.path.isfile(manifest_path):
            manifest = store.read_json(manifest_path)
        else:
            with database.scratch_server() as scratch:
                counts = database.restore_and_count(scratch, "imported", dump_path)
            manifest = {"created_at": store.now().isoformat(), "tables": counts,
                        "dump": {"file": store.DUMP, "bytes": os.path.getsize(dump_path),
                                 "sha256": store.sha256(dump_path)},
                        "note": "imported without a manifest: the row counts are those of the restored file"}
        manifest.update(id=store.new_id(store.now()) + "-imported", reason=manifest.get("reason", "imported"),
                        verification={"status": "pending"})
        store.save(manifest, where=incoming)
        os.rename(incoming, store.folder(manifest["id"]))
        return manifest["id"]
    except (tarfile.TarError, KeyError, ValueError) as error:
        raise BackupError(f"The file could not be read as a backup: {error}")
    finally:
        shutil.rmtree(incoming, ignore_errors=True)


def prove(backup_id):
    """Verify a backup now (again), so a restore never starts from a bad file."""
    manifest = verify.run(store.load(backup_id))
    if not store.is_good(manifest):
        raise BackupError(f"Backup {backup_id} failed verification, so nothing was restored: "
                          f"{manifest['verification']['detail']}")
    return manifest


def _note_replaced(by, backup_of_it):
    store.write_json(REPLACED_NOTE, {"database": database.REPLACED, "at": store.now().isoformat(), "by": by,
                                     "backup": backup_of_it})


def replaced():
    """The note on the database the last restore or resetdb kept, or None when none is kept."""
    if not os.path.isfile(REPLACED_NOTE):
        return None
    note = store.read_json(REPLACED_NOTE)
    try:
        return note if database.exists(note["database"]) else None
    except BackupError:  # Postgres is stopped: the note stands unchecked
        return note


def put_live(backup_id, backup_of_live):
    """Restore into a new database beside the live one, check the counts, then swap the two; the
    live one is kept (see replaced()). oTree must be stopped. On any failure the live database is
    left as it was. backup_of_live: the backup of the live database taken just before."""
    manifest = store.load(backup_id)
    path = os.path.join(store.folder(backup_id), store.DUMP)
    counts = database.restore_and_count(database.live_params(), database.INCOMING, path)
    if counts != manifest["tables"]:
        raise BackupError("The restored row counts differ from the backup's manifest; the live database "
                          "was not replaced")
    database.swap_in_restored()
    _note_replaced("restore", backup_of_live)
    if database.live_counts() != manifest["tables"]:
        raise BackupError("After the restore, the live row counts differ from the backup's manifest")
    return manifest


def set_aside(backup_of_live):
    """`invoke resetdb`'s empty database; the live one is kept (see replaced()). oTree must be stopped."""
    database.set_aside()
    _note_replaced("resetdb", backup_of_live)
