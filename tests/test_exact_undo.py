"""Exact undo and one operation at a time, on the shared stack.

`restore`, `resetdb`, `down --delete-data` and `study remove` put the maintenance page up and stop
oTree before their backup of the state before, so the undo they print brings back every answer a
participant saw acknowledged. Every task that changes a study takes the operations lock; a deploy
builds under its release's tag and leaves the maintenance page as it found it."""
import datetime
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest
import requests

from stack import lock, settings, study as study_module
from tests.conftest import TEST_STACK, Stack, study_ports
from tests.helpers import REPO_ROOT

# The survey's pages, without the game's wait pages: each answer is a field one can look up.
SURVEY = ("Consent", "Demographics", "Questionnaire")


def form(page, number):
    return {"Consent": {"consent": "True"},
            "Demographics": {"age": str(18 + number % 80), "gender": "Female"},
            "Questionnaire": {"understood": "6", "fairness": "5", "strategy": f"answer {number}"}}[page]


def stored(page, number):
    """The field a page's answer sets, as psql prints it."""
    return {"Consent": "t", "Demographics": str(18 + number % 80), "Questionnaire": f"answer {number}"}[page]


QUERIES = {"Consent": "SELECT p.code, x.consent FROM consent_player x JOIN otree_participant p "
                      "ON p.id = x.participant_id",
           "Demographics": "SELECT p.code, x.age FROM demographics_player x JOIN otree_participant p "
                           "ON p.id = x.participant_id",
           "Questionnaire": "SELECT p.code, x.strategy FROM questionnaire_player x JOIN otree_participant p "
                            "ON p.id = x.participant_id"}


class Submitters:
    """Participants answering the survey as fast as they can, each in a thread, one new participant
    after another, through nginx. Every POST is recorded: acknowledged (answered with the next
    page) or not. A thread stops at its first answer that is not acknowledged (the maintenance
    page), noting when it saw it."""

    def __init__(self, session, threads):
        self.url = session["session_wide_url"]
        self.numbers = itertools.count()
        self.guard = threading.Lock()
        self.acknowledged = []  # (participant code, page, stored value)
        self.refused = []  # (time, HTTP status) of the first answer a thread saw not acknowledged
        self.errors = []
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        for thread in self.threads:
            thread.join(timeout=120)

    def wait_for(self, count, timeout=120):
        deadline = time.time() + timeout
        while len(self.acknowledged) < count:
            assert not self.errors, self.errors
            assert time.time() < deadline, f"only {len(self.acknowledged)} answers acknowledged"
            time.sleep(0.2)

    @property
    def first_maintenance_page(self):
        seen = [moment for moment, status in self.refused if status == 503]
        return min(seen) if seen else None

    def _run(self):
        try:
            while self._participant():
                pass
        except Exception as error:  # reported by wait_for and the test
            self.errors.append(repr(error))

    def _participant(self):
        with self.guard:
            number = next(self.numbers)
        http = requests.Session()
        http.verify, http.trust_env = False, False
        page = http.get(f"{self.url}?participant_label=undo{number}", timeout=60)
        if page.status_code != 200 or "/p/" not in page.url:
            self.refused.append((time.time(), page.status_code))
            return False
        code = page.url.split("/p/")[1].split("/")[0]
        for name in SURVEY:
            assert f"/{name}/" in page.url, page.url
            answered = http.post(page.url, data=form(name, number), timeout=60)
            if answered.status_code != 200 or answered.url == page.url:
                self.refused.append((time.time(), answered.status_code))
                return False
            with self.guard:
                self.acknowledged.append((code, name, stored(name, number)))
            page = answered
        return True


def survey_session(stack, participants):
    return stack.rest("POST", "/api/sessions", json={"session_config_name": "survey_only",
                                                     "num_participants": participants})


def missing_answers(stack, acknowledged):
    present = {(code, page, value) for page, query in QUERIES.items() for code, value in stack.sql(query)}
    return [answer for answer in acknowledged if answer not in present]


def undo_id(output):
    return re.search(r"To undo: invoke restore (\S+)", output).group(1)


def manifest_in(output, pattern):
    """The manifest of the backup whose folder the output names after `pattern`."""
    path = re.search(pattern + r" \S+(?:: | \()([^\s)]+)", output).group(1)
    with open(os.path.join(path, "manifest.json"), encoding="utf-8") as handle:
        return json.load(handle)


def backed_up_after_the_maintenance_page(submitters, manifest):
    """The backup began (its created_at, whole seconds) no earlier than the first maintenance page."""
    seen = submitters.first_maintenance_page
    assert seen is not None, f"no participant saw the maintenance page: {submitters.refused}"
    started = datetime.datetime.fromisoformat(manifest["created_at"]).timestamp()
    assert started >= int(seen), (f"the backup began at {manifest['created_at']}, before the maintenance page "
                                  f"({datetime.datetime.fromtimestamp(seen, datetime.timezone.utc):%H:%M:%S} UTC): "
                                  "answers acknowledged in between are in no backup")


def participant_page_status(stack, session):
    response = requests.get(f"{session['session_wide_url']}?participant_label=after", verify=False, timeout=60)
    return response.status_code


def test_the_undo_of_a_restore_brings_back_every_answer_acknowledged_before_the_maintenance_page(stack):
    target = re.search(r"invoke restore (\S+)", stack.invoke("backup").stdout).group(1)
    session = survey_session(stack, 500)
    with Submitters(session, 6) as submitters:
        submitters.wait_for(30)
        restored = stack.invoke("restore", target, "--confirm", stack.name)
    assert not submitters.errors, submitters.errors
    safety = undo_id(restored.stdout)
    assert stack.sql(f"SELECT count(*) FROM otree_session WHERE code = '{session['code']}'") == [["0"]]
    # The maintenance page is off again, as it was, and the replaced database is kept and listed.
    assert participant_page_status(stack, survey_session(stack, 1)) == 200
    listed = stack.invoke("backups").stdout + stack.invoke("status").stdout

    stack.invoke("restore", safety, "--confirm", stack.name)
    acknowledged = submitters.acknowledged
    missing = missing_answers(stack, acknowledged)
    assert missing == [], f"{len(missing)} of {len(acknowledged)} acknowledged answers are not in the undo"
    backed_up_after_the_maintenance_page(submitters,
                                         manifest_in(restored.stdout, "The state before the restore is backup"))
    assert listed.count("the database as it was before the restore") == 2  # invoke backups and invoke status
    assert f"invoke restore {safety}" in listed


def test_the_undo_of_a_resetdb_holds_every_answer_acknowledged_before_it(stack):
    session = survey_session(stack, 200)
    with Submitters(session, 2) as submitters:
        submitters.wait_for(10)
        emptied = stack.invoke("resetdb", "--confirm", stack.name)
    assert not submitters.errors, submitters.errors
    assert stack.sql("SELECT count(*) FROM otree_session") == [["0"]]
    assert participant_page_status(stack, survey_session(stack, 1)) == 200
    listed = stack.invoke("backups").stdout

    stack.invoke("restore", undo_id(emptied.stdout), "--confirm", stack.name)
    missing = missing_answers(stack, submitters.acknowledged)
    assert missing == [], f"{len(missing)} of {len(submitters.acknowledged)} acknowledged answers are not in the undo"
    backed_up_after_the_maintenance_page(submitters, manifest_in(emptied.stdout, "What was there is backup"))
    assert "the database as it was before the resetdb" in listed


@pytest.fixture
def lock_held_elsewhere(stack):
    """The operations lock held by another process, as a running `invoke backup` holds it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from stack import lock, settings\n"
         f"with lock.held(settings.load({stack.env_path!r}).server, 'backup of {stack.name}'):\n"
         "    print('held', flush=True); sys.stdin.read()"],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    yield holder.pid
    holder.stdin.close()
    holder.wait(timeout=30)


@pytest.mark.parametrize("task", [
    pytest.param(task, id=task[0] + ("-delete-data" if "--delete-data" in task else "")) for task in (
        ["maintenance", "on"], ["restore", "latest", "--confirm", TEST_STACK], ["resetdb", "--confirm", TEST_STACK],
        ["migrate"], ["up"], ["down"], ["down", "--delete-data", "--confirm", TEST_STACK], ["backup"],
        ["study", "remove", TEST_STACK, "--confirm", TEST_STACK])])
def test_a_task_that_changes_a_study_is_refused_while_another_holds_the_lock(stack, lock_held_elsewhere, task):
    sessions = stack.sql("SELECT code FROM otree_session ORDER BY id")
    refused = stack.invoke(*task, check=False)
    assert refused.returncode == 1
    assert (f"Another operation is running on this server: backup of {stack.name}" in refused.stderr
            and f"(process {lock_held_elsewhere})" in refused.stderr), refused.stdout + refused.stderr
    loaded = settings.load(stack.env_path)
    assert not os.path.exists(os.path.join(loaded.server.proxy_dir, "studies", stack.name, "maintenance"))
    assert stack.sql("SELECT code FROM otree_session ORDER BY id") == sessions
    assert "otree" in stack.compose("ps", "--status", "running", "--services").stdout.split()


@pytest.mark.unit
def test_the_lock_is_re_entrant_within_a_process_and_refuses_another(tmp_path):
    class Server:
        studies_dir = str(tmp_path)
    other = [sys.executable, "-c", "import sys; from stack import lock\n"
             f"class S: studies_dir = {str(tmp_path)!r}\n"
             "try:\n    with lock.held(S, 'second'): print('got it')\n"
             "except Exception as error: print(error)"]
    with lock.held(Server, "deploy of a"):
        with lock.held(Server, "up of a"):  # a deploy of a new study runs `up`
            inside = subprocess.run(other, cwd=REPO_ROOT, capture_output=True, text=True).stdout
        after_inner = subprocess.run(other, cwd=REPO_ROOT, capture_output=True, text=True).stdout
    assert "Another operation is running on this server: deploy of a" in inside
    assert f"(process {os.getpid()})" in inside
    assert "Another operation is running on this server: deploy of a" in after_inner  # the outer still holds it
    assert subprocess.run(other, cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip() == "got it"


def changed_copy(name, change):
    """A copy of the example project in .test-projects/ (inside the repository, as Docker needs)."""
    folder = os.path.join(REPO_ROOT, ".test-projects", f"{TEST_STACK}-{name}")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(os.path.join(REPO_ROOT, "otree_project"), folder)
    with open(os.path.join(folder, "settings.py"), "a", encoding="utf-8") as handle:
        handle.write(change)
    return folder


def image_id(reference):
    return subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", reference], capture_output=True,
                          text=True).stdout.strip()


def test_a_deploy_builds_under_its_release_tag_and_a_deploy_and_rollback_keep_the_maintenance_page_on(stack):
    folder = changed_copy("deploy", "\n# a change, so that the release's image differs\n")
    study = settings.load(stack.env_path).study(stack.name)
    live = f"otree-stack/otree:{study.project}"
    before = image_id(live)
    session = survey_session(stack, 1)
    stack.invoke("maintenance", "on")
    try:
        deploy = subprocess.Popen(["invoke", "deploy", "--study", stack.name, "--project", folder, "--force"],
                                  cwd=REPO_ROOT, env=dict(os.environ, OTREE_STACK_ENV=stack.env_path),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output, during_build = [], None
        for line in deploy.stdout:
            output.append(line)
            if "Comparing the new models" in line:  # built; the switch is a backup away
                release = re.search(r"Release v(\d+)", "".join(output)).group(1)
                during_build = (image_id(live), image_id(f"otree-stack/otree:{study.project}-v{release}"))
        assert deploy.wait() == 0, "".join(output)
        assert during_build is not None, "".join(output)
        assert during_build[0] == before, "the build moved the live tag minutes before the switch"
        assert during_build[1] and during_build[1] != before
        assert image_id(live) == during_build[1]  # moved at the switch
        assert participant_page_status(stack, session) == 503, "the deploy turned the maintenance page off"

        stack.invoke("rollback")  # back to the example project, as the other tests expect
        assert image_id(live) == before
        assert participant_page_status(stack, session) == 503, "the rollback turned the maintenance page off"
        # The study runs otree_project again: its releases go, so that a next run starts from none.
        shutil.rmtree(os.path.join(REPO_ROOT, "releases", stack.name))
        tags = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
                               f"otree-stack/otree:{study.project}-v*"], capture_output=True, text=True).stdout.split()
        subprocess.run(["docker", "image", "rm", *tags], capture_output=True)
    finally:
        stack.invoke("maintenance", "off")
        shutil.rmtree(folder, ignore_errors=True)
    assert participant_page_status(stack, session) == 200


@pytest.fixture(scope="module")
def second_study(stack):
    """A second study on the shared stack, on a copy of the example project that a test may break."""
    name = f"{TEST_STACK}-second"[:30]
    folder = changed_copy("second", "")
    stack.invoke("study", "add", name, "--project", folder)
    try:
        yield Stack(stack.env_path, study=name), folder
    finally:
        stack.invoke("study", "remove", name, "--confirm", name, check=False)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(os.path.join(REPO_ROOT, "backups", name), ignore_errors=True)


def test_down_delete_data_backs_up_after_the_maintenance_page(stack, second_study):
    study, _ = second_study
    try:
        with Submitters(survey_session(study, 200), 1) as submitters:
            submitters.wait_for(3)
            deleted = stack.invoke("down", "--study", study.name, "--delete-data", "--confirm", study.name)
        assert not submitters.errors, submitters.errors
        backed_up_after_the_maintenance_page(submitters, manifest_in(deleted.stdout, "The data as it was is backup"))
    finally:
        stack.invoke("up", "--study", study.name)  # empty, for the next test


def test_a_study_whose_otree_cannot_start_is_removed_after_a_verified_backup(stack, second_study):
    study, folder = second_study
    volume = settings.load(stack.env_path).study(study.name).postgres_volume
    stack.invoke("resetdb", "--study", study.name, "--confirm", study.name)
    survey_session(study, 2)
    stack.invoke("down", "--study", study.name)
    with open(os.path.join(folder, "settings.py"), "a", encoding="utf-8") as handle:
        handle.write("\nraise RuntimeError('this project cannot start')\n")
    assert stack.invoke("up", "--study", study.name, check=False).returncode == 1

    removed = stack.invoke("study", "remove", study.name, "--confirm", study.name, check=False)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    final = manifest_in(removed.stdout, "Its data as it was is backup")
    assert final["reason"] == "before-remove" and final["verification"]["status"] == "passed"
    assert final["tables"]["otree_session"] == 1 and final["tables"]["otree_participant"] == 2
    assert [each.name for each in settings.load(stack.env_path).studies] == [stack.name]
    assert subprocess.run(["docker", "volume", "inspect", volume], capture_output=True).returncode != 0


def test_study_remove_of_a_running_study_backs_up_after_the_maintenance_page(stack):
    name = f"{TEST_STACK}-third"[:30]
    stack.invoke("study", "add", name, "--project", "otree_project")
    try:
        study = Stack(stack.env_path, study=name)
        with Submitters(survey_session(study, 200), 1) as submitters:
            submitters.wait_for(3)
            removed = stack.invoke("study", "remove", name, "--confirm", name)
        assert not submitters.errors, submitters.errors
        backed_up_after_the_maintenance_page(submitters, manifest_in(removed.stdout, "Its data as it was is backup"))
    finally:
        stack.invoke("study", "remove", name, "--confirm", name, check=False)
        shutil.rmtree(os.path.join(REPO_ROOT, "backups", name), ignore_errors=True)


def test_a_study_that_never_started_is_removed_and_says_it_had_no_database(stack):
    """A settings file left without a study behind it (a first deploy that failed, on older stacks)."""
    name = f"{TEST_STACK}-never"[:30]
    loaded = settings.load(stack.env_path)
    path = settings.study_path(loaded.server, name)
    text = study_module._render_study_file({"OTREE_PROJECT_DIR": "otree_project", "BACKUP_DIR": f"backups/{name}",
                                            "HTTPS_PORT": str(study_ports()[3])})
    study_module._write_new(path, text)
    try:
        removed = stack.invoke("study", "remove", name, "--confirm", name, check=False)
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert "has no database (it never started): no final backup is taken" in removed.stderr
        assert f"Removed the study '{name}'" in removed.stdout
        assert [study.name for study in settings.load(stack.env_path).studies] == [stack.name]
    finally:
        if os.path.exists(path):
            os.remove(path)
