"""A project as `otree startproject` writes it (tests/projects/startproject: oTree, psycopg2 and
sentry-sdk unpinned, no requests), added as a second study of the shared test server: its image
still carries what oTree's bots need, the bots pass in the container, the oTree version actually
installed is shown, the researcher is told to pin it, and `invoke loadtest` plays it."""
import json
import os
import re
import shutil

import pytest

from tests.helpers import REPO_ROOT, invoke

pytestmark = pytest.mark.docker

STUDY = "startproj"


@pytest.fixture(scope="module")
def added(stack):
    result = invoke(stack.env_path, "study", "add", STUDY, "--project", "tests/projects/startproject",
                    timeout=1200)
    try:
        yield result
    finally:
        # The shared server goes back to one study, which the other test modules expect.
        invoke(stack.env_path, "study", "remove", STUDY, "--confirm", STUDY, check=False)


def test_the_researcher_is_told_to_pin_otree(added):
    assert "does not pin oTree to one version (otree>=5.0.0a21)" in added.stderr


def test_the_bots_run_in_the_container_of_a_project_that_does_not_list_requests(stack, added):
    result = invoke(stack.env_path, "otree", "--study", STUDY, "--", "test", "survey", "3", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Bots completed session" in output
    assert "install requests" not in output


def test_status_shows_the_otree_version_installed_not_the_requirement(stack, added):
    status = invoke(stack.env_path, "status", "--study", STUDY).stdout
    installed = re.search(r"^\s*oTree\s+(\S+)", status, re.M)
    assert installed and re.fullmatch(r"\d+\.\d+\.\d+", installed.group(1)), status


def test_a_loadtest_of_it_completes(stack, added):
    """Its bots stop before the last page (Results has no button): those participants count as finished."""
    result = invoke(stack.env_path, "loadtest", "--study", STUDY, "--participants", "5", "--duration", "5")
    assert re.search(r"(Capacity: about 5 participants, each submitting a page every [\d.]+ seconds, at p95 under "
                     r"1 s for|Not even 5 participants of) 'survey' (on|stayed)", result.stdout), result.stdout
    folder = re.search(r"report.html \(plots\) are in (\S+)/", result.stdout)[1]
    with open(os.path.join(REPO_ROOT, folder, "summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    shutil.rmtree(os.path.join(REPO_ROOT, folder))
    assert summary["steps"][0]["participants_finished"] > 0 and summary["steps"][0]["errors"] == 0
