"""Participants as plain HTTP clients through nginx: each GETs its page, POSTs the form, and
reloads wait pages until they move on, as a browser would after the websocket says go."""
import threading
import time
from urllib.parse import urlsplit

import requests

# What each page's form gets.
FORMS = {
    "Consent": {"consent": "True"},
    "Demographics": {"age": "30", "gender": "Female"},
    "Instructions": {},
    "Contribute": {"contribution": "10"},
    "Results": {},
    "Questionnaire": {"understood": "6", "fairness": "5", "strategy": "even split"},
}
WAIT_PAGES = {"GroupingWaitPage", "ResultsWaitPage"}
LAST_PAGE = "Payment"  # it only redirects to Prolific, so it is never completed
PAGES_PER_PARTICIPANT = 9  # the start link and every page before Payment, wait pages included


class Participant:
    """One participant's browser: GET the page, POST its form, reload wait pages until they move on.
    Keeps each page it completed as (participant code, page index, page name), as PageTimes has it."""

    def __init__(self, start_url, think_seconds=0.0, log=None, answers=None):
        self.answers = {**FORMS, **(answers or {})}  # e.g. {"Consent": {"consent": "False"}}
        self.http = requests.Session()
        self.http.verify = False
        self.http.trust_env = False
        self.think_seconds = think_seconds
        self.log = log if log is not None else []  # (time, status) of every request
        self.completed = []
        self.url = None
        self._follow(self._request("GET", start_url))

    def _request(self, method, url, **kwargs):
        response = self.http.request(method, url, timeout=60, **kwargs)
        self.log.append((time.time(), response.status_code))
        response.raise_for_status()
        return response

    def _follow(self, response):
        """Every participant page passed through, redirects included, was completed."""
        for url in [self.url] + [hop.url for hop in response.history]:
            page = _page_of(url)
            if page and (not self.completed or self.completed[-1] != page) and url != response.url:
                self.completed.append(page)
        self.url = response.url

    @property
    def page_name(self):
        return _page_of(self.url)[2]

    def step(self):
        before = self.url
        if self.page_name in WAIT_PAGES:
            deadline = time.time() + 60
            while self.url == before:
                assert time.time() < deadline, f"stuck on {before}"
                time.sleep(0.3)
                self._follow(self._request("GET", self.url))
        else:
            time.sleep(self.think_seconds)
            self._follow(self._request("POST", self.url, data=self.answers[self.page_name]))
            assert self.url != before, f"the form on {before} was refused"

    def play_until(self, page_name=LAST_PAGE):
        while self.page_name != page_name:
            self.step()


def _page_of(url):
    """/p/<participant>/<app>/<Page>/<index> -> (participant, index, Page); oTree also times the
    start link, /InitializeParticipant/<participant>, as page 0. None for other URLs."""
    parts = urlsplit(url or "").path.split("/")
    if len(parts) == 6 and parts[1] == "p":
        return parts[2], int(parts[5]), parts[4]
    if len(parts) == 3 and parts[1] == "InitializeParticipant":
        return parts[2], 0, parts[1]
    return None


def play_together(participants, page_name=LAST_PAGE):
    """Each in a thread of its own: the group wait pages need all three at once."""
    errors = []

    def play(participant):
        try:
            participant.play_until(page_name)
        except Exception as error:  # reported below, with every other participant's
            errors.append(repr(error))

    threads = [threading.Thread(target=play, args=(participant,)) for participant in participants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def join(session, count, prefix, **kwargs):
    return [Participant(f"{session['session_wide_url']}?participant_label={prefix}{number}", **kwargs)
            for number in range(count)]
