"""Create a session in oTree's browser-bot mode for `invoke loadtest`, as oTree's own browser-bot
launcher does (POST /create_browser_bots_session), and print its code and its participants' codes
as JSON. Asked of the server in this container, before the load starts, so that creating the
session (which holds oTree's lock) is not part of what is measured.
Usage: python - CONFIG PARTICIPANTS"""
import json
import os
import sys
import urllib.request

HEADERS = {"otree-rest-key": os.environ.get("OTREE_REST_KEY", ""), "content-type": "application/json"}


def ask(path, body=None):
    request = urllib.request.Request("http://127.0.0.1:8000" + path, headers=HEADERS,
                                     data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=600) as response:
        return response.read().decode()


config, size = sys.argv[1], int(sys.argv[2])
code = ask("/create_browser_bots_session", dict(session_config_name=config, num_participants=size,
                                                case_number=None)).strip().strip('"')
print(json.dumps({"code": code, "participants": [p["code"] for p in json.loads(ask(f"/api/sessions/{code}"))["participants"]]}))
