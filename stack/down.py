"""`invoke down`: stop the stack. The data stays unless deleting it is confirmed by typing."""
import sys

from . import context, pagetimes
from .console import StackError, info, step


def run(delete_data=False, confirm=None):
    ctx = context.load()
    name = ctx.compose.name
    if not delete_data:
        pagetimes.flush(ctx.compose)
        step(f"Stopping the stack '{name}'; the database and certificates are kept")
        ctx.compose.run("down", "--remove-orphans")
        info("Start it again with: invoke up")
        return

    typed = confirm if confirm is not None else _ask(name)
    if typed != name:
        raise StackError(f"Nothing was deleted: the confirmation was {typed!r}, not the stack name {name!r}.")
    step(f"Stopping the stack '{name}' and deleting its volumes: database and certificates")
    ctx.compose.run("down", "--remove-orphans", "--volumes")
    info("All study data of this stack is gone. `invoke up` starts an empty one.")


def _ask(name):
    if not sys.stdin.isatty():
        raise StackError("Deleting the data needs a typed confirmation. Run this in a terminal, or pass "
                         f"--confirm {name} (the stack name) in a script.")
    print(f"This deletes every session, participant and answer of the stack '{name}', for good.")
    return input(f"Type the stack name ({name}) to confirm: ").strip()
