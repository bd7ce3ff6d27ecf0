"""`invoke up` refuses a bad env file with a clear message before any container starts."""
import os
import stat

import pytest

from stack import envfile, settings, study, validate
from tests.conftest import make_env_values
from tests.helpers import containers_of, invoke, write_env

BAD_STACK = "otreebadenv"

BAD_CASES = {
    "production off": ({"OTREE_PRODUCTION": "0"}, "OTREE_PRODUCTION is '0'; it must be 1"),
    "production words": ({"OTREE_PRODUCTION": "true"}, "OTREE_PRODUCTION is 'true'; it must be 1"),
    "auth level lower case": ({"OTREE_AUTH_LEVEL": "study"}, "OTREE_AUTH_LEVEL is 'study'; it must be STUDY or DEMO"),
    "auth level mixed case": ({"OTREE_AUTH_LEVEL": "Demo"}, "OTREE_AUTH_LEVEL is 'Demo'; it must be STUDY or DEMO"),
    "render cache not on or off": ({"OTREE_RENDER_CACHE": "yes"}, "OTREE_RENDER_CACHE is 'yes'; it must be on or off"),
    "compiled lookups in capitals": ({"OTREE_COMPILED_LOOKUPS": "OFF"},
                                     "OTREE_COMPILED_LOOKUPS is 'OFF'; it must be on or off"),
    "limit not a number": ({"CPU_LIMIT": "all"}, "CPU_LIMIT 'all' is not valid"),
    "admin password missing": ({"OTREE_ADMIN_PASSWORD": ""}, "OTREE_ADMIN_PASSWORD is missing"),
    "admin password weak": ({"OTREE_ADMIN_PASSWORD": "password"}, "OTREE_ADMIN_PASSWORD is too weak"),
    "admin password short": ({"OTREE_ADMIN_PASSWORD": "xK3#pQ9"}, "OTREE_ADMIN_PASSWORD is too weak"),
    "admin password from the example": ({"OTREE_ADMIN_PASSWORD": "<generated>"},
                                        "OTREE_ADMIN_PASSWORD is still the example's placeholder"),
    "secret key missing": ({"OTREE_SECRET_KEY": ""}, "OTREE_SECRET_KEY is missing"),
    "database password not URL-safe": ({"POSTGRES_PASSWORD": "Abcdefgh12345678@/x"},
                                       "POSTGRES_PASSWORD may hold only letters"),
    "domain with scheme": ({"DOMAIN": "https://study.example.edu"}, "is not a valid domain name"),
    "domain with space": ({"DOMAIN": "study example.edu"}, "is not a valid domain name"),
    "domain is an IP": ({"DOMAIN": "192.0.2.10"}, "DOMAIN is the IP address 192.0.2.10"),
    "email malformed": ({"LETSENCRYPT_EMAIL": "researcher.example.edu"}, "is not an email address"),
    "port not a number": ({"HTTPS_PORT": "https"}, "HTTPS_PORT 'https' is not a port number"),
    "backup schedule malformed": ({"BACKUP_SCHEDULE": "nightly"}, "BACKUP_SCHEDULE='nightly' is not a schedule"),
    "backup rotation keeps nothing": ({"BACKUP_KEEP_DAILY": "0", "BACKUP_KEEP_WEEKLY": "0", "BACKUP_KEEP_MONTHLY": "0"},
                                      "are all 0, so every scheduled backup would be deleted"),
    "backups inside the project": ({"BACKUP_DIR": "otree_project/backups"}, "BACKUP_DIR is inside the oTree project"),
    "restic without a password": ({"RESTIC_REPOSITORY": "/srv/restic"}, "RESTIC_REPOSITORY and RESTIC_PASSWORD go together"),
    "certificate without key": ({"DOMAIN": "study.example.edu", "TLS_CERT_FILE": "/etc/hostname"},
                                "TLS_CERT_FILE and TLS_KEY_FILE go together"),
    "certificate without domain": ({"TLS_CERT_FILE": "/etc/hostname", "TLS_KEY_FILE": "/etc/hostname"},
                                   "TLS_CERT_FILE is set but DOMAIN is empty"),
    "ACME over plain HTTP": ({"ACME_DIRECTORY_URL": "http://acme.example.org/dir"}, "is not an https:// address"),
    "ACME CA file missing": ({"ACME_CA_FILE": "/nonexistent/ca.pem"}, "ACME_CA_FILE=/nonexistent/ca.pem is not a file"),
}


@pytest.fixture
def good_env(tmp_path):
    path, values = make_env_values(str(tmp_path))
    values["STACK_NAME"] = BAD_STACK
    return path, values


@pytest.mark.parametrize("change, message", BAD_CASES.values(), ids=BAD_CASES.keys())
def test_invoke_up_refuses_bad_env_before_any_container_starts(good_env, change, message):
    path, values = good_env
    write_env(path, {**values, **change})
    result = invoke(path, "up", check=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert "nothing was started" in result.stderr
    assert containers_of(BAD_STACK) == []


def test_every_problem_is_listed_at_once(good_env):
    path, values = good_env
    write_env(path, {**values, "OTREE_PRODUCTION": "0", "OTREE_AUTH_LEVEL": "demo", "DOMAIN": "bad_domain"})
    result = invoke(path, "up", check=False)
    assert "have 3 problem(s)" in result.stderr


@pytest.mark.unit
def test_a_blank_setting_means_its_secure_default():
    loaded = settings.with_defaults(settings.STUDY_DEFAULTS, {"OTREE_PRODUCTION": "", "OTREE_AUTH_LEVEL": " "})
    assert (loaded["OTREE_PRODUCTION"], loaded["OTREE_AUTH_LEVEL"]) == ("1", "STUDY")


@pytest.mark.unit
def test_the_created_settings_files_are_private_and_hold_strong_secrets(tmp_path):
    path = str(tmp_path / ".env")
    assert envfile.create_if_missing(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert validate.server_problems(envfile.load(path)) == []
    server = settings.Server(path, settings.with_defaults(settings.SERVER_DEFAULTS, {"STUDIES_DIR": str(tmp_path)}))
    study.add_first(server)
    study_file = settings.study_path(server, "otree")
    assert stat.S_IMODE(os.stat(study_file).st_mode) == 0o600
    values = envfile.load(study_file)
    assert validate.study_problems(values) == []
    for key, length in envfile.SECRET_LENGTHS.items():
        assert len(values[key]) == length
    other = settings.Server(path, settings.with_defaults(settings.SERVER_DEFAULTS, {"STUDIES_DIR": str(tmp_path / "b")}))
    study.add_first(other)
    assert envfile.load(settings.study_path(other, "otree"))["OTREE_SECRET_KEY"] != values["OTREE_SECRET_KEY"]


@pytest.mark.unit
def test_an_existing_env_file_is_never_overwritten(tmp_path):
    path = tmp_path / ".env"
    path.write_text("OTREE_ADMIN_PASSWORD=mine\n")
    assert not envfile.create_if_missing(str(path))
    assert path.read_text() == "OTREE_ADMIN_PASSWORD=mine\n"


@pytest.mark.unit
def test_parse_handles_comments_quotes_and_export():
    values = envfile.parse('# comment\n\nexport A=1\nB="two words"\nC=\'x\'\nD=\n')
    assert values == {"A": "1", "B": "two words", "C": "x", "D": ""}


@pytest.mark.unit
def test_parse_names_the_broken_line():
    with pytest.raises(Exception, match="line 2"):
        envfile.parse("A=1\nthis is not a setting\n")
