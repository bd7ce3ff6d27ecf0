"""The proxy's doors, on the shared test stack: a participant's request of any method while the
study is in maintenance or its oTree is down gets the maintenance page (in Chromium too, which
reloads it by itself); crafted Prolific, room and join links never redirect off the study's host;
a crafted Host header gets 400 and never reaches oTree; one study's image cannot change another
study's static files."""
import dataclasses
import hashlib
import http.client
import json
import socket
import ssl
import subprocess
import threading
import time
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from stack import proxy, settings
from tests.participants import FORMS, Participant, play_together
from tests.test_https_proxy import login
from tests.test_study_in_browser import (browser, click_next, consent_and_fill_demographics, contribute,  # noqa: F401
                                         finish, participant)

pytestmark = pytest.mark.docker

MAINTENANCE_TITLE = "One moment, please"
LAST_ANSWER_TEXT = "enter your last answer again"
PID = "5f8a3c2e9b1d4e6f7a8b9c0d"  # a well-formed Prolific ID


def http_client():
    http = requests.Session()
    http.verify = False
    http.trust_env = False
    return http


def assert_maintenance_page(response, method="GET"):
    """503 with Retry-After, never cached, and (but for HEAD) the page that reloads by itself and
    says the last answer may need entering again."""
    assert response.status_code == 503, (method, response.status_code, response.text[:300])
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Type"].startswith("text/html")
    if method != "HEAD":
        assert MAINTENANCE_TITLE in response.text and LAST_ANSWER_TEXT in response.text
        assert "location.replace(window.location.href)" in response.text  # reloads by itself, by GET
        assert 'http-equiv="refresh"' in response.text  # also without JavaScript


def at_demographics(stack, label):
    """A new session, and a participant of it on a page with a form (Demographics)."""
    session = stack.create_session(3)
    player = Participant(f"{session['session_wide_url']}?participant_label={label}")
    player.play_until("Demographics")
    return session, player


def every_method(player, session):
    """(method, URL, form) a participant's browser may send: their page's form, a reload, a HEAD
    (link previews, some proxies), and their entry links."""
    return [("POST", player.url, FORMS["Demographics"]), ("GET", player.url, None), ("HEAD", player.url, None),
            ("GET", f"{session['session_wide_url']}?participant_label=other", None),
            ("POST", session["session_wide_url"], {"x": "1"})]


def test_a_form_sent_or_a_head_during_maintenance_gets_the_maintenance_page_and_the_admin_stays(stack):
    session, player = at_demographics(stack, "maintenance-post")
    page = player.url
    stack.invoke("maintenance", "on")
    try:
        for method, url, form in every_method(player, session):
            response = player.http.request(method, url, data=form, allow_redirects=False, timeout=30)
            assert_maintenance_page(response, method)
        assert http_client().get(f"{stack.https}/room/prolific", timeout=30).status_code == 503
        admin, logged_in = login(stack, stack.values["OTREE_ADMIN_PASSWORD"])  # the admin's POST passes
        assert logged_in.status_code == 302
        assert admin.get(f"{stack.https}/sessions", timeout=30).status_code == 200
    finally:
        stack.invoke("maintenance", "off")
    # The page the maintenance page reloads is the participant's form again; sent now, it counts.
    player.play_until("Instructions")
    assert player.completed[-1][2] == "Demographics" and player.url != page


def test_while_otree_is_killed_every_method_gets_the_maintenance_page_until_it_is_back(stack):
    session, player = at_demographics(stack, "killed")
    [container] = stack.compose("ps", "-q", "otree").stdout.split()
    subprocess.run(["docker", "kill", container], check=True, capture_output=True)
    try:
        for method, url, form in every_method(player, session):
            response = player.http.request(method, url, data=form, allow_redirects=False, timeout=60)
            assert_maintenance_page(response, method)
        subprocess.run(["docker", "start", container], check=True, capture_output=True)
        # Sent again and again while it starts: the maintenance page, until the form is taken.
        answers, deadline = [], time.time() + 180
        while True:
            response = player.http.post(player.url, data=FORMS["Demographics"], allow_redirects=False, timeout=60)
            answers.append(response.status_code)
            if response.status_code != 503:
                break
            assert_maintenance_page(response, "POST")
            assert time.time() < deadline, "oTree did not come back"
            time.sleep(0.5)
        assert response.status_code == 302 and "/Instructions/" in response.headers["Location"], answers
    finally:
        subprocess.run(["docker", "start", container], check=True, capture_output=True)
        wait_until_answering(stack)
    assert stack.sql("SELECT d.age FROM demographics_player d JOIN otree_participant p ON p.id = d.participant_id "
                     "WHERE p.label = 'killed'") == [["30"]]


def wait_until_answering(stack):
    """Until the study's oTree answers again (the tests after this one need it)."""
    deadline = time.time() + 180
    while http_client().get(f"{stack.https}/room/prolific", timeout=60).status_code != 200:
        assert time.time() < deadline, "oTree did not come back"
        time.sleep(0.5)


def test_in_chromium_a_form_sent_during_maintenance_shows_the_page_which_reloads_by_itself_and_they_finish(
        stack, browser):  # noqa: F811
    session = stack.create_session(3)
    page = participant(browser)
    page.goto(f"{session['session_wide_url']}?participant_label=chromium")
    consent_and_fill_demographics(page)
    stack.invoke("maintenance", "on")
    try:
        with page.expect_navigation() as sent:
            click_next(page)
        assert sent.value.status == 503 and sent.value.request.method == "POST"
        assert MAINTENANCE_TITLE in page.content() and LAST_ANSWER_TEXT in page.content()
        # It reloads by itself (by GET) while the study is in maintenance.
        reloaded = page.wait_for_event("response", lambda response: response.request.is_navigation_request()
                                       and response.request.method == "GET", timeout=30_000)
        assert reloaded.status == 503 and reloaded.url == page.url
    finally:
        stack.invoke("maintenance", "off")
    # Nobody touches the page: it reloads by itself into the participant's form, to be filled again.
    page.wait_for_selector("input[name=age]", timeout=30_000)
    assert "/demographics/Demographics/" in page.url
    page.fill("input[name=age]", "31")
    page.get_by_label("Female").check()
    click_next(page)
    page.wait_for_url("**/public_goods/Instructions/**")
    click_next(page)
    others = [Participant(f"{session['session_wide_url']}?participant_label=with-chromium{number}")
              for number in range(2)]
    errors = []
    playing = threading.Thread(target=lambda: errors.extend(play(others)))
    playing.start()
    contribute(page, 10)
    finish(page)
    playing.join()
    assert errors == [] and [player.page_name for player in others] == ["Payment", "Payment"]
    assert stack.sql("SELECT d.age FROM demographics_player d JOIN otree_participant p ON p.id = d.participant_id "
                     "WHERE p.label = 'chromium'") == [["31"]]


def play(players):
    """play_together's failures, for a thread."""
    try:
        play_together(players)
    except AssertionError as error:
        return [error]
    return []


def raw_request(port, target, host, method="GET", tls=True, body=b"", headers=()):
    """One HTTP/1.1 request sent byte for byte as given (no client normalises the path or checks the
    Host): (status, Location, body), or None when the proxy closed the connection without an answer."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=60)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        connection = context.wrap_socket(connection)
    with connection:
        head = [f"{method} ".encode() + target + b" HTTP/1.1", b"Host: " + host.encode(), b"Connection: close",
                *(f"{name}: {value}".encode() for name, value in headers)]
        if body:
            head.append(f"Content-Length: {len(body)}".encode())
        connection.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        response = http.client.HTTPResponse(connection, method=method)
        try:
            response.begin()
        except (http.client.RemoteDisconnected, ConnectionError):
            return None
        return response.status, response.getheader("Location"), response.read()


def as_a_browser_follows(url, location):
    """Where a browser goes for this Location: it drops tabs and newlines and reads "\\" as "/"."""
    cleaned = location.replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/")
    return urljoin(url, cleaned)


def redirect_hops(stack, target, host=None, tls=True):
    """Every redirect from this raw target, followed as a browser would: (status, Location, the URL
    the browser goes to)."""
    https_port = int(stack.values["HTTPS_PORT"])
    port = https_port if tls else int(stack.values["HTTP_PORT"])
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}{target.decode('latin-1')}"
    hops = []
    for _ in range(8):
        answer = raw_request(port, target, host or f"127.0.0.1:{port}", tls=tls)
        if answer is None or not 300 <= answer[0] < 400:
            return hops
        url = as_a_browser_follows(url, answer[1])
        hops.append((answer[0], answer[1], url))
        parts = urlsplit(url)
        if (parts.scheme, parts.hostname, parts.port) != ("https", "127.0.0.1", https_port):
            return hops  # off the study: the caller reports it
        port, tls, host = https_port, True, None
        target = (parts.path or "/").encode("latin-1") + (f"?{parts.query}".encode("latin-1") if parts.query else b"")
    raise AssertionError(f"more than 8 redirects from {target!r}")


CRAFTED_PATHS = [
    b"//evil.example/%2e%2e/{link}",             # a path that starts like another site's address
    b"/%2e%2e//evil.example/%2e%2e/{link}",
    b"/\\evil.example/%2e%2e/{link}",             # browsers read "/\" as "//"
    b"/%5cevil.example/%2e%2e/{link}",
    b"/%2fevil.example/%2e%2e/{link}",
    b"/%2F%2Fevil.example/..%2f{link}",
    b"/%09/evil.example/%2e%2e/{link}",           # browsers drop tabs
    b"/\t/evil.example/%2e%2e/{link}",
    b"/@evil.example/%2e%2e/{link}",
    b"/{link}//evil.example",
    b"/{link}/..%2f..%2f/evil.example",
    b"/{link}%2f%2fevil.example",
    b"/{link}/%5c%5cevil.example",
    b"/{link}/",
    b"/{link}//",
]


def test_crafted_prolific_room_and_join_links_never_redirect_off_the_studys_host(stack):
    session = stack.create_session(3)
    links = [b"room/prolific", urlsplit(session["session_wide_url"]).path.lstrip("/").encode()]
    queries = [f"?PROLIFIC_PID={PID}&STUDY_ID={PID}".encode(), b"?participant_label=crafted", b""]
    off_site = []
    followed = 0
    for link in links:
        for path in CRAFTED_PATHS:
            for query in queries:
                target = path.replace(b"{link}", link) + query
                for tls in (True, False):
                    hops = redirect_hops(stack, target, tls=tls)
                    followed += len(hops)
                    off_site += [(target, hop) for hop in hops if urlsplit(hop[2]).hostname != "127.0.0.1"
                                 or urlsplit(hop[2]).port != int(stack.values["HTTPS_PORT"])]
        # A Host that oTree would build its own redirects from (its trailing-slash one here).
        for host in (f"127.0.0.1:{stack.values['HTTPS_PORT']}:@evil.example", "127.0.0.1:1@evil.example"):
            hops = redirect_hops(stack, b"/" + link + b"/", host=host)
            followed += len(hops)
            off_site += [(host, hop) for hop in hops if urlsplit(hop[2]).hostname != "127.0.0.1"]
    assert off_site == []
    assert followed > 100  # the table did redirect: the links were followed, not refused at once
    # The crafted Prolific links that reach a real link still enter the participant there.
    hops = redirect_hops(stack, b"//evil.example/%2e%2e/room/prolific?PROLIFIC_PID=" + PID.encode())
    assert hops[0][1] == f"/room/prolific?PROLIFIC_PID={PID}&participant_label={PID}"


def rest_body(stack):
    return json.dumps({"session_config_name": "prolific_study", "num_participants": 3}).encode()


def test_crafted_host_headers_get_400_and_otree_builds_links_on_the_studys_host(stack):
    port = int(stack.values["HTTPS_PORT"])
    key = ("otree-rest-key", stack.values["OTREE_REST_KEY"])
    json_type = ("Content-Type", "application/json")
    made = stack.create_session(3)
    assert made["session_wide_url"].startswith(f"{stack.https}/join/")
    assert [room["url"] for room in stack.rest("GET", "/api/rooms")] == [f"{stack.https}/room/prolific"]
    for host in ("localhost", "[::1]"):  # names of a study reached by address: oTree still sees the study's
        status, _, body = raw_request(port, b"/api/sessions", f"{host}:{port}", "POST", body=rest_body(stack),
                                      headers=(key, json_type))
        assert status == 200 and json.loads(body)["session_wide_url"].startswith(f"https://{host}:{port}/join/")
    crafted = [f"127.0.0.1:{port}:@other.example", f"127.0.0.1:{port}@other.example", "127.0.0.1:1",
               f"127.0.0.1:{port}:1", f"localhost:{port}.other.example", f"[::1]:{port}:@other.example", ""]
    for host in crafted:
        answer = raw_request(port, b"/api/sessions", host, "POST", body=rest_body(stack), headers=(key, json_type))
        assert answer and answer[0] == 400, (host, answer)
        assert b"nginx" in answer[2], host  # nginx's own page: oTree never saw it
    # Another name gets no answer at all, as before (tests/test_closed_doors.py).
    assert raw_request(port, b"/api/sessions", "other.example", "POST", body=rest_body(stack),
                       headers=(key, json_type)) is None
    # HTTP/2's :authority (curl sends the Host header given as :authority).
    for host, expected in [(f"127.0.0.1:{port}", "200"), *((host, "400") for host in crafted[:-1])]:
        sent = subprocess.run(["curl", "-sk", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                               "-H", f"Host: {host}", "-H", f"{key[0]}: {key[1]}", "-H", "Content-Type: application/json",
                               "--data-binary", rest_body(stack).decode(), f"{stack.https}/api/sessions"],
                              capture_output=True, text=True, timeout=60)
        assert sent.stdout == f"2 {expected}", (host, sent.stdout, sent.stderr)


def static_files(volume, image, folder):
    """{path: sha256} of every file under a study's folder of the static volume, and every link
    anywhere in the volume."""
    listed = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{volume}:/srv/static:ro",
                             "--entrypoint", "sh", image, "-c",
                             f'cd /srv/static && find "{folder}" -type f -exec sha256sum {{}} + ; '
                             'find . -type l -printf "link %p\\n"'],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    files = dict(reversed(line.split(None, 1)) for line in listed if not line.startswith("link "))
    return files, [line for line in listed if line.startswith("link ")]


def test_a_study_whose_image_writes_into_the_static_volume_cannot_change_another_studys_files(stack, tmp_path):
    """The intruder is a study whose project's dependency, installed as root when its image was
    built, left the image's shell writing into every other study's folder of the static volume
    (what running that image to copy its files would run), and links to the other study's files
    and to the proxy's certificate keys in its static folder."""
    loaded = settings.load(stack.env_path)
    victim = loaded.studies[0]
    intruder = dataclasses.replace(victim, name="intruder")
    volume, proxy_image = f"{loaded.server.name}_static", f"otree-stack/nginx:{loaded.server.name}"
    image = f"otree-stack/otree:{intruder.project}"
    shell = ('#!/usr/bin/dash\nfor folder in /out/*/; do\n'
             '  [ "${folder%/}" = /out/intruder ] || echo changed-by-intruder > "${folder}robots.txt" 2>/dev/null\n'
             'done\nexec /usr/bin/dash "$@"\n')
    (tmp_path / "sh").write_text(shell)
    (tmp_path / "Dockerfile").write_text(
        f"FROM otree-stack/otree:{victim.project}\nUSER root\nCOPY sh /usr/local/bin/intruder-sh\n"
        "RUN chmod 755 /usr/local/bin/intruder-sh && ln -sf /usr/local/bin/intruder-sh /usr/bin/sh "
        f"&& ln -s ../{victim.name}/robots.txt /srv/static/victims-robots.txt "
        f"&& ln -s /etc/nginx/certs/{victim.name}/privkey.pem /srv/static/stolen-key.pem "
        f"&& ln -s /srv/static/../{victim.name} /srv/static/victims-folder\nUSER otree\n")
    subprocess.run(["docker", "build", "-q", "-t", image, str(tmp_path)], check=True, capture_output=True)
    before, links_before = static_files(volume, proxy_image, victim.name)
    assert f"{victim.name}/robots.txt" in before and links_before == []
    try:
        proxy.publish_static(intruder)
        after, links = static_files(volume, proxy_image, victim.name)
        published, _ = static_files(volume, proxy_image, intruder.name)
        robots = http_client().get(f"{stack.https}/static/robots.txt", timeout=30)
    finally:
        subprocess.run(["docker", "run", "--rm", "--network", "none", "--user", "root", "-v", f"{volume}:/out",
                        "--entrypoint", "rm", proxy_image, "-rf", "/out/intruder"], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
        if static_files(volume, proxy_image, victim.name)[0] != before:
            proxy.publish_static(victim)  # the other tests' study as it was
    assert after == before
    assert links == []  # the intruder's links were not published
    assert "intruder/robots.txt" in published  # its own files were
    assert robots.status_code == 200 and "changed-by-intruder" not in robots.text
    assert hashlib.sha256(robots.content).hexdigest() == before[f"{victim.name}/robots.txt"]
