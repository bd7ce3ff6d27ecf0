"""Settings values and the folders settings name (issue 22, items 6 and 7).

A value is one line of printable text, written the way it is read back (the env file's one rule:
white space around a value dropped, one level of matching quotes removed, nothing inside
interpreted), and the file is read back before it replaces the old one. `config --set-secret`
reads a value from a hidden prompt or standard input, never from a command line. Credentials
inside URLs are hidden wherever settings are listed. A folder a setting names is given to the
backup service only when the stack made it, the service has it already, or it is empty; the
user's home, the stack's folder, `/` and their parents never."""
import os
import pty
import re
import secrets
import select
import shutil
import subprocess
import time

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from stack import config, envfile, folders, redact, settings, upgrade, validate
from stack.console import StackError
from tests.helpers import REPO_ROOT, load_env, tree_digest

BACKUP_UID = 10002


# --- Values: pure logic ---------------------------------------------------------------------------

SETTINGS_TEXT = """# A study's settings
OTREE_PRODUCTION=1
CPU_LIMIT=1.5

# quoted by hand
OTREE_ADMIN_PASSWORD="hand-quoted password"
export MEMORY_LIMIT=2g
BACKUP_DIR='backups/x'
"""


def write(tmp_path, text=SETTINGS_TEXT):
    path = tmp_path / "study.env"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.unit
def test_a_newline_in_a_value_cannot_add_a_line_such_as_another_studys_volume(tmp_path):
    path = write(tmp_path)
    before = tree_digest(str(tmp_path))
    with pytest.raises(StackError) as refused:
        envfile.set_values(path, {"CPU_LIMIT": "1\nPOSTGRES_VOLUME=otherstudy_postgres-data"})
    assert "CPU_LIMIT contains a line break (newline, \\n) at position 2" in str(refused.value)
    assert "Nothing was changed." in str(refused.value)
    assert tree_digest(str(tmp_path)) == before
    assert "POSTGRES_VOLUME" not in envfile.load(path)


@pytest.mark.unit
@pytest.mark.parametrize("character, named", [
    ("\n", "a line break (newline, \\n)"), ("\r", "a carriage return (\\r)"), ("\0", "a NUL byte (\\0)"),
    ("\t", "a tab (\\t)"), ("\x1b", "a control character (U+001B)"), ("\x7f", "DEL"),
    ("\x85", "a control character (U+0085)"), ("\x9b", "a control character (U+009B)"),
    ("\u2028", "a line separator"), ("\u2029", "a paragraph separator"), ("\x0b", "a control character (U+000B)"),
])
def test_every_control_character_is_refused_naming_the_key_and_the_character(tmp_path, character, named):
    path = write(tmp_path)
    before = tree_digest(str(tmp_path))
    with pytest.raises(StackError) as refused:
        envfile.set_values(path, {"OTREE_ADMIN_PASSWORD": f"abc{character}def-long-enough"})
    assert f"OTREE_ADMIN_PASSWORD contains {named} at position 4" in str(refused.value)
    assert tree_digest(str(tmp_path)) == before
    # A settings file edited by hand is checked the same way before anything starts.
    assert any(f"OTREE_ADMIN_PASSWORD contains {named}" in problem
               for problem in validate.study_problems({"OTREE_ADMIN_PASSWORD": f"abc{character}def"}))


@pytest.mark.unit
@pytest.mark.parametrize("value", ['"double-quoted"', "'single-quoted'", "  spaces around  ", "it's", '""', "'",
                                   '"', "a=b # not a comment", "$(reboot) `id` ${HOME}", "ünïcödé ☃", "''x''",
                                   "\u3000ideographic space\u00a0"])
def test_a_value_reads_back_exactly_as_it_was_set(tmp_path, value):
    path = write(tmp_path)
    envfile.set_values(path, {"OTREE_ADMIN_PASSWORD": value, "LOGIN_RATE_LIMIT": value})
    loaded = envfile.load(path)
    assert loaded["OTREE_ADMIN_PASSWORD"] == value and loaded["LOGIN_RATE_LIMIT"] == value


@pytest.mark.unit
def test_a_key_twice_in_a_file_is_set_once_and_read_back_as_set(tmp_path):
    path = write(tmp_path, "CPU_LIMIT=1\nMEMORY_LIMIT=2g\nCPU_LIMIT=3\n")
    envfile.set_values(path, {"CPU_LIMIT": "2"})
    assert envfile.load(path)["CPU_LIMIT"] == "2"
    assert open(path, encoding="utf-8").read() == "CPU_LIMIT=2\nMEMORY_LIMIT=2g\n"


@pytest.mark.unit
def test_a_value_too_long_for_a_settings_line_is_refused(tmp_path):
    path = write(tmp_path)
    with pytest.raises(StackError, match="OTREE_ADMIN_PASSWORD is 5000 characters long; at most 4096"):
        envfile.set_values(path, {"OTREE_ADMIN_PASSWORD": "x" * 5000})


PRINTABLE = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=80)
KEYS = st.sampled_from(["OTREE_PRODUCTION", "CPU_LIMIT", "OTREE_ADMIN_PASSWORD", "MEMORY_LIMIT", "BACKUP_DIR",
                        "DOMAIN", "SENTRY_DSN"])


@pytest.mark.unit
@hypothesis_settings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(KEYS, st.one_of(st.none(), PRINTABLE), min_size=1, max_size=4))
def test_writing_then_reading_gives_the_same_values_and_leaves_other_lines_alone(tmp_path_factory, changes):
    path = write(tmp_path_factory.mktemp("property"))
    before = envfile.load(path)
    envfile.set_values(path, changes)
    expected = {key: value for key, value in {**before, **changes}.items() if value is not None}
    assert envfile.load(path) == expected
    untouched = [line for line in SETTINGS_TEXT.splitlines()
                 if re.sub(r"^export\s+", "", line).partition("=")[0] not in changes]
    written = open(path, encoding="utf-8").read().splitlines()
    assert [line for line in written if line in untouched] == untouched


@pytest.mark.unit
def test_unicode_look_alikes_are_not_digits_or_letters_of_a_domain():
    assert any("CPU_LIMIT '１.５' is not valid" in problem for problem in validate.study_problems({"CPU_LIMIT": "１.５"}))
    assert any("LOGIN_RATE_LIMIT '１０r/m' is not valid" in problem
               for problem in validate.study_problems({"LOGIN_RATE_LIMIT": "１０r/m"}))
    assert any("is not a valid domain name" in problem
               for problem in validate.study_problems({"DOMAIN": "ſtudy.example.edu"}))


@pytest.mark.docker  # it asks Docker for the old layout's containers (this stack has none)
def test_moving_a_one_study_env_to_the_studies_layout_keeps_quoted_values_as_they_were(tmp_path):
    env_path = tmp_path / "old.env"
    env_path.write_text(f"STACK_NAME=h2move{secrets.token_hex(3)}\nSTUDIES_DIR={tmp_path / 'studies'}\n"
                        "OTREE_ADMIN_PASSWORD='\"quoted-admin-password\"'\nOTREE_REST_KEY=' padded rest key '\n",
                        encoding="utf-8")
    before = envfile.load(str(env_path))
    upgrade.run(str(env_path))
    (moved,) = (tmp_path / "studies").glob("*.env")
    after = envfile.load(str(moved))
    assert after["OTREE_ADMIN_PASSWORD"] == before["OTREE_ADMIN_PASSWORD"] == '"quoted-admin-password"'
    assert after["OTREE_REST_KEY"] == before["OTREE_REST_KEY"] == " padded rest key "


# --- Credentials in URLs: pure logic --------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("value, shown, hidden", [
    ("s3:https://AKIAEXAMPLE:wJalr-secret@s3.example.edu/bucket", "s3:https://********@s3.example.edu/bucket",
     "wJalr-secret"),
    ("rest:https://researcher:pass/with@signs@backup.example.edu:8000/", "rest:https://********@backup.example.edu:8000/",
     "pass/with"),
    ("https://0123456789abcdef@o1.ingest.sentry.io/2", "https://********@o1.ingest.sentry.io/2", "0123456789abcdef"),
    ("rest:https://backup.example.edu/?token=tok-secret&x=1", "rest:https://backup.example.edu/?token=********&x=********",
     "tok-secret"),
])
def test_credentials_inside_urls_are_hidden_in_listings(value, shown, hidden):
    assert redact.credentials_hidden(value) == shown
    assert config.masked("RESTIC_REPOSITORY", value) == shown
    assert hidden not in config.masked("RESTIC_REPOSITORY", value)


@pytest.mark.unit
def test_a_webhook_address_is_shown_by_its_host_only_in_a_message():
    problems = validate.alert_problems({"ALERT_WEBHOOK_URL": "ftp://hooks.example.edu/services/T0/B0/hook-secret"})
    assert any("'ftp://hooks.example.edu/********'" in problem for problem in problems), problems
    problems = validate.alert_problems({"ALERT_WEBHOOK_URL": "ftp://user:hunter2@hooks.example.edu/x"})
    assert not any("hunter2" in problem or "user" in problem.split("it is")[-1] for problem in problems), problems


# --- Folders: pure logic --------------------------------------------------------------------------

@pytest.fixture
def fake_home(tmp_path, monkeypatch):
    home = tmp_path / "people" / "researcher"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA researcher\n")
    (home / "thesis.tex").write_text("\\documentclass{article}\n")
    monkeypatch.setenv("HOME", str(home))
    return home


def folder_problem(path):
    return folders.problem("BACKUP_DIR", str(path), BACKUP_UID, "BACKUP_DIR to a new folder")


@pytest.mark.unit
def test_the_home_the_stacks_folder_the_root_and_their_parents_are_refused(fake_home, tmp_path):
    for path, said in [(fake_home, "which is your home folder"),
                       (fake_home.parent, f"a folder that holds your home folder ({fake_home})"),
                       (tmp_path, "a folder that holds your home folder"),
                       ("/", "which is the root of the file system"),
                       (REPO_ROOT, "which is the stack's folder"),
                       # (or your home folder too, when the checkout and the fake home share /tmp)
                       (os.path.dirname(REPO_ROOT), "a folder that holds")]:
        found = folder_problem(path)
        assert found and said in found and "lock you out. Set BACKUP_DIR to a new folder." in found, (path, found)
    link = tmp_path / "looks-new"
    link.symlink_to(fake_home)
    assert "which is your home folder" in folder_problem(link)


@pytest.mark.unit
def test_the_checks_of_every_task_refuse_a_home_backup_folder_naming_the_studys_file(fake_home, tmp_path):
    server = settings.Server(str(tmp_path / "server.env"), settings.with_defaults(settings.SERVER_DEFAULTS, {}))
    study = settings.Study("lab", str(tmp_path / "lab.env"),
                           settings.with_defaults(settings.STUDY_DEFAULTS, {"BACKUP_DIR": "~"}), server)
    found = validate.settings_problems(settings.Settings(server, (study,)))
    assert any(problem.startswith(f"{tmp_path / 'lab.env'}: BACKUP_DIR names {fake_home}, which is your home folder")
               and "Set BACKUP_DIR to a new folder of its own, e.g. BACKUP_DIR=backups/lab" in problem
               for problem in found), found


@pytest.mark.unit
def test_a_folder_is_taken_over_only_when_new_empty_made_by_the_stack_or_the_services(tmp_path, fake_home):
    papers = tmp_path / "papers"
    papers.mkdir()
    (papers / "draft.txt").write_text("mine")
    assert "a folder the stack did not make, holding 1 entries (e.g. 'draft.txt')" in folder_problem(papers)
    assert "is a file, not a folder" in folder_problem(papers / "draft.txt")
    assert folder_problem(tmp_path / "new" / "backups") is None
    (tmp_path / "empty").mkdir()
    assert folder_problem(tmp_path / "empty") is None
    assert folders.create(str(tmp_path / "made"), "made by the stack")
    (tmp_path / "made" / "2026-05-01T03-00-00Z").mkdir()
    assert folder_problem(tmp_path / "made") is None
    assert not folders.create(str(tmp_path / "made"), "again")
    assert oct(os.stat(tmp_path / "made").st_mode & 0o777) == "0o700"


# --- End to end, on the shared stack, with `invoke config` as a researcher types it ----------------

def run_invoke(stack, *args, input=None, environment=None, timeout=600):
    return subprocess.run(["invoke", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OTREE_STACK_ENV": stack.env_path, **(environment or {})},
                          input=input, stdin=None if input is not None else subprocess.DEVNULL)


def containers(stack):
    """{service: container ID} of the stack's study: what a change restarts gets a new ID."""
    project = settings.load(stack.env_path).studies[0].project
    result = subprocess.run(["docker", "ps", "--format", '{{.ID}} {{.Label "com.docker.compose.service"}}',
                             "--filter", f"label=com.docker.compose.project={project}"],
                            capture_output=True, text=True, check=True)
    return {service: cid for cid, _, service in (line.partition(" ") for line in result.stdout.splitlines())}


def container_environment(stack, service):
    cid = containers(stack)[service]
    result = subprocess.run(["docker", "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", cid],
                            capture_output=True, text=True, check=True)
    return dict(line.partition("=")[::2] for line in result.stdout.splitlines() if line)


def server_state(stack):
    """The server's settings and every study's (the backup folder is left out: the backup service's
    healthcheck writes its status there every minute)."""
    loaded = settings.load(stack.env_path)
    return {"settings": tree_digest(stack.env_path), "studies": tree_digest(loaded.server.studies_dir)}


def assert_refused(result, said):
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert said in result.stderr, output[-3000:]
    assert "Traceback" not in output


LONG = secrets.token_hex(2100)
# (id, key, value, the rule's words). A NUL cannot be in a command line: it goes in on standard input.
CRAFTED = [
    # OTREE_REST_KEY has no format of its own, so before this check the newline went into the file
    # and the next line pointed the study at another database volume.
    ("newline-to-another-volume", "OTREE_REST_KEY", f"{secrets.token_hex(16)}\nPOSTGRES_VOLUME=otherstudy_postgres-data",
     "OTREE_REST_KEY contains a line break (newline, \\n) at position 33"),
    ("carriage-return", "MEMORY_LIMIT", "2g\rPOSTGRES_VOLUME=x", "MEMORY_LIMIT contains a carriage return (\\r)"),
    ("nul", "OTREE_ADMIN_PASSWORD", "long-enough-pass\0word", "OTREE_ADMIN_PASSWORD contains a NUL byte (\\0)"),
    ("tab", "DOMAIN", "study.example.edu\tevil.example", "DOMAIN contains a tab (\\t)"),
    ("escape-sequence", "OTREE_ADMIN_PASSWORD", "long-enough-\x1b[2Jpassword",
     "OTREE_ADMIN_PASSWORD contains a control character (U+001B)"),
    ("next-line-c1", "BACKUP_SCHEDULE", "daily 03:00\x85POSTGRES_VOLUME=x",
     "BACKUP_SCHEDULE contains a control character (U+0085)"),
    ("line-separator", "BACKUP_KEEP_DAILY", "7\u2028POSTGRES_VOLUME=x", "BACKUP_KEEP_DAILY contains a line separator"),
    ("delete", "SENTRY_DSN", "https://key@o1.ingest.sentry.io/2\x7f", "SENTRY_DSN contains DEL"),
    ("quotes", "MEMORY_LIMIT", '"2g"', "MEMORY_LIMIT '\"2g\"' is not valid"),
    ("command-substitution", "HTTPS_PORT", "$(reboot)", "HTTPS_PORT '$(reboot)' is not a port number"),
    ("backticks", "LOGIN_RATE_LIMIT", "`id`r/m", "LOGIN_RATE_LIMIT '`id`r/m' is not valid"),
    ("very-long", "OTREE_ADMIN_PASSWORD", LONG, "OTREE_ADMIN_PASSWORD is 4200 characters long; at most 4096"),
    ("unicode-digits", "CPU_LIMIT", "１.５", "CPU_LIMIT '１.５' is not valid"),
    ("unicode-look-alike-domain", "DOMAIN", "ſtudy.example.edu", "is not a valid domain name"),
]


@pytest.mark.docker
@pytest.mark.parametrize("key, value, said", [row[1:] for row in CRAFTED], ids=[row[0] for row in CRAFTED])
def test_a_crafted_value_is_refused_with_its_rule_and_changes_nothing(stack, key, value, said):
    before, running = server_state(stack), containers(stack)
    if "\0" in value:
        result = run_invoke(stack, "config", "--set-secret", key, input=value)
    else:
        result = run_invoke(stack, "config", "--set", f"{key}={value}")
    assert_refused(result, said)
    assert "nothing was changed" in result.stderr.lower()
    assert server_state(stack) == before and containers(stack) == running


@pytest.mark.docker
def test_a_quoted_value_reaches_the_service_as_typed_and_only_the_backup_service_restarts(stack):
    value = '"AKIA-quoted"'
    running = containers(stack)
    try:
        run_invoke(stack, "config", "--set", f"RESTIC_AWS_ACCESS_KEY_ID={value}")
        assert run_invoke(stack, "config", "--get", "RESTIC_AWS_ACCESS_KEY_ID").stdout == value + "\n"
        assert container_environment(stack, "backup")["AWS_ACCESS_KEY_ID"] == value
        after = containers(stack)
        assert after["otree"] == running["otree"] and after["postgres"] == running["postgres"]
        assert after["backup"] != running["backup"]
    finally:
        run_invoke(stack, "config", "--unset", "RESTIC_AWS_ACCESS_KEY_ID")
    assert container_environment(stack, "backup")["AWS_ACCESS_KEY_ID"] == ""


@pytest.mark.docker
def test_set_secret_reads_the_value_from_standard_input_and_shows_it_nowhere(stack):
    secret = f"it's \"quoted\" $(id) `id` #{secrets.token_hex(6)}"
    try:
        result = run_invoke(stack, "config", "--set-secret", "RESTIC_AWS_SECRET_ACCESS_KEY", input=secret + "\n")
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert secret not in output
        assert "Saved RESTIC_AWS_SECRET_ACCESS_KEY" in output
        assert run_invoke(stack, "config", "--get", "RESTIC_AWS_SECRET_ACCESS_KEY").stdout == secret + "\n"
        assert container_environment(stack, "backup")["AWS_SECRET_ACCESS_KEY"] == secret
        assert secret not in run_invoke(stack, "config").stdout
    finally:
        run_invoke(stack, "config", "--unset", "RESTIC_AWS_SECRET_ACCESS_KEY")


def read_until(descriptor, wanted, seen, timeout=600):
    """What a terminal shows, until `wanted` appears (or the program ends)."""
    deadline = time.time() + timeout
    while wanted not in seen:
        assert time.time() < deadline, seen
        ready, _, _ = select.select([descriptor], [], [], 1)
        if ready:
            try:
                chunk = os.read(descriptor, 4096)
            except OSError:  # the terminal closed: the program ended
                return seen
            if not chunk:
                return seen
            seen += chunk.decode("utf-8", "replace")
    return seen


@pytest.mark.docker
def test_set_secret_on_a_terminal_asks_at_a_prompt_that_does_not_show_what_is_typed(stack):
    secret = f"typed-{secrets.token_hex(8)}"
    pid, terminal = pty.fork()
    if pid == 0:  # the child: invoke on a terminal of its own, as a researcher's shell runs it
        os.chdir(REPO_ROOT)
        os.environ["OTREE_STACK_ENV"] = stack.env_path
        os.execvp("invoke", ["invoke", "config", "--set-secret", "RESTIC_AWS_SECRET_ACCESS_KEY"])
    try:
        shown = read_until(terminal, "(what you type is not shown): ", "")
        os.write(terminal, (secret + "\n").encode())
        shown = read_until(terminal, "is up: ", shown)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, shown
        assert secret not in shown and "Saved RESTIC_AWS_SECRET_ACCESS_KEY" in shown
        assert container_environment(stack, "backup")["AWS_SECRET_ACCESS_KEY"] == secret
    finally:
        os.close(terminal)
        run_invoke(stack, "config", "--unset", "RESTIC_AWS_SECRET_ACCESS_KEY")


@pytest.mark.docker
def test_credentials_in_a_restic_url_are_hidden_in_config_status_and_studies(stack):
    password = f"pw-in-url-{secrets.token_hex(4)}"
    repository = f"rest:https://researcher:{password}@127.0.0.1:9/"
    try:
        run_invoke(stack, "config", "--set", f"RESTIC_REPOSITORY={repository}",
                   "--set", "RESTIC_PASSWORD=a long restic passphrase")
        listing = run_invoke(stack, "config")
        assert "rest:https://********@127.0.0.1:9/" in listing.stdout
        for shown in (listing, run_invoke(stack, "status"), run_invoke(stack, "studies")):
            assert shown.returncode == 0 and password not in shown.stdout + shown.stderr
        refused = run_invoke(stack, "config", "--set", f"RESTIC_REPOSITORY={repository}\tx")
        assert_refused(refused, "RESTIC_REPOSITORY contains a tab")
        assert password not in refused.stdout + refused.stderr
    finally:
        run_invoke(stack, "config", "--unset", "RESTIC_REPOSITORY", "--unset", "RESTIC_PASSWORD")


@pytest.mark.docker
def test_a_home_folder_or_a_folder_holding_files_is_refused_as_a_backup_folder_and_left_as_it_was(stack, tmp_path):
    home = tmp_path / "home" / "researcher"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA researcher\n")
    (home / "thesis.tex").write_text("\\documentclass{article}\n")
    papers = tmp_path / "papers"
    papers.mkdir()
    (papers / "draft.txt").write_text("mine")
    watched = [home, papers]
    before = {str(path): tree_digest(str(path)) for path in watched}
    state, running = server_state(stack), containers(stack)
    rows = [(["BACKUP_DIR=~"], "which is your home folder"),
            ([f"BACKUP_DIR={home}"], "which is your home folder"),
            ([f"BACKUP_DIR={tmp_path / 'home'}"], "a folder that holds your home folder"),
            (["BACKUP_DIR=/"], "which is the root of the file system"),
            ([f"BACKUP_DIR={REPO_ROOT}"], "which is the stack's folder"),
            ([f"BACKUP_DIR={papers}"], "a folder the stack did not make, holding 1 entries"),
            ([f"RESTIC_REPOSITORY={papers}", "RESTIC_PASSWORD=a long restic passphrase"],
             f"RESTIC_REPOSITORY names {papers}, a folder the stack did not make")]
    for pairs, said in rows:
        result = run_invoke(stack, "config", *[arg for pair in pairs for arg in ("--set", pair)],
                            environment={"HOME": str(home)})
        assert_refused(result, said)
        assert "Set BACKUP_DIR to a new folder of its own" in result.stderr or "RESTIC_REPOSITORY to" in result.stderr
        assert {str(path): tree_digest(str(path)) for path in watched} == before
        assert server_state(stack) == state and containers(stack) == running


@pytest.mark.docker
def test_config_set_of_a_new_backup_folder_prepares_it_so_a_backup_lands_there(stack, tmp_path):
    original = load_env(stack.env_path)["BACKUP_DIR"]
    target = tmp_path / "new-place" / "backups"
    try:
        run_invoke(stack, "config", "--set", f"BACKUP_DIR={target}")
        info = os.stat(target)
        assert (info.st_uid, info.st_mode & 0o777) == (BACKUP_UID, 0o700)
        assert (target / folders.MARKER).is_file()
        taken = run_invoke(stack, "backup")
        assert taken.returncode == 0, taken.stdout + taken.stderr
        backup_id = re.search(r"invoke restore (\S+)", taken.stdout).group(1)
        assert (target / backup_id / "manifest.json").is_file()
    finally:
        run_invoke(stack, "config", "--set", f"BACKUP_DIR={original}")
        shutil.rmtree(target, ignore_errors=True)
