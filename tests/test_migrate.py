"""Changing the models mid-study: `invoke up` and `invoke migrate` add new tables and columns in
place and keep every earlier row, report removed fields, and refuse a changed type while the
running server keeps serving. One stack of its own, on a copy of the example project."""
import contextlib
import json
import os
import shutil
from urllib.parse import urlparse

import pytest
import requests

from stack import migrate
from tests.conftest import TEST_STACK, make_env_values, start_stack, stop_stack
from tests.helpers import REPO_ROOT, invoke, write_env

NAME = f"{TEST_STACK}-migrate"
# Inside the repository (Docker builds only from there) but outside tests/ (not in the build context).
PROJECT = os.path.join(".test-projects", NAME)
# Every participant is grouped alone at once, so one participant can play the whole study.
ALONE = dict(grouping_max_wait_seconds=-1)
OLD_ANSWERS = {"Consent": {"consent": "True"}, "Demographics": {"age": "31", "gender": "Female"},
               "Questionnaire": {"understood": "6", "fairness": "5", "strategy": "kept half"}}
FOLLOWUP_APP = '''from otree.api import *


class C(BaseConstants):
    NAME_IN_URL = 'followup'
    PLAYERS_PER_GROUP = None
    NUM_ROUNDS = 1


class Subsession(BaseSubsession):
    pass


class Group(BaseGroup):
    pass


class Player(BasePlayer):
    contact_again = models.BooleanField(label='May we invite you to a follow-up study?')


class Followup(Page):
    form_model = 'player'
    form_fields = ['contact_again']


page_sequence = [Followup]
'''
FOLLOWUP_PAGE = ("{{ block title }}Follow-up{{ endblock }}\n"
                 "{{ block content }}\n{{ formfields }}\n{{ next_button }}\n{{ endblock }}\n")


def edit(relative, old, new):
    path = os.path.join(REPO_ROOT, PROJECT, relative)
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    assert old in text, f"{old!r} is not in {relative}"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text.replace(old, new))


def play(stack, session, label, answers):
    """One participant through nginx, with plain GET and POST of each page's form as a browser
    submits it. answers: {page name: form data}. Returns the names of the pages seen."""
    http = requests.Session()
    response = http.get(f"{session['session_wide_url']}?participant_label={label}", verify=False, timeout=60)
    seen = []
    while True:
        response.raise_for_status()
        page = urlparse(response.url).path.split("/")[-2]  # /p/<code>/<app>/<Page>/<index>
        assert page not in seen, f"{label} is stuck on {page}:\n{response.text[-2000:]}"
        seen.append(page)
        if page == "Payment":
            return seen
        response = http.post(response.url, data=answers.get(page, {}), verify=False, timeout=60)


def snapshot(stack):
    """Every row of every table, as JSON objects."""
    tables = [row[0] for row in stack.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    # oTree's own bookkeeping, not study data: page times are appended whenever oTree is asked to
    # save them (before a restart or a backup), and its timeout worker deletes the tasks it ran.
    tables.remove("otree_pagetimebatch")
    tables.remove("otree_taskqueuemessage")
    return {table: [json.loads("|".join(row)) for row in
                    stack.sql(f"SELECT row_to_json(t)::text FROM {table} t ORDER BY id")] for table in tables}


def otree_container(stack):
    return stack.compose("ps", "--quiet", "otree").stdout.strip()


def migrate_backups(stack):
    return stack.invoke("backups").stdout.count("before-migrate")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = os.path.join(REPO_ROOT, PROJECT)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(os.path.join(REPO_ROOT, "otree_project"), folder,
                    ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3"))
    directory = tmp_path_factory.mktemp("migrate")
    stack = start_stack(str(directory), NAME, port_shift=1, OTREE_PROJECT_DIR=PROJECT)
    yield stack
    stop_stack(stack)
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):  # another run's project may still be there
        os.rmdir(os.path.dirname(folder))


@pytest.fixture(scope="module")
def changed(study):
    """Data from the example study; then, mid-study, a new field with initial= on a page, a new
    app in the session config and a removed field; then `invoke up`."""
    session = study.create_session(3, **ALONE)
    assert play(study, session, "OLD1", OLD_ANSWERS) == ["Consent", "Demographics", "Instructions",
                                                         "Questionnaire", "Payment"]
    play(study, session, "OLD2", {"Consent": {"consent": "False"}})
    before = snapshot(study)

    edit("questionnaire/__init__.py",
         "strategy = models.LongStringField(label='How did you decide how much to contribute?', blank=True)",
         "enjoyment = models.IntegerField(label='How much did you enjoy it?', choices=[1, 2, 3, 4, 5], initial=4)")
    edit("questionnaire/__init__.py", "'fairness', 'strategy']", "'fairness', 'enjoyment']")
    edit("settings.py", "'questionnaire', 'payment'", "'questionnaire', 'followup', 'payment'")
    os.makedirs(os.path.join(REPO_ROOT, PROJECT, "followup"))
    for name, text in (("__init__.py", FOLLOWUP_APP), ("Followup.html", FOLLOWUP_PAGE)):
        with open(os.path.join(REPO_ROOT, PROJECT, "followup", name), "w", encoding="utf-8") as handle:
            handle.write(text)
    return before, study.invoke("up").stdout


def test_a_new_field_and_a_new_app_mid_study_keep_every_earlier_row(study, changed):
    before, out = changed
    players = len(before["questionnaire_player"])
    assert (f"questionnaire_player: {players} existing rows get an empty value in column enjoyment "
            "(new, integer).") in out
    assert "New tables (a new app or model): followup_subsession, followup_group, followup_player." in out
    assert "Backed up the database first" in out
    assert "Added 3 tables and 1 column, in one transaction." in out

    after = snapshot(study)
    assert {"followup_subsession", "followup_group", "followup_player"} <= set(after)
    for table, rows in before.items():
        kept = after[table][:len(rows)]
        if table == "questionnaire_player":
            assert {row.pop("enjoyment") for row in kept} == {None}  # never set; initial= is not filled in
        assert kept == rows, f"rows of {table} changed"

    session = study.create_session(3, **ALONE)
    answers = dict(OLD_ANSWERS, Questionnaire={"understood": "7", "fairness": "3", "enjoyment": "5"},
                   Followup={"contact_again": "True"})
    assert play(study, session, "NEW1", answers)[-2:] == ["Followup", "Payment"]
    rows = study.sql("SELECT q.enjoyment, f.contact_again FROM otree_participant p "
                     "JOIN questionnaire_player q ON q.participant_id = p.id "
                     "JOIN followup_player f ON f.participant_id = p.id WHERE p.label = 'NEW1'")
    assert rows == [["5", "t"]]


def test_a_removed_field_is_reported_and_its_values_kept(study, changed):
    _, out = changed
    assert ("questionnaire_player.strategy is no longer in your models: the column is kept, with its 1 stored "
            "value, and ignored by oTree.") in out
    assert study.sql("SELECT q.strategy FROM otree_participant p JOIN questionnaire_player q "
                     "ON q.participant_id = p.id WHERE p.label = 'OLD1'") == [["kept half"]]


def test_migrate_with_nothing_to_change_takes_no_backup(study, changed):
    backups = migrate_backups(study)
    server = otree_container(study)
    out = study.invoke("migrate").stdout
    assert "The database schema is up to date: nothing to change." in out
    assert "Backed up" not in out
    assert migrate_backups(study) == backups
    assert otree_container(study) == server  # not restarted for nothing


def test_migrate_adds_what_a_running_server_lacks_and_restarts_it(study, changed):
    # As after a deploy without this step: the server's models have a column the database lacks.
    study.sql("ALTER TABLE followup_player DROP COLUMN contact_again")
    [[rows]] = study.sql("SELECT count(*) FROM followup_player")
    server = otree_container(study)
    dry = study.invoke("migrate", "--dry-run").stdout
    assert f"followup_player: {rows} existing rows get an empty value in column contact_again (new, boolean)." in dry
    assert "Dry run: nothing was changed." in dry
    assert study.sql("SELECT count(*) FROM information_schema.columns WHERE column_name = 'contact_again'") == [["0"]]

    out = study.invoke("migrate").stdout
    assert "Backed up the database first" in out and "Added 1 column, in one transaction." in out
    assert "Migrated; the study" in out
    assert otree_container(study) != server
    assert study.sql("SELECT DISTINCT contact_again IS NULL FROM followup_player") == [["t"]]
    play(study, study.create_session(3, **ALONE), "NEW2", dict(OLD_ANSWERS, Questionnaire={
        "understood": "5", "fairness": "5", "enjoyment": "2"}, Followup={"contact_again": "False"}))


def test_a_changed_type_is_refused_and_the_running_server_keeps_serving(study, changed):
    server = otree_container(study)
    edit("demographics/__init__.py", "age = models.IntegerField(label='What is your age?', min=18, max=100)",
         "age = models.StringField(label='What is your age?')")
    refused = study.invoke("up", check=False)
    assert refused.returncode == 1
    assert "the new oTree server was not started and nothing was changed" in refused.stderr
    assert "demographics_player.age is integer in the database, but character varying(10000)" in refused.stderr
    assert "give the field a new name in your models (e.g. age -> age_2)" in refused.stderr
    assert "invoke resetdb" in refused.stderr
    assert otree_container(study) == server
    session = study.create_session(3)
    assert requests.get(session["session_wide_url"], verify=False, timeout=30).status_code == 200
    assert study.sql("SELECT data_type FROM information_schema.columns WHERE table_name = 'demographics_player' "
                     "AND column_name = 'age'") == [["integer"]]


def test_migrate_on_a_stack_that_is_not_running_says_to_run_up(tmp_path):
    path, values = make_env_values(str(tmp_path), f"{TEST_STACK}-notrunning")
    write_env(path, values)
    result = invoke(path, "migrate", check=False)
    assert result.returncode == 1
    assert f"The study '{TEST_STACK}-notrunning' is not running" in result.stderr
    assert "Start it with `invoke up`: it migrates the database too" in result.stderr


PLAN = dict(otree_tables=True, new_tables=[], new_columns=[], removed_columns=[], changed_columns=[],
            removed_tables=[])


def test_the_report_counts_rows_and_keeps_what_was_removed():
    plan = dict(PLAN, new_columns=[dict(table="survey_player", column="color", type="text", rows=1),
                                   dict(table="game_player", column="bid", type="integer", rows=0)],
                removed_columns=[dict(table="survey_player", column="old", type="text", not_null=False,
                                      has_default=False, values=3)],
                removed_tables=[dict(table="pilot_player", rows=2)])
    assert migrate.report(plan) == [
        "survey_player: 1 existing row gets an empty value in column color (new, text).",
        "game_player: new column bid (integer); the table has no rows yet.",
        "An empty value (NULL) is what oTree shows for a field that was never set; initial= only applies to "
        "rows created from now on. Nothing is filled in.",
        "survey_player.old is no longer in your models: the column is kept, with its 3 stored values, and "
        "ignored by oTree.",
        "Table pilot_player is no longer in your project: kept, with its 2 rows, and ignored."]
    assert migrate.pending(plan) and not migrate.problems(plan)
    assert migrate.report(dict(PLAN, otree_tables=False)) == [
        "The database has no oTree tables yet: oTree creates them when it starts."]


def test_a_changed_type_or_a_required_removed_column_is_a_problem():
    plan = dict(PLAN, changed_columns=[dict(table="survey_player", column="age", database="integer",
                                            models="character varying(10000)")],
                removed_columns=[dict(table="otree_participant", column="_legacy", type="text", not_null=True,
                                      has_default=False, values=5),
                                 dict(table="survey_player", column="note", type="text", not_null=True,
                                      has_default=True, values=5)])
    found = migrate.problems(plan)
    assert [table for table, _, _ in found] == ["survey_player", "otree_participant"]
    assert migrate.report(plan) == ["survey_player.note is no longer in your models: the column is kept, with "
                                    "its 5 stored values, and ignored by oTree."]
    message = migrate.refusal(found, server_running=True)
    assert "The running server keeps running the previous code." in message
    assert "(e.g. age -> age_2)" in message and "put the field back" in message
    assert "the oTree version changed" in message
    assert "the oTree version changed" not in migrate.refusal(found[:1], server_running=False)
