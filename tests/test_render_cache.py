"""The render cache and the compiled lookups (otree_server/render_cache.py, compiled_lookups.py)
leave every page byte for byte as oTree renders it, the compiled lookups find what oTree's own
find (with their SQL compiled once), the bots pass with each on and off, and an oTree version
the tests have not proven runs without either, saying so in the log.

How the pages are compared, and why this is sound: one `otree prodserver` process from the real
oTree image, on its own real Postgres (tests/bare.py), renders every request twice, first as
oTree comes and then with both speed-ups' replacements in place (tests/render_cache_toggle.py
switches them per request, by a header), against the same database state, and nothing else
writes to that database. Two servers on one database would break oTree's one-process rule, and
two databases would differ in their random participant codes. The cache stays filled between
the cached requests, as in production. Compared: every page of the example study (3 players:
the grouping and results wait pages, the timed page) and of tests/otree_forms (every kind of
form field, `formfield` tags one by one, errors from each field and from the page, two rounds, a
group wait page), invalid POSTs of every form, the last page's "no more pages" notice, the 404s of
unknown participant and join codes, and the admin's pages for each session. Masked: only CSRF
token values and the seconds remaining on a timed page, which the two renders of one request see
a moment apart."""
import itertools
import json
import os
import re

import pytest
import requests

from tests import bare
from tests.conftest import TEST_STACK, _OFFSET
from tests.helpers import REPO_ROOT

TOGGLE = os.path.join(REPO_ROOT, "tests", "render_cache_toggle.py")
LOOKUPS = os.path.join(REPO_ROOT, "tests", "compiled_lookups_check.py")
MASKS = [(re.compile(rb'(name="csrftoken" value=")[^"]*'), rb"\1<csrf>"),
         (re.compile(rb"(var remainingTimeoutSeconds = )[-0-9.e]+"), rb"\1<seconds>")]
ERROR_MARKERS = (b"form-control-errors", b"otree-form-errors")

PROJECTS = {
    "example": dict(
        folder=os.path.join(REPO_ROOT, "otree_project"), config="prolific_study", participants=3,
        pages={"Consent", "Demographics", "Instructions", "GroupingWaitPage", "Contribute", "ResultsWaitPage",
               "Results", "Questionnaire", "Payment"},
        valid={"Consent": {"consent": "True"}, "Demographics": {"age": "30", "gender": "Female"},
               "Contribute": {"contribution": "10"},
               "Questionnaire": {"understood": "6", "fairness": "5", "strategy": "even split"}},
        invalid={"Consent": [{}],
                 "Demographics": [{}, {"age": "17", "gender": "Female"}, {"age": "old", "gender": "Robot"}],
                 "Contribute": [{}, {"contribution": "101"}, {"contribution": "-1"}, {"contribution": "ten"}],
                 "Questionnaire": [{}, {"understood": "9", "fairness": "5", "strategy": ""}]}),
    "forms": dict(
        folder=os.path.join(REPO_ROOT, "tests", "otree_forms"), config="forms", participants=2,
        pages={"Fields", "OneByOne", "Together", "Results"},
        valid={"Fields": {"number": "3", "share": "0.5", "amount": "2", "name": "Ada", "story": "", "agree": "on",
                          "colour": "green", "size": "1", "rating": "2", "yes": "False"},
               "OneByOne": {"guess": "4"}},
        invalid={"Fields": [{}, {"number": "7", "share": "0.5", "amount": "2", "name": "Ada", "colour": "red",
                                 "size": "2", "rating": "3", "yes": "True"},
                            {"number": "3", "share": "0.5", "amount": "2", "name": "nobody", "colour": "red",
                             "size": "2", "rating": "3", "yes": "True"},
                            {"number": "11", "share": "2", "amount": "-1", "name": "x" * 21, "colour": "purple",
                             "size": "3", "rating": "x", "yes": "perhaps"}],
                 "OneByOne": [{}, {"guess": "many"}]}),
}
WAIT_PAGES = {"GroupingWaitPage", "ResultsWaitPage", "Together"}
ADMIN_PAGES = ["/sessions", "/rooms", "/create_session", "/ExportIndex", "/demo", "/server_check"]
SESSION_PAGES = ["SessionStartLinks", "SessionMonitor", "SessionData", "SessionPayments", "SessionDescription",
                 "SessionEditProperties", "SessionSplitScreen"]


def masked(body):
    for pattern, replacement in MASKS:
        body = pattern.sub(replacement, body)
    return body


class Comparison:
    """Sends each request twice, without and with the speed-ups, and keeps what differed."""

    def __init__(self, base):
        self.base = base
        self.pairs, self.differences, self.error_pages = 0, [], 0
        self.pages_seen = set()
        self._cached = itertools.cycle([False, True])

    def both(self, http, method, path, data=None):
        answers = [http.request(method, self.base + path, data=data, allow_redirects=False, timeout=60,
                                headers={"x-render-cache": "on"} if cached else {})
                   for cached in (False, True)]
        plain, cached = ([answer.status_code, answer.headers.get("location"), masked(answer.content)]
                         for answer in answers)
        self.pairs += 1
        if plain != cached:
            self.differences.append((method, path, data, answers[0].text, answers[1].text))
        return answers[0]

    def once(self, http, method, path, data=None):
        """A request that changes the state (a valid form): sent once, in turn without and with the speed-ups."""
        headers = {"x-render-cache": "on"} if next(self._cached) else {}
        return http.request(method, self.base + path, data=data, allow_redirects=False, timeout=60, headers=headers)


def relative(location):
    return re.sub(r"^https?://[^/]+", "", location)


def play(comparison, project, start_paths):
    """Each participant in turn goes as far as they can (to a wait page that holds them, or past the
    last page), so that the others find the wait pages both waiting and done."""
    http = requests.Session()
    paths = list(start_paths)
    finished = set()
    for _ in range(100):
        if len(finished) == len(paths):
            return
        for index in set(range(len(paths))) - finished:
            while True:
                answer = comparison.both(http, "GET", paths[index])
                if answer.is_redirect:
                    paths[index] = relative(answer.headers["location"])
                    continue
                assert answer.status_code == 200, f"{paths[index]}: {answer.status_code}"
                if "OutOfRangeNotification" in paths[index]:
                    finished.add(index)
                    break
                page = paths[index].split("/")[4]
                comparison.pages_seen.add(page)
                if page in WAIT_PAGES:
                    break
                for data in project["invalid"].get(page, []):
                    refused = comparison.both(http, "POST", paths[index], data)
                    assert refused.status_code == 200 and any(marker in refused.content for marker in ERROR_MARKERS), \
                        f"{paths[index]} accepted {data}"
                    comparison.error_pages += 1
                moved = comparison.once(http, "POST", paths[index], project["valid"].get(page, {}))
                assert moved.is_redirect, f"{paths[index]} refused its valid form"
                paths[index] = relative(moved.headers["location"])
    raise AssertionError(f"the participants did not finish: {paths}")


@pytest.fixture(scope="module")
def postgres_image():
    return bare.build_postgres_image(f"{TEST_STACK}-render")


@pytest.fixture(scope="module", params=sorted(PROJECTS))
def server(request, postgres_image):
    """One project's image, served by the toggling prodserver."""
    name = request.param
    image = bare.build_otree_image(f"{TEST_STACK}-render-{name}", PROJECTS[name]["folder"])
    port = 18700 + _OFFSET + sorted(PROJECTS).index(name)
    started = bare.BareOtree(f"{TEST_STACK}-render-{name}", image, postgres_image, port,
                             command=["python", "/opt/render-cache-test/render_cache_toggle.py", "prodserver",
                                      "0.0.0.0:8000"],
                             mounts=[(TOGGLE, "/opt/render-cache-test/render_cache_toggle.py")])
    started.start()
    yield name, started
    started.stop()


def test_every_page_is_byte_identical_with_and_without_the_speed_ups(server):
    name, otree = server
    project = PROJECTS[name]
    session = otree.rest("POST", "/api/sessions", json=dict(session_config_name=project["config"],
                                                            num_participants=project["participants"]))
    details = otree.rest("GET", f"/api/sessions/{session['code']}")
    codes = [participant["code"] for participant in details["participants"]]
    comparison = Comparison(otree.url)
    play(comparison, project, [f"/InitializeParticipant/{code}" for code in codes])
    assert comparison.pages_seen == project["pages"]
    for unknown in ["/InitializeParticipant/nosuchcode", "/p/nosuchcode/consent/Consent/1", "/join/nosuchcode"]:
        assert comparison.both(requests.Session(), "GET", unknown).status_code == 404, unknown

    admin = requests.Session()
    login = admin.get(otree.url + "/login", timeout=30).text
    token = re.search(r'name="csrftoken" value="([^"]+)"', login).group(1)
    logged_in = admin.post(otree.url + "/login", data=dict(username="admin", password=otree.admin_password,
                                                            csrftoken=token), allow_redirects=False, timeout=30)
    assert logged_in.is_redirect and "login" not in logged_in.headers["location"]
    for path in ADMIN_PAGES + [f"/{page}/{session['code']}" for page in SESSION_PAGES]:
        assert comparison.both(admin, "GET", path).status_code == 200, path

    print(f"{name}: {comparison.pairs} request pairs, {comparison.error_pages} of them form errors")
    assert comparison.differences == [], "\n\n".join(
        f"{method} {path} {data}: the cached page differs\n--- without\n{plain[:3000]}\n--- with\n{cached[:3000]}"
        for method, path, data, plain, cached in comparison.differences[:3])
    logs = otree.logs()  # the toggle applied them; the image's launcher did not
    assert "Render cache" not in logs and "Compiled lookups" not in logs


def test_the_lookups_find_what_otree_finds_with_their_sql_compiled_once():
    """Each lookup twice in one process, without and then with the compiled lookups: the same row or
    the same error, and with them nothing compiled the second time, unless the lookup is one they leave
    to oTree (no row, a None, a participant not in the database), which compiles as before."""
    image = bare.build_otree_image(f"{TEST_STACK}-render-example", PROJECTS["example"]["folder"])
    result = bare.docker("run", "--rm", "-e", "OTREE_PRODUCTION=1", "-v",
                         f"{LOOKUPS}:/opt/render-cache-test/compiled_lookups_check.py:ro", image,
                         "python", "/opt/render-cache-test/compiled_lookups_check.py", "prolific_study", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    left_to_otree = {"participant by unknown code", "player in a round that does not exist", "player with round None",
                     "player by a participant not in the database"}
    assert len(report) == 9
    for name, outcome in report.items():
        assert outcome["plain"] == outcome["cached"], (name, outcome)
        assert outcome["compiled_plain"] == 1, (name, outcome)
        assert outcome["compiled_cached"] == (1 if name in left_to_otree else 0), (name, outcome)
    assert report["participant by unknown code"]["cached"] == "HTTPException Gone: Participant, {'code': 'nosuchcode'}"
    assert report["player by participant and round"]["cached"].startswith("Player ")


@pytest.mark.parametrize("render_cache, compiled_lookups", [("on", "on"), ("off", "on"), ("off", "off")])
@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_the_bots_pass_with_the_speed_ups_on_and_off(project, render_cache, compiled_lookups):
    image = bare.build_otree_image(f"{TEST_STACK}-render-{project}", PROJECTS[project]["folder"])
    result = bare.docker("run", "--rm", "-e", "OTREE_PRODUCTION=1", "-e", f"OTREE_RENDER_CACHE={render_cache}",
                         "-e", f"OTREE_COMPILED_LOOKUPS={compiled_lookups}", image,
                         "otree", "test", PROJECTS[project]["config"], str(PROJECTS[project]["participants"]),
                         check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Bots completed session" in output, output[-3000:]
    assert (f"Render cache {render_cache}:" if render_cache == "on" else
            "Render cache off (OTREE_RENDER_CACHE=off)") in output
    assert (f"Compiled lookups {compiled_lookups}:" if compiled_lookups == "on" else
            "Compiled lookups off (OTREE_COMPILED_LOOKUPS=off)") in output


def test_an_unproven_otree_version_runs_without_the_speed_ups_and_says_why():
    """oTree 6.0.15's own code under another version number: the launcher must not touch it."""
    image = bare.build_otree_image(f"{TEST_STACK}-render-example", PROJECTS["example"]["folder"])
    script = ("cp -r /opt/venv/lib/python3.13/site-packages/otree /tmp/otree && "
              "sed -i 's/^__version__ = .*/__version__ = \"6.0.99\"/' /tmp/otree/__init__.py && "
              "PYTHONPATH=/tmp otree test prolific_study 3")
    result = bare.docker("run", "--rm", "-e", "OTREE_PRODUCTION=1", "--entrypoint", "sh", image, "-c", script,
                         check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Bots completed session" in output, output[-3000:]
    for speed_up in ("Render cache", "Compiled lookups"):
        assert (f"{speed_up} skipped: it is proven on oTree 6.0.15 only, and this is oTree 6.0.99. Pages are "
                "served as oTree serves them") in output
        assert f"{speed_up} on" not in output
