"""Prolific's default study URL through nginx (the Prolific ID becomes the participant label), and
`invoke session create`, on the shared test stack with plain HTTP clients (no browser)."""
import re
import secrets
from urllib.parse import urlsplit

import pytest
import requests

from stack import session as session_module

pytestmark = pytest.mark.docker

PLACEHOLDERS = ("{{%PROLIFIC_PID%}}", "{{%STUDY_ID%}}", "{{%SESSION_ID%}}")


def prolific_id():
    """An ID as Prolific makes them: a MongoDB ObjectId, 24 lower-case hex characters."""
    return secrets.token_hex(12)


def prolific_query(pid):
    return f"PROLIFIC_PID={pid}&STUDY_ID={prolific_id()}&SESSION_ID={prolific_id()}"


def browser():
    """A new participant's browser: no cookies from anyone before."""
    http = requests.Session()
    http.verify = False
    http.trust_env = False
    return http


def participant_code(response):
    """The participant a response landed on: /p/<code>/<app>/<Page>/<index>."""
    path = urlsplit(response.url).path.split("/")
    assert response.status_code == 200 and path[1] == "p", (response.status_code, response.url)
    return path[2]


def entered(stack, session_code):
    """(label, code) of the session's participants who entered, by label."""
    return sorted(tuple(row) for row in stack.sql(
        "SELECT p.label, p.code FROM otree_participant p JOIN otree_session s ON s.id = p.session_id "
        f"WHERE s.code = '{session_code}' AND p.visited ORDER BY p.label"))


def test_the_session_wide_link_takes_the_prolific_id_as_label(stack):
    session = stack.create_session(3)
    link = session["session_wide_url"]
    pid = prolific_id()
    query = prolific_query(pid)
    first = browser().get(f"{link}?{query}", allow_redirects=False)
    # Relative, so it works on a study's own port; Prolific's other parameters stay.
    assert first.status_code == 302
    assert first.headers["Location"] == f"{urlsplit(link).path}?{query}&participant_label={pid}"
    assert first.headers["X-Content-Type-Options"] == "nosniff"
    code = participant_code(browser().get(f"{link}?{query}"))
    assert entered(stack, session["code"]) == [(pid, code)]


def test_a_returning_participant_gets_the_same_participant(stack):
    session = stack.create_session(3)
    pid = prolific_id()
    # Another browser (Prolific's app, a phone) and other STUDY_ID/SESSION_ID values: the ID decides.
    codes = [participant_code(browser().get(f"{session['session_wide_url']}?{prolific_query(pid)}"))
             for _ in range(2)]
    assert codes[0] == codes[1]
    assert entered(stack, session["code"]) == [(pid, codes[0])]


def test_participant_label_wins_over_prolific_pid_as_in_otree(stack):
    session = stack.create_session(3)
    link = session["session_wide_url"]
    pid = prolific_id()
    for label, extra in (("TESTER1", f"PROLIFIC_PID={pid}"), ("TESTER2", "PROLIFIC_PID={{%PROLIFIC_PID%}}")):
        response = browser().get(f"{link}?participant_label={label}&{extra}", allow_redirects=False)
        # oTree's own redirect to the participant's start page, not nginx's.
        assert response.status_code == 302 and "/InitializeParticipant/" in response.headers["Location"]
    assert [label for label, _ in entered(stack, session["code"])] == ["TESTER1", "TESTER2"]


def test_a_malformed_prolific_id_gets_a_page_saying_so_and_enters_no_one(stack):
    session = stack.create_session(3)
    room_link = f"{stack.https}/room/prolific"
    malformed = ["", "{{%PROLIFIC_PID%}}", "%7B%7B%25PROLIFIC_PID%25%7D%7D", prolific_id()[:23],
                 prolific_id() + "0", prolific_id().upper(), "5f8a3c2e9b1d4e6f7a8b9c0g", "5f8a3c2e9b1d4e6f7a8b9c0d%20"]
    for link in (session["session_wide_url"], room_link):
        for value in malformed:
            response = browser().get(f"{link}?PROLIFIC_PID={value}&STUDY_ID={prolific_id()}")
            assert response.status_code == 400, (link, value)
            assert "lacks a valid Prolific ID" in response.text and "open the study from there again" in response.text
            assert "participant_label=" in response.text  # how a researcher tests the link
            assert response.headers["Content-Type"].startswith("text/html")
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "frame-ancestors" in response.headers["Content-Security-Policy"]
            assert response.headers["Cache-Control"] == "no-store"
    assert entered(stack, session["code"]) == []


def test_during_maintenance_a_prolific_link_gets_the_maintenance_page_and_works_after(stack):
    link = f"{stack.https}/room/prolific?{prolific_query(prolific_id())}"
    stack.invoke("maintenance", "on")
    try:
        # The page reloads the same address, so the participant enters once the study is back.
        for query in (link, link.replace("PROLIFIC_PID=", "PROLIFIC_PID=x")):
            response = browser().get(query, allow_redirects=False)
            assert response.status_code == 503 and "One moment, please" in response.text
    finally:
        stack.invoke("maintenance", "off")
    assert browser().get(link, allow_redirects=False).status_code == 302


def close_room(stack, room):
    """What the admin's "Close this room" does: the room lets go of its session, which stays."""
    stack.sql(f"DELETE FROM otree_roomtosession WHERE room_name = '{room}'")


def test_session_create_makes_the_rooms_session_with_spare_places_and_prints_the_study_url(stack):
    close_room(stack, "prolific")  # other modules leave their session in it
    sessions_before = stack.sql("SELECT count(*) FROM otree_session")
    for room, config, said in (("lab", "prolific_study", "There is no room 'lab'. The project's rooms: prolific."),
                               ("prolific", "game", "There is no session config 'game'.")):
        refused = stack.invoke("session", "create", "--room", room, "--config", config, "--places", "10", check=False)
        assert refused.returncode == 1 and said in refused.stderr, refused.stderr
    assert stack.sql("SELECT count(*) FROM otree_session") == sessions_before

    made = stack.invoke("session", "create", "--room", "prolific", "--config", "prolific_study", "--places", "10")
    [url] = [line.strip() for line in made.stdout.splitlines() if "/room/prolific?" in line]
    assert url == session_module.study_url(stack.https + "/", "prolific")
    assert url.endswith("?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}")
    [code] = re.findall(r"Session (\w+): 15 participants for 10 Prolific places", made.stdout)
    assert stack.sql("SELECT s.code, count(p.id) FROM otree_roomtosession r JOIN otree_session s ON s.id = r.session_id "
                     "JOIN otree_participant p ON p.session_id = s.id WHERE r.room_name = 'prolific' "
                     "GROUP BY s.code") == [[code, "15"]]

    # 11 participants (10 places and a returned one's replacement) by the URL pasted into Prolific.
    pids = sorted(prolific_id() for _ in range(11))
    codes = []
    for pid in pids:
        http = browser()
        welcome = http.get(url.replace(PLACEHOLDERS[0], pid).replace(PLACEHOLDERS[1], prolific_id())
                           .replace(PLACEHOLDERS[2], prolific_id()))
        assert welcome.status_code == 200 and f"participant_label={pid}" in welcome.url
        # The welcome page's Start button reloads its own URL with welcome_page_ok=1.
        codes.append(participant_code(http.get(welcome.url + "&welcome_page_ok=1")))
    assert entered(stack, code) == sorted(zip(pids, codes))
    assert len(set(codes)) == 11

    again = stack.invoke("session", "create", "--room", "prolific", "--config", "prolific_study", "--places", "10",
                         check=False)
    assert again.returncode == 1
    assert f"already has a session {code} ('prolific_study', 15 places" in again.stderr, again.stderr
    assert "11 participant(s) entered it" in again.stderr and "Close this room" in again.stderr
    assert stack.sql("SELECT count(*) FROM otree_session") == [[str(int(sessions_before[0][0]) + 1)]]
