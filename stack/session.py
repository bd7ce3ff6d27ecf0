"""`invoke session create`: a room's session, made from the command line with spare places for
Prolific's returned and timed-out participants (each frees a place for someone new, so a session
sized exactly to the places runs out), and the study URL to paste into Prolific.

The session is created by the study's running oTree, through its REST API inside the container
(otree_server/room_session.py), as the admin's "Create session" for a room does; the checks
before it (room, config, places, a session already in the room) create nothing when they fail."""
import datetime
import decimal
import json
import math
import os

from . import context, database, lock
from .console import StackError, info, step, warn
from .envfile import REPO_ROOT

SCRIPT = os.path.join(REPO_ROOT, "otree_server", "room_session.py")
DEFAULT_SPARE = 1.5
# Prolific fills these in per participant; nginx turns PROLIFIC_PID into oTree's participant_label.
PROLIFIC_PARAMETERS = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"


def places_number(value):
    """--places as a whole number above 0."""
    text = str(value).strip()
    if not text.isdigit() or int(text) == 0:
        raise StackError(f"--places must be a whole number above 0 (the places of your Prolific study), not "
                         f"{value!r}. Nothing was created.")
    return int(text)


def spare_factor(value):
    """--spare as an exact decimal, 1 or more (1 means no spare places)."""
    try:
        factor = decimal.Decimal(str(value).strip())
    except decimal.InvalidOperation:
        factor = None
    if factor is None or not factor.is_finite() or factor < 1:
        raise StackError(f"--spare must be a number of 1 or more (1.5: half as many places again for returned and "
                         f"timed-out participants; 1: none), not {value!r}. Nothing was created.")
    return factor


def session_size(places, spare, multiple):
    """Participants to create: places times spare, rounded up, then up to whole groups (the config's
    group sizes' least common multiple). Decimal arithmetic, so 10 x 1.1 is 11, not 12."""
    wanted = math.ceil(decimal.Decimal(places) * decimal.Decimal(str(spare)))
    return -(-wanted // multiple) * multiple


def size_reason(places, spare, multiple, size):
    """How the size came about, for the researcher: rounding named only when there was some."""
    exact = decimal.Decimal(places) * spare
    if size == exact:
        return f"{places} x {spare}"
    whole = math.ceil(exact)
    groups = f" to whole groups of {multiple}" if size != whole else ""
    return f"{places} x {spare} = {exact.normalize():f}, rounded up{groups}"


def study_url(address, room):
    """The study URL for Prolific, on the study's address (ending in /)."""
    return f"{address}room/{room}?{PROLIFIC_PARAMETERS}"


def check_request(facts, room, config):
    """The room and config, checked against the project's; the group multiple of the config."""
    rooms, configs = facts["rooms"], facts["configs"]
    if room not in rooms:
        listed = (f"The project's rooms: {', '.join(rooms)}." if rooms else
                  "The project has no rooms: add one to ROOMS in its settings.py (e.g. dict(name='prolific', "
                  "display_name='Prolific study')) and deploy it.")
        raise StackError(f"There is no room {room!r}. {listed} Nothing was created.")
    if config not in configs:
        raise StackError(f"There is no session config {config!r}. The project's: {', '.join(configs) or 'none'}. "
                         "Nothing was created.")
    return configs[config]


def refuse_occupied(room, session, started):
    """A room holds one session: creating another would silently replace it, stranding whoever is in it."""
    created = (datetime.datetime.fromtimestamp(session["created_at"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
               if session.get("created_at") else "an unknown time")
    what = (f"session {session['code']} ('{session.get('config_name', '?')}', {session.get('num_participants', '?')} "
            f"places, created {created}; {started} participant(s) entered it)")
    raise StackError(f"The room '{room}' already has a {what}. A new session would replace it, and anyone still in "
                     "it would be stranded. Nothing was created. When that session is over, close the room in "
                     f"oTree's admin (Rooms > {room} > \"Close this room\"; the session and its data stay), then run "
                     "this again; or create the new session in another room.")


def room_facts(ctx):
    """The project's rooms with their sessions, and its configs, from the study's running oTree
    (otree_server/room_session.py facts)."""
    return _in_container(ctx, "facts")


def _in_container(ctx, *args):
    with open(SCRIPT, encoding="utf-8") as script:
        result = ctx.compose.run("exec", "-T", "otree", "python", "-", *args, capture=True, check=False, stdin=script)
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise StackError(f"The oTree of the study '{ctx.study.name}' did not answer (its messages are above). "
                         "Check that it is healthy (`invoke status`, `invoke logs --service otree`). Nothing was "
                         "created.") from None


def _participants_started(ctx, code):
    rows = database.query(ctx, "SELECT count(*) FROM otree_participant p JOIN otree_session s ON s.id = p.session_id "
                               f"WHERE s.code = '{code}' AND p.visited")
    return rows[0] if rows else "?"


def run_create(study=None, room=None, config=None, places=None, spare=None):
    if not room or not config or places is None:
        raise StackError("Usage: invoke session create --room ROOM --config CONFIG --places N [--spare 1.5]")
    places = places_number(places)
    spare = spare_factor(DEFAULT_SPARE if spare is None else spare)
    ctx = context.load(study, purpose="creates a session in")
    # Not while a deploy or restore restarts oTree under it.
    with lock.held(ctx.server, f"session create in {ctx.study.name}"):
        return _create(ctx, room, config, places, spare)


def _create(ctx, room, config, places, spare):
    if not ctx.compose.running("otree"):
        raise StackError(f"The study '{ctx.study.name}' is not running. Start it with `invoke up --study "
                         f"{ctx.study.name}`, then run this again. Nothing was created.")
    facts = room_facts(ctx)
    multiple = check_request(facts, room, config)
    occupant = facts["rooms"][room]["session"]
    if occupant:
        refuse_occupied(room, occupant, _participants_started(ctx, occupant["code"]))
    size = session_size(places, spare, multiple)
    step(f"Creating a session of '{config}' in the room '{room}' of the study '{ctx.study.name}'")
    created = _in_container(ctx, "create", room, config, str(size))
    if "code" not in created:
        raise StackError(f"oTree refused to create the session, so nothing was created: {created.get('error', created)}")
    info(f"Session {created['code']}: {size} participants for {places} Prolific places "
         f"({size_reason(places, spare, multiple, size)}).")
    if facts["rooms"][room]["labels_file"]:
        warn(f"The room '{room}' has a participant_label_file: oTree admits only the labels listed there, and a "
             "Prolific ID is the label. Remove participant_label_file from the room, or list the IDs in it.")
    info("Study URL to paste into Prolific (its study link; record Prolific IDs by URL parameters):")
    url = study_url(ctx.study.url(), room)
    info(url)
    return {"code": created["code"], "size": size, "url": url}
