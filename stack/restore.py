"""`invoke restore`: put a backup live. The backup is proven first (restored into a scratch
database, counts checked); then the maintenance page goes up, oTree stops, a backup of the
current state is taken (so the undo it prints misses no answer), the restored copy is swapped in
and oTree starts again. On any failure the live database stays as it was."""
import os
import tarfile
import tempfile

from . import backups, lock, migrate, names
from .console import StackError, confirm_by_typing, info, step



def run(ctx, source, offsite=False, confirm=None):
    name = ctx.study.name
    with lock.held(ctx.server, f"restore of {name}"):
        backups.require_running(ctx, "postgres", "backup")
        backup_id = _bring_in(ctx, source, offsite)
        step(f"Proving backup {backup_id}: restoring it into a scratch database and counting its rows")
        code, backup_id, _ = backups.service(ctx, "prove", backup_id)
        if code or not backup_id:
            raise StackError("That backup cannot be restored (the reason is above). The live database is untouched.")
        confirm_by_typing(name, f"This replaces the live database of the study '{name}' with backup {backup_id}. "
                                "oTree is stopped and a backup of the current state is taken first.", confirm)
        with backups.stopped_and_backed_up(ctx, "before-restore") as safety:
            step(f"Restoring {backup_id}")
            code, _, _ = backups.service(ctx, "put-live", backup_id, "--backup-of-live", safety.id)
            if code:
                ctx.compose.start("otree")
                raise StackError("The restore failed (the reason is above); the live database was not replaced and "
                                 "oTree is running again.")
            try:
                # A backup from before a model change lacks the new columns: add them before oTree starts.
                migrate.before_start(ctx)
            except StackError as error:
                raise StackError(f"{error}\nThe backup was restored, but oTree was left stopped because it does not "
                                 f"fit your current models. To go back: invoke restore {safety.id} --study {name}")
            step("Starting oTree")
            ctx.compose.start("otree")
    step(f"Restored backup {backup_id}; oTree is running again.")
    info(f"The state before the restore is backup {safety.id} ({safety.path}), taken with oTree stopped: it holds "
         "every answer given before the maintenance page. The replaced database itself is kept until the next "
         "restore or resetdb (`invoke backups` lists it).")
    info(f"To undo: invoke restore {safety.id} --study {name}")


def _bring_in(ctx, source, offsite):
    """The id of the backup to restore: fetched from restic, imported from a file, or given."""
    if offsite:
        names.check_restore_source(source, offsite=True)
        step(f"Fetching snapshot {source} from the restic repository")
        code, backup_id, _ = backups.service(ctx, "fetch-offsite", source)
        if code or not backup_id:
            raise StackError("Nothing was restored; the reason is above. The live database is untouched.")
        return backup_id
    names.check_restore_source(source)
    return _import(ctx, source) if source != "latest" and os.path.exists(source) else source


def _import(ctx, path):
    """Copy a dump (or a backup folder with its manifest) into the backup folder."""
    folder = path if os.path.isdir(path) else None
    dump = os.path.join(folder, "otree.dump") if folder else path
    if not os.path.isfile(dump):
        raise StackError(f"{path} is a folder without an otree.dump, so it is not a backup. Nothing was changed.")
    step(f"Importing {path}")
    with tempfile.TemporaryFile() as bundle:
        with tarfile.open(fileobj=bundle, mode="w") as archive:
            archive.add(dump, arcname="otree.dump")
            manifest = os.path.join(folder, "manifest.json") if folder else None
            if manifest and os.path.isfile(manifest):
                archive.add(manifest, arcname="manifest.json")
        bundle.seek(0)
        code, backup_id, _ = backups.service(ctx, "import", stdin=bundle)
    if code or not backup_id:
        raise StackError(f"{path} cannot be restored (the reason is above). The live database is untouched.")
    return backup_id
