"""What `invoke prolific ...` needs from a study's oTree, printed as JSON on stdout.

Runs in the oTree container as a process of its own (docker compose exec, this file on stdin), as
otree_server/export_data.py does and for the same reasons: its own database connection, one
read-only snapshot, everything rolled back, so nothing a participant does meanwhile is touched.
The host (stack/prolific.py) decides what the figures mean; this file only reads them.

Usage, in /app:
  python - session CODE           one session's participants: label, progress, times, page times, bonus
  python - labels                 the label of every participant who started, in every real session
Exit 2 with one message on stderr for a mistake the user can fix (an unknown session).
"""
import datetime
import json
import os
import sys
from decimal import Decimal

USER_ERROR = 2


class UserError(Exception):
    """Bad input; the message says how to fix it."""


def utc_text(epoch):
    return None if epoch is None else datetime.datetime.fromtimestamp(
        epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def started_text(time_started_utc):
    """oTree stores str(datetime.utcnow()): '2026-12-01 10:11:12.123456'."""
    return time_started_utc[:19].replace(" ", "T") + "Z" if time_started_utc else None


def page_times(session_code):
    """Each participant's completed pages, from oTree's page-time log (the host made the server
    save what it held in memory first)."""
    import csv
    import io

    from otree import export

    buffer = io.StringIO()
    export.export_page_times(fp=buffer)
    buffer.seek(0)
    rows = {}
    for row in csv.DictReader(buffer):
        if row["session_code"] == session_code:
            rows.setdefault(row["participant_code"], []).append({
                "app": row["app_name"], "page": row["page_name"], "index": int(row["page_index"]),
                "completed": utc_text(int(row["epoch_time_completed"])),
                "timeout": row["timeout_happened"] == "1", "wait_page": row["is_wait_page"] == "1"})
    return rows


def session(code):
    from otree.database import dbq
    from otree.models import Participant, Session
    from otree.models_concrete import RoomToSession

    found = dbq(Session).filter_by(code=code).first()
    if found is None:
        recent = [c for (c,) in dbq(Session.code).filter_by(is_demo=False).order_by(Session.id.desc()).limit(10)]
        known = f"The newest are: {', '.join(recent)}." if recent else "There are no sessions yet."
        raise UserError(f"There is no session {code!r}. {known} Pass a code from the admin's Sessions page "
                        "(or from `invoke session create`) to --session.")
    room = RoomToSession.objects_filter(session=found).first()
    times = page_times(code)
    participants = []
    for participant in dbq(Participant).filter_by(session_id=found.id).order_by(Participant.id_in_session):
        participants.append({
            "code": participant.code, "id_in_session": participant.id_in_session,
            "label": participant.label, "visited": bool(participant.visited), "is_bot": bool(participant._is_bot),
            "index": participant._index_in_pages, "max_index": participant._max_page_index,
            "app": participant._current_app_name, "page": participant._current_page_name,
            "started": started_text(participant.time_started_utc),
            "on_page_since": utc_text(participant._last_page_timestamp),
            "last_request": utc_text(participant._last_request_timestamp),
            # Plain numbers: str() of oTree's currencies adds the unit ('130 points', '£1.30').
            "payoff": str(Decimal(participant.payoff)),
            # In the real-world currency, rounded as oTree rounds it (REAL_WORLD_CURRENCY_DECIMAL_PLACES).
            "bonus": str(Decimal(participant.payoff_in_real_world_currency())),
            "page_times": times.get(participant.code, []),
        })
    earlier = {}
    if not found.is_demo:
        query = (dbq(Participant.label, Session.code).join(Session, Participant.session_id == Session.id)
                 .filter(Session.id < found.id, Session.is_demo == False, Participant.visited == True,  # noqa: E712
                         Participant.label != None).order_by(Session.id))  # noqa: E711
        for label, session_code in query:
            earlier.setdefault(label, []).append(session_code)
    return {
        "session": {"code": found.code, "config": found.config.get("name"), "room": room.room_name if room else None,
                    "is_demo": bool(found.is_demo), "created": utc_text(found._created),
                    "currency": _currency()},
        "participants": participants,
        "earlier": earlier,
        "now": utc_text(datetime.datetime.now(datetime.timezone.utc).timestamp()),
    }


def _currency():
    from otree import settings
    return getattr(settings, "REAL_WORLD_CURRENCY_CODE", None)


def labels():
    from otree.database import dbq
    from otree.models import Participant, Session

    query = (dbq(Participant.label, Session.code, Participant.time_started_utc)
             .join(Session, Participant.session_id == Session.id)
             .filter(Session.is_demo == False, Participant.visited == True)  # noqa: E712
             .order_by(Session.id, Participant.id_in_session))
    return {"participants": [{"label": label, "session": code, "started": started_text(started)}
                             for label, code, started in query]}


def main(argv):
    if not argv or argv[0] not in ("session", "labels") or (argv[0] == "session") != (len(argv) == 2):
        raise UserError("Usage: python - session CODE | labels")
    # The JSON goes to the real stdout; anything oTree or the project prints goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    from otree.database import db, engine
    from otree.main import setup

    setup()
    # The same read-only snapshot as export_data.py's (each script is sent alone on stdin).
    db.new_session()
    connection = db._db
    try:
        if engine.dialect.name == "postgresql":
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        with connection.no_autoflush:  # reading participant.vars marks them changed; never write
            result = session(argv[1]) if argv[0] == "session" else labels()
    finally:
        db.rollback()
        db.close()
    out.write(json.dumps(result))
    out.close()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except UserError as error:
        print(error, file=sys.stderr)
        sys.exit(USER_ERROR)
