"""Every script in benchmarks/ runs with its --tiny numbers and prints its figures, so that none
can rot unnoticed between the runs that produce the README's numbers. The figures themselves are
not judged: a tiny run measures nothing. The scripts that need a server use the shared one; what
they change there (sessions, a backup restored, a study added and removed, a release) is undone
or harmless to the tests after them."""
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.docker

FIGURE = r"-?[0-9]+(\.[0-9]+)?"


def benchmark(stack, script, *args, timeout):
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "benchmarks", script), "--tiny", *args],
                            cwd=REPO_ROOT, env=dict(os.environ, OTREE_STACK_ENV=stack.env_path),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def test_every_script_in_benchmarks_has_a_test_here():
    scripts = sorted(name for name in os.listdir(os.path.join(REPO_ROOT, "benchmarks")) if name.endswith(".py"))
    with open(__file__, encoding="utf-8") as handle:
        this = handle.read()
    assert [script for script in scripts if f'"{script}"' not in this] == []


def test_postgres_round_trip(stack):
    printed = benchmark(stack, "postgres_round_trip.py", timeout=120)
    for query in ("SELECT 1", "UPDATE \\+ COMMIT"):
        assert re.search(rf"{query} +socket +{FIGURE} us +TCP +{FIGURE} us +socket/TCP x{FIGURE}", printed), printed


def test_connection_per_request(stack):
    printed = benchmark(stack, "connection_per_request.py", timeout=600)  # it may build its bare images first
    assert re.search(rf"requests/s +keep +{FIGURE} +close +{FIGURE} +close/keep x{FIGURE}", printed), printed
    assert re.search(rf"oTree CPU ms/req +keep +{FIGURE} +close +{FIGURE}", printed), printed


def test_stack_vs_bare(stack):
    printed = benchmark(stack, "stack_vs_bare.py", "--stack-env", stack.env_path, timeout=300)
    assert "Stack's speed-ups: both on (bare oTree as it comes), medians of 1 pairs:" in printed, printed
    for figure in ("flow requests/s", "flow p95", "flow oTree CPU", "form page requests/s", "form page p95",
                   "form page oTree CPU"):
        assert re.search(rf"{figure} +bare +{FIGURE} +stack +{FIGURE} .* stack/bare x{FIGURE}", printed), printed


def test_export_under_load(stack):
    printed = benchmark(stack, "export_under_load.py", timeout=300)
    assert re.search(rf"alone: +{FIGURE} req/s", printed), printed
    for phase in ("during invoke export-data loop", "during /api/export_wide loop"):
        assert re.search(rf"{phase}: +{FIGURE} req/s .* ratio to alone {FIGURE}", printed), printed
    for command in ("invoke backup", "invoke export-data", "invoke restore"):  # restore with today's flags
        assert re.search(rf"{command} +{FIGURE} s", printed), printed


def test_add_study_while_serving(stack):
    printed = benchmark(stack, "add_study_while_serving.py", timeout=420)
    for phase in ("quiet", "study add by address \\(own port\\)", "study remove bench-port"):
        assert re.search(rf"^{phase} +{FIGURE} s +\d+ requests +\d+ failed .* p95 +{FIGURE} ms", printed, re.M), printed
    assert "bench-port" not in stack.invoke("studies").stdout  # removed again


def test_deploy_times(stack):
    printed = benchmark(stack, "deploy_times.py", timeout=600)
    assert re.search(rf"code and model change +deploy +{FIGURE} s, participants' downtime +{FIGURE} s", printed), \
        printed
    # The shared server goes back to the code it ran; the new column stays, and the rollback names
    # the backup from before the release that added it.
    rolled = stack.invoke("rollback").stdout
    assert re.search(r"before v\d+ changed its tables, restore that release's backup .*invoke restore \S+ --study",
                     rolled.replace("\n    ", " ")), rolled
