"""Proof that a backup is good: its checksum matches, it restores into a throwaway server, and
the restored row counts equal the counts taken when it was made."""
import os

from . import BackupError, database, store


def check(backup_folder, manifest):
    """Raises BackupError saying what is wrong; returns the restored row counts."""
    path = os.path.join(backup_folder, store.DUMP)
    if not os.path.isfile(path):
        raise BackupError(f"The dump file {path} is missing")
    if store.sha256(path) != manifest["dump"]["sha256"]:
        raise BackupError("The dump's checksum does not match its manifest: the file was changed or "
                          "damaged after it was written")
    database.archive_tables(path)
    with database.scratch_server() as scratch:
        counts = database.restore_and_count(scratch, "verify", path)
    expected = manifest["tables"]
    if counts != expected:
        differences = ", ".join(f"{table}: {expected.get(table, 'absent')} expected, {counts.get(table, 'absent')} "
                                "restored" for table in sorted(set(counts) | set(expected))
                                if counts.get(table) != expected.get(table))
        raise BackupError(f"The restored row counts differ from the manifest ({differences})")
    return counts


def run(manifest):
    """Verify and record the result in the manifest; never raises for a bad backup."""
    try:
        check(store.folder(manifest["id"]), manifest)
        manifest["verification"] = {"status": "passed", "at": store.now().isoformat(),
                                    "detail": f"restored {sum(manifest['tables'].values())} rows in "
                                              f"{len(manifest['tables'])} tables; counts match"}
    except BackupError as error:
        manifest["verification"] = {"status": "failed", "at": store.now().isoformat(), "detail": str(error)}
    store.save(manifest)
    return manifest
