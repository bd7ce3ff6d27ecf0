"""POSTGRES_ALLOW_UNLOCKED, the one setting that lets Postgres start on a data folder it cannot lock
(postgres/entrypoint.sh; tests/test_postgres_guard.py starts containers with and without it): a
study setting like the others, checked, in the example, and passed to the postgres service."""
import pytest

from stack import envfile, settings, validate


@pytest.mark.unit
@pytest.mark.parametrize("value, problem", [("", None), ("1", None), ("yes", "it must be 1 or empty"),
                                            ("true", "it must be 1 or empty"), ("0", "it must be 1 or empty")])
def test_the_setting_is_1_or_empty(value, problem):
    found = [line for line in validate.study_problems({"POSTGRES_ALLOW_UNLOCKED": value})
             if "POSTGRES_ALLOW_UNLOCKED" in line]
    assert found == ([] if problem is None else [f"POSTGRES_ALLOW_UNLOCKED is {value!r}; {problem} (empty, the "
                                                 "default: Postgres refuses to start on a data folder it cannot lock)."])


@pytest.mark.unit
def test_a_new_study_starts_guarded():
    with open(settings.STUDY_EXAMPLE, encoding="utf-8") as handle:
        example = envfile.parse(envfile.render_from_example(handle.read()))
    assert example["POSTGRES_ALLOW_UNLOCKED"] == "" == settings.STUDY_DEFAULTS["POSTGRES_ALLOW_UNLOCKED"]


@pytest.mark.docker
def test_postgres_gets_the_setting_and_a_bad_value_changes_nothing(stack):
    # Passed (empty) to the running Postgres, where the entrypoint reads it.
    assert stack.compose("exec", "-T", "postgres", "printenv", "POSTGRES_ALLOW_UNLOCKED").stdout == "\n"
    before = open(settings.load(stack.env_path).studies[0].env_path, encoding="utf-8").read()
    refused = stack.invoke("config", "--set", "POSTGRES_ALLOW_UNLOCKED=yes", check=False)
    assert refused.returncode == 1 and "POSTGRES_ALLOW_UNLOCKED is 'yes'; it must be 1 or empty" in refused.stderr
    assert open(settings.load(stack.env_path).studies[0].env_path, encoding="utf-8").read() == before
