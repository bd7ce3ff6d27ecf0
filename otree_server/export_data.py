"""Export every data file the oTree admin offers, as one zip written to stdout.

`invoke export-data` runs this in the oTree container next to the server (docker compose exec,
this file on stdin), as a process of its own with its own database connection, on purpose: the
server's REST exports skip oTree's global lock yet share the server's single database connection,
so an export through the server can commit or roll back a participant's half-done request. Here,
oTree's own export functions run in one read snapshot that is rolled back at the end, so the
files agree with each other and nothing in the database changes.

Each CSV is byte for byte what the admin's download gives, under the name the admin's download
has. The zip also holds manifest.json: export time, sessions, participant counts, oTree version,
options, and the sha256 of every file.

Usage, in /app: python export_data.py [--session CODE] [--app NAME] > export.zip
Exit 2 with one message on stderr for a mistake the user can fix (unknown session or app).
"""
import argparse
import datetime
import hashlib
import io
import json
import os
import sys
import zipfile

MANIFEST = "manifest.json"
USER_ERROR = 2


class UserError(Exception):
    """Bad input; the message says how to fix it."""


# --- Pure helpers (no oTree imports, so the tests can check them on the host) -------------------

def admin_file_name(prefix, date, over_websocket):
    """The admin's Export page downloads the wide, per-app and custom exports over its websocket,
    named prefix_DATE.csv, and page times and chat over HTTP, named prefix-DATE.csv (oTree's
    channels/consumers.py and views/export.py). Same names here, so files match the admin's."""
    return f"{prefix}{'_' if over_websocket else '-'}{date}.csv"


def page_times_of_session(csv_text, session_code):
    """oTree's page-time export has no session filter: keep its header line and the lines of one
    session (session_code is the first column), each byte for byte."""
    lines = csv_text.splitlines(keepends=True)
    return "".join(lines[:1] + [line for line in lines[1:] if line.split(",", 1)[0] == session_code])


def build_manifest(exported_at, otree_version, options, sessions, files):
    """files: [(name, what, bytes)] in export order. Sessions: dicts with a 'participants' count."""
    return {
        "exported_at": exported_at,
        "otree_version": otree_version,
        "options": options,
        "sessions": sessions,
        "participants": sum(session["participants"] for session in sessions),
        "participants_started": sum(session["participants_started"] for session in sessions),
        "files": [{"name": name, "what": what, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                  for name, what, data in files],
    }


def utc_text(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_zip(files, manifest, date_time):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, _, data in files:
            archive.writestr(zipfile.ZipInfo(name, date_time), data, zipfile.ZIP_DEFLATED)
        archive.writestr(zipfile.ZipInfo(MANIFEST, date_time),
                         json.dumps(manifest, indent=2) + "\n", zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


# --- The export, inside the oTree container -----------------------------------------------------

def csv_bytes(write, *args, **kwargs):
    """Run one of oTree's export functions into a string, encoded as its HTTP response is."""
    buffer = io.StringIO()
    write(*args, fp=buffer, **kwargs)
    return buffer.getvalue().encode("utf-8")


def collect(session_code, app_name):
    """[(file name, what it is, bytes)] and the sessions it covers, as the admin would export them."""
    from otree import export, settings
    from otree.database import dbq
    from otree.models import Participant, Session

    if app_name and app_name not in settings.OTREE_APPS:
        raise UserError(f"There is no app {app_name!r} in this project. Its apps are: "
                        f"{', '.join(sorted(settings.OTREE_APPS))}. Pass one of them to --app.")
    if session_code:
        session = dbq(Session).filter_by(code=session_code).first()
        if session is None:
            recent = [code for (code,) in dbq(Session.code).order_by(Session.id.desc()).limit(10)]
            known = f"The newest are: {', '.join(recent)}." if recent else "There are no sessions yet."
            raise UserError(f"There is no session {session_code!r}. {known} Pass a code from the "
                            "admin's Sessions page to --session, or leave --session out to export all.")
        sessions = [session]
        apps = [app for app in session.config["app_sequence"] if app in settings.OTREE_APPS]
    else:
        sessions = dbq(Session).order_by(Session.id).all()
        apps = export.get_installed_apps_with_data()  # the apps the admin's Export page lists
    if app_name:
        apps = [app_name]

    date = datetime.date.today().isoformat()  # as oTree dates its downloads
    files = []
    if not app_name:
        files.append((admin_file_name("all_apps_wide", date, True), "all apps, wide: a row per participant",
                      csv_bytes(export.export_wide, session_code=session_code)))
    for app in apps:
        files.append((admin_file_name(app, date, True), f"app {app}: a row per player and round",
                      csv_bytes(export.export_app, app, session_code=session_code)))
        for function in sorted(export.get_custom_export_functions(app)):  # custom_export* in the app
            files.append((admin_file_name(f"{app}_{function}", date, True), f"app {app}: {function}",
                          csv_bytes(export.custom_export_app, app, session_code=session_code,
                                    function_name=function)))
    if not app_name:
        # This process's page-time buffer is empty; the host made the server flush its own first.
        page_times = csv_bytes(export.export_page_times)
        what = "page times: a row per page a participant completed"
        if session_code:
            page_times = page_times_of_session(page_times.decode("utf-8"), session_code).encode("utf-8")
            what += f" (rows of session {session_code} only)"
        files.append((admin_file_name("PageTimes", date, False), what, page_times))
        files.append((admin_file_name("ChatMessages", date, False), "chat messages",
                      csv_bytes(export.export_chat, session_code=session_code)))

    described = []
    for session in sessions:
        started = dbq(Participant).filter_by(session_id=session.id, visited=True).count()
        created = utc_text(datetime.datetime.fromtimestamp(session._created, datetime.timezone.utc)) \
            if session._created else None
        described.append(dict(code=session.code, config_name=session.config.get("name"),
                              label=session.label, is_demo=bool(session.is_demo), created_utc=created,
                              participants=session.num_participants, participants_started=started))
    return files, described


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", help="export only this session (its code)")
    parser.add_argument("--app", help="export only this app: its table and its custom exports")
    args = parser.parse_args(argv)

    # The zip goes to the real stdout; anything oTree or the project prints goes to stderr.
    zip_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

    from otree import __version__
    from otree.database import db, engine
    from otree.main import setup
    setup()  # what every oTree command runs first: settings, fields, models (as `otree create_session`)

    now = datetime.datetime.now(datetime.timezone.utc)
    db.new_session()
    session = db._db  # the SQLAlchemy session oTree's export functions query through
    try:
        if engine.dialect.name == "postgresql":
            # One snapshot for every file, however long the export takes while participants play.
            session.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        # Never write: reading participant.vars marks every participant changed, so a flush would
        # write back the values this export read over newer ones. Everything is rolled back.
        with session.no_autoflush:
            files, sessions = collect(args.session, args.app)
    finally:
        db.rollback()
        db.close()

    options = {"session": args.session, "app": args.app}
    manifest = build_manifest(utc_text(now), __version__, options, sessions, files)
    zip_out.write(make_zip(files, manifest, now.timetuple()[:6]))
    zip_out.close()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except UserError as error:
        print(error, file=sys.stderr)
        sys.exit(USER_ERROR)
