"""Locust users that play oTree browser-bot participants over plain HTTPS, as `invoke loadtest` runs them.

The sessions are in oTree's browser-bot mode (POST /create_browser_bots_session, the route
oTree's own launcher uses), so the server fills every form from the project's tests.py. Each
step's session is created before the step (--links-file). Each user takes one participant's start link, GETs it, submits the form the server returns
(with the auto-submit script oTree adds while the bot has a next submission), follows the
redirect, and re-GETs wait pages until they let it on, until the bot has nothing more to submit;
then it takes the next participant. Requests are named by page, so the CSVs show each page;
"submit" rows are page submits.

stack/loadtest.py runs it, one step at a time, and passes the options; it writes the step's own
facts (when the load ran, its own CPU, participants finished) to a file."""
import json
import time
from html.parser import HTMLParser
from urllib.parse import urlsplit

import gevent
from gevent.queue import Queue
from locust import HttpUser, constant, events, task

# Appended by oTree to a browser bot's page while its bot has a next submission.
AUTO_SUBMIT = "browser-bot-auto-submit"
WAIT_PAGE = "otree-wait-page"
FINISHED_PATH = "/OutOfRangeNotification/"
# How long a participant may wait on a wait page before it counts as stuck (an error).
WAIT_LIMIT_SECONDS = 60


@events.init_command_line_parser.add_listener
def _options(parser):
    parser.add_argument("--session-config", default="", help="The oTree session config to play.")
    parser.add_argument("--links-file", default="", help="Start links of the session created for this step.")
    parser.add_argument("--poll-seconds", type=float, default=0.5, help="Pause between re-GETs of a wait page.")
    parser.add_argument("--facts-file", default="", help="Where this step's own facts are written (JSON).")


class Pool:
    """Start links of the participants of the session created for this step (--links-file).
    When they are used up the step ends early (stack/loadtest.py then runs it again with a
    bigger session): a session created now would hold oTree's lock while it is measured."""

    def __init__(self):
        self.links = None

    def take(self, environment):
        """A start link, or None when there are no more (the step then stops)."""
        if self.links is None:
            self.links = Queue()
            with open(environment.parsed_options.links_file, encoding="utf-8") as handle:
                for line in handle:
                    self.links.put(line.strip())
        if self.links.empty():
            FACTS.setdefault("ran_out", time.time())
            environment.runner.quit()
            return None
        return self.links.get()


POOL = Pool()
FACTS = {"participants_finished": 0, "participants_stuck": 0}


class FormFields(HTMLParser):
    """The fields of the page's form (id "form") as a browser's form.submit() sends them."""

    def __init__(self):
        super().__init__()
        self.inside = False
        self.fields = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("id") == "form"
        elif self.inside and tag in ("input", "textarea", "select") and attrs.get("name"):
            if attrs.get("type") in ("checkbox", "radio") and "checked" not in attrs:
                return
            self.fields.setdefault(attrs["name"], attrs.get("value") or "")

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False


def page_name(url):
    """/p/<participant>/<app>/<Page>/<index> -> 'app/Page'; the start link is 'start'."""
    parts = urlsplit(url).path.split("/")
    return f"{parts[3]}/{parts[4]}" if len(parts) == 6 and parts[1] == "p" else "start"


class Participant(HttpUser):
    wait_time = constant(0)

    def on_start(self):
        self.client.verify = False

    @task
    def play(self):
        link = POOL.take(self.environment)
        if not link:
            return
        response = self.client.get(link, name="start")
        waiting_since = None
        while response.ok:
            html = response.text
            url = response.url
            if urlsplit(url).path.startswith(FINISHED_PATH) or (AUTO_SUBMIT not in html and WAIT_PAGE not in html):
                # Past the last page, or a bot that stops before it: this participant is done.
                FACTS["participants_finished"] += 1
                return
            if AUTO_SUBMIT in html:
                waiting_since = None
                parser = FormFields()
                parser.feed(html)
                response = self.client.post(url, data=parser.fields, name=f"submit {page_name(url)}")
                continue
            # A wait page: a browser's websocket would say when to go on; here, ask again shortly.
            waiting_since = waiting_since or time.monotonic()
            if time.monotonic() - waiting_since > WAIT_LIMIT_SECONDS:
                FACTS["participants_stuck"] += 1
                events.request.fire(request_type="WAIT", name=page_name(url), response_time=0, response_length=0,
                                    exception=RuntimeError(f"still waiting after {WAIT_LIMIT_SECONDS} s"),
                                    context={})
                return
            gevent.sleep(self.environment.parsed_options.poll_seconds)
            response = self.client.get(url, name=f"wait {page_name(url)}")


@events.spawning_complete.add_listener
def _spawned(user_count, **kwargs):
    FACTS.setdefault("started", time.time())
    FACTS.setdefault("cpu_started", time.process_time())


@events.test_stop.add_listener
def _stopped(environment, **kwargs):
    started = FACTS.get("started", time.time())
    FACTS.update(stopped=time.time(),
                 generator_cpu=(time.process_time() - FACTS.get("cpu_started", time.process_time()))
                 / max(time.time() - started, 1e-6))
    with open(environment.parsed_options.facts_file, "w", encoding="utf-8") as handle:
        json.dump(FACTS, handle)
