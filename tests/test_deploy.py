"""Deploys from the laptop, on real containers over real SSH: a second host (an sshd in a container,
its own address, this machine's Docker engine) is set up with `invoke server setup`; this checkout
is the laptop, and a user's project is a git repository in a folder of its own. Participants mid-
study see the maintenance page during a deploy with an added field, never an error, and finish
after it; a release that does not load changes nothing; rollbacks start earlier releases' images;
old images are pruned; the fault cases each get their message while the study keeps serving."""
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time

import pytest
import requests

from stack import ssh
from tests.conftest import _OFFSET
from tests.helpers import REPO_ROOT, containers_of, tree_digest
from tests.test_https_proxy import login
from tests.participants import FORMS, Participant, play_together

pytestmark = pytest.mark.docker

HOST_CONTAINER = f"otreetest-sshhost{_OFFSET or ''}"
SSH_PORT = 18222 + _OFFSET
# The server's own stack: its name and ports, apart from every other test server's.
STACK = f"otreedeploy{_OFFSET or ''}"
SECOND = "second"  # a study that a deploy adds, reached on the first of STUDY_PORTS
HTTP_PORT, HTTPS_PORT, STUDY_PORTS = 18088 + _OFFSET, 18455 + _OFFSET, f"{18456 + _OFFSET}-{18457 + _OFFSET}"
SERVER = "testhost"
URL = f"https://127.0.0.1:{HTTPS_PORT}"
MAINTENANCE_TEXT = "This study is being updated"


class Laptop:
    """This checkout (or a copy of it: checkout), run as a researcher's laptop: its own servers
    file and SSH settings."""

    def __init__(self, folder, checkout=REPO_ROOT):
        self.folder = folder
        self.checkout = checkout
        self.environment = {**{k: v for k, v in os.environ.items() if k != "OTREE_STACK_ENV"},
                            "OTREE_SERVERS_FILE": str(folder / "servers.ini"),
                            "OTREE_SSH_CONFIG": str(folder / "ssh_config")}

    def invoke(self, *args, check=True, timeout=900):
        result = subprocess.run(["invoke", *args], cwd=self.checkout, env=self.environment, capture_output=True,
                                text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and result.returncode:
            raise AssertionError(f"invoke {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-5000:]}\n{result.stderr[-5000:]}")
        return result

    def popen(self, *args):
        return subprocess.Popen(["invoke", *args], cwd=self.checkout, env=self.environment, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
                                start_new_session=True)


class Host:
    def __init__(self, home):
        self.home = home
        self.stack = home / "otree-stack"

    def study_values(self):
        values = {}
        for line in (self.stack / "studies" / f"{STACK}.env").read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                values[key] = value
        return values

    def sql(self, query):
        result = subprocess.run(["docker", "exec", f"{STACK}-{STACK}-postgres-1", "psql", "-U", "postgres", "-d",
                                 "otree", "-At", "-c", query], capture_output=True, text=True, check=True)
        return result.stdout.split()

    def releases(self):
        return json.loads((self.stack / "releases" / STACK / "releases.json").read_text())


def git(folder, *args):
    subprocess.run(["git", "-C", str(folder), "-c", "user.name=Researcher", "-c", "user.email=r@example.edu", *args],
                   check=True, capture_output=True)


def wait_for_ssh(port):
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
                if connection.recv(10).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the test host's sshd did not answer")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The second host, set up from the laptop; the laptop; the user's project in git."""
    folder = tmp_path_factory.mktemp("deploy")
    home = folder / "home"
    home.mkdir()
    (folder / "keys").mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "laptop_key")], check=True)
    shutil.copy(folder / "laptop_key.pub", folder / "keys" / "authorized_keys")
    (folder / "ssh_config").write_text(f"Host *\n  IdentityFile {folder / 'laptop_key'}\n  IdentitiesOnly yes\n"
                                       f"  UserKnownHostsFile {folder / 'known_hosts'}\n")
    subprocess.run(["docker", "build", "-q", "-t", "otree-stack/sshhost:test", os.path.join(REPO_ROOT, "tests", "sshhost")],
                   check=True, capture_output=True)
    subprocess.run(["docker", "rm", "-f", HOST_CONTAINER], capture_output=True)
    subprocess.run(["docker", "run", "-d", "--name", HOST_CONTAINER, "-p", f"127.0.0.1:{SSH_PORT}:22",
                    "-v", "/var/run/docker.sock:/var/run/docker.sock", "-v", f"{home}:{home}",
                    "-v", f"{folder / 'keys'}:/keys:ro", "-e", f"DEPLOY_HOME={home}",
                    # A disk that is full: a tiny one, holding only a stack's tasks.py.
                    "--tmpfs", "/full:size=256k,mode=1777", "otree-stack/sshhost:test"],
                   check=True, capture_output=True)
    laptop = Laptop(folder)
    host = Host(home)
    try:
        wait_for_ssh(SSH_PORT)
        laptop.invoke("server", "add", SERVER, "--host", "deploy@127.0.0.1", "--port", str(SSH_PORT))
        subprocess.run(["docker", "exec", "-u", "deploy", HOST_CONTAINER, "sh", "-c",
                        "mkdir -p /full/stack && touch /full/stack/tasks.py"], check=True)
        # The server's settings before setup: its name and ports, apart from this machine's other stacks.
        subprocess.run(["ssh", "-F", str(folder / "ssh_config"), *ssh.OPTIONS, "-p", str(SSH_PORT), "deploy@127.0.0.1",
                        "mkdir -p otree-stack && umask 077 && cat > otree-stack/.env"],
                       input=f"STACK_NAME={STACK}\nBIND_ADDRESS=127.0.0.1\nHTTP_PORT={HTTP_PORT}\n"
                             f"HTTPS_PORT={HTTPS_PORT}\nSTUDY_PORTS={STUDY_PORTS}\n",
                       text=True, check=True, capture_output=True, timeout=60)
        setup = laptop.invoke("server", "setup", SERVER, timeout=1500)
        assert f"The study '{STACK}' is up: {URL}/" in setup.stdout
        project = folder / "project"
        shutil.copytree(os.path.join(REPO_ROOT, "otree_project"), project)
        git(project, "init", "-q")
        git(project, "add", ".")
        git(project, "commit", "-q", "-m", "The study")
        yield laptop, host, project
    finally:
        for study in (STACK, SECOND):
            subprocess.run(["docker", "exec", "-u", "deploy", HOST_CONTAINER, "sh", "-c",
                            f"cd {home}/otree-stack && invoke down --study {study} --delete-data --confirm {study}"],
                           capture_output=True)
        leftover = containers_of(STACK)
        if leftover:
            subprocess.run(["docker", "rm", "-f", *leftover], capture_output=True)
        subprocess.run(["docker", "rm", "-f", HOST_CONTAINER], capture_output=True)
        for network in (f"{STACK}-{STACK}-proxy", f"{STACK}-{SECOND}-proxy", f"{STACK}_outside"):
            subprocess.run(["docker", "network", "rm", network], capture_output=True)
        subprocess.run(["docker", "volume", "rm", f"{STACK}_certs", f"{STACK}_static", f"{STACK}_letsencrypt",
                        f"{STACK}_acme-webroot"], capture_output=True)
        # Files the server's containers wrote as their own users.
        subprocess.run(["rm", "-rf", str(home)], capture_output=True)


def rest(host, method, path, **kwargs):
    response = requests.request(method, URL + path, verify=False, timeout=60,
                                headers={"otree-rest-key": host.study_values()["OTREE_REST_KEY"]}, **kwargs)
    response.raise_for_status()
    return response.json()


def new_session(host, count=3):
    return rest(host, "POST", "/api/sessions", json={"session_config_name": "prolific_study",
                                                     "num_participants": count})


def change_project(project, message, path, old, new):
    target = project / path
    target.write_text(target.read_text().replace(old, new, 1))
    git(project, "commit", "-q", "-am", message)


def test_setup_serves_the_example_study_over_https(world):
    response = requests.get(f"{URL}/room/prolific", verify=False, timeout=30)
    assert response.status_code == 200


def test_a_deploy_from_the_laptop_is_release_2_and_participants_play(world):
    laptop, host, project = world
    result = laptop.invoke("deploy", "--on", SERVER, "--project", str(project))
    assert f"Release v2 of the study '{STACK}' is live: {URL}/" in result.stdout, result.stdout
    assert "no changes to the database" in result.stdout
    records = host.releases()
    assert [(r["number"], r["kind"], r["outcome"]) for r in records] == [(1, "adopted", "replaced"),
                                                                         (2, "deploy", "live")]
    assert records[1]["revision"] == subprocess.run(["git", "-C", str(project), "rev-parse", "--short", "HEAD"],
                                                    capture_output=True, text=True).stdout.strip()
    assert records[1]["otree_version"] and records[1]["image_id"].startswith("sha256:")
    assert records[1]["deployer"].count("@") == 1 and records[1]["backup_id"]
    session = new_session(host)
    players = [Participant(f"{session['session_wide_url']}?participant_label=first{number}") for number in range(3)]
    play_together(players)
    listed = laptop.invoke("releases", "--on", SERVER).stdout
    assert "v1" in listed and "v2" in listed and "adopted" in listed


def poll(participant, until, seen):
    """GET the participant's page until `until` is set, as a browser's reloads would, and POST its
    form if it has one, as a participant answering throughout: every answer's status ("POST ..."
    for a form sent, "next page" when it landed on another page), and whether a 503 was the
    maintenance page."""
    form = FORMS.get(participant.page_name)
    while not until():
        for method in ("GET", "POST") if form is not None else ("GET",):
            try:
                response = participant.http.request(method, participant.url, data=form if method == "POST" else None,
                                                    timeout=30)
                kind = response.status_code
                if kind == 503:
                    kind = ("maintenance" if MAINTENANCE_TEXT in response.text and response.headers.get("Retry-After")
                            else "503, not the maintenance page")
                elif method == "POST" and kind == 200 and response.url != participant.url:
                    kind = "next page"
            except requests.RequestException as error:
                kind = type(error).__name__
            seen.append(kind if method == "GET" else f"POST {kind}")
        time.sleep(0.2)


def test_a_deploy_with_a_new_field_mid_study_shows_the_maintenance_page_and_loses_nothing(world):
    import threading
    laptop, host, project = world
    session = new_session(host)
    players = [Participant(f"{session['session_wide_url']}?participant_label=mid{number}") for number in range(3)]
    for player in players[:2]:  # these two wait on the grouping page for the third
        player.play_until("GroupingWaitPage")
    players[2].play_until("Demographics")
    answering = players[2].url
    change_project(project, "A new field", "questionnaire/__init__.py",
                   "    strategy = models.LongStringField(",
                   "    comments = models.LongStringField(blank=True)\n    strategy = models.LongStringField(")
    refused = laptop.invoke("deploy", "--on", SERVER, "--project", str(project), check=False)
    assert refused.returncode != 0
    assert "Participants were active in the last 10 minutes" in refused.stdout + refused.stderr
    assert session["code"] in refused.stdout + refused.stderr
    assert len(host.releases()) == 2  # a refusal is not a release
    participants_before = host.sql("SELECT count(*) FROM otree_participant")
    done, seen = threading.Event(), {player.url: [] for player in players}
    pollers = [threading.Thread(target=poll, args=(player, done.is_set, seen[player.url])) for player in players]
    for poller in pollers:
        poller.start()
    try:
        deployed = laptop.invoke("deploy", "--on", SERVER, "--project", str(project), "--force")
    finally:
        done.set()
        for poller in pollers:
            poller.join()
    assert "Release v3" in deployed.stdout and "column comments" in deployed.stdout, deployed.stdout
    downtime = float(re.search(r"maintenance page for ([0-9.]+) s", deployed.stdout).group(1))
    print(f"participants' downtime in this deploy: {downtime} s")
    assert downtime < 30
    for url, kinds in seen.items():
        assert "maintenance" in kinds, (url, kinds)
        assert set(kinds) <= {200, "maintenance", "POST next page", "POST maintenance"}, (url, kinds)
    # The third sent its form throughout: before, during and after the switch.
    assert "POST maintenance" in seen[answering] and "POST next page" in seen[answering], seen[answering]
    play_together(players)
    assert host.sql("SELECT count(*) FROM otree_participant") == participants_before
    assert host.sql("SELECT column_name FROM information_schema.columns WHERE table_name = 'questionnaire_player' "
                    "AND column_name = 'comments'") == ["comments"]
    assert host.sql(f"SELECT count(*) FROM otree_participant p JOIN otree_session s ON p.session_id = s.id "
                    f"WHERE s.code = '{session['code']}' AND p._current_page_name = 'Payment'") == ["3"]


def test_a_release_that_does_not_load_changes_nothing_and_is_listed_as_failed(world):
    laptop, host, project = world
    rows_before = host.sql("SELECT count(*) FROM otree_participant")
    columns_before = host.sql("SELECT count(*) FROM information_schema.columns")
    change_project(project, "A mistake", "public_goods/__init__.py", "class C(BaseConstants):",
                   "class C(BaseConstants:")
    failed = laptop.invoke("deploy", "--on", SERVER, "--project", str(project), "--force", check=False)
    assert failed.returncode != 0
    assert "does not load" in failed.stdout + failed.stderr and "SyntaxError" in failed.stdout + failed.stderr
    assert requests.get(f"{URL}/room/prolific", verify=False, timeout=30).status_code == 200
    assert host.sql("SELECT count(*) FROM otree_participant") == rows_before
    assert host.sql("SELECT count(*) FROM information_schema.columns") == columns_before
    last = host.releases()[-1]
    assert (last["number"], last["outcome"]) == (4, "failed") and last["reason"]
    assert [r["number"] for r in host.releases() if r["outcome"] == "live"] == [3]
    git(project, "revert", "--no-edit", "HEAD")


def test_a_release_that_fails_to_start_is_replaced_by_the_previous_one_by_itself(world):
    laptop, host, project = world
    rows_before = host.sql("SELECT count(*) FROM otree_participant")
    # It loads (the comparison of models passes), but oTree's server refuses to start with it.
    change_project(project, "Fails at start", "settings.py", "from os import environ\n",
                   "from os import environ\nimport sys\nif 'prodserver' in sys.argv:\n"
                   "    raise RuntimeError('this release cannot start')\n")
    failed = laptop.invoke("deploy", "--on", SERVER, "--project", str(project), "--force", check=False)
    said = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "Release v5 failed" in said and "The previous release serves again" in said
    assert "this release cannot start" in said  # the new oTree's own log, shown
    assert requests.get(f"{URL}/room/prolific", verify=False, timeout=30).status_code == 200
    assert host.sql("SELECT count(*) FROM otree_participant") == rows_before
    last = host.releases()[-1]
    assert (last["number"], last["outcome"]) == (5, "failed") and 0 < last["downtime_seconds"] < 60
    assert [r["number"] for r in host.releases() if r["outcome"] == "live"] == [3]
    git(project, "revert", "--no-edit", "HEAD")


def test_rollback_starts_the_previous_release_and_keeps_the_data_and_old_images_are_pruned(world):
    import threading
    laptop, host, project = world
    # A participant answers a form throughout the rollback's switch, as in a deploy.
    player = Participant(f"{new_session(host)['session_wide_url']}?participant_label=rolledback")
    player.play_until("Demographics")
    done, seen = threading.Event(), []
    poller = threading.Thread(target=poll, args=(player, done.is_set, seen))
    poller.start()
    try:
        rolled = laptop.invoke("rollback", "--on", SERVER)
    finally:
        done.set()
        poller.join()
    assert "maintenance" in seen and "POST maintenance" in seen, seen
    assert set(seen) <= {200, "maintenance", "POST next page", "POST maintenance"}, seen
    assert "Release v6 (the code of v2) is live" in rolled.stdout, rolled.stdout
    assert "The data was not rolled back" in rolled.stdout and "invoke restore" in rolled.stdout
    # The column v3 added stays; v2's code ignores it and serves.
    assert host.sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'questionnaire_player' "
                    "AND column_name = 'comments'") == ["1"]
    assert requests.get(f"{URL}/room/prolific", verify=False, timeout=30).status_code == 200
    assert host.study_values()["OTREE_PROJECT_DIR"] == f"releases/{STACK}/v2"
    for _ in range(2):  # v7 (v3's code), v8 (v6's)
        laptop.invoke("rollback", "--on", SERVER)
    records = host.releases()
    assert [(r["number"], r["outcome"]) for r in records][-3:] == [(6, "replaced"), (7, "replaced"), (8, "live")]
    listed = laptop.invoke("releases", "--on", SERVER).stdout
    assert all(f"v{number} " in listed for number in range(1, 9))
    # Six releases had images; the oldest one's went.
    assert [r["number"] for r in records if r.get("image_kept")] == [2, 3, 6, 7, 8]
    images = subprocess.run(["docker", "images", "--format", "{{.Tag}}", "otree-stack/otree"], capture_output=True,
                            text=True).stdout.split()
    assert f"{STACK}-{STACK}-v1" not in images and f"{STACK}-{STACK}-v2" in images


def test_maintenance_mode_shows_participants_the_page_and_keeps_the_admin(world):
    laptop, host, _ = world
    laptop.invoke("maintenance", "on", "--on", SERVER)
    try:
        page = requests.get(f"{URL}/room/prolific", verify=False, timeout=30)
        assert page.status_code == 503 and MAINTENANCE_TEXT in page.text
        assert page.headers["Retry-After"] and page.headers["Cache-Control"] == "no-store"
        assert requests.get(f"{URL}/login", verify=False, timeout=30).status_code == 200
    finally:
        laptop.invoke("maintenance", "off", "--on", SERVER)
    assert requests.get(f"{URL}/room/prolific", verify=False, timeout=30).status_code == 200


def test_tasks_run_on_the_server_with_on(world):
    laptop, _, _ = world
    status = laptop.invoke("status", "--on", SERVER).stdout
    assert STACK in status and "healthy" in status
    assert "Studies on this server (1)" in laptop.invoke("studies", "--on", SERVER).stdout
    assert "otree" in laptop.invoke("logs", "--on", SERVER, "--no-follow", "--service", "otree").stdout
    assert "before-deploy" in laptop.invoke("backups", "--on", SERVER).stdout


@pytest.mark.parametrize("case, server, message", [
    ("unknown name", ["nowhere-else"], "There is no server named 'nowhere-else'"),
    ("unreachable host", ["closed", "--host", "deploy@127.0.0.1", "--port", "1"], "cannot be reached"),
    ("refused key", ["stranger", "--host", "intruder@127.0.0.1", "--port", str(SSH_PORT)], "refused your SSH key"),
    ("no stack there", ["empty", "--host", "deploy@127.0.0.1", "--port", str(SSH_PORT), "--path", "not-here"],
     "has no stack in not-here"),
    ("full disk", ["full", "--host", "deploy@127.0.0.1", "--port", str(SSH_PORT), "--path", "/full/stack"],
     "disk is full"),
])
def test_each_fault_gets_its_message_and_the_study_keeps_serving(world, case, server, message):
    laptop, host, project = world
    if len(server) > 1:
        laptop.invoke("server", "add", *server)
    failed = laptop.invoke("deploy", "--on", server[0], "--project", str(project), check=False)
    assert failed.returncode != 0
    assert message in failed.stdout + failed.stderr, (case, failed.stdout, failed.stderr)
    assert "Traceback" not in failed.stderr
    assert requests.get(f"{URL}/room/prolific", verify=False, timeout=30).status_code == 200


def test_a_second_deploy_at_once_is_refused_and_a_lost_connection_does_not_stop_the_first(world):
    laptop, host, project = world
    releases_before = len(host.releases())
    logs_before = set((host.stack / "releases" / ".incoming").glob("*.log"))
    first = laptop.popen("deploy", "--on", SERVER, "--project", str(project), "--force")
    deadline = time.time() + 120
    while not any("building its image" in log.read_text()  # printed while it holds the lock
                  for log in set((host.stack / "releases" / ".incoming").glob("*.log")) - logs_before):
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.2)
    second = laptop.invoke("deploy", "--on", SERVER, "--project", str(project), "--force", check=False)
    assert second.returncode != 0 and "Another operation is running" in second.stdout + second.stderr
    # The laptop's connection goes away mid-deploy; the server finishes on its own.
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    deadline = time.time() + 600
    while len(host.releases()) == releases_before or host.releases()[-1].get("outcome") is None:
        assert time.time() < deadline, "the deploy did not finish on the server"
        time.sleep(2)
    assert host.releases()[-1]["outcome"] == "live"
    assert requests.get(f"{URL}/room/prolific", verify=False, timeout=30).status_code == 200


def container_id(name):
    return subprocess.run(["docker", "inspect", "--format", "{{.Id}}", name], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_config_refuses_a_bad_value_and_applies_a_good_one_restarting_only_otree(world):
    laptop, host, _ = world
    settings_file = host.stack / "studies" / f"{STACK}.env"
    before = settings_file.read_bytes()
    refused = laptop.invoke("config", "--set", "CPU_LIMIT=lots", "--on", SERVER, check=False)
    assert refused.returncode != 0 and "CPU_LIMIT 'lots' is not valid" in refused.stdout + refused.stderr
    refused = laptop.invoke("config", "--set", "POSTGRES_PASSWORD=another-password-1234", "--on", SERVER, check=False)
    assert refused.returncode != 0 and "keeps the password it was made with" in refused.stdout + refused.stderr
    assert settings_file.read_bytes() == before
    password = host.study_values()["OTREE_ADMIN_PASSWORD"]
    listed = laptop.invoke("config", "--on", SERVER).stdout
    assert password not in listed and "OTREE_ADMIN_PASSWORD" in listed and "********" in listed
    assert laptop.invoke("config", "--get", "OTREE_ADMIN_PASSWORD", "--on", SERVER).stdout.strip() == password
    otree, postgres = (container_id(f"{STACK}-{STACK}-{service}-1") for service in ("otree", "postgres"))
    laptop.invoke("config", "--set", "OTREE_ADMIN_PASSWORD=a-new-admin-password-42", "--on", SERVER)
    assert host.study_values()["OTREE_ADMIN_PASSWORD"] == "a-new-admin-password-42"
    assert os.stat(settings_file).st_mode & 0o777 == 0o600
    assert container_id(f"{STACK}-{STACK}-otree-1") != otree
    assert container_id(f"{STACK}-{STACK}-postgres-1") == postgres
    environment = subprocess.run(["docker", "inspect", "--format", "{{json .Config.Env}}", f"{STACK}-{STACK}-otree-1"],
                                 capture_output=True, text=True, check=True).stdout
    assert "OTREE_ADMIN_PASSWORD=a-new-admin-password-42" in environment
    assert requests.get(f"{URL}/room/prolific", verify=False, timeout=30).status_code == 200


def test_exports_and_backups_come_to_the_laptop_checked(world, tmp_path):
    laptop, host, _ = world
    exported = laptop.invoke("export-data", "--on", SERVER, "--output", str(tmp_path / "exports"))
    assert "every file matches its sha256" in exported.stdout
    (folder,) = [path for path in (tmp_path / "exports").iterdir() if path.is_dir()]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["participants"] >= 6 and (tmp_path / "exports" / f"{folder.name}.zip").is_file()
    # Byte for byte what the admin's page gives: the wide CSV from oTree's own export route.
    (wide,) = [entry["name"] for entry in manifest["files"] if entry["name"].startswith("all_apps_wide")]
    admin, _ = login(type("Server", (), {"https": URL})(), host.study_values()["OTREE_ADMIN_PASSWORD"])
    assert (folder / wide).read_bytes() == admin.get(f"{URL}/ExportWide", timeout=60).content
    assert not list((host.stack / "exports").glob(".for-laptop-*"))
    downloaded = laptop.invoke("backup", "--on", SERVER, "--download", "--output", str(tmp_path / "backups"))
    assert "matches the sha256 in manifest.json" in downloaded.stdout
    (backup,) = list((tmp_path / "backups").iterdir())
    assert (backup / "otree.dump").stat().st_size > 0

    # Prolific's bonus file, made on the server from its data, comes to the laptop; never twice.
    session = new_session(host)
    ids = [secrets.token_hex(12) for _ in range(3)]
    play_together([Participant(f"{session['session_wide_url']}?participant_label={pid}") for pid in ids])
    bonuses = tmp_path / "bonuses.csv"
    fetched = laptop.invoke("prolific", "bonuses", "--on", SERVER, "--session", session["code"],
                            "--output", str(bonuses))
    assert "Brought to this laptop" in fetched.stdout
    assert bonuses.read_text() == "".join(f"{pid},1.10\n" for pid in ids)  # 100 - 10 + 2 * 30 / 3 points
    assert not list((host.stack / "exports").glob(".for-laptop-*"))
    again = laptop.invoke("prolific", "bonuses", "--on", SERVER, "--session", session["code"],
                          "--output", str(bonuses), check=False)
    assert again.returncode == 1 and "never overwritten" in again.stderr



# The server's own state in its stack's folder, which no install touches.
SERVER_STATE = {".env", "studies", "releases", "backups", "exports", "downloads", "loadtests"}
VERSION_RECORD = ".stack-version.json"


def stack_files(host, with_record=True):
    """{path: (sha256, mode)} of every file in the server's stack folder but its own state and
    Python's caches: a hashed listing to compare before and after."""
    found = {}
    for root, dirs, names in os.walk(host.stack):
        relative = os.path.relpath(root, host.stack)
        dirs[:] = [name for name in dirs if name != "__pycache__" and not (relative == "." and name in SERVER_STATE)]
        for name in names:
            path = os.path.normpath(os.path.join(relative, name))
            if path in SERVER_STATE or (path == VERSION_RECORD and not with_record):
                continue
            with open(os.path.join(root, name), "rb") as handle:
                found[path] = (hashlib.sha256(handle.read()).hexdigest(), os.lstat(os.path.join(root, name)).st_mode)
    return found


def contents(listing):
    return {path: digest for path, (digest, _) in listing.items()}


def shipped_contents(checkout):
    """{path: sha256} of the stack's files a laptop with this checkout ships."""
    from stack.remote import files_of
    found = {}
    for path in files_of(str(checkout)):
        with open(os.path.join(checkout, path), "rb") as handle:
            found[os.path.normpath(path)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def second_laptop(world, tmp_path, name):
    """A second laptop: a plain copy of this checkout (its git history too), without its local state."""
    laptop, _, _ = world
    copy = tmp_path / name
    skipped = SERVER_STATE | {".venv-test", "test-artifacts", ".test-projects", ".bench-projects", "servers.ini"}
    shutil.copytree(REPO_ROOT, copy, symlinks=True, ignore=lambda folder, names: [
        entry for entry in names if entry == "__pycache__" or (folder == REPO_ROOT and entry in skipped)])
    return Laptop(laptop.folder, checkout=copy), copy


def staging_folders(host):
    return [path.name for path in host.stack.glob(".stack-*") if path.is_dir()]


def releases_of(host):
    """The study's releases, none before its first deploy."""
    return host.releases() if (host.stack / "releases" / STACK / "releases.json").exists() else []


def wait_until(condition, seconds, what):
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, what
        time.sleep(0.2)


def ssh_processes_of(process):
    """The ssh client processes a laptop's invoke (its own session) runs now."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if name == "ssh" and int(fields[3]) == process.pid:  # fields[3]: the session id
            found.append(int(entry))
    return found


def test_an_interrupted_copy_of_the_stack_leaves_the_servers_stack_as_it_was(world, tmp_path):
    laptop, host, project = world
    slow, copy = second_laptop(world, tmp_path, "slow")
    (copy / "large-file.bin").write_bytes(os.urandom(200 << 20))  # random: gzip cannot shrink it, so it takes a while
    git(copy, "add", "large-file.bin")
    before = stack_files(host)
    shipping = slow.popen("deploy", "--on", SERVER, "--project", str(project), "--force")
    arriving = lambda: [path for path in [*host.stack.glob("large-file.bin"), *host.stack.glob(".*/large-file.bin")]
                        if path.stat().st_size > 1 << 20]
    wait_until(lambda: arriving() or shipping.poll() is not None, 300, "the copy never started")
    assert shipping.poll() is None, shipping.stdout.read()
    for pid in ssh_processes_of(shipping):  # the laptop's connection goes, mid-copy
        os.kill(pid, signal.SIGKILL)
    output, _ = shipping.communicate(timeout=120)
    assert shipping.returncode != 0, output
    wait_until(lambda: not staging_folders(host), 60, f"the partial copy stayed: {staging_folders(host)}")
    assert stack_files(host) == before
    assert "The server's stack is as it was" in output, output
    assert "Traceback" not in output
    assert requests.get(f"{URL}/room/prolific", verify=False, timeout=30).status_code == 200


def test_two_laptops_deploying_at_once_leave_one_complete_stack(world, tmp_path):
    laptop, host, project = world
    copies = []
    for name in ("first", "second"):
        other, copy = second_laptop(world, tmp_path, name)
        (copy / f"from-the-{name}-laptop.txt").write_text(f"only the {name} laptop has this file\n")
        git(copy, "add", f"from-the-{name}-laptop.txt")
        copies.append((other, copy))
    deploys_before = [record for record in releases_of(host) if record["kind"] == "deploy"]
    running = [other.popen("deploy", "--on", SERVER, "--project", str(project), "--force") for other, _ in copies]
    outputs = [process.communicate(timeout=900)[0] for process in running]
    live = [output for output in outputs if "is live" in output]
    assert len(live) == 1, outputs
    (refused,) = [output for output in outputs if output not in live]
    assert "Another operation is running" in refused, refused
    deploys = [record for record in releases_of(host) if record["kind"] == "deploy"]
    assert len(deploys) == len(deploys_before) + 1 and deploys[-1]["outcome"] == "live"
    installed = contents(stack_files(host, with_record=False))
    expected = [shipped_contents(copy) for _, copy in copies]
    assert installed in expected, sorted(set(installed) ^ set(expected[0]))
    assert requests.get(f"{URL}/room/prolific", verify=False, timeout=30).status_code == 200


def test_a_laptop_with_an_older_stack_is_refused_and_allow_downgrade_installs_it_exactly(world, tmp_path):
    laptop, host, project = world
    older, copy = second_laptop(world, tmp_path, "older")
    from stack.remote import files_of
    removed = next(path for path in files_of(str(copy)) if path.startswith("benchmarks/"))
    git(copy, "rm", "-q", "-f", removed)
    subprocess.run(["git", "-C", str(copy), "-c", "user.name=Researcher", "-c", "user.email=r@example.edu", "commit",
                    "-q", "-m", "An older stack"], check=True, capture_output=True,
                   env={**os.environ, "GIT_COMMITTER_DATE": "2001-02-03T04:05:06Z",
                        "GIT_AUTHOR_DATE": "2001-02-03T04:05:06Z"})
    old_commit = subprocess.run(["git", "-C", str(copy), "log", "-1", "--format=%h"], capture_output=True, text=True,
                                check=True).stdout.strip()
    releases_before = len(releases_of(host))
    before = stack_files(host)
    refused = older.invoke("deploy", "--on", SERVER, "--project", str(project), "--force", check=False)
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "is older than the server's" in said, said
    recorded = json.loads((host.stack / VERSION_RECORD).read_text())
    assert f"git {old_commit} of 2001-02-03 04:05 UTC" in said and f"git {recorded['commit']} of" in said, said
    assert "--allow-downgrade" in said and "Traceback" not in said
    assert stack_files(host) == before and not staging_folders(host)
    assert len(releases_of(host)) == releases_before

    downgraded = older.invoke("deploy", "--on", SERVER, "--project", str(project), "--force", "--allow-downgrade")
    assert "is live" in downgraded.stdout and "older than the stack it replaces" in downgraded.stdout + downgraded.stderr
    # The server's stack is the older laptop's, exactly: what it no longer has is gone, its own state is not.
    assert contents(stack_files(host, with_record=False)) == shipped_contents(copy)
    assert not (host.stack / removed).exists() and not list(host.stack.glob("from-the-*-laptop.txt"))
    assert (host.stack / ".env").is_file() and (host.stack / "studies" / f"{STACK}.env").is_file()
    assert json.loads((host.stack / VERSION_RECORD).read_text())["commit"] == old_commit
    assert requests.get(f"{URL}/room/prolific", verify=False, timeout=30).status_code == 200


def test_servers_and_status_show_the_stack_versions(world):
    laptop, host, _ = world
    laptop.invoke("server", "add", "offline", "--host", "deploy@127.0.0.1", "--port", "1")
    recorded = json.loads((host.stack / VERSION_RECORD).read_text())
    ours = subprocess.run(["git", "-C", REPO_ROOT, "log", "-1", "--format=%h", "--", "."], capture_output=True,
                          text=True, check=True).stdout.strip()
    started = time.monotonic()
    listed = laptop.invoke("servers").stdout
    assert time.monotonic() - started < 30
    lines = listed.splitlines()
    assert any("This laptop's stack" in line and f"git {ours} of" in line for line in lines), listed
    (server_line,) = [index for index, line in enumerate(lines) if line.split()[:1] == [SERVER]]
    assert f"git {recorded['commit']} of" in lines[server_line + 1], listed
    (offline_line,) = [index for index, line in enumerate(lines) if line.split()[:1] == ["offline"]]
    assert "unreachable" in lines[offline_line + 1], listed
    status = laptop.invoke("status", "--on", SERVER).stdout
    assert any(line.split()[:1] == ["stack"] and f"git {recorded['commit']} of" in line
               for line in status.splitlines()), status
    laptop.invoke("server", "remove", "offline")


# Files a laptop holds in its copy of the stack that must never reach a server: a marker in each.
PLANTED = [".env", "studies/x.env", "servers.ini", "downloads/testhost/planted.csv", "exports/otree/planted.csv",
           "backups/otree/planted/otree.dump", "loadtests/planted.html"]


def laptop_copy(folder, mode, crlf, marker):
    """This checkout's files (git's list, their current contents) copied to folder without .git,
    every file with `mode`, scripts (a #! line, or .sh) with CRLF when `crlf`; and PLANTED."""
    listed = subprocess.run(["git", "-C", REPO_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for path in filter(None, listed):
        source = os.path.join(REPO_ROOT, path)
        if not os.path.isfile(source) or os.path.islink(source):
            continue
        content = open(source, "rb").read()
        if crlf and (path.endswith(".sh") or content.startswith(b"#!")):
            content = content.replace(b"\n", b"\r\n")
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(content)
    for path in PLANTED:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(f"# {marker}\n")
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else mode)
    return folder


def run_laptop(laptop, folder, *args, path=None):
    """`invoke ARGS` with folder as the laptop's copy of the stack (its working directory)."""
    environment = {**laptop.environment, **({"PATH": path} if path else {})}
    result = subprocess.run(["invoke", *args], cwd=folder, env=environment, capture_output=True, text=True,
                            timeout=1500, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"invoke {' '.join(args)} failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    return result


def on_host(laptop, command, timeout=1500):
    return subprocess.run(["ssh", "-F", str(laptop.folder / "ssh_config"), *ssh.OPTIONS, "-p", str(SSH_PORT),
                           "deploy@127.0.0.1", command], capture_output=True, text=True, timeout=timeout)


def assert_every_service_healthy():
    expected = {(STACK, "nginx"), (STACK, "certbot"), (STACK, "monitor"), (f"{STACK}-{STACK}", "otree"),
                (f"{STACK}-{STACK}", "postgres"), (f"{STACK}-{STACK}", "backup")}
    deadline = time.time() + 180
    while True:
        listed = subprocess.run(
            ["docker", "inspect", "--format", '{{index .Config.Labels "com.docker.compose.project"}} '
             '{{index .Config.Labels "com.docker.compose.service"}} '
             '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}', *containers_of(STACK)],
            capture_output=True, text=True, check=True).stdout
        states = {(project, service): state for project, service, state in map(str.split, listed.splitlines())}
        if all(states.get(service) in ("healthy", "running") for service in expected):
            return
        assert time.time() < deadline, f"not every service is healthy: {states}"
        time.sleep(2)


def assert_a_windows_or_git_less_laptop_deployed(laptop, host, marker, deployed):
    assert "is live" in deployed.stdout, deployed.stdout
    # As after any deploy: setup.sh (which ends with `invoke up`) on the server starts every service.
    started = on_host(laptop, "cd otree-stack && ./setup.sh --yes")
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
    assert_every_service_healthy()
    assert requests.get(f"{URL}/room/prolific", verify=False, timeout=30).status_code == 200
    holding = subprocess.run(["grep", "-rlsF", marker, str(host.stack)], capture_output=True, text=True).stdout
    assert holding == "", f"planted files reached the server: {holding}"
    for path, mode in (("setup.sh", 0o755), ("nginx/entrypoint.sh", 0o755), ("tasks.py", 0o644),
                       ("stack/remote.py", 0o644)):
        assert os.stat(host.stack / path).st_mode & 0o777 == mode, path
        assert b"\r" not in (host.stack / path).read_bytes(), path


def test_a_deploy_from_a_copy_made_on_windows_leaves_a_server_that_starts(world, tmp_path):
    """Every file 0644, scripts CRLF, no .git: as a Windows checkout or an unpacked zip."""
    laptop, host, project = world
    marker = f"planted-{secrets.token_hex(8)}"
    copy = laptop_copy(tmp_path / "otree-stack", 0o644, crlf=True, marker=marker)
    deployed = run_laptop(laptop, copy, "deploy", "--on", SERVER, "--project", str(project), "--force")
    assert_a_windows_or_git_less_laptop_deployed(laptop, host, marker, deployed)


def test_a_deploy_from_a_copy_whose_git_refuses_to_run_ships_the_stacks_own_modes(world, tmp_path):
    """A checkout on a drive that shows every file 0777 (FAT, WSL's /mnt/c), in git, and a `git`
    that fails (as macOS's does before its developer tools are installed)."""
    laptop, host, project = world
    marker = f"planted-{secrets.token_hex(8)}"
    copy = laptop_copy(tmp_path / "otree-stack", 0o777, crlf=False, marker=marker)
    git(copy, "init", "-q")
    git(copy, "add", "-f", ".")
    git(copy, "commit", "-q", "-m", "the stack, and what git was told to keep")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\necho 'xcrun: error: invalid active developer path' >&2\nexit 1\n")
    (fake / "git").chmod(0o755)
    deployed = run_laptop(laptop, copy, "deploy", "--on", SERVER, "--project", str(project), "--force",
                          "--allow-dirty", path=f"{fake}{os.pathsep}{os.environ['PATH']}")
    assert_a_windows_or_git_less_laptop_deployed(laptop, host, marker, deployed)


# The server's tar, wrapped while a test runs: before it sends an export to the laptop it does
# what FAULT says, as a disk error, a changed file or a dropped connection would.
TAR_FAULT = r"""#!/bin/sh
folder=; previous=
for argument in "$@"; do [ "$previous" = "-C" ] && folder=$argument; previous=$argument; done
case "$folder" in exports/.for-laptop-*)
  case FAULT in
    changed-file) for file in "$folder"/*/*.csv; do echo "1,2,3" >> "$file"; break; done ;;
    changed-zip) for file in "$folder"/*.zip; do echo "PK" >> "$file"; done ;;
    unreadable-zip) chmod 000 "$folder"/*.zip ;;
    cut-short) /usr/bin/tar "$@" | head -c 5000; exit 1 ;;
  esac ;;
esac
exec /usr/bin/tar "$@"
"""
# The server's invoke, wrapped: a backup it sends arrives cut short, and it says nothing went wrong.
INVOKE_CUTTING_BACKUPS = r"""#!/bin/sh
case " $* " in *" --tar "*) /usr/bin/invoke "$@" | head -c 3000; exit 0 ;; esac
exec /usr/bin/invoke "$@"
"""


@pytest.fixture
def wrapped_on_server():
    """wrap(program, script): the script comes first on the server's PATH, for this test only."""
    wrapped = []

    def wrap(program, script):
        subprocess.run(["docker", "exec", "-i", "-u", "root", HOST_CONTAINER, "sh", "-c",
                        f"cat > /usr/local/bin/{program} && chmod 755 /usr/local/bin/{program}"],
                       input=script.encode(), check=True, capture_output=True)
        wrapped.append(f"/usr/local/bin/{program}")
    try:
        yield wrap
    finally:
        subprocess.run(["docker", "exec", "-u", "root", HOST_CONTAINER, "rm", "-f", *wrapped], check=True)


def assert_an_error_that_left_nothing(failed, destination):
    assert not destination.exists() or list(destination.iterdir()) == []  # not even a hidden partial copy
    said = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "run the command again" in said.lower(), said
    assert "Traceback" not in said


@pytest.mark.parametrize("fault", ["changed-file", "changed-zip", "unreadable-zip", "cut-short"])
def test_a_damaged_or_cut_copy_of_an_export_is_an_error_and_leaves_nothing(world, tmp_path, wrapped_on_server,
                                                                           fault):
    laptop, host, _ = world
    wrapped_on_server("tar", TAR_FAULT.replace("FAULT", fault))
    destination = tmp_path / "exports"
    failed = laptop.invoke("export-data", "--on", SERVER, "--output", str(destination), check=False)
    assert_an_error_that_left_nothing(failed, destination)
    assert not list((host.stack / "exports").glob(".for-laptop-*"))


def test_a_backup_copy_cut_short_is_an_error_and_leaves_nothing(world, tmp_path, wrapped_on_server):
    laptop, _, _ = world
    wrapped_on_server("invoke", INVOKE_CUTTING_BACKUPS)
    destination = tmp_path / "backups"
    failed = laptop.invoke("backup", "--on", SERVER, "--download", "--output", str(destination), check=False)
    assert_an_error_that_left_nothing(failed, destination)


def volumes_of(project):
    return subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                          capture_output=True, text=True, check=True).stdout.split()


def images_of(project):
    """The image tags of a study's Compose project (an earlier run may have left some: only new
    ones would be this run's)."""
    listed = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                            text=True, check=True).stdout.split()
    return {image for image in listed if image.endswith(f":{project}")}


def on_the_server(host, *command):
    """A command run on the second host as its deploy user, in the stack's folder."""
    return subprocess.run(["docker", "exec", "-u", "deploy", "-w", str(host.stack), HOST_CONTAINER, *command],
                          capture_output=True, text=True, timeout=300)


def test_a_study_name_with_a_trailing_slash_is_refused_and_every_release_stays(world):
    """Tab completion's `--study NAME/` once reached the file system: the deploy took it for a new
    study, and cleaning up after refusing the name deleted releases/NAME/, history and all."""
    laptop, host, project = world
    releases_folder = host.stack / "releases"
    assert (releases_folder / STACK / "releases.json").is_file()  # the history at stake: the deploys above
    before = tree_digest(releases_folder)
    refused = laptop.invoke("deploy", "--on", SERVER, "--project", str(project), "--study", f"{STACK}/", check=False)
    assert tree_digest(releases_folder) == before, refused.stdout + refused.stderr
    assert refused.returncode == 1 and f"'{STACK}/' is not a valid study name" in refused.stderr, refused.stderr
    # Typed on the server itself, the stack there checks it again.
    typed_there = on_the_server(host, "invoke", "deploy", "--study", f"{STACK}/", "--project", "otree_project")
    assert typed_there.returncode == 1 and "is not a valid study name" in typed_there.stderr, typed_there.stderr
    assert tree_digest(releases_folder) == before
    assert "v1" in laptop.invoke("releases", "--on", SERVER).stdout


def test_a_first_deploy_that_does_not_build_leaves_nothing_behind_and_the_server_still_starts(world):
    """Its settings file, release folder, proxy network and entry, containers and images once
    stayed, and then `invoke up` failed for every study. The last test deploys the same name with
    the requirement fixed."""
    laptop, host, project = world
    proxy_config = host.stack / "studies" / ".proxy"
    before = {"proxy": tree_digest(proxy_config), "history": tree_digest(host.stack / "releases" / STACK),
              "backups": sorted(os.listdir(host.stack / "backups"))}
    project_name = f"{STACK}-{SECOND}"
    images_before = images_of(project_name)
    requirements = project / "requirements.txt"
    requirements.write_text("otree-stack-test-no-such-package==0.0.1\n" + requirements.read_text())
    git(project, "commit", "-q", "-am", "A requirement that cannot be installed")
    try:
        failed = laptop.invoke("deploy", "--on", SERVER, "--project", str(project), "--study", SECOND, check=False)
    finally:
        git(project, "revert", "--no-edit", "HEAD")
    said = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "otree-stack-test-no-such-package" in said, said[-3000:]
    # The image's own build log may hold pip's traceback; the stack's code raised none.
    assert "removing what this attempt made" in said and 'tasks.py", line' not in said
    assert not (host.stack / "studies" / f"{SECOND}.env").exists()
    assert not (host.stack / "releases" / SECOND).exists()
    assert {"proxy": tree_digest(proxy_config), "history": tree_digest(host.stack / "releases" / STACK),
            "backups": sorted(os.listdir(host.stack / "backups"))} == before
    assert not containers_of(project_name) and not volumes_of(project_name)
    assert images_of(project_name) <= images_before
    assert subprocess.run(["docker", "network", "inspect", f"{project_name}-proxy"], capture_output=True).returncode
    assert "Studies on this server (1)" in laptop.invoke("studies", "--on", SERVER).stdout
    laptop.invoke("up", "--on", SERVER)
    assert requests.get(f"{URL}/room/prolific", verify=False, timeout=30).status_code == 200


def test_set_secret_on_a_server_travels_on_ssh_input_and_is_in_no_command_line(world, tmp_path):
    """`invoke config --set-secret KEY --on SERVER`: the laptop reads the value (here from standard
    input) and sends it on ssh's standard input. What ssh was given to run, which is every command
    line the server sees, is recorded by a wrapper in front of the real ssh."""
    laptop, host, _ = world
    settings_file = host.stack / "studies" / f"{STACK}.env"
    secret = f"S3cret$(id)`id`\"'#;&{secrets.token_hex(6)}"
    wrapper, arguments = tmp_path / "bin", tmp_path / "ssh-arguments"
    wrapper.mkdir()
    (wrapper / "ssh").write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{arguments}'\nexec '{shutil.which('ssh')}' \"$@\"\n")
    (wrapper / "ssh").chmod(0o755)
    environment = {**laptop.environment, "PATH": f"{wrapper}:{os.environ['PATH']}"}

    def set_secret(value):
        return subprocess.run(["invoke", "config", "--set-secret", "OTREE_ADMIN_PASSWORD", "--on", SERVER],
                              cwd=REPO_ROOT, env=environment, input=value, capture_output=True, text=True, timeout=900)

    before = settings_file.read_bytes()
    refused = set_secret("two\nlines-of-a-password")
    assert refused.returncode == 1 and "OTREE_ADMIN_PASSWORD contains a line break" in refused.stderr
    assert not arguments.exists() and settings_file.read_bytes() == before  # refused before any connection

    done = set_secret(secret + "\n")
    assert done.returncode == 0, done.stdout + done.stderr
    sent = arguments.read_text()
    assert "--set-secret" in sent and "OTREE_ADMIN_PASSWORD" in sent
    assert secret not in sent and secret not in done.stdout + done.stderr
    assert host.study_values()["OTREE_ADMIN_PASSWORD"] == secret
    environment_there = subprocess.run(["docker", "inspect", "--format", "{{json .Config.Env}}",
                                        f"{STACK}-{STACK}-otree-1"], capture_output=True, text=True, check=True).stdout
    assert f"OTREE_ADMIN_PASSWORD={secret}" in json.loads(environment_there)
    _, signed_in = login(type("Server", (), {"https": URL})(), secret)
    assert signed_in.status_code == 302


def test_a_deploy_to_a_study_the_server_does_not_have_adds_it(world):
    """Last: from here on the server has two studies, and tasks need --study."""
    laptop, host, project = world
    port = STUDY_PORTS.split("-")[0]
    added = laptop.invoke("deploy", "--on", SERVER, "--project", str(project), "--study", SECOND)
    assert f"Release v1 of the new study '{SECOND}' is live: https://127.0.0.1:{port}/" in added.stdout, added.stdout
    assert requests.get(f"https://127.0.0.1:{port}/room/prolific", verify=False, timeout=30).status_code == 200
    assert requests.get(f"{URL}/room/prolific", verify=False, timeout=30).status_code == 200
    assert "Studies on this server (2)" in laptop.invoke("studies", "--on", SERVER).stdout
    refused = laptop.invoke("releases", "--on", SERVER, check=False)
    assert refused.returncode != 0 and "add --study NAME" in refused.stdout + refused.stderr
    listed = laptop.invoke("releases", "--on", SERVER, "--study", SECOND).stdout
    assert "a new study" in listed
