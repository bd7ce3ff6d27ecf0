"""The stack's oTree indexes the foreign keys oTree declares without one
(otree_server/foreign_key_indexes.py), at its start, once; a start that cannot build them still
serves participants and says why in the log."""
import subprocess
import time

import pytest
import requests

from otree_server import foreign_key_indexes

PLAYER_LOOKUP = ("consent_player", "participant_id")  # the key of the lookup on every page


@pytest.mark.unit
def test_index_names_fit_postgres_and_two_long_ones_stay_apart():
    assert foreign_key_indexes.index_name(*PLAYER_LOOKUP) == "otree_stack_consent_player_participant_id"
    long_table = "an_app_with_a_very_long_name_indeed_player"
    first, second = (foreign_key_indexes.index_name(long_table, column)
                     for column in ("subsession_id_of_something", "subsession_id_of_another"))
    assert len(first.encode()) <= 63 and len(second.encode()) <= 63 and first != second
    assert first.startswith("otree_stack_an_app_with")


def unindexed(stack):
    return stack.sql(foreign_key_indexes.UNINDEXED)


def restart_otree(stack):
    """Restart oTree and wait until it answers through nginx; return what it logged meanwhile
    (a restarted container keeps its earlier log, and adds to it)."""
    earlier = len(stack.otree_log())
    stack.compose("restart", "otree")
    deadline = time.time() + 120
    while True:
        try:
            if requests.get(f"{stack.https}/login", verify=False, timeout=10).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.time() < deadline, "oTree did not answer after its restart"
        time.sleep(1)
    return stack.otree_log()[earlier:]


def test_every_foreign_key_has_an_index_and_a_start_that_cannot_build_one_still_serves(stack):
    stack.create_session(3)  # the tables exist from the first start; sessions fill them
    assert unindexed(stack) == []
    name = foreign_key_indexes.index_name(*PLAYER_LOOKUP)
    assert stack.sql(f"SELECT indexdef FROM pg_indexes WHERE indexname = '{name}'") == [
        [f"CREATE INDEX {name} ON public.consent_player USING btree (participant_id)"]]

    # A missing index (an oTree that added a table, a database restored from before) is made at
    # the next start, and only it.
    stack.sql(f"DROP INDEX {name}")
    log = restart_otree(stack)
    assert "Indexed 1 foreign key oTree leaves without an index: consent_player.participant_id" in log
    assert unindexed(stack) == []
    assert "Indexed" not in restart_otree(stack)

    # Its table locked by someone else for longer than the build may wait: oTree starts anyway.
    stack.sql(f"DROP INDEX {name}")
    postgres = stack.compose("ps", "-q", "postgres").stdout.strip()
    holder = subprocess.Popen(
        ["docker", "exec", postgres, "psql", "-U", "postgres", "-d", "otree", "-c",
         "BEGIN; LOCK TABLE consent_player IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120);"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while not stack.sql("SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                            "WHERE c.relname = 'consent_player' AND l.mode = 'AccessExclusiveLock' AND l.granted"):
            assert time.time() < deadline, "the lock was not taken"
            time.sleep(0.5)
        log = restart_otree(stack)
        assert "Foreign-key indexes not created (OperationalError" in log and "lock timeout" in log
        assert "tried again at the next start" in log
    finally:
        stack.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(120)%' "
                  "AND pid <> pg_backend_pid()")
        holder.wait(timeout=30)
    assert unindexed(stack) == [[*PLAYER_LOOKUP]]
    assert "Indexed 1 foreign key" in restart_otree(stack)
    assert unindexed(stack) == []
