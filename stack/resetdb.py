"""`invoke resetdb`: oTree's resetdb (drops every table), made safe: a typed confirmation, a
verified backup first, page times saved, and the server stopped while it runs (oTree's resetdb
hangs while another connection is open)."""
from . import backups
from .console import confirm_by_typing, info, step


def run(ctx, confirm=None):
    backups.require_running(ctx, "postgres", "backup")
    name = ctx.study.name
    confirm_by_typing(name, f"This deletes every session, participant and answer in the study '{name}'. "
                            "A verified backup is taken first; `invoke restore` brings it back.", confirm)
    backup = backups.stop_otree_after_backup(ctx, "before-resetdb")
    try:
        step("Running oTree's resetdb")
        ctx.compose.run("run", "--rm", "--no-deps", "-T", "otree", "otree", "resetdb", "--noinput")
    finally:
        step("Starting oTree")
        ctx.compose.start("otree")
    step("The database is empty and oTree is running.")
    info(f"What was there is backup {backup.id}: {backup.path}")
    info(f"To undo: invoke restore {backup.id} --study {name}")
