"""`invoke resetdb`: an empty database, made safe: a typed confirmation; the maintenance page up,
page times saved and oTree stopped before a verified backup; the old database kept until the
next restore or resetdb; then oTree's resetdb makes the tables in the new, empty one."""
from . import backups, lock
from .console import StackError, confirm_by_typing, info, step


def run(ctx, confirm=None):
    name = ctx.study.name
    with lock.held(ctx.server, f"resetdb of {name}"):
        backups.require_running(ctx, "postgres", "backup")
        confirm_by_typing(name, f"This deletes every session, participant and answer in the study '{name}'. "
                                "oTree is stopped and a verified backup is taken first; `invoke restore` brings it "
                                "back.", confirm)
        with backups.stopped_and_backed_up(ctx, "before-resetdb") as backup:
            step("Setting the database aside (kept until the next restore or resetdb) for an empty one")
            code, _, _ = backups.service(ctx, "set-aside", "--backup-of-live", backup.id)
            if code:
                ctx.compose.start("otree")
                raise StackError("The database was not emptied (the reason is above); oTree is running again on it "
                                 "as it was.")
            try:
                step("Running oTree's resetdb")
                ctx.compose.run("run", "--rm", "--no-deps", "-T", "otree", "otree", "resetdb", "--noinput")
            finally:
                step("Starting oTree")
                ctx.compose.start("otree")
    step("The database is empty and oTree is running.")
    info(f"What was there is backup {backup.id}: {backup.path} (taken with oTree stopped, so every answer given "
         "before the maintenance page is in it).")
    info(f"To undo: invoke restore {backup.id} --study {name}")
