"""`invoke down`: stop the stack. The data stays unless deleting it is confirmed by typing."""
from . import backups, context, pagetimes
from .console import confirm_by_typing, info, step, warn


def run(delete_data=False, confirm=None):
    ctx = context.load()
    name = ctx.compose.name
    if not delete_data:
        pagetimes.flush(ctx.compose)
        step(f"Stopping the stack '{name}'; the database and certificates are kept")
        ctx.compose.run("down", "--remove-orphans")
        info("Start it again with: invoke up")
        return

    states = ctx.compose.states()
    running = all(states.get(service, {}).get("state") == "running" for service in ("postgres", "backup"))
    confirm_by_typing(name, f"This deletes every session, participant and answer of the stack '{name}'. "
                            + ("A last backup is taken first; backups in BACKUP_DIR stay." if running else
                               "The stack is not running, so no last backup can be taken (run `invoke up` "
                               "and `invoke backup` first if you want one)."), confirm, flag=f"--confirm {name}")
    if running:
        pagetimes.flush(ctx.compose)
        last = backups.take(ctx, "before-delete")
        info(f"The data as it was is backup {last.id}: {last.path}")
    else:
        warn("No last backup was taken: the stack is not running.")
    step(f"Stopping the stack '{name}' and deleting its volumes: database and certificates")
    ctx.compose.run("down", "--remove-orphans", "--volumes")
    info("All study data of this stack is gone. `invoke up` starts an empty one.")

