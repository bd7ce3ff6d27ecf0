"""Operations for the oTree stack. `invoke --list` shows them, `invoke --help TASK` explains one.

Each task is a thin wrapper: the work is done by a small module in stack/, one per concern."""
import functools
import os
import sys

from invoke import Exit, task

from stack import backups as backups_module, context, resetdb as resetdb_module, restore as restore_module
from stack import base_image, commands, down as down_module, envfile, status as status_module, testing
from stack import up as up_module
from stack import export_data as export_data_module
from stack import migrate as migrate_module
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


@task(help={"service": "Only this service's log: otree, postgres, nginx, backup or redis.",
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


@task(name="export-data",
      help={"session": "Export only this session (its code, from the admin's Sessions page).",
            "app": "Export only this app: its table and its custom exports.",
            "output": "Folder for the timestamped export folder and its zip (default: exports/ here)."})
@_friendly
def export_data(c, session=None, app=None, output=None):
    """Export every file the admin's "Export data" page offers into exports/<UTC time>/ and a zip.

    With a manifest (sessions, counts, options, checksums). Safe while participants play: it runs
    in a separate process in the oTree container, not through the server."""
    export_data_module.run(session=session, app=app, output=output)


@task
@_friendly
def backup(c):
    """Back up the database now: a verified pg_dump with a manifest in BACKUP_DIR, copied to the
    restic repository when one is set. Safe while participants play."""
    backups_module.run_backup(context.load())


@task(help={"offsite": "Also list the snapshots in the restic repository."})
@_friendly
def backups(c, offsite=False):
    """List the backups: when, why, size, whether they verified, and their off-site copy."""
    backups_module.run_list(context.load(), offsite=offsite)


@task(positional=["source"],
      help={"source": "What to restore: `latest`, a backup ID from `invoke backups`, or a backup's otree.dump "
                      "file or folder. With --offsite: `latest` or a snapshot ID from `invoke backups --offsite`.",
            "offsite": "Take the backup from the restic repository.",
            "yes": "For scripts: do not ask for the typed confirmation."})
@_friendly
def restore(c, source, offsite=False, yes=False):
    """Replace the live database with a backup. The backup is proven first, the current state is
    backed up, oTree is stopped for the swap and started again; prints how to undo."""
    restore_module.run(context.load(), source=source, offsite=offsite, yes=yes)


@task(help={"yes": "For scripts: do not ask for the typed confirmation."})
@_friendly
def resetdb(c, yes=False):
    """Delete all data and start with empty tables (oTree's resetdb), after a verified backup."""
    resetdb_module.run(context.load(), yes=yes)


@task(help={"dry_run": "Only show what would change; change nothing."})
@_friendly
def migrate(c, dry_run=False):
    """Add your models' new tables and columns to the database, keeping every row (`invoke up` does it too).

    Old rows get an empty value in a new column. Removed or changed columns are reported, never
    dropped; a changed type is refused. Backs up first, then restarts oTree."""
    migrate_module.run(context.load(), dry_run=dry_run)


@task
@_friendly
def test(c):
    """Run the whole test suite against real containers: invoke test [-- pytest options]"""
    code = testing.run(_after_double_dash())
    if code:
        raise Exit(code=code)
