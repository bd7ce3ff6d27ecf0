"""Closed doors: every route oTree registers, HTTP and websocket, asked without credentials
through nginx under STUDY and DEMO; the admin address allow-list; unknown Host names; the login
rate limit; who may frame which page."""
import dataclasses
import json
import re
import socket
import ssl
import subprocess
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests
import websocket

from stack import proxy, settings
from stack.validate import admin_allow_problems, problems
from tests.conftest import TEST_STACK, start_stack, stop_stack
from tests.helpers import resolving_here, write_env
from tests.participants import join, play_together
from tests.test_https_proxy import login

# Read inside the running oTree container: the routes oTree itself registers for this project.
ROUTES_SCRIPT = """
import json, otree.main
otree.main.setup()
from otree import urls
from starlette.routing import WebSocketRoute
print(json.dumps([['ws' if isinstance(r, WebSocketRoute) else 'http', r.path] for r in urls.routes]))
"""

# Every route pattern oTree registers, by who may reach it without credentials. A route in
# neither table fails the test: a new oTree version's routes must be looked at before they ship.
PARTICIPANT = {
    ("http", "/p/{participant_code}/*"),  # the project's pages
    ("http", "/room/{room_name}"), ("http", "/join/{anonymous_code}"),
    ("http", "/InitializeParticipant/{code}"), ("http", "/MTurkStart/{code}"),
    ("http", "/OutOfRangeNotification/{code}"), ("http", "/browser_bot_start"),
    ("http", "/login"), ("http", "/static"), ("http", "/favicon.ico"),
    # Open in oTree but harmless: POST only, acts only under `otree devserver` (GET is 405); a
    # static "group by arrival time is inactive" page; logging out.
    ("http", "/SaveDB"), ("http", "/GBATInactive"), ("http", "/logout"),
    ("ws", "/wait_page"), ("ws", "/subsession_wait_page"), ("ws", "/group_by_arrival_time"),
    ("ws", "/auto_advance"), ("ws", "/wait_for_session_in_room"), ("ws", "/live"), ("ws", "/trial"),
    ("ws", "/chat"), ("ws", "/browser_bot_wait"),
    # oTree's browser-bot launcher; it only acts for a session created with browser bots.
    ("ws", "/browser_bots_client/{session_code}"),
}
DEMO_PAGES = {
    ("http", "/"), ("http", "/demo"), ("http", "/demo/{config_name}"), ("ws", "/create_demo_session"),
    ("http", "/SessionSplitScreen/{code}"), ("http", "/SessionDemoGridView/{code}"),
    ("http", "/SessionDescription/{code}"), ("http", "/SessionStartLinks/{code}"),
}
ADMIN = {
    ("http", "/server_check"),
    ("http", "/sessions"), ("http", "/create_session"), ("http", "/ToggleArchivedSessions"),
    ("http", "/SessionEditProperties/{code}"), ("http", "/rooms"), ("http", "/CloseRoom/{room_name}"),
    ("http", "/room_with_session/{room_name}"), ("http", "/room_without_session/{room_name}"),
    ("http", "/create_browser_bots_session"), ("http", "/close_browser_bots_session"),
    ("http", "/MTurkCreateHIT/{code}"), ("http", "/MTurkExpireHIT/{code}"), ("http", "/MTurkSessionPayments/{code}"),
    ("http", "/PayMTurk/{code}"), ("http", "/RejectMTurk/{code}"),
    # oTree leaves these open under DEMO; nginx closes them (study-server.conf.template, auth_request).
    ("http", "/SessionData/{code}"), ("http", "/session_data/{code}"), ("http", "/SessionMonitor/{code}"),
    ("http", "/presence_icons/{code}"), ("http", "/SessionPayments/{code}"), ("http", "/AdminReport/{code}"),
    ("http", "/AdvanceSession/{code}"), ("ws", "/session_monitor/{code}"),
    # Exports.
    ("http", "/ExportIndex"), ("http", "/ExportWide"), ("http", "/ExportChat"), ("http", "/ExportPageTimes"),
    ("http", "/api/export_wide"), ("http", "/api/export_app"), ("http", "/api/export_app_custom"),
    ("http", "/api/export_chat"), ("http", "/api/export_page_times"), ("ws", "/export"),
    # The REST API.
    ("http", "/api/otree_version"), ("http", "/api/apps"), ("http", "/api/rooms"), ("http", "/api/session_configs"),
    ("http", "/api/sessions"), ("http", "/api/sessions/{code}"), ("http", "/api/get_session/{code}"),
    ("http", "/api/session_vars/{code}"), ("http", "/api/participant_vars/{code}"),
    ("http", "/api/participant_vars"),
    # Websockets that create, delete or watch sessions.
    ("ws", "/create_session"), ("ws", "/delete_sessions"), ("ws", "/room_without_session/{room_name}"),
}


def otree_routes(stack):
    output = stack.compose("exec", "-T", "otree", "python", "-c", ROUTES_SCRIPT).stdout
    routes = set()
    for kind, path in json.loads(output.strip().splitlines()[-1]):
        routes.add((kind, "/p/{participant_code}/*" if path.startswith("/p/{participant_code}/") else path))
    return routes


def real_values(stack):
    """A real session, participant and room, so that no door is closed only by a bad parameter."""
    session = stack.create_session(3)
    info = stack.rest("POST", f"/api/get_session/{session['code']}")
    participant = info["participants"][0]["code"]
    return {"code": session["code"], "session_code": session["code"], "participant_code": participant,
            "anonymous_code": session["session_wide_url"].rstrip("/").split("/")[-1],
            "room_name": "prolific", "config_name": "prolific_study"}


# Websockets read their parameters from the query string; without them oTree answers 500.
WS_QUERY = {
    "/wait_page": "session_pk=1&page_index=1&group_id=1&participant_id=1",
    "/subsession_wait_page": "session_pk=1&page_index=1&participant_id=1",
    "/group_by_arrival_time": "app_name=public_goods&session_pk=1&participant_id=1&page_index=1&player_id=1",
    "/auto_advance": "participant_code={participant_code}&page_index=1",
    "/wait_for_session_in_room": "room_name=prolific&participant_label=P1&tab_unique_id=t1",
}


def concrete(kind, path, values, participant_page):
    if path == "/p/{participant_code}/*":
        return participant_page
    if path == "/static":
        return "/static/favicon.ico"
    if kind == "ws" and path in WS_QUERY:
        path += "?" + WS_QUERY[path]
    if path.split("/")[1] in ("InitializeParticipant", "OutOfRangeNotification"):
        path = path.replace("{code}", "{participant_code}")  # a participant's code there
    if path == "/MTurkStart/{code}":
        path += "?assignmentId=A1&workerId=W1"
    return re.sub(r"\{(\w+)\}", lambda match: values[match.group(1)], path)


def anonymous_browser(stack):
    """A visitor without a password, with oTree's CSRF cookie and token from the login page, so a
    POST is refused for want of a login and not only for want of a token."""
    http = requests.Session()
    http.verify = False
    http.trust_env = False
    page = http.get(stack.https + "/login", timeout=30)
    token = re.search(r'name="csrftoken" value="([^"]+)"', page.text)
    return http, token.group(1) if token else ""


def http_refused(response):
    """Refused: 401/403, or redirected (in one or more steps) to the login page."""
    for hop in [*response.history, response]:
        if hop.status_code in (401, 403):
            return True
    if response.status_code in (302, 303):
        return urlsplit(response.headers["Location"]).path == "/login"
    return urlsplit(response.url).path == "/login" and bool(response.history)


def ws_connect(stack, path, cookie=None):
    """(handshake status, close code or None if the server kept it open for 3 s)."""
    url = "wss://" + stack.https.split("://", 1)[1] + path
    try:
        conn = websocket.create_connection(url, timeout=10, sslopt={"cert_reqs": ssl.CERT_NONE},
                                           cookie=cookie, suppress_origin=True, redirect_limit=0)
    except websocket.WebSocketBadStatusException as error:
        return error.status_code, None
    except websocket.WebSocketException as error:  # a redirect (nginx's, to /login), not followed
        assert "Redirect limit exhausted" in str(error)
        return 302, None
    status = conn.getstatus()
    conn.settimeout(3)
    try:
        while True:
            opcode, frame = conn.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return status, int.from_bytes(frame.data[:2], "big") if frame.data else 1005
    except websocket.WebSocketTimeoutException:
        return status, None
    except websocket.WebSocketConnectionClosedException:
        return status, 1006
    finally:
        conn.close()


def crawl(stack, public):
    """Every route without credentials; returns the doors that are open but should not be."""
    routes = otree_routes(stack)
    unclassified = routes - PARTICIPANT - DEMO_PAGES - ADMIN
    assert not unclassified, f"oTree routes not classified in tests/test_closed_doors.py: {sorted(unclassified)}"
    values = real_values(stack)
    first_page = requests.get(f"{stack.https}/InitializeParticipant/{values['participant_code']}",
                              verify=False, timeout=30).url
    participant_page = urlsplit(first_page).path
    assert participant_page.startswith("/p/"), first_page
    http, token = anonymous_browser(stack)
    wrong = []
    for kind, pattern in sorted(routes):
        path = concrete(kind, pattern, values, participant_page)
        may_answer = (kind, pattern) in public
        if kind == "http":
            if may_answer:
                get = http.get(stack.https + path, allow_redirects=False, timeout=30)
                if http_refused(get) or get.status_code in (401, 403, 404):
                    wrong.append(f"GET {path} is refused ({get.status_code}) but should answer")
                continue
            get = http.get(stack.https + path, timeout=30)
            # oTree's REST views read a JSON body (a form body is a 500 before the key is checked).
            rest = pattern.startswith("/api/") or pattern.endswith("_browser_bots_session")
            body = {"json": {}} if rest else {"data": {"csrftoken": token}}
            post = http.post(stack.https + path, allow_redirects=False, timeout=30, **body)
            for method, response in (("GET", get), ("POST", post)):
                if not (http_refused(response) or response.status_code == 405):
                    wrong.append(f"{method} {path} answers {response.status_code} without a login")
        else:
            status, closed = ws_connect(stack, path)
            if may_answer:
                # Reached oTree: open, or 500 from oTree for signed parameters only a page has (/chat).
                if not (status == 101 and closed != 1008 or status == 500):
                    wrong.append(f"ws {path} is refused ({status}, {closed}) but should answer")
            elif status == 101 and closed != 1008:
                wrong.append(f"ws {path} stays open ({closed}) without a login")
    return wrong


def test_every_otree_route_is_closed_without_a_login_under_study(stack):
    assert crawl(stack, PARTICIPANT) == []


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory):
    demo = start_stack(str(tmp_path_factory.mktemp("demo")), f"{TEST_STACK}-demo", 2, OTREE_AUTH_LEVEL="DEMO")
    yield demo
    stop_stack(demo)


def test_login_rate_limit_starts_at_the_burst_while_participants_play_on(demo_stack):
    """LOGIN_RATE_BURST+1 attempts pass at once, then 429s (plus what the rate refills meanwhile);
    three participants behind the same address play through at the same time, all 200."""
    rate = int(demo_stack.values["LOGIN_RATE_LIMIT"].split("r/")[0]) / 60  # the tests use r/m
    burst = int(demo_stack.values["LOGIN_RATE_BURST"])
    session = demo_stack.create_session(3)
    statuses = []
    players = join(session, 3, "RL", log=statuses)
    time.sleep((burst + 1) / rate)  # an empty bucket, whatever came before
    game = threading.Thread(target=play_together, args=(players,))
    game.start()
    started, codes, elapsed = time.time(), [], None
    # Until the first 429 and on while the participants play: they share the address.
    while 429 not in codes or game.is_alive():
        codes.append(requests.get(demo_stack.https + "/login", verify=False, timeout=30).status_code)
        if codes[-1] == 429 and elapsed is None:
            elapsed = time.time() - started
        if 429 in codes and not game.is_alive():
            break
        assert len(codes) < 2000
    passed = codes.index(429)
    game.join()
    assert set(codes[:passed]) == {200} and 429 in codes[passed:]
    print(f"{passed} logins passed in {elapsed:.1f} s before the first 429 (burst {burst}, {rate:.1f}/s); "
          f"{len(codes)} login attempts, {len(statuses)} participant requests")
    assert burst + 1 <= passed <= burst + 1 + int(elapsed * rate) + 1, (passed, elapsed)
    assert len(players) == 3 and all(player.page_name == "Payment" for player in players)
    assert {status for _, status in statuses} == {200} and len(statuses) >= 3 * 7, statuses


def test_every_otree_route_is_closed_without_a_login_under_demo(demo_stack):
    assert crawl(demo_stack, PARTICIPANT | DEMO_PAGES) == []


def otree_status_inside(stack, path):
    """What oTree itself answers, asked inside its container, without nginx."""
    script = (f"import urllib.request as u\ntry: print(u.urlopen('http://127.0.0.1:8000{path}').status)\n"
              "except u.HTTPError as e: print(e.code)")
    return int(stack.compose("exec", "-T", "otree", "python", "-c", script).stdout.split()[-1])


def test_session_data_and_monitor_still_work_for_the_admin_under_demo(demo_stack):
    code = demo_stack.create_session(3)["code"]
    # The door nginx closes: oTree alone shows a session's data to anybody under DEMO.
    assert otree_status_inside(demo_stack, f"/SessionData/{code}") == 200
    for path in (f"/SessionData/{code}", f"/SessionMonitor/{code}", f"/session_data/{code}"):
        response = requests.get(demo_stack.https + path, verify=False, timeout=30, allow_redirects=False)
        assert response.status_code == 302 and response.headers["Location"] == "/login", path
    admin, response = login(demo_stack, demo_stack.values["OTREE_ADMIN_PASSWORD"])
    assert response.status_code == 302
    for path in (f"/SessionData/{code}", f"/SessionMonitor/{code}", f"/SessionPayments/{code}"):
        page = admin.get(demo_stack.https + path, timeout=30, allow_redirects=False)
        assert page.status_code == 200 and code in page.text, path
    cookie = "; ".join(f"{name}={value}" for name, value in admin.cookies.items())
    assert ws_connect(demo_stack, f"/session_monitor/{code}", cookie=cookie) == (101, None)
    assert ws_connect(demo_stack, f"/session_monitor/{code}")[0] != 101


def test_admin_allow_list_refuses_other_addresses_but_not_participants(demo_stack):
    session = demo_stack.create_session(3)
    values = dict(demo_stack.values, ADMIN_ALLOW_IPS="192.0.2.1, 198.51.100.0/24")
    write_env(demo_stack.env_path, values)
    demo_stack.invoke("up")
    try:
        for path in ("/login", "/sessions", "/api/otree_version", "/ExportWide", f"/SessionData/{session['code']}"):
            response = requests.get(demo_stack.https + path, verify=False, timeout=30, allow_redirects=False,
                                    headers={"otree-rest-key": demo_stack.values["OTREE_REST_KEY"]})
            assert response.status_code == 403, path
        assert ws_connect(demo_stack, "/export")[0] == 403
        players = join(session, 3, "AL")  # participant links still work, to the end
        play_together(players)
        assert requests.get(demo_stack.https + "/demo", verify=False, timeout=30).status_code == 200
    finally:
        write_env(demo_stack.env_path, dict(values, ADMIN_ALLOW_IPS=""))
        demo_stack.invoke("up")


def test_admin_allow_list_is_validated():
    assert admin_allow_problems("") == admin_allow_problems(" , ") == []
    assert admin_allow_problems("203.0.113.7, 198.51.100.0/24,2001:db8::/32") == []
    (bad,) = admin_allow_problems("203.0.113.7,lab-pc")
    assert "'lab-pc' is not an IP address or network" in bad
    (host_bits,) = admin_allow_problems("10.1.2.3/8")
    assert "(the network is 10.0.0.0/8)" in host_bits
    assert any("ADMIN_ALLOW_IPS entry '1.2.3.4 1; default'" in text
               for text in problems({"ADMIN_ALLOW_IPS": "1.2.3.4 1; default"}))
    # Unset, oTree makes every admin page public: refused before anything starts.
    assert any(text.startswith("OTREE_AUTH_LEVEL is ''") for text in problems({"OTREE_PRODUCTION": "1"}))


def test_unknown_host_names_get_no_answer(stack):
    for base in (stack.http, stack.https):
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(base + "/room/prolific", headers={"Host": "evil.example"}, verify=False, timeout=10)
        # IP addresses and localhost are this stack's names while DOMAIN is empty.
        for host in ("127.0.0.1", "localhost", "[::1]"):
            port = urlsplit(base).port
            response = requests.get(base + "/room/prolific", headers={"Host": f"{host}:{port}"}, verify=False,
                                    timeout=10, allow_redirects=False)
            assert response.status_code in (200, 301), (base, host)


def test_unknown_host_names_get_no_answer_with_a_domain(stack, tmp_path):
    """With a study's DOMAIN set only that name is answered, even by IP address: the stack's nginx
    image on its own, with the configuration invoke renders for that study (static files need no oTree)."""
    loaded = settings.load(stack.env_path)
    # Published on the study's port: nginx refuses a Host that names another.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        https_port = probe.getsockname()[1]
    server = dataclasses.replace(loaded.server, values={**loaded.server.values, "HTTPS_PORT": str(https_port)})
    study = dataclasses.replace(loaded.studies[0], server=server, values={**loaded.studies[0].values,
                                                                          "DOMAIN": "study.example.edu", "HTTPS_PORT": ""})
    edge, static = tmp_path / "edge", tmp_path / "static"
    # No oTree behind it: its address is never dialled.
    for name, content in proxy.render(settings.Settings(server, (study,)), {study.name: "127.0.0.1"}).items():
        (edge / name).parent.mkdir(parents=True, exist_ok=True)
        (edge / name).write_text(content)
    (static / study.name).mkdir(parents=True)
    (static / study.name / "favicon.ico").write_bytes(b"icon")
    image = f"otree-stack/nginx:{loaded.server.name}"
    container = subprocess.run(["docker", "run", "-d", "--rm", "-v", f"{edge}:/etc/nginx/edge:ro",
                                "-v", f"{static}:/srv/static:ro", "-p", f"127.0.0.1:{https_port}:8443",
                                "-p", "127.0.0.1::8080",
                                image], capture_output=True, text=True, check=True).stdout.strip()
    try:
        def port(inside):
            return subprocess.run(["docker", "port", container, inside], capture_output=True, text=True,
                                  check=True).stdout.split(":")[-1].strip()

        def url(host, scheme="https", path="/static/favicon.ico"):
            return f"{scheme}://{host}:{port('8443' if scheme == 'https' else '8080')}{path}"
        with resolving_here("study.example.edu", "evil.example", "study.example.edu.evil.example"):
            deadline = time.time() + 30
            while True:
                try:
                    ok = requests.get(url("study.example.edu"), verify=False, timeout=5)
                    break
                except requests.exceptions.ConnectionError:
                    assert time.time() < deadline
                    time.sleep(0.5)
            assert ok.status_code == 200 and ok.content == b"icon"
            redirect = requests.get(url("study.example.edu", "http", "/room/prolific"), timeout=5,
                                    allow_redirects=False)
            assert redirect.status_code == 301
            for host in ("127.0.0.1", "evil.example", "study.example.edu.evil.example"):
                for address in (url(host), url(host, "http", "/room/prolific")):
                    with pytest.raises(requests.exceptions.ConnectionError):
                        requests.get(address, verify=False, timeout=5)
            # The right name in TLS but another in Host: no answer either.
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.get(url("study.example.edu"), headers={"Host": "evil.example"}, verify=False, timeout=5)
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def test_participant_pages_may_be_framed_by_mturk_and_admin_pages_by_nobody(stack):
    mturk = "frame-ancestors 'self' https://worker.mturk.com https://workersandbox.mturk.com"
    room = requests.get(stack.https + "/room/prolific", verify=False, timeout=30)
    assert room.status_code == 200 and room.headers["Content-Security-Policy"] == mturk
    code = stack.create_session(3)["code"]
    info = stack.rest("POST", f"/api/get_session/{code}")
    page = requests.get(f"{stack.https}/InitializeParticipant/{info['participants'][0]['code']}",
                        verify=False, timeout=30)
    assert "/p/" in page.url and page.headers["Content-Security-Policy"] == mturk
    admin, _ = login(stack, stack.values["OTREE_ADMIN_PASSWORD"])
    for path in ("/login", "/sessions", f"/SessionMonitor/{code}", "/ExportIndex"):
        response = admin.get(stack.https + path, timeout=30)
        assert response.status_code == 200, path
        assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'", path
