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
