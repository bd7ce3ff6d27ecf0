"""For `invoke session create` (stack/session.py), in the study's oTree container. Sent on stdin, so a
container built before this script existed can run it too.
  python - facts                    the project's rooms (with the session each has) and session
                                    configs (with the multiple their participant count must be, and
                                    their completion links), for session create and prolific link
  python - create ROOM CONFIG SIZE  a session of SIZE in ROOM, through the running server's REST API
Each prints one JSON line."""
import json
import os
import sys
import urllib.error
import urllib.request

HEADERS = {"otree-rest-key": os.environ.get("OTREE_REST_KEY", ""), "content-type": "application/json"}


def ask(path, body=None):
    """The running server's answer: it holds the rooms' sessions and tells room waiters to go."""
    request = urllib.request.Request("http://127.0.0.1:8000" + path, headers=HEADERS,
                                     data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read().decode())


def facts():
    from otree.main import setup
    setup()
    from otree.room import ROOM_DICT
    from otree.session import SESSION_CONFIGS_DICT
    sessions = {session["code"]: session for session in ask("/api/sessions")}
    rooms = {}
    for room in ask("/api/rooms"):
        code = room["session_code"]
        session = None
        if code:
            # The session's own config, which may differ from settings.py's (the admin's fields).
            session = dict(sessions.get(code, {"code": code}),
                           completionlink=ask(f"/api/sessions/{code}")["config"].get("completionlink"))
        rooms[room["name"]] = {"labels_file": ROOM_DICT[room["name"]].has_participant_labels, "session": session}
    return {"rooms": rooms, "configs": {name: config.get_lcm() for name, config in SESSION_CONFIGS_DICT.items()},
            "completionlinks": {name: config.get("completionlink") for name, config in SESSION_CONFIGS_DICT.items()}}


def create(room, config, size):
    try:
        return ask("/api/sessions", dict(session_config_name=config, num_participants=int(size), room_name=room))
    except urllib.error.HTTPError as error:  # oTree's reason, e.g. a size its groups do not divide
        return {"error": error.read().decode(errors="replace")[-2000:]}


if __name__ == "__main__":
    print(json.dumps(facts() if sys.argv[1] == "facts" else create(*sys.argv[2:5])))
