"""Crafted names, typed as a hurried or hostile user would, at every door a name goes through:
study and server names, releases, backup and snapshot IDs, session codes, setting names. Each is refused with
its rule's message and exit code 1, without a traceback, and the server's folders (its settings,
releases and backups) and the laptop's servers file are byte-for-byte as before. Each row is one
`invoke` process against the shared test server; none starts or stops a container. A project
whose image cannot be built is bad input too: `study add` leaves nothing of it. The rules
themselves are unit-tested at the end."""
import os
import shutil
import subprocess

import pytest

from stack import names, servers, settings
from tests.helpers import REPO_ROOT, containers_of, tree_digest
from tests.test_deploy import Laptop, images_of, volumes_of

STUDY_RULE = "is not a valid study name"
SERVER_RULE = "is not a valid server name"
RELEASE_RULE = "is not a release"
BACKUP_RULE = "is not a backup ID"
SNAPSHOT_RULE = "is not a snapshot ID"
KEY_RULE = "is not a setting name"
LONG = "a" * 300
# (row id, invoke's arguments with {study} for the test server's study, the message)
STUDY_ROWS = [
    ("deploy-trailing-slash", ["deploy", "--study", "{study}/"], STUDY_RULE),
    ("deploy-dot-dot", ["deploy", "--study", ".."], STUDY_RULE),
    ("deploy-dot-dot-deeper", ["deploy", "--study", "../../etc"], STUDY_RULE),
    ("deploy-absolute", ["deploy", "--study", "/tmp/elsewhere"], STUDY_RULE),
    ("deploy-home", ["deploy", "--study", "~"], STUDY_RULE),
    ("deploy-dot", ["deploy", "--study", "."], STUDY_RULE),
    ("status-trailing-slash", ["status", "--study", "{study}/"], STUDY_RULE),
    ("logs-dot-dot", ["logs", "--no-follow", "--study", "../{study}"], STUDY_RULE),
    ("config-absolute", ["config", "--study", "/etc"], STUDY_RULE),
    ("backup-home", ["backup", "--study", "~/{study}"], STUDY_RULE),
    ("releases-newline", ["releases", "--study", "{study}\n"], STUDY_RULE),
    ("down-trailing-space", ["down", "--study", "{study} "], STUDY_RULE),
    ("maintenance-cyrillic", ["maintenance", "on", "--study", "h1nаmes"], STUDY_RULE),
    ("migrate-fullwidth", ["migrate", "--dry-run", "--study", "ｈ１"], STUDY_RULE),
    ("export-shell", ["export-data", "--study", "{study};id"], STUDY_RULE),
    ("up-command-substitution", ["up", "--study", "$(id)"], STUDY_RULE),
    ("resetdb-upper", ["resetdb", "--study", "H1NAMES", "--confirm", "H1NAMES"], STUDY_RULE),
    ("add-space", ["study", "add", "my study", "--project", "otree_project"], STUDY_RULE),
    ("add-quotes", ["study", "add", "x'; rm -rf ~; '", "--project", "otree_project"], STUDY_RULE),
    ("add-newline", ["study", "add", "extra\n", "--project", "otree_project"], STUDY_RULE),
    ("add-tab", ["study", "add", "ex\ttra", "--project", "otree_project"], STUDY_RULE),
    ("add-zero-width", ["study", "add", "extra\u200b", "--project", "otree_project"], STUDY_RULE),
    ("add-long", ["study", "add", LONG, "--project", "otree_project"], STUDY_RULE),
    ("add-release-image-clash", ["study", "add", "{study}-v2", "--project", "otree_project"],
     "would share image names with the releases"),
    ("add-escape-sequence", ["study", "add", "ex\x1b[2Jtra", "--project", "otree_project"], STUDY_RULE),
    ("rollback-dot-dot", ["rollback", "--to", "../v1"], RELEASE_RULE),
    ("rollback-arabic-digit", ["rollback", "--to", "v\u0663"], RELEASE_RULE),
    ("rollback-shell", ["rollback", "--to", "v1;reboot"], RELEASE_RULE),
    ("rollback-double-v", ["rollback", "--to", "vv2"], RELEASE_RULE),
    ("restore-newline-id", ["restore", "2026-01-01T00-00-00Z\n", "--confirm", "{study}"], "control characters"),
    ("restore-unicode-id", ["restore", "2026-01-01T00-00-00Zé", "--confirm", "{study}"], BACKUP_RULE),
    ("restore-word", ["restore", "yesterday", "--confirm", "{study}"], BACKUP_RULE),
    ("restore-offsite-shell", ["restore", "--offsite", "latest;id", "--confirm", "{study}"], SNAPSHOT_RULE),
    ("backups-tar-dot-dot", ["backups", "--tar", "../{study}"], BACKUP_RULE),
    ("backups-tar-absolute", ["backups", "--tar", "/etc"], BACKUP_RULE),
    ("backups-tar-word", ["backups", "--tar", "incoming"], BACKUP_RULE),
    ("prolific-session-dot-dot", ["prolific", "bonuses", "--session", "../../../tmp/bonuses"], "is not a session code"),
    ("export-session-shell", ["export-data", "--session", "$(id)"], "is not a session code"),
    ("config-get-newline", ["config", "--get", "CPU_LIMIT\nPOSTGRES_VOLUME"], KEY_RULE),
    ("config-set-lower", ["config", "--set", "cpu_limit=1"], KEY_RULE),
    ("config-set-space", ["config", "--set", "CPU LIMIT=1"], KEY_RULE),
    ("config-unset-path", ["config", "--unset", "../OTREE_SECRET_KEY"], KEY_RULE),
    ("config-get-long", ["config", "--get", "A" * 100], KEY_RULE),
]
# Server names, on a laptop with a servers file of its own (one server, lab, recorded).
SERVER_ROWS = [
    ("server-add-trailing-slash", ["server", "add", "lab2/", "--host", "deploy@127.0.0.1"], SERVER_RULE),
    ("server-add-newline", ["server", "add", "lab2\n", "--host", "deploy@127.0.0.1"], SERVER_RULE),
    ("server-add-dot-dot", ["server", "add", "..", "--host", "deploy@127.0.0.1"], SERVER_RULE),
    ("server-remove-space", ["server", "remove", "lab "], SERVER_RULE),
    ("server-setup-cyrillic", ["server", "setup", "lаb"], SERVER_RULE),
    ("status-on-slash", ["status", "--on", "lab/"], SERVER_RULE),
    ("deploy-on-dot-dot", ["deploy", "--on", "../lab"], SERVER_RULE),
    ("export-on-shell", ["export-data", "--on", "lab;id"], SERVER_RULE),
    ("backup-on-absolute", ["backup", "--on", "/etc/passwd"], SERVER_RULE),
    ("prolific-on-quote", ["prolific", "blocklist", "--on", "lab'"], SERVER_RULE),
    ("study-on-server-name", ["status", "--on", "lab", "--study", "../x"], STUDY_RULE),
]


def server_state(env_path, servers_file):
    """What a refused command must leave as it was: the server's settings, its studies' settings
    and the proxy's, every release, the study's backups, and the laptop's servers file."""
    loaded = settings.load(env_path)
    return {"settings": tree_digest(env_path), "studies": tree_digest(loaded.server.studies_dir),
            "releases": tree_digest(os.path.join(REPO_ROOT, "releases")),
            "backups": tree_digest(loaded.studies[0].backup_dir), "servers": tree_digest(servers_file)}


def assert_refused(result, message, before, after):
    said = result.stdout + result.stderr
    assert after == before, said[-3000:]
    assert result.returncode == 1, said[-3000:]
    assert message in result.stderr and "Nothing was changed." in result.stderr, said[-3000:]
    assert "Traceback" not in said


@pytest.mark.docker
@pytest.mark.parametrize("args, message", [row[1:] for row in STUDY_ROWS], ids=[row[0] for row in STUDY_ROWS])
def test_a_crafted_study_name_release_backup_id_or_setting_name_is_refused_and_changes_nothing(stack, args,
                                                                                            message):
    args = [arg.replace("{study}", stack.name) for arg in args]
    servers_file = os.path.join(REPO_ROOT, "servers.ini")
    before = server_state(stack.env_path, servers_file)
    result = stack.invoke(*args, check=False, timeout=300)
    assert_refused(result, message, before, server_state(stack.env_path, servers_file))


@pytest.fixture(scope="module")
def laptop(tmp_path_factory):
    folder = tmp_path_factory.mktemp("laptop")
    laptop = Laptop(folder)
    laptop.invoke("server", "add", "lab", "--host", "deploy@127.0.0.1", "--port", "1")
    return laptop


@pytest.mark.docker
@pytest.mark.parametrize("args, message", [row[1:] for row in SERVER_ROWS], ids=[row[0] for row in SERVER_ROWS])
def test_a_crafted_server_name_is_refused_on_the_laptop_before_ssh(stack, laptop, args, message):
    servers_file = laptop.environment["OTREE_SERVERS_FILE"]
    before = server_state(stack.env_path, servers_file)
    result = laptop.invoke(*args, check=False, timeout=120)
    assert_refused(result, message, before, server_state(stack.env_path, servers_file))
    assert "cannot be reached" not in result.stderr  # refused before ssh was tried


@pytest.mark.docker
def test_a_study_whose_image_does_not_build_is_not_added_and_leaves_nothing_behind(stack):
    """`invoke study add` of a project with a requirement that cannot be installed: its settings
    file once stayed (and `invoke up` then failed for every study), with its proxy network and
    entry. Now nothing of it stays, and the server's folders are as they were."""
    name = "unbuildable"
    folder = os.path.join(REPO_ROOT, ".test-projects", f"{stack.name}-{name}")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(os.path.join(REPO_ROOT, "otree_project"), folder)
    with open(os.path.join(folder, "requirements.txt"), "r+", encoding="utf-8") as requirements:
        text = requirements.read()
        requirements.seek(0)
        requirements.write("otree-stack-test-no-such-package==0.0.1\n" + text)
    loaded = settings.load(stack.env_path)
    studies_dir = loaded.server.studies_dir

    def state():  # the operations lock's file records each holder, so it is left out
        return {"files": sorted(os.listdir(studies_dir)), "proxy": tree_digest(loaded.server.proxy_dir),
                "settings": [tree_digest(study.env_path) for study in loaded.studies],
                "releases": tree_digest(os.path.join(REPO_ROOT, "releases")),
                "backups": sorted(os.listdir(os.path.dirname(loaded.studies[0].backup_dir)))}
    project = f"{loaded.server.name}-{name}"
    before, images_before = state(), images_of(project)
    try:
        added = stack.invoke("study", "add", name, "--project", os.path.relpath(folder, REPO_ROOT), check=False)
    finally:
        shutil.rmtree(folder)
    said = added.stdout + added.stderr
    assert added.returncode == 1 and "otree-stack-test-no-such-package" in said, said[-3000:]
    # The image's own build log may hold pip's traceback; the stack's code raised none.
    assert "removing what this attempt made" in said and 'tasks.py", line' not in said
    assert state() == before
    assert not containers_of(project) and not volumes_of(project) and images_of(project) <= images_before
    assert subprocess.run(["docker", "network", "inspect", f"{project}-proxy"], capture_output=True).returncode
    assert "Studies on this server (1)" in stack.invoke("studies").stdout


@pytest.mark.docker
def test_a_new_study_whose_releases_folder_is_there_already_is_refused_and_the_folder_kept(stack):
    """releases/NAME of an earlier study of that name holds its history: a deploy that adds a study
    by that name never writes into it, nor removes it when it fails."""
    history = os.path.join(REPO_ROOT, "releases", f"{stack.name}-earlier")
    releases_there = os.path.isdir(os.path.dirname(history))
    os.makedirs(os.path.join(history, "v1"))
    with open(os.path.join(history, "releases.json"), "w", encoding="utf-8") as handle:
        handle.write("[]\n")
    try:
        before = tree_digest(os.path.dirname(history))
        refused = stack.invoke("deploy", "--study", f"{stack.name}-earlier", check=False)
        assert tree_digest(os.path.dirname(history)) == before
        assert refused.returncode == 1 and f"releases/{stack.name}-earlier is there already" in refused.stderr
        assert f"{stack.name}-earlier" not in [study.name for study in settings.load(stack.env_path).studies]
    finally:
        shutil.rmtree(history)
        if not releases_there and not os.listdir(os.path.dirname(history)):
            os.rmdir(os.path.dirname(history))


@pytest.mark.unit
@pytest.mark.parametrize("name", ["lab", "a", "ultimatum-2026", "a" * 30, "x-1-y"])
def test_good_study_and_server_names_pass(name):
    assert names.check_study(name) == name and names.check_server(name) == name


@pytest.mark.unit
@pytest.mark.parametrize("name", ["", "lab/", "/lab", "..", ".", "~", "a" * 31, "Lab", "1lab", "-lab", "lab\n",
                                  "\nlab", "lab ", "la b", "lаb", "ｌａｂ", "lab\u200b", "lab\x00", "lab;id",
                                  "$(id)", "`id`", "lab'", 'lab"', "lab_1", "lab.v2", None])
def test_bad_study_and_server_names_are_refused_with_the_rule(name):
    for check, rule in ((names.check_study, STUDY_RULE), (names.check_server, SERVER_RULE)):
        with pytest.raises(names.StackError) as refused:
            check(name)
        message = str(refused.value)
        assert rule in message and message.endswith("Nothing was changed.")
        assert "\n" not in message and "\x00" not in message  # shown escaped, never raw


@pytest.mark.unit
def test_the_character_that_breaks_the_rule_is_named_and_a_long_name_is_cut():
    assert "(it holds 'а', U+0430)" in names.STUDY.problem("lаb")
    assert "(it holds '/', U+002F)" in names.STUDY.problem("lab/")
    message = names.STUDY.problem("a" * 5000)
    assert "(5000 characters)" in message and len(message) < 400


@pytest.mark.unit
def test_releases_are_v_and_a_number():
    assert [names.release_number(text) for text in ("v1", "3", "v12", "v999999")] == [1, 3, 12, 999999]
    for text in ("v0", "vv2", "v\u0663", "\u0663", "v1\n", "v-1", "v1.5", "../v1", "v", "", "v1234567", "V2"):
        with pytest.raises(names.StackError, match=RELEASE_RULE):
            names.release_number(text)


@pytest.mark.unit
def test_backup_ids_are_the_backup_services_own():
    for good in ("2026-05-01T03-00-00Z", "2026-05-01T03-00-00Z-2", "2026-05-01T03-00-00Z-imported",
                 "2026-05-01T03-00-00Z-2-offsite"):
        assert names.check_backup_id(good) == good
    for bad in ("2026-05-01T03-00-00Z\n", "2026-05-01T03-00-00Zé", "2026-05-01T03-00-00Z/../x", "../x", ".", "",
                "2026-05-01", "٢٠٢٦-05-01T03-00-00Z", "2026-05-01T03-00-00Z-" + "a" * 40):
        with pytest.raises(names.StackError, match=BACKUP_RULE):
            names.check_backup_id(bad)


@pytest.mark.unit
def test_a_restore_source_is_latest_an_id_or_a_path(tmp_path):
    dump = tmp_path / "otree.dump"
    dump.write_bytes(b"x")
    assert names.check_restore_source("latest") == "latest"
    assert names.check_restore_source(str(dump)) == str(dump)
    assert names.check_restore_source("2026-05-01T03-00-00Z") == "2026-05-01T03-00-00Z"
    # Elsewhere (with --on) a path is the server's to find; here a missing one is refused.
    assert names.check_restore_source("/srv/old/otree.dump", here=False) == "/srv/old/otree.dump"
    with pytest.raises(names.StackError, match="There is no file"):
        names.check_restore_source(str(tmp_path / "missing.dump"))
    for bad, rule in (("yesterday", BACKUP_RULE), ("x\n", "control characters"),
                      ("/srv/x\n", "control characters")):
        with pytest.raises(names.StackError, match=rule):
            names.check_restore_source(bad, here=False)
    assert names.check_restore_source("3f2a9c1e", offsite=True) == "3f2a9c1e"
    for bad in ("latest;id", "3F2A9C1E", "3f2a", "../3f2a9c1e"):
        with pytest.raises(names.StackError, match=SNAPSHOT_RULE):
            names.check_restore_source(bad, offsite=True)


@pytest.mark.unit
def test_session_codes_are_otrees_own():
    assert names.SESSION.check("7kq2xw9p") == "7kq2xw9p"
    for bad in ("../x", "7KQ2XW9P", "7kq2 xw9p", "7kq2xw9p\n", "", "a" * 65, "７kq"):
        with pytest.raises(names.StackError, match="is not a session code"):
            names.SESSION.check(bad)


@pytest.mark.unit
def test_setting_names_are_capitals_digits_and_underscores():
    assert names.check_config_key("CPU_LIMIT") == "CPU_LIMIT"
    for bad in ("cpu_limit", "CPU LIMIT", "CPU_LIMIT\n", "../X", "", "A" * 65, "_X", "CPU-LIMIT", "ＣＰＵ"):
        with pytest.raises(names.StackError, match=KEY_RULE):
            names.check_config_key(bad)


@pytest.mark.unit
def test_an_ssh_address_cannot_start_with_a_dash_or_end_with_a_newline():
    assert servers.problems("lab", "deploy@203.0.113.7", 22, "otree-stack") == []
    for target in ("-oProxyCommand", "deploy@-oProxyCommand", "deploy@203.0.113.7\n", "deploy@hоst"):
        assert any("is not an SSH address" in problem for problem in servers.problems("lab", target, 22, "x"))
