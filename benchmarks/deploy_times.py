"""How long a deploy takes, and how long participants see the maintenance page: three deploys each
of an unchanged project, a code change (a page's template) and a model change (a new field).

    OTREE_STACK_ENV=/path/to/test-server.env python3 benchmarks/deploy_times.py [--tiny]

It deploys a copy of the example project (in .bench-projects/, removed afterwards) to the first
study of the server OTREE_STACK_ENV names, on this machine (`invoke deploy` without --on: the
same steps a laptop's deploy runs on the server, without the copy over SSH). Use a test server:
each deploy is a real release. Prints each deploy's wall time and downtime, then the medians.

--tiny: one deploy with both changes, measured (a study without releases adopts what runs as v1
in it): the smallest run that still takes every step, for the test suite
(tests/test_benchmarks_run.py), so the script cannot rot unnoticed; its figures mean nothing."""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = os.path.join(REPO_ROOT, ".bench-projects", "deploy")
ROUNDS = 3


def git(*args):
    subprocess.run(["git", "-C", PROJECT, "-c", "user.name=Bench", "-c", "user.email=b@example.edu", *args],
                   check=True, capture_output=True)


def deploy():
    started = time.monotonic()
    result = subprocess.run(["invoke", "deploy", "--project", PROJECT, "--force"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=900)
    seconds = time.monotonic() - started
    if result.returncode:
        sys.exit(f"deploy failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    downtime = float(re.search(r"maintenance page for ([0-9.]+) s", result.stdout).group(1))
    return seconds, downtime


def change_code(round_number):
    path = os.path.join(PROJECT, "consent", "Consent.html")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text + f"\n{{# benchmark round {round_number} #}}\n")
    git("commit", "-qam", f"code change {round_number}")


def change_models(round_number):
    path = os.path.join(PROJECT, "questionnaire", "__init__.py")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    field = f"    bench_{round_number} = models.IntegerField(blank=True)\n"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text.replace("    strategy = models.LongStringField(", field + "    strategy = models.LongStringField(", 1))
    git("commit", "-qam", f"model change {round_number}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="one deploy with both changes (the test suite's run)")
    tiny = parser.parse_args().tiny
    rounds = 1 if tiny else ROUNDS
    kinds = (("unchanged project", ()), ("code change", (change_code,)), ("model change", (change_models,)))
    if tiny:
        kinds = (("code and model change", (change_code, change_models)),)
    shutil.rmtree(PROJECT, ignore_errors=True)
    shutil.copytree(os.path.join(REPO_ROOT, "otree_project"), PROJECT)
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "benchmark")
    results = {}
    try:
        if not tiny:
            deploy()  # the first deploy adopts what runs as v1; not measured
        for kind, changes in kinds:
            for round_number in range(rounds):
                for change in changes:
                    change(round_number)
                seconds, downtime = deploy()
                results.setdefault(kind, []).append((seconds, downtime))
                print(f"{kind:<21} round {round_number + 1}: deploy {seconds:5.1f} s, downtime {downtime:4.1f} s",
                      flush=True)
    finally:
        shutil.rmtree(os.path.dirname(PROJECT), ignore_errors=True)
    print(f"\nmedians of {rounds}:")
    for kind, rows in results.items():
        print(f"{kind:<21} deploy {statistics.median(r[0] for r in rows):5.1f} s, "
              f"participants' downtime {statistics.median(r[1] for r in rows):4.1f} s")


if __name__ == "__main__":
    main()
