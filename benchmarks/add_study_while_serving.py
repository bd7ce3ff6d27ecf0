"""What adding a study costs the studies already running: participants' requests to the first
study of a server while `invoke study add` adds a second one by name and a third one reached by
address on a port of its own (both only reload nginx), then removes both.

    OTREE_STACK_ENV=/path/to/test-server.env python3 benchmarks/add_study_while_serving.py [--tiny]

It drives the server of OTREE_STACK_ENV at 127.0.0.1 only, from 4 threads, in phases that stop by
themselves; it adds and removes studies named bench-named and bench-port: use a test server with
one study. Prints, per phase, the requests, the failed ones (and what failed), the ones resent
as a browser resends them, and p50/p95/max latency.

--tiny: a quiet phase of 2 s and only the study reached by address, added and removed: the
smallest run that still takes every step, for the test suite (tests/test_benchmarks_run.py), so
the script cannot rot unnoticed; its figures mean nothing."""
import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

import requests
import urllib3

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from stack import settings  # noqa: E402

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
THREADS = 4
QUIET_SECONDS = 15


def load(url, stop, results, resent):
    """GET the room page (through nginx to oTree) until stopped: the latency, or what failed."""
    client = requests.Session()
    client.verify = False
    client.trust_env = False  # a proxy from the environment must not carry loopback traffic
    while not stop.is_set():
        started = time.monotonic()
        try:
            try:
                status = client.get(url, timeout=10).status_code
            except requests.ConnectionError as error:
                # A reload closes idle keep-alive connections; a browser resends a request that
                # met one closed before any answer, and so does this client, once.
                if "RemoteDisconnected" not in repr(error):
                    raise
                resent.append(1)
                status = client.get(url, timeout=10).status_code
        except requests.RequestException as error:
            status = type(error).__name__
        results.append(time.monotonic() - started if status == 200 else status)


def phase(name, url, action):
    stop, results, resent = threading.Event(), [], []
    threads = [threading.Thread(target=load, args=(url, stop, results, resent)) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    action()
    seconds = time.monotonic() - started
    stop.set()
    for thread in threads:
        thread.join()
    latencies = sorted(value for value in results if isinstance(value, float))
    failed = len(results) - len(latencies)
    kinds = sorted({str(value) for value in results if not isinstance(value, float)})
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
    print(f"{name:<34} {seconds:6.1f} s {len(results):6d} requests {failed:4d} failed {len(resent):3d} resent  "
          f"p50 {statistics.median(latencies) * 1000:6.1f} ms  p95 {p95 * 1000:6.1f} ms  "
          f"max {max(latencies) * 1000:7.1f} ms  {' '.join(kinds)}")


def invoke(*args):
    result = subprocess.run(["invoke", *args], capture_output=True, text=True, timeout=900)
    if result.returncode:
        sys.exit(f"invoke {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true",
                        help="2 s quiet, only the study by address (the test suite's run)")
    tiny = parser.parse_args().tiny
    loaded = settings.load()
    first = loaded.study()
    url = f"https://127.0.0.1:{first.https_port}/room/prolific"
    print(f"{THREADS} clients on {url}")
    phase("quiet", url, lambda: time.sleep(2 if tiny else QUIET_SECONDS))
    try:
        if not tiny:
            phase("study add by name", url, lambda: invoke("study", "add", "bench-named", "--project", "otree_project",
                                                           "--domain", "named.bench.test"))
        phase("study add by address (own port)", url,
              lambda: invoke("study", "add", "bench-port", "--project", "otree_project"))
    finally:
        for name in ("bench-named", "bench-port"):
            if any(study.name == name for study in settings.load().studies):
                phase(f"study remove {name}", url, lambda name=name: invoke("study", "remove", name, "--confirm", name))


if __name__ == "__main__":
    main()
