"""How the tasks talk to the researcher: short steps, loud errors that say how to fix them."""
import sys


class StackError(Exception):
    """A problem the user can fix. The message says what is wrong and what to do."""


def step(message):
    print(f"\033[1m==>\033[0m {message}", flush=True)


def info(message):
    print(f"    {message}", flush=True)


def warn(message):
    print(f"\033[33mwarning:\033[0m {message}", file=sys.stderr, flush=True)


def confirm_by_typing(expected, consequence, given=None):
    """Every destructive task's confirmation: the study's name, typed in a terminal, or given
    in advance with --confirm NAME (scripts). Anything else stops the caller with nothing changed."""
    if given is None:
        if not sys.stdin.isatty():
            raise StackError(f"This needs a typed confirmation. Run it in a terminal, or pass --confirm {expected} "
                             "in a script. Nothing was changed.")
        print(consequence)
        given = input(f"Type {expected} to confirm: ").strip()
    if given != expected:
        raise StackError(f"Nothing was changed: the confirmation was {given!r}, not {expected!r}.")
