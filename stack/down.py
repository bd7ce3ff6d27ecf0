"""`invoke down`: stop the stack. The data stays unless deleting it is confirmed by typing."""
from . import context, pagetimes
from .console import confirm_by_typing, info, step


def run(delete_data=False, confirm=None):
    ctx = context.load()
    name = ctx.compose.name
    if not delete_data:
        pagetimes.flush(ctx.compose)
        step(f"Stopping the stack '{name}'; the database and certificates are kept")
        ctx.compose.run("down", "--remove-orphans")
        info("Start it again with: invoke up")
        return

    confirm_by_typing(name, f"This deletes every session, participant and answer of the stack '{name}', for "
                            "good (backups in BACKUP_DIR stay).", confirm, flag=f"--confirm {name}")
    step(f"Stopping the stack '{name}' and deleting its volumes: database and certificates")
    ctx.compose.run("down", "--remove-orphans", "--volumes")
    info("All study data of this stack is gone. `invoke up` starts an empty one.")

