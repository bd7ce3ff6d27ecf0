"""The stack against bare oTree: the same participants against `otree prodserver` alone (the
stack's own oTree image, with a Postgres of its own from the stack's postgres image, no proxy, on
a loopback port) and against the whole stack (nginx, TLS, the same image), alternated, with the
stack's oTree in three settings (MODES): both of its speed-ups off, only the compiled lookups on,
both on (OTREE_RENDER_CACHE, OTREE_COMPILED_LOOKUPS). Bare oTree is started with oTree's own
`otree` command (/opt/venv/bin/otree), not the image's, so it runs as it comes: neither speed-up
and none of the foreign-key indexes the stack's oTree adds at its start.

    .venv-test/bin/python benchmarks/stack_vs_bare.py [--participants 80] [--pairs 9] ... [--tiny]

Many short pairs rather than a few long ones: this machine's speed drifts by a quarter within
minutes, so a pair's two runs are kept close together, and the median of the per-pair ratios is
the figure.

Two loads, each from a fixed number of concurrent clients (plain HTTP with keep-alive; a client
takes its participants in turn on one connection, since the clients share this machine with the
servers and a TLS handshake per participant in Python would charge the stack for the client's
work): the example study's single-player pages (its `survey_only` config: start link,
consent, demographics, questionnaire, payment; every redirect counted as a request), and one
participant's questionnaire page (the example's largest form) by GET, for a number of seconds.
Prints each run's requests/s, p95 latency and oTree's CPU time per request (its container's),
then medians and the per-pair ratios stack/bare. It starts a server named otreespeed-bench on
127.0.0.1 ports 19880/19843 (19850-19853) and a bare oTree on 19890, apart from the test suite's
ports, and removes every container, network and volume it made when it ends, also on Ctrl-C.
With --stack-env FILE it measures that running server (its first study) instead of starting one,
and leaves it running with the last mode's speed-ups (both on, the default).

--tiny: one pair of two participants from one client and 1 s form page runs, in the mode "both
on" only: the smallest run that still takes every step, for the test suite
(tests/test_benchmarks_run.py, with --stack-env), so the script cannot rot unnoticed; its figures
mean nothing."""
import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time

import requests
import urllib3

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from stack import settings  # noqa: E402
from tests import bare  # noqa: E402
from tests.conftest import Stack, make_env_values, stop_stack  # noqa: E402
from tests.helpers import invoke, write_env  # noqa: E402

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
NAME = "otreespeed-bench"
PORTS = {"HTTP_PORT": "19880", "HTTPS_PORT": "19843", "STUDY_PORTS": "19850-19853"}
BARE_PORT = 19890
OTREE_AS_IT_COMES = ["/opt/venv/bin/otree", "prodserver", "0.0.0.0:8000"]
# name: the stack's settings for it.
MODES = {"both off": dict(OTREE_RENDER_CACHE="off", OTREE_COMPILED_LOOKUPS="off"),
         "render cache off": dict(OTREE_RENDER_CACHE="off", OTREE_COMPILED_LOOKUPS="on"),
         "both on": dict(OTREE_RENDER_CACHE="on", OTREE_COMPILED_LOOKUPS="on")}
FORMS = [("consent/Consent", {"consent": "True"}), ("demographics/Demographics", {"age": "30", "gender": "Female"}),
         ("questionnaire/Questionnaire", {"understood": "6", "fairness": "5", "strategy": "even split"})]


class Target:
    """One server under test: where participants reach it and which container runs its oTree."""

    def __init__(self, name, url, rest_key, container):
        self.name, self.url, self.rest_key, self.container = name, url, rest_key, container

    def start_links(self, count, config="survey_only"):
        headers = {"otree-rest-key": self.rest_key}
        session = requests.post(self.url + "/api/sessions", headers=headers, verify=False, timeout=600,
                                json=dict(session_config_name=config, num_participants=count)).json()
        details = requests.get(f"{self.url}/api/sessions/{session['code']}", headers=headers, verify=False,
                               timeout=60).json()
        return [f"{self.url}/InitializeParticipant/{participant['code']}" for participant in details["participants"]]

    def cpu_seconds(self):
        """CPU time of the oTree container so far (cgroup v2, else v1)."""
        script = "cat /sys/fs/cgroup/cpu.stat 2>/dev/null || cat /sys/fs/cgroup/cpuacct/cpuacct.usage"
        text = bare.docker("exec", self.container, "sh", "-c", script).stdout
        for line in text.splitlines():
            if line.startswith("usage_usec"):
                return int(line.split()[1]) / 1e6
        return int(text) / 1e9


def client():
    http = requests.Session()
    http.verify = False
    http.trust_env = False  # a proxy from the environment must not carry loopback traffic
    return http


def timed(http, latencies, method, url, **kwargs):
    started = time.monotonic()
    response = http.request(method, url, allow_redirects=False, timeout=60, **kwargs)
    latencies.append(time.monotonic() - started)
    if response.status_code != 200 and not response.is_redirect:
        raise AssertionError(f"{method} {url}: {response.status_code}")
    return response


def participant(http, link, latencies):
    """Start link to payment page, following each redirect as a request of its own."""
    http.cookies.clear()
    url = link
    for page, form in FORMS + [(None, None)]:
        while True:
            response = timed(http, latencies, "GET", url)
            if not response.is_redirect:
                break
            url = requests.compat.urljoin(url, response.headers["location"])
        if page is None:
            return
        assert page in url, f"expected {page}, at {url}"
        response = timed(http, latencies, "POST", url, data=form)
        url = requests.compat.urljoin(url, response.headers["location"])


def in_threads(concurrency, work):
    errors = []

    def run():
        try:
            work()
        except Exception as error:  # reported after the others finish
            errors.append(repr(error))
    threads = [threading.Thread(target=run) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise AssertionError(f"{len(errors)} clients failed, e.g. {errors[0]}")


def measure(target, load, concurrency):
    """(requests/s, p95 ms, oTree CPU ms a request) of one load."""
    latencies = []
    cpu, started = target.cpu_seconds(), time.monotonic()
    in_threads(concurrency, lambda: load(latencies))
    seconds, cpu = time.monotonic() - started, target.cpu_seconds() - cpu
    latencies.sort()
    return (len(latencies) / seconds, latencies[int(0.95 * (len(latencies) - 1))] * 1000,
            cpu * 1000 / len(latencies))


def flow(target, participants, concurrency, new_client=client):
    links = target.start_links(participants)
    lock = threading.Lock()

    def load(latencies):
        http = new_client()  # one connection for this client's participants in turn (see above)
        while True:
            with lock:
                if not links:
                    return
                link = links.pop()
            participant(http, link, latencies)
    return measure(target, load, concurrency)


def form_page(target, seconds, concurrency):
    [link] = target.start_links(1)
    http = client()
    participant_url = http.get(link, timeout=60).url
    for _, form in FORMS[:2]:
        participant_url = http.post(participant_url, data=form, timeout=60).url
    assert "Questionnaire" in participant_url

    def load(latencies, seconds=seconds):
        http, deadline = client(), time.monotonic() + seconds
        while time.monotonic() < deadline:
            timed(http, latencies, "GET", participant_url)
    in_threads(concurrency, lambda: load([], 2))  # warm-up, not counted
    return measure(target, load, concurrency)


def stack_settings(directory):
    """A server of its own, as the tests make one, on the benchmark's ports."""
    path, values = make_env_values(directory, NAME)
    values.update(PORTS)
    write_env(path, values)
    return Stack(path)


def set_speed_ups(stack, values):
    """As the README says to: checked, written, and oTree recreated with them."""
    invoke(stack.env_path, "config", *(part for key, value in values.items() for part in ("--set", f"{key}={value}")))


def report(rows, label, index, unit):
    """Medians per target and the per-pair ratios stack/bare, for one figure of one mode."""
    bare_values = [row["bare"][index] for row in rows]
    stack_values = [row["stack"][index] for row in rows]
    ratios = [s / b for s, b in zip(stack_values, bare_values)]
    print(f"  {label:<22} bare {statistics.median(bare_values):7.1f}  stack {statistics.median(stack_values):7.1f} "
          f"{unit:<9} stack/bare x{statistics.median(ratios):.2f}  (pairs: {', '.join(f'{r:.2f}' for r in ratios)})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=80, help="participants per flow run (default 80)")
    parser.add_argument("--concurrency", type=int, default=10, help="clients at once (default 10)")
    parser.add_argument("--pairs", type=int, default=9, help="bare/stack pairs per mode (default 9)")
    parser.add_argument("--seconds", type=float, default=6, help="length of each form page run (default 6)")
    parser.add_argument("--stack-env", help="measure this running server instead of starting one")
    parser.add_argument("--tiny", action="store_true", help="one pair of two participants, mode 'both on' only "
                                                            "(the test suite's run)")
    arguments = parser.parse_args()
    modes = MODES
    if arguments.tiny:
        arguments.participants, arguments.concurrency, arguments.pairs, arguments.seconds = 2, 1, 1, 1
        modes = {"both on": MODES["both on"]}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))  # clean up as on Ctrl-C

    directory = tempfile.mkdtemp(prefix="otreespeed-bench-")
    stack = Stack(arguments.stack_env) if arguments.stack_env else stack_settings(directory)
    bare_otree = None
    try:
        if not arguments.stack_env:
            print(f"Starting the stack {NAME} (https://127.0.0.1:{PORTS['HTTPS_PORT']}) ...", flush=True)
            invoke(stack.env_path, "up")
        project = settings.load(stack.env_path).studies[0].project
        bare_otree = bare.BareOtree(f"{NAME}-bare", f"otree-stack/otree:{project}", f"otree-stack/postgres:{project}",
                                    BARE_PORT, command=OTREE_AS_IT_COMES)
        bare_otree.start()
        targets = {"bare": Target("bare", bare_otree.url, bare_otree.rest_key, f"{bare_otree.name}-otree")}
        results = {}
        for mode, values in modes.items():
            set_speed_ups(stack, values)
            targets["stack"] = Target("stack", stack.https, stack.values["OTREE_REST_KEY"],
                                      stack.compose("ps", "-q", "otree").stdout.strip())
            for target in targets.values():  # oTree's first pages compile its templates: not measured
                flow(target, arguments.concurrency, arguments.concurrency)
            results[mode] = []
            for pair in range(arguments.pairs):
                # Each load on both targets back to back, the first of them in turn.
                order = ("bare", "stack") if pair % 2 == 0 else ("stack", "bare")
                row = {name: flow(targets[name], arguments.participants, arguments.concurrency) for name in order}
                for name in order:
                    row[name] += form_page(targets[name], arguments.seconds, arguments.concurrency)
                for name in order:
                    print(f"{mode:<16} pair {pair + 1} {name:<5}  flow {row[name][0]:6.1f} req/s p95 "
                          f"{row[name][1]:6.1f} ms cpu {row[name][2]:5.2f} ms/req   form page {row[name][3]:6.1f} "
                          f"req/s p95 {row[name][4]:6.1f} ms cpu {row[name][5]:5.2f} ms/req", flush=True)
                results[mode].append(row)
        for mode, rows in results.items():
            print(f"\nStack's speed-ups: {mode} (bare oTree as it comes), medians of {len(rows)} pairs:")
            report(rows, "flow requests/s", 0, "req/s")
            report(rows, "flow p95", 1, "ms")
            report(rows, "flow oTree CPU", 2, "ms/req")
            report(rows, "form page requests/s", 3, "req/s")
            report(rows, "form page p95", 4, "ms")
            report(rows, "form page oTree CPU", 5, "ms/req")
    finally:
        print("Removing the benchmark's containers and volumes ...", flush=True)
        if bare_otree:
            bare_otree.stop()
        if not arguments.stack_env:
            stop_stack(stack)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
