"""Operations for the oTree stack. `invoke --list` shows them, `invoke --help TASK` explains one.

Each task is a thin wrapper over one module of stack/, whose run(...) is named after it. A server
runs one or more studies; every task takes --study NAME, which may be left out while the server
has one study. With several, a task that acts on a study refuses to guess and lists them."""
import functools
import sys

from invoke import Exit, task

from stack import backups as backups_module, base_image, commands, context, down as down_module, export_data as export_data_module
from stack import migrate as migrate_module, resetdb as resetdb_module, restore as restore_module
from stack import settings, status as status_module, study as study_module, testing, up as up_module
from stack.console import StackError

STUDY_HELP = "The study to act on (`invoke study list`); may be left out while the server has only one."
CONFIRM_HELP = "For scripts: the study's name, typed in advance, to confirm."


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


@task(help={"study": "Only this study (and the proxy). Without it: the proxy and every study."})
@_friendly
def up(c, study=None):
    """Set up and start the server: settings files with new secrets on first run, checks, build,
    the proxy, each study (database migrated first), health, addresses. Safe to run again; keeps all data."""
    up_module.run(study_name=study)


@task(help={"pull": "Also fetch a fresh Debian base image and rebuild every layer (security updates).",
            "study": "Only this study (and the proxy). Without it: the proxy and every study."})
@_friendly
def rebuild(c, pull=False, study=None):
    """Rebuild the images and recreate every container. The databases are kept."""
    up_module.run(study_name=study, rebuild=True, pull=pull)


@task(help={"study": STUDY_HELP, "delete_data": "Also delete the study's database, after a typed confirmation.",
            "confirm": CONFIRM_HELP})
@_friendly
def down(c, study=None, delete_data=False, confirm=None):
    """Stop a study. Its data is kept unless --delete-data is given and confirmed."""
    down_module.run(study=study, delete_data=delete_data, confirm=confirm)


@task(help={"study": STUDY_HELP, "service": "Only this service's log: otree, postgres, backup, or the proxy's nginx "
                                            "or certbot.",
            "no_follow": "Print the recent lines and stop, instead of following the log."})
@_friendly
def logs(c, study=None, service=None, no_follow=False):
    """Show a study's logs (the last 200 lines, then new lines as they come)."""
    commands.logs(study=study, service=service, follow=not no_follow)


@task(help={"study": "Only this study; without it, every study."})
@_friendly
def status(c, study=None):
    """Show the proxy's and each study's services, health, oTree version, backups and address."""
    status_module.run(study=study)


@task(help={"study": STUDY_HELP})
@_friendly
def otree(c, study=None):
    """Run an oTree command in a study's oTree container: invoke otree -- test prolific_study 3"""
    code = commands.otree(_after_double_dash(), study=study)
    if code:
        raise Exit(code=code)


@task(positional=["action", "name"],
      help={"action": "add or remove",
            "name": "The study's name: 1-30 lower-case letters, digits and -, starting with a letter.",
            "project": "add: the oTree project folder (inside this repository).",
            "domain": "add: the study's DNS name. Without one it is reached by this server's address, on a port "
                      "of its own when the server's HTTPS port is taken.",
            "port": "add, without --domain: the study's own HTTPS port, one of STUDY_PORTS (default: the first free one).",
            "confirm": "remove: " + CONFIRM_HELP})
@_friendly
def study(c, action, name, project=None, domain=None, port=None, confirm=None):
    """Add or remove a study: invoke study add NAME --project DIR [--domain NAME], invoke study remove NAME."""
    if action == "add":
        if not project:
            raise StackError("Usage: invoke study add NAME --project FOLDER [--domain NAME]")
        study_module.add(name, project, domain=domain, port=port)
    elif action == "remove":
        study_module.remove(name, confirm=confirm)
    else:
        raise StackError(f"There is no study action {action!r}: use add or remove (`invoke studies` lists them).")


@task
@_friendly
def studies(c):
    """List the studies: address, oTree version, health, sessions, active participants, last backup, disk used."""
    study_module.list_studies()


@task(name="build-base")
@_friendly
def build_base(c):
    """Build the Debian base image with debootstrap from this machine's mirror, instead of pulling it."""
    try:
        image = settings.read_server().base_image
    except StackError:
        image = settings.SERVER_DEFAULTS["BASE_IMAGE"]
    base_image.build(image)


@task(name="export-data",
      help={"study": STUDY_HELP,
            "session": "Export only this session (its code, from the admin's Sessions page).",
            "app": "Export only this app: its table and its custom exports.",
            "output": "Folder for the timestamped export folder and its zip (default: exports/STUDY/ here)."})
@_friendly
def export_data(c, study=None, session=None, app=None, output=None):
    """Export every file the admin's "Export data" page offers into exports/STUDY/<UTC time>/ and a zip.

    With a manifest (sessions, counts, options, checksums). Safe while participants play: it runs
    in a separate process in the oTree container, not through the server."""
    export_data_module.run(study=study, session=session, app=app, output=output)


@task(help={"study": STUDY_HELP})
@_friendly
def backup(c, study=None):
    """Back up a study's database now: a verified pg_dump with a manifest in its BACKUP_DIR, copied
    to the restic repository when one is set. Safe while participants play."""
    backups_module.run_backup(context.load(study, purpose="backs up"))


@task(help={"study": STUDY_HELP, "offsite": "Also list the snapshots in the restic repository."})
@_friendly
def backups(c, study=None, offsite=False):
    """List a study's backups: when, why, size, whether they verified, and their off-site copy."""
    backups_module.run_list(context.load(study, purpose="lists the backups of"), offsite=offsite)


@task(positional=["source"],
      help={"source": "What to restore: `latest`, a backup ID from `invoke backups`, or a backup's otree.dump "
                      "file or folder. With --offsite: `latest` or a snapshot ID from `invoke backups --offsite`.",
            "study": STUDY_HELP, "offsite": "Take the backup from the restic repository.", "confirm": CONFIRM_HELP})
@_friendly
def restore(c, source, study=None, offsite=False, confirm=None):
    """Replace a study's database with a backup. The backup is proven first, the current state is
    backed up, oTree is stopped for the swap and started again; prints how to undo."""
    restore_module.run(context.load(study, purpose="restores"), source=source, offsite=offsite, confirm=confirm)


@task(help={"study": STUDY_HELP, "confirm": CONFIRM_HELP})
@_friendly
def resetdb(c, study=None, confirm=None):
    """Delete all of a study's data and start with empty tables (oTree's resetdb), after a verified backup."""
    resetdb_module.run(context.load(study, purpose="empties"), confirm=confirm)


@task(help={"study": STUDY_HELP, "dry_run": "Only show what would change; change nothing."})
@_friendly
def migrate(c, study=None, dry_run=False):
    """Add your models' new tables and columns to a study's database, keeping every row (`invoke up` does it too).

    Old rows get an empty value in a new column. Removed or changed columns are reported, never
    dropped; a changed type is refused. Backs up first, then restarts oTree."""
    migrate_module.run(context.load(study, purpose="migrates"), dry_run=dry_run)


@task(help={"unit": "Only the pure-logic tests: seconds, no Docker engine and no Chromium."})
@_friendly
def test(c, unit=False):
    """Run the test suite against real containers: invoke test [--unit] [-- pytest options]"""
    code = testing.run(_after_double_dash(), unit=unit)
    if code:
        raise Exit(code=code)
