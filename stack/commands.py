"""`invoke logs` and `invoke otree`: a service's log, and any oTree command in its container."""
import sys

from . import context
from .compose import SERVICES
from .console import StackError


def logs(service=None, follow=True, tail=200):
    if service and service not in SERVICES:
        raise StackError(f"There is no service {service!r}; choose one of: {', '.join(SERVICES)}.")
    ctx = context.load()
    args = ["logs", "--tail", str(tail)] + (["--follow"] if follow else []) + ([service] if service else [])
    ctx.compose.run(*args, check=False)


def otree(args):
    if not args:
        raise StackError("Name an oTree command after --, e.g.: invoke otree -- test prolific_study 3")
    ctx = context.load()
    if ctx.compose.states().get("otree", {}).get("state") != "running":
        raise StackError("The oTree container is not running. Start the stack with: invoke up")
    tty = [] if sys.stdin.isatty() else ["-T"]
    return ctx.compose.run("exec", *tty, "otree", "otree", *args, check=False).returncode
