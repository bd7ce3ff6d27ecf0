"""MTurk HITs (README "Running a study on MTurk"), without AWS: participant pages play inside an
iframe of MTurk's worker sites and are refused inside any other site's, admin pages inside any,
the HIT's start link is https, and the last page submits the HIT to MTurk's externalSubmit.

MTurk's sites (and a foreign one) are a local HTTPS server with certificates for their names;
Chromium's --host-resolver-rules send those names to it, while the URLs keep port 443, so the
frame-ancestors header is matched against exactly the origins MTurk's pages have."""
import html
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.sync_api import sync_playwright

from tests import pki
from tests.test_study_in_browser import CHROMIUM_ARGS, WAIT_MS

pytestmark = pytest.mark.docker

WORKER, SANDBOX, SUBMIT_HOST, FOREIGN = "worker.mturk.com", "workersandbox.mturk.com", "www.mturk.com", "evil.example"
# Chromium's console line for a refused frame ("Framing 'URL' violates the following Content
# Security Policy directive: ..."; older versions word the start differently).
REFUSED = "violates the following Content Security Policy directive: \"frame-ancestors"


class MTurkSite(BaseHTTPRequestHandler):
    """GET /hit?src=URL: a page that shows URL in an iframe, as MTurk shows a HIT that frames the
    study; GET of a path in server.hit_pages: that page (oTree's own HIT). A POST (the HIT's
    submit) is recorded with the host it was sent to."""

    def do_GET(self):
        url = urlsplit(self.path)
        src = parse_qs(url.query).get("src")
        if url.path in self.server.hit_pages:
            self._answer(self.server.hit_pages[url.path])
        elif url.path == "/hit" and src:
            self._answer(f'<!doctype html><title>HIT</title><iframe id="hit" src="{html.escape(src[0])}" '
                         'width="1000" height="800"></iframe>')
        else:  # the browser's favicon request
            self.send_error(404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.server.submits.append((self.headers["Host"], self.path, parse_qs(body)))
        self._answer("<!doctype html><title>Submitted</title><p>HIT submitted</p>")

    def _answer(self, text):
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def mturk_sites(tmp_path_factory):
    """The local HTTPS server for MTurk's names and the foreign one, on a port the kernel picks
    (so it can collide with no other test's server)."""
    ca = pki.issue("MTurk test CA", ca=True)
    certificate, key = pki.issue(WORKER, issuer=ca, names=[WORKER, SANDBOX, SUBMIT_HOST, FOREIGN])
    folder = tmp_path_factory.mktemp("mturk-sites")
    (folder / "chain.pem").write_bytes(pki.pem(certificate, ca[0]))
    (folder / "key.pem").write_bytes(pki.key_pem(key))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(folder / "chain.pem", folder / "key.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), MTurkSite)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.submits = []
    server.hit_pages = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(mturk_sites):
    port = mturk_sites.server_address[1]
    rules = ", ".join(f"MAP {name} 127.0.0.1:{port}" for name in (WORKER, SANDBOX, SUBMIT_HOST, FOREIGN))
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                              args=[*CHROMIUM_ARGS, f"--host-resolver-rules={rules}"])
        yield chromium
        chromium.close()


@pytest.fixture
def worker(browser):
    """A worker's browser. Certificate errors are ignored for every site: the test stack's own
    certificate is self-signed, and the MTurk sites' CA would otherwise have to go into an NSS
    database of Chromium's profile. The frame-ancestors check depends only on the origins."""
    context = browser.new_context(ignore_https_errors=True)
    # The script of MTurk's form elements, which the example's HIT text loads, is not reachable here.
    context.route("https://assets.crowd.aws/**", lambda route: route.fulfill(body="", content_type="text/javascript"))
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.console = []
    page.on("console", lambda message: page.console.append(message.text))
    yield page
    context.close()


def mturk_session(stack, sandbox=True):
    """A session created "For MTurk", as the admin creates it before publishing the HIT; publishing
    the HIT live (not in the sandbox) is what clears mturk_use_sandbox."""
    session = stack.rest("POST", "/api/sessions", json=dict(
        session_config_name="mturk_survey", num_participants=2, is_mturk=True))
    if not sandbox:
        stack.sql(f"UPDATE otree_session SET mturk_use_sandbox = false WHERE code = '{session['code']}'")
    return session


def start_url(session, **params):
    """The HIT's link to oTree: /MTurkStart/<code> after the address oTree builds it on. oTree builds
    it with request.url_for from the admin's request, as its REST API builds the session's links
    from ours: both through nginx, from the Host and X-Forwarded-Proto that nginx passes on."""
    base = session["admin_url"].removesuffix(f"/SessionStartLinks/{session['code']}")
    assert session["session_wide_url"].startswith(base + "/join/")
    url = f"{base}/MTurkStart/{session['code']}"
    return f"{url}?{urlencode(params)}" if params else url


def show_in_hit(page, site, src):
    page.goto(f"https://{site}/hit?" + urlencode({"src": src}))
    return page.locator("#hit").element_handle().content_frame()


def otrees_hit(stack, start):
    """The HIT page that oTree's admin publishes (an HTMLQuestion) for the mturk_survey config,
    rendered by the study's oTree as its MTurkCreateHIT renders it: oTree's own template around
    the project's mturk_template.html, from the config's mturk_hit_settings."""
    script = (
        "import sys\n"
        "from otree.main import setup\n"
        "setup()\n"
        "from otree.session import SESSION_CONFIGS_DICT\n"
        "from otree.templating import ibis_loader\n"
        "from otree.views.mturk import MTurkSettings\n"
        "hit = MTurkSettings(**SESSION_CONFIGS_DICT['mturk_survey']['mturk_hit_settings'])\n"
        "print(ibis_loader.load('otree/MTurkHTMLQuestion.html').render(\n"
        "    user_template=hit.template, frame_height=hit.frame_height, start_url=sys.argv[1]))\n")
    question = stack.compose("exec", "-T", "otree", "python", "-c", script, start).stdout
    return question.split("<![CDATA[", 1)[1].split("]]>", 1)[0]


def play_survey(page):
    """The mturk_survey's pages, in a page or a frame, up to the last one; its completion code."""
    page.wait_for_url("**/consent/Consent/**")
    page.get_by_label("Yes, I agree").check()
    page.locator("button.otree-btn-next").click()
    page.wait_for_url("**/demographics/Demographics/**")
    page.locator("input[name=age]").fill("41")
    page.get_by_label("Male", exact=True).check()
    page.locator("button.otree-btn-next").click()
    page.wait_for_url("**/questionnaire/Questionnaire/**")
    page.locator("input[name=understood][value='6']").check()
    page.locator("input[name=fairness][value='5']").check()
    page.locator("button.otree-btn-next").click()
    page.wait_for_url("**/payment/Payment/**")
    assert "paid through MTurk" in page.locator("body").inner_text()
    return page.locator("#completion-code").inner_text()


def workers_participant(stack, session):
    """(participant code, assignment ID, questionnaire answer) of the session's MTurk worker."""
    [row] = stack.sql("SELECT p.code, p.mturk_assignment_id, q.understood FROM otree_participant p "
                      "JOIN otree_session s ON s.id = p.session_id "
                      "JOIN questionnaire_player q ON q.participant_id = p.id "
                      f"WHERE s.code = '{session['code']}' AND p.mturk_assignment_id IS NOT NULL")
    return tuple(row)


def refusal(page, frame):
    """Chromium's refusal of a frame: the frame holds its error page, not oTree's, and the console
    line says which policy refused it."""
    deadline = time.time() + 20
    while not any(REFUSED in line for line in page.console):
        assert time.time() < deadline, page.console
        page.wait_for_timeout(100)
    assert frame.url.startswith("chrome-error://") and "otree" not in frame.content().lower()
    return next(line for line in page.console if REFUSED in line)


def test_the_start_link_oTree_builds_for_a_hit_is_https_at_the_studys_address(stack):
    session = mturk_session(stack)
    assert stack.https.startswith("https://")
    assert start_url(session) == f"{stack.https}/MTurkStart/{session['code']}"


@pytest.mark.parametrize("site, submit_host, sandbox", [(WORKER, SUBMIT_HOST, False), (SANDBOX, SANDBOX, True)])
def test_a_worker_plays_a_hit_inside_mturks_frame_and_submits_it(stack, mturk_sites, worker, site, submit_host,
                                                                 sandbox):
    session = mturk_session(stack, sandbox)
    assignment = f"ASSIGNMENT-{site.split('.')[0]}"
    start = start_url(session, assignmentId=assignment, hitId="HIT1", workerId=f"WORKER-{site.split('.')[0]}",
                      turkSubmitTo=f"https://{submit_host}")
    frame = show_in_hit(worker, site, start)
    completion_code = play_survey(frame)

    before = len(mturk_sites.submits)
    frame.locator("#submit-hit").click()
    frame.wait_for_url(f"https://{submit_host}/mturk/externalSubmit")
    assert "HIT submitted" in frame.locator("body").inner_text()
    [(host, path, form)] = mturk_sites.submits[before:]
    assert (host, path) == (submit_host, "/mturk/externalSubmit")
    assert form["assignmentId"] == [assignment] and form["completion_code"] == [completion_code]
    assert not any(REFUSED in line for line in worker.console)
    # Nothing depended on a cookie in MTurk's frame, where browsers may block third-party cookies.
    assert worker.context.cookies(stack.https) == []
    assert workers_participant(stack, session) == (completion_code, assignment, "6")


def test_oTrees_own_hit_opens_the_study_in_a_tab_and_shows_the_completion_code(stack, mturk_sites, worker):
    session = mturk_session(stack)
    mturk_sites.hit_pages["/dynamic/hit"] = otrees_hit(stack, start_url(session))
    # A worker previewing the HIT gets no link yet.
    worker.goto(f"https://{SANDBOX}/dynamic/hit?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=HIT2")
    assert worker.locator("a.otree-link").get_attribute("href") is None
    params = dict(assignmentId="ASSIGNMENT-TAB", hitId="HIT2", workerId="WORKER-TAB",
                  turkSubmitTo=f"https://{SANDBOX}")
    worker.goto(f"https://{SANDBOX}/dynamic/hit?" + urlencode(params))
    assert worker.locator("a.otree-link").get_attribute("href") == start_url(session, **params)

    with worker.expect_popup() as popup:
        worker.locator("a.otree-link").click()
    study = popup.value
    study.set_default_timeout(WAIT_MS)
    completion_code = play_survey(study)
    # Outside MTurk's frame the worker enters the code in the HIT's form, which oTree's
    # MTurk payments page then shows beside each worker.
    assert study.locator("#enter-code").is_visible() and not study.locator("#submit-hit").is_visible()
    assert worker.locator("crowd-input[name=completion_code]").count() == 1
    assert workers_participant(stack, session) == (completion_code, "ASSIGNMENT-TAB", "6")


def test_a_participant_page_is_refused_inside_another_sites_frame(stack, worker):
    start = start_url(mturk_session(stack), assignmentId="A-FOREIGN", hitId="HIT1", workerId="W-FOREIGN")
    assert "https://worker.mturk.com https://workersandbox.mturk.com" in refusal(
        worker, show_in_hit(worker, FOREIGN, start))


def test_an_admin_page_is_refused_inside_mturks_frame(stack, worker):
    assert "frame-ancestors 'none'" in refusal(worker, show_in_hit(worker, WORKER, f"{stack.https}/login"))
