"""How much `invoke export-data` slows participants down, next to oTree's REST export, plus how long
backup, restore and export take. Prints medians and ratios from one run.

    .venv-test/bin/python benchmarks/export_under_load.py [--seconds 30] [--threads 6] [--tiny]

It drives the stack of the env file in OTREE_STACK_ENV (or .env) at 127.0.0.1 only, with
participants who play the example study over plain HTTP (tests/participants.py), in bounded
phases that stop by themselves. It creates sessions and backups in that stack, and restores
the last backup: use a test stack.

--tiny: phases of 3 s with one participant, each duration taken once: the smallest run that still
takes every step, for the test suite (tests/test_benchmarks_run.py), so the script cannot rot
unnoticed; its figures mean nothing.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time

import requests
import urllib3

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from stack import settings  # noqa: E402
from tests.participants import LAST_PAGE, Participant  # noqa: E402

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


class Target:
    def __init__(self):
        study = settings.load().study()  # a server with one study (a test stack)
        self.study = study.name
        self.https = f"https://127.0.0.1:{study.https_port}"
        self.key = {"otree-rest-key": study.get("OTREE_REST_KEY")}

    def session(self, participants):
        # Everybody is grouped alone at once, so each thread plays without waiting for others.
        body = dict(session_config_name="prolific_study", num_participants=participants,
                    modified_session_config_fields=dict(grouping_max_wait_seconds=-1))
        response = requests.post(self.https + "/api/sessions", json=body, headers=self.key, verify=False, timeout=120)
        response.raise_for_status()
        return response.json()

    def invoke(self, *args):
        started = time.monotonic()
        result = subprocess.run(["invoke", *args], capture_output=True, text=True)
        if result.returncode:
            sys.exit(f"invoke {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return time.monotonic() - started


def load_phase(target, seconds, threads, background=None):
    """Participants play for `seconds` while `background` (a function) runs in a loop. Returns
    (participant requests per second: median of 1 s buckets, failed requests, background runs)."""
    places = threads * 42  # enough for the phase, a multiple of the game's group size (3)
    session = target.session(places)
    labels = iter(range(places))
    log, errors, lock, stop = [], [], threading.Lock(), threading.Event()

    def play():
        while not stop.is_set():
            with lock:
                label = next(labels, None)
            if label is None:
                return
            try:
                Participant(f"{session['session_wide_url']}?participant_label=B{label}", log=log).play_until(LAST_PAGE)
            except Exception as error:
                errors.append(repr(error))

    runs = []

    def loop():
        while not stop.is_set():
            background()
            runs.append(1)

    workers = [threading.Thread(target=play) for _ in range(threads)]
    if background:
        workers.append(threading.Thread(target=loop))
    started = time.time()
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    buckets = {}
    for when, status in log:
        if started + 2 <= when < started + seconds:  # skip the ramp-up
            buckets[int(when)] = buckets.get(int(when), 0) + 1
    failed = sum(1 for _, status in log if status >= 400) + len(errors)
    return statistics.median(buckets.values()) if buckets else 0.0, failed, len(runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30, help="length of each load phase (max 120)")
    parser.add_argument("--threads", type=int, default=6, help="participants playing at once (max 20)")
    parser.add_argument("--tiny", action="store_true", help="3 s phases, one participant, each duration once")
    args = parser.parse_args()
    seconds, threads = min(args.seconds, 120), min(args.threads, 20)
    repeats = 3
    if args.tiny:
        seconds, threads, repeats = 3, 1, 1
    target = Target()

    def rest_export():
        requests.get(target.https + "/api/export_wide", headers=target.key, verify=False, timeout=120)

    def cli_export():
        target.invoke("export-data", "--output", "/tmp/otree-bench-exports")

    print(f"Load: {threads} participants playing at once, {seconds} s per phase, 127.0.0.1 only")
    baseline, failed, _ = load_phase(target, seconds, threads)
    print(f"  alone:                          {baseline:6.1f} req/s  ({failed} failed)")
    for name, background in (("during invoke export-data loop", cli_export),
                             ("during /api/export_wide loop", rest_export)):
        rate, failed, runs = load_phase(target, seconds, threads, background)
        print(f"  {name}: {rate:6.1f} req/s  ({failed} failed, {runs} exports)  ratio to alone "
              f"{rate / baseline:.2f}")

    print(f"Durations, median of {repeats} (the database now holds the sessions above):")
    for label, command in (("invoke backup", ["backup"]), ("invoke export-data", ["export-data", "--output",
                                                                                  "/tmp/otree-bench-exports"])):
        times = [target.invoke(*command) for _ in range(repeats)]
        print(f"  {label:<20} {statistics.median(times):6.1f} s")
    backups = subprocess.run(["invoke", "backups"], capture_output=True, text=True, check=True).stdout
    latest = re.findall(r"^\s+(\d{4}-\S+)\s", backups, re.M)[-1]
    times = [target.invoke("restore", latest, "--confirm", target.study) for _ in range(repeats)]
    print(f"  {'invoke restore':<20} {statistics.median(times):6.1f} s  (proof, safety backup, swap, restart)")


if __name__ == "__main__":
    main()
