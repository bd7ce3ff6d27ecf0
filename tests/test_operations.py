"""The day-one tasks on the running test stack: status, logs, otree, down/up/rebuild with data kept."""
import requests

from tests.helpers import containers_of


def session_codes(stack):
    return stack.sql("SELECT code FROM otree_session ORDER BY id")


def test_status_shows_each_service_healthy_the_version_and_the_url(stack):
    out = stack.invoke("status").stdout
    for service in ("otree", "postgres", "nginx"):
        assert f"{service:<9} running    healthy" in out
    assert "oTree     6.0.15" in out
    assert f"URL       {stack.https}/" in out
    assert "redis" not in out  # oTree 6 does not use Redis, so it does not run


def test_logs_of_one_service_and_a_clear_error_for_an_unknown_one(stack):
    assert "database system is ready" in stack.invoke("logs", "--service", "postgres", "--no-follow").stdout
    result = stack.invoke("logs", "--service", "databse", "--no-follow", check=False)
    assert result.returncode == 1 and "There is no service 'databse'" in result.stderr


def test_otree_commands_run_inside_the_container(stack):
    result = stack.invoke("otree", "--", "test", "prolific_study", "3")
    assert "Bots completed session" in result.stdout + result.stderr


def test_deleting_data_needs_the_typed_stack_name(stack):
    stack.create_session(3)
    before = session_codes(stack)
    refused = stack.invoke("down", "--delete-data", check=False)
    assert refused.returncode == 1 and "needs a typed confirmation" in refused.stderr
    wrong = stack.invoke("down", "--delete-data", "--confirm", "otree", check=False)
    assert wrong.returncode == 1 and "Nothing was changed" in wrong.stderr
    assert session_codes(stack) == before


def test_data_survive_down_then_up_and_rebuild(stack):
    session = stack.create_session(3)
    before = session_codes(stack)
    assert [session["code"]] == before[-1]

    stack.invoke("down")
    assert containers_of(stack.name) == []
    stack.invoke("up")
    assert session_codes(stack) == before

    stack.invoke("rebuild")
    assert session_codes(stack) == before
    # nginx finds the recreated oTree container, and the participant link still works.
    page = requests.get(session["session_wide_url"], verify=False, timeout=30)
    assert page.status_code == 200 and "/p/" in page.url
