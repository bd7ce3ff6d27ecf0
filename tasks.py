"""Operations for the oTree stack. `invoke --list` shows them, `invoke --help TASK` explains one.

Each task is a thin wrapper over one module of stack/, whose run(...) is named after it. A server
runs one or more studies; every task takes --study NAME, which may be left out while the server
has one study. With several, a task that acts on a study refuses to guess and lists them.
From a laptop, --on NAME runs a task on a server recorded with `invoke server add`, over SSH."""
import functools
import sys

from invoke import Exit, task

from stack import backups as backups_module, base_image, commands, context, down as down_module, export_data as export_data_module
from stack import migrate as migrate_module, resetdb as resetdb_module, restore as restore_module
from stack import settings, status as status_module, study as study_module, testing, up as up_module
from stack import deploy as deploy_module, maintenance as maintenance_module, releases as releases_module
from stack import config as config_module, loadtest as loadtest_module, prolific as prolific_module, remote, rollback as rollback_module, servers as servers_module, ssh
from stack import names, session as session_module
from stack.console import StackError

STUDY_HELP = "The study to act on (`invoke studies`); may be left out while the server has only one."
CONFIRM_HELP = "For scripts: the study's name, typed in advance, to confirm."
ON_HELP = "Run it on this server (`invoke servers`) over SSH, instead of here."


def _friendly(function):
    """Show a StackError as a clear message and exit 1, without a traceback."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except StackError as error:
            raise Exit(f"\033[31merror:\033[0m {error}", code=1)
    return wrapper


def _names_checked(function):
    """The names a task was given follow their rules (stack/names.py) before any file, SSH
    connection or container is touched; the stack checks them again where it uses them."""
    @functools.wraps(function)
    def wrapper(c, *args, **options):
        _check_names(options)
        return function(c, *args, **options)
    return wrapper


def _check_names(options):
    if options.get("study") is not None:
        names.check_study(options["study"])
    if options.get("on") is not None:
        names.check_server(options["on"])
    if options.get("to") is not None:
        names.release_number(options["to"])
    if options.get("session") is not None:
        names.SESSION.check(options["session"])
    if options.get("tar") is not None:
        names.check_backup_id(options["tar"])
    if options.get("source") is not None:
        names.check_restore_source(options["source"], offsite=options.get("offsite"), here=not options.get("on"))
    keys = [options.get("get"), options.get("set_secret"), *(options.get("unset") or []),
            *(pair.partition("=")[0].strip(" ") for pair in options.get("set_") or [])]
    for key in keys:
        if key is not None:
            names.check_config_key(key)


def _after_double_dash():
    return sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []


def _on_server(function):
    """With --on NAME the task runs on that server, in its stack's folder, with the same options."""
    @functools.wraps(function)
    def wrapper(c, **options):
        name = options.pop("on", None)
        if not name:
            return function(c, **options)
        code = remote.invoke_on(name, *ssh.task_args(function.__name__, options, _after_double_dash()))
        if code:
            raise Exit(code=code)
    return wrapper


@task(help={"on": ON_HELP, "study": "Only this study (and the proxy). Without it: the proxy and every study."})
@_friendly
@_names_checked
@_on_server
def up(c, study=None, on=None):
    """Set up and start the server: settings files with new secrets on first run, checks, build,
    the proxy, each study (database migrated first), health, addresses. Safe to run again; keeps all data."""
    up_module.run(study_name=study)


@task(help={"pull": "Also fetch a fresh Debian base image and rebuild every layer (security updates).",
            "study": "Only this study (and the proxy). Without it: the proxy and every study."})
@_friendly
@_names_checked
def rebuild(c, pull=False, study=None):
    """Rebuild the images and recreate every container. The databases are kept."""
    up_module.run(study_name=study, rebuild=True, pull=pull)


@task(help={"on": ON_HELP, "study": STUDY_HELP, "delete_data": "Also delete the study's database, after a typed confirmation.",
            "confirm": CONFIRM_HELP})
@_friendly
@_names_checked
@_on_server
def down(c, study=None, delete_data=False, confirm=None, on=None):
    """Stop a study. Its data is kept unless --delete-data is given and confirmed."""
    down_module.run(study=study, delete_data=delete_data, confirm=confirm)


@task(help={"on": ON_HELP, "study": STUDY_HELP, "service": "Only this service's log: otree, postgres, backup, or the proxy's nginx, certbot "
                                            "or monitor.",
            "no_follow": "Print the recent lines and stop, instead of following the log."})
@_friendly
@_names_checked
@_on_server
def logs(c, study=None, service=None, no_follow=False, on=None):
    """Show a study's logs (the last 200 lines, then new lines as they come)."""
    commands.logs(study=study, service=service, follow=not no_follow)


@task(help={"on": ON_HELP, "study": "Only this study; without it, every study.",
            "watch": "Print it again every 5 seconds, until Ctrl-C."})
@_friendly
@_names_checked
@_on_server
def status(c, study=None, on=None, watch=False):
    """Show the proxy's and each study's services, health, oTree version, load and errors, backups and address."""
    status_module.run(study=study, watch=watch)


@task(help={"on": ON_HELP, "study": STUDY_HELP})
@_friendly
@_names_checked
@_on_server
def otree(c, study=None, on=None):
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
@_names_checked
def study(c, action, name, project=None, domain=None, port=None, confirm=None):
    """Add or remove a study: invoke study add NAME --project DIR [--domain NAME], invoke study remove NAME."""
    names.check_study(name)
    if action == "add":
        if not project:
            raise StackError("Usage: invoke study add NAME --project FOLDER [--domain NAME]")
        study_module.add(name, project, domain=domain, port=port)
    elif action == "remove":
        study_module.remove(name, confirm=confirm)
    else:
        raise StackError(f"There is no study action {action!r}: use add or remove (`invoke studies` lists them).")


@task(positional=["action"],
      help={"action": "create", "on": ON_HELP, "study": STUDY_HELP,
            "room": "The room the session goes in (the project's ROOMS); participants enter by its link.",
            "config": "The session config (the project's SESSION_CONFIGS).",
            "places": "Your Prolific study's places: how many participants you recruit.",
            "spare": "Participants per place (default 1.5): spare places for returned and timed-out participants, "
                     "whose places Prolific gives to someone new. 1 for none."})
@_friendly
@_names_checked
@_on_server
def session(c, action, room=None, config=None, places=None, spare=None, study=None, on=None):
    """Create a room's session with spare places, and print the study URL for Prolific:
    invoke session create --room R --config C --places P [--spare 1.5]"""
    if action != "create":
        raise StackError(f"There is no session action {action!r}: use create, e.g. "
                         "invoke session create --room prolific --config prolific_study --places 100")
    session_module.run_create(study=study, room=room, config=config, places=places, spare=spare)


@task(help={"on": ON_HELP})
@_friendly
@_names_checked
@_on_server
def studies(c, on=None):
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
            "output": "Folder for the timestamped export folder and its zip (default: exports/STUDY/ here; with "
                      "--on, downloads/SERVER/ on this laptop).",
            "on": "Export on this server (`invoke servers`) and bring the files here, checked against their sha256."})
@_friendly
@_names_checked
def export_data(c, study=None, session=None, app=None, output=None, on=None):
    """Export every file the admin's "Export data" page offers into exports/STUDY/<UTC time>/ and a zip.

    With a manifest (sessions, counts, options, checksums). Safe while participants play: it runs
    in a separate process in the oTree container, not through the server."""
    if on:
        remote.export_data(on, study=study, session=session, app=app, output=output)
    else:
        export_data_module.run(study=study, session=session, app=app, output=output)


@task(help={"on": ON_HELP, "study": STUDY_HELP,
            "download": "With --on: also bring the backup to this laptop, checked against its sha256.",
            "output": "With --download: the folder for it (default: downloads/SERVER/backups/)."})
@_friendly
@_names_checked
def backup(c, study=None, on=None, download=False, output=None):
    """Back up a study's database now: a verified pg_dump with a manifest in its BACKUP_DIR, copied
    to the restic repository when one is set. Safe while participants play."""
    if download and not on:
        raise StackError("--download brings a server's backup to this laptop: add --on SERVER. Here, the backup "
                         "is in the study's BACKUP_DIR already.")
    if on and download:
        remote.download_backup(on, study=study, output=output)
    elif on:
        code = remote.invoke_on(on, *ssh.task_args("backup", {"study": study}))
        if code:
            raise Exit(code=code)
    else:
        backups_module.run_backup(context.load(study, purpose="backs up"))


@task(help={"on": ON_HELP, "study": STUDY_HELP, "offsite": "Also list the snapshots in the restic repository.",
            "tar": "Write this backup (its ID) to standard output as a tar, instead of listing; what "
                   "`invoke backup --download` reads over SSH."})
@_friendly
@_names_checked
@_on_server
def backups(c, study=None, offsite=False, tar=None, on=None):
    """List a study's backups: when, why, size, whether they verified, and their off-site copy."""
    if tar:
        backups_module.stream(context.load(study, purpose="sends a backup of"), tar)
    else:
        backups_module.run_list(context.load(study, purpose="lists the backups of"), offsite=offsite)


@task(positional=["source"],
      help={"on": ON_HELP, "source": "What to restore: `latest`, a backup ID from `invoke backups`, or a backup's otree.dump "
                      "file or folder. With --offsite: `latest` or a snapshot ID from `invoke backups --offsite`.",
            "study": STUDY_HELP, "offsite": "Take the backup from the restic repository.", "confirm": CONFIRM_HELP})
@_friendly
@_names_checked
@_on_server
def restore(c, source, study=None, offsite=False, confirm=None, on=None):
    """Replace a study's database with a backup. The backup is proven first, the current state is
    backed up, oTree is stopped for the swap and started again; prints how to undo."""
    restore_module.run(context.load(study, purpose="restores"), source=source, offsite=offsite, confirm=confirm)


@task(help={"on": ON_HELP, "study": STUDY_HELP, "confirm": CONFIRM_HELP})
@_friendly
@_names_checked
@_on_server
def resetdb(c, study=None, confirm=None, on=None):
    """Delete all of a study's data and start with empty tables (oTree's resetdb), after a verified backup."""
    resetdb_module.run(context.load(study, purpose="empties"), confirm=confirm)


@task(help={"on": ON_HELP, "study": STUDY_HELP, "dry_run": "Only show what would change; change nothing."})
@_friendly
@_names_checked
@_on_server
def migrate(c, study=None, dry_run=False, on=None):
    """Add your models' new tables and columns to a study's database, keeping every row (`invoke up` does it too).

    Old rows get an empty value in a new column. Removed or changed columns are reported, never
    dropped; a changed type is refused. Backs up first, then restarts oTree."""
    migrate_module.run(context.load(study, purpose="migrates"), dry_run=dry_run)


@task(positional=["action", "name"],
      help={"action": "add, setup or remove",
            "name": "The server's name on this laptop: 1-30 lower-case letters, digits and -, e.g. lab.",
            "host": "add: its SSH address, USER@HOST.",
            "port": "add: its SSH port (default 22).",
            "path": "add: the stack's folder on the server, relative to the user's home (default otree-stack).",
            "allow_downgrade": "setup: install this laptop's stack even though the server's is newer."})
@_friendly
@_names_checked
def server(c, action, name, host=None, port=22, path=servers_module.DEFAULT_PATH, allow_downgrade=False):
    """Servers this laptop deploys to: invoke server add NAME --host USER@HOST [--port N], server setup NAME, server remove NAME."""
    names.check_server(name)
    if action == "add":
        if not host:
            raise StackError("Usage: invoke server add NAME --host USER@HOST [--port N]")
        servers_module.add(name, host, port=port, path=path)
    elif action == "setup":
        remote.setup(name, allow_downgrade=allow_downgrade)
    elif action == "remove":
        servers_module.remove(name)
    else:
        raise StackError(f"There is no server action {action!r}: use add, setup or remove (`invoke servers` lists them).")


@task
@_friendly
def servers(c):
    """List the servers this laptop knows (servers.ini): name, SSH address and port, the stack's folder, and the
    stack's version on each (asked over SSH) next to this laptop's."""
    servers_module.list_servers()


@task(help={"on": "Deploy to this server (`invoke servers`) over SSH. Without it: on this machine.",
            "study": "The study to deploy to; a name the server does not have yet adds it.",
            "project": "Your oTree project folder (default: otree_project).",
            "allow_dirty": "Ship uncommitted changes too (the release then records a -dirty revision).",
            "force": "Deploy even though participants were active lately (they see the maintenance page).",
            "active_minutes": "How recent a participant's page request must be to count as active (default 10).",
            "domain": "Only for a new study: its DNS name.",
            "revision": "Recorded as the git revision (a laptop's deploy passes its own).",
            "who": "Recorded as who deployed (a laptop's deploy passes user@laptop).",
            "allow_downgrade": "With --on: install this laptop's stack even though the server's is newer."})
@_friendly
@_names_checked
def deploy(c, on=None, study=None, project=None, allow_dirty=False, force=False, active_minutes=10, domain=None,
           revision=None, who=None, allow_downgrade=False):
    """Deploy your project as a study's next release: checks, build while the old one serves, backup,
    a maintenance page for the seconds of the switch, and the previous release back by itself on failure."""
    if on:
        remote.deploy(on, study=study, project_folder=project, allow_dirty=allow_dirty, force=force,
                      active_minutes=active_minutes, domain=domain, allow_downgrade=allow_downgrade)
    else:
        deploy_module.run(study=study, project_folder=project, force=force, active_minutes=active_minutes,
                          revision=revision, who=who, domain=domain)


@task(help={"on": ON_HELP, "study": STUDY_HELP})
@_friendly
@_names_checked
@_on_server
def releases(c, study=None, on=None):
    """List a study's releases: number, time, who, git revision, oTree version, outcome, downtime, changes."""
    releases_module.run(context.load(study, purpose="lists the releases of"))


@task(help={"on": ON_HELP, "study": STUDY_HELP, "to": "The release to go back to, e.g. v3 (default: the previous one)."})
@_friendly
@_names_checked
@_on_server
def rollback(c, to=None, study=None, on=None):
    """Start an earlier release's code again: invoke rollback [--to vN]. The data stays (columns added since are kept)."""
    rollback_module.run(study=study, version=to)


@task(positional=["action"], help={"on": ON_HELP, "study": STUDY_HELP, "action": "on or off"})
@_friendly
@_names_checked
@_on_server
def maintenance(c, action, study=None, on=None):
    """Show participants a maintenance page that reloads by itself (on), or serve them again (off). The admin stays reachable."""
    maintenance_module.run(context.load(study, purpose="switches maintenance of"), action)


@task(iterable=["set_", "unset"],
      help={"on": ON_HELP, "study": STUDY_HELP, "get": "Show this setting (a secret too: you asked for it by name).",
            "set_": "KEY=VALUE to set; give --set again for more, changed together.",
            "unset": "KEY to set back to its default; give --unset again for more.",
            "set_secret": "KEY to set to a value typed at a hidden prompt, or piped in (`... | invoke config "
                          "--set-secret KEY`): it then appears in no command line (`ps`) and no shell history. "
                          "With --on it is read here and sent over SSH's encrypted input."})
@_friendly
@_names_checked
def config(c, get=None, set_=None, unset=None, set_secret=None, study=None, on=None):
    """A study's settings, secrets masked: invoke config [--get KEY | --set KEY=VALUE ... | --set-secret KEY | --unset KEY ...]"""
    if on:
        code = config_module.run_on(on, get=get, set_pairs=set_ or [], unset=unset or [], set_secret=set_secret,
                                    study=study)
        if code:
            raise Exit(code=code)
        return
    config_module.run(context.load(study, purpose="shows or changes the settings of"), get=get, set_pairs=set_ or [],
                      unset=unset or [], set_secret=set_secret)


@task(help={"on": ON_HELP + " The report stays in that server's loadtests/ folder.", "study": STUDY_HELP,
            "config": "The session config to play (default: the project's first). Its apps need bots (tests.py).",
            "participants": "The most participants at once to try (default 160); steps of 5, 10, 20, ... up to it.",
            "duration": "Seconds per step (default 30).",
            "force": "Run even though real participants were active in the last 10 minutes (their pages slow down)."})
@_friendly
@_names_checked
@_on_server
def loadtest(c, study=None, config=None, participants=160, duration=30, force=False, on=None):
    """How many participants this server serves: plays the project's bots over HTTPS through nginx with Locust,
    more at once each step, until p95 passes 1 s or errors appear; report in loadtests/<time>/. Its sessions are deleted."""
    loadtest_module.run(study=study, config=config, participants=participants, duration=duration, force=force)


@task(positional=["action"],
      help={"action": "link, bonuses, report or blocklist", "on": ON_HELP, "study": STUDY_HELP,
            "room": "link: the room participants enter (the project's ROOMS).",
            "config": "link: check this session config's completionlink (default: the session in the room).",
            "session": "bonuses, report: the session's code (the admin's Sessions page).",
            "output": "bonuses, report, blocklist: the file to write (default: in exports/STUDY/, or with --on in "
                      "downloads/SERVER/ on this laptop); never overwritten."})
@_friendly
@_names_checked
def prolific(c, action, study=None, room=None, config=None, session=None, output=None, on=None):
    """Prolific from your own data: `link --room R` (the study URL, checked), `bonuses --session CODE` (the bulk
    bonus CSV), `report --session CODE` (who finished, who is stuck where), `blocklist` (everyone so far)."""
    if on:
        remote.prolific(on, action, study=study, room=room, config=config, session=session, output=output)
    else:
        prolific_module.run(action, study=study, room=room, config=config, session=session, output=output)


@task(help={"unit": "Only the pure-logic tests: seconds, no Docker engine and no Chromium."})
@_friendly
def test(c, unit=False):
    """Run the test suite against real containers: invoke test [--unit] [-- pytest options]"""
    code = testing.run(_after_double_dash(), unit=unit)
    if code:
        raise Exit(code=code)
