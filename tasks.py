"""Operations for the oTree stack. `invoke --list` shows them, `invoke --help TASK` explains one.

Each task is a thin wrapper: the work is done by a small module in stack/, one per concern."""
import functools
import os
import sys

from invoke import Exit, task

from stack import base_image, commands, down as down_module, envfile, status as status_module, testing
from stack import up as up_module
from stack.console import StackError


def _friendly(function):
    """Show a StackError as a clear message and exit 1, without a traceback."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except StackError as error:
            raise Exit(f"\033[31merror:\033[0m {error}", code=1)
    return wrapper


def _after_double_dash():
    return sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []


@task
@_friendly
def up(c):
    """Set up and start the stack: create .env with secrets on first run, check it, build, start,
    wait until every service is healthy, print the address. Safe to run again; keeps all data."""
    up_module.run()


@task(help={"pull": "Also fetch a fresh Debian base image and rebuild every layer (security updates)."})
@_friendly
def rebuild(c, pull=False):
    """Rebuild the images and recreate every container. The database is kept."""
    up_module.run(rebuild=True, pull=pull)


@task(help={"delete_data": "Also delete the database and certificates, after a typed confirmation.",
            "confirm": "For scripts: the stack name, typed in advance, to confirm --delete-data."})
@_friendly
def down(c, delete_data=False, confirm=None):
    """Stop the stack. The data is kept unless --delete-data is given and confirmed."""
    down_module.run(delete_data=delete_data, confirm=confirm)


@task(positional=["service"],
      help={"service": "otree, postgres, nginx or redis; all when left out.",
            "no_follow": "Print the recent lines and stop, instead of following the log."})
@_friendly
def logs(c, service=None, no_follow=False):
    """Show the stack's logs (the last 200 lines, then new lines as they come)."""
    commands.logs(service, follow=not no_follow)


@task
@_friendly
def status(c):
    """Show each service's state and health, the oTree version and the address."""
    status_module.run()


@task
@_friendly
def otree(c):
    """Run an oTree command in the oTree container: invoke otree -- test prolific_study 3"""
    code = commands.otree(_after_double_dash())
    if code:
        raise Exit(code=code)


@task(name="build-base")
@_friendly
def build_base(c):
    """Build the Debian base image with debootstrap from this machine's mirror, instead of pulling it."""
    values = envfile.load() if os.path.exists(envfile.path()) else {}
    base_image.build(values.get("BASE_IMAGE", "").strip() or "debian:trixie-slim")


@task
@_friendly
def test(c):
    """Run the whole test suite against real containers: invoke test [-- pytest options]"""
    code = testing.run(_after_double_dash())
    if code:
        raise Exit(code=code)
