"""Several studies on one server, on real containers, behind one proxy: the example study reached
by address, a second project by its DNS name on the same HTTPS port, and a third by address on a
port of its own. Participants play the first two at the same time in real browsers; each study's
rows are in its own database only; admin passwords, databases and backups are kept apart; one
study's backup, restore, resetdb and removal leave the others' data byte-identical; bad `study add`
input is refused before anything is built; each study's networks are small enough for hundreds of
studies; limits show in docker inspect; the proxy keeps its connections to oTree open, and a stopped
oTree or a network made by an older stack stops nothing; a killed Postgres comes back by itself."""
import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest
import requests

from stack import network, settings
from tests.conftest import Stack, start_stack, stop_stack, study_ports
from tests.helpers import REPO_ROOT, compose, invoke, resolving_here
from tests.participants import join, play_together
from tests.test_closed_doors import PARTICIPANT, crawl
from tests.test_https_proxy import login
from tests.test_study_in_browser import CHROMIUM_ARGS, contribute, finish, participant, play_until_grouping

pytestmark = pytest.mark.docker

SERVER = "otreestudies"
SECOND, SECOND_DOMAIN = "second", "second.test"  # by name, on the first study's port
PORT_SHIFT = 5  # this test server's ports (tests.conftest)
THIRD, THIRD_PORT = "third", study_ports(PORT_SHIFT)[1]  # by address, on a port of its own
SECOND_PROJECT = os.path.join(".test-projects", "second-study")


def export_digest(stack, study, tmp_path, name):
    """sha256 of every exported file of a study (the manifest's export time left out)."""
    out = tmp_path / name
    invoke(stack.env_path, "export-data", "--study", study, "--output", str(out))
    (folder,) = [path for path in out.iterdir() if path.is_dir()]
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())
            if path.name != "manifest.json"}


def study_stack(server, study):
    """The study as participants reach it: by name (SECOND_DOMAIN resolves to this machine, see
    below) or by this machine's address and the study's port."""
    return Stack(server.env_path, study)


@pytest.fixture(scope="module", autouse=True)
def second_domain_resolves_here():
    """The browser gets the same rule from Chromium's --host-resolver-rules."""
    with resolving_here(SECOND_DOMAIN):
        yield


def rest(server, study, method, path, **kwargs):
    return study_stack(server, study).rest(method, path, **kwargs)


def sql(stack, study, query):
    result = compose(stack.env_path, study, "exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "otree", "-At",
                     "-c", query)
    return result.stdout.split()


def proxy_started_at(server):
    return subprocess.run(["docker", "inspect", "--format", "{{.State.StartedAt}}", f"{SERVER}-nginx-1"],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    shutil.rmtree(os.path.join(REPO_ROOT, SECOND_PROJECT), ignore_errors=True)
    shutil.copytree(os.path.join(REPO_ROOT, "otree_project"), os.path.join(REPO_ROOT, SECOND_PROJECT))
    first = start_stack(str(tmp_path_factory.mktemp("studies")), SERVER, port_shift=PORT_SHIFT)
    proxy_started = proxy_started_at(first)
    try:
        added = invoke(first.env_path, "study", "add", SECOND, "--project", SECOND_PROJECT,
                       "--domain", SECOND_DOMAIN)
        assert f"The study '{SECOND}' is up: https://{SECOND_DOMAIN}:{first.values['HTTPS_PORT']}/" in added.stdout
        added = invoke(first.env_path, "study", "add", THIRD, "--project", "otree_project", "--port", str(THIRD_PORT))
        assert f"The study '{THIRD}' is up: https://127.0.0.1:{THIRD_PORT}/" in added.stdout
        # Published from the proxy's start: adding a study by address recreated nothing.
        assert proxy_started_at(first) == proxy_started
        yield first
    finally:
        stop_stack(first)
        shutil.rmtree(os.path.join(REPO_ROOT, SECOND_PROJECT), ignore_errors=True)


def test_a_task_that_changes_data_refuses_to_guess_between_studies(server):
    for args in (["backup"], ["resetdb", "--confirm", SERVER], ["restore", "latest"], ["export-data"]):
        refused = server.invoke(*args, check=False)
        assert refused.returncode == 1, args
        assert "several studies" in refused.stderr and f"Studies: {SERVER}, {SECOND}, {THIRD}" in refused.stderr
    listing = server.invoke("studies").stdout
    for address in (f"https://127.0.0.1:{server.values['HTTPS_PORT']}/",
                    f"https://{SECOND_DOMAIN}:{server.values['HTTPS_PORT']}/", f"https://127.0.0.1:{THIRD_PORT}/"):
        assert address in listing
    assert listing.count("6.0.15") == 3


def test_each_study_takes_four_networks_of_254_addresses_so_a_server_holds_hundreds(server):
    """setup.sh's address pools (install/45-docker-address-pools.sh): with Docker's own, whole /16
    subnets, a server runs out of networks at its seventh study."""
    names = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"], capture_output=True, text=True,
                           check=True).stdout.split()
    ours = [name for name in names if name.startswith((f"{SERVER}-", f"{SERVER}_"))]
    subnets = subprocess.run(["docker", "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
                              *ours], capture_output=True, text=True, check=True).stdout.split()
    assert len(ours) == 3 * 4 + 1, ours  # three studies' and the proxy's own
    assert {subnet.split("/")[1] for subnet in subnets} == {"24"}, dict(zip(ours, subnets))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        rules = f"--host-resolver-rules=MAP {SECOND_DOMAIN} 127.0.0.1"
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[*CHROMIUM_ARGS, rules])
        yield chromium
        chromium.close()


def test_participants_play_two_studies_at_once_in_browsers_and_each_studys_rows_stay_in_its_database(
        server, browser):
    sessions = {study: rest(server, study, "POST", "/api/sessions", json={
        "session_config_name": "prolific_study", "num_participants": 3, "room_name": "prolific"})
        for study in (SERVER, SECOND)}
    players = [(study, f"{study}-{number}", participant(browser)) for study in (SERVER, SECOND) for number in range(3)]
    for study, label, page in players:
        play_until_grouping(page, f"{study_stack(server, study).https}/room/prolific?participant_label={label}")
    for (study, label, page), amount in zip(players, (10, 20, 30, 5, 5, 5)):
        contribute(page, amount)
    for study, _, page in players:
        page.wait_for_url("**/public_goods/Results/**")
        assert f"Your group contributed {60 if study == SERVER else 15} points in total" in page.content()
        finish(page)
    for study, other in ((SERVER, SECOND), (SECOND, SERVER)):
        assert sessions[study]["code"] in sql(server, study, "SELECT code FROM otree_session")
        assert sessions[study]["code"] not in sql(server, other, "SELECT code FROM otree_session")
        labels = set(sql(server, study, "SELECT label FROM otree_participant WHERE label IS NOT NULL"))
        assert labels == {f"{study}-{number}" for number in range(3)}


def test_plain_http_participants_play_the_study_on_its_own_port(server):
    session = rest(server, THIRD, "POST", "/api/sessions", json={"session_config_name": "prolific_study",
                                                                 "num_participants": 3})
    assert f":{THIRD_PORT}/" in session["session_wide_url"]
    play_together(join(session, 3, "third"))
    assert set(sql(server, THIRD, "SELECT label FROM otree_participant")) == {"third0", "third1", "third2"}
    assert sql(server, SERVER, "SELECT count(*) FROM otree_participant WHERE label LIKE 'third%'") == ["0"]


def test_each_admin_password_opens_its_own_study_only(server):
    own = settings.load(server.env_path).study(THIRD).values["OTREE_ADMIN_PASSWORD"]
    other = Stack(server.env_path)
    other.https = study_stack(server, THIRD).https
    _, right = login(other, own)
    assert right.status_code == 302
    _, wrong = login(other, server.values["OTREE_ADMIN_PASSWORD"])
    assert wrong.status_code == 200 and 'name="password"' in wrong.text
    # The first study's admin cookie (sent to the same host on the other port) opens nothing there.
    first, _ = login(server, server.values["OTREE_ADMIN_PASSWORD"])
    response = first.get(f"{study_stack(server, THIRD).https}/sessions", timeout=30)
    assert response.url.endswith("/login") and 'name="password"' in response.text


def test_a_studys_otree_cannot_resolve_or_reach_the_other_studys_database(server):
    probe = ("import socket, sys\ntry:\n    socket.create_connection((sys.argv[1], 5432), timeout=3)\n"
             "except OSError:\n    sys.exit(7)")
    own = compose(server.env_path, SERVER, "exec", "-T", "otree", "python", "-c", probe, "postgres", check=False)
    assert own.returncode == 0
    other = f"{SERVER}-{SECOND}-postgres-1"
    reach = compose(server.env_path, SERVER, "exec", "-T", "otree", "python", "-c", probe, other, check=False)
    assert reach.returncode != 0
    address = json.loads(subprocess.run(["docker", "inspect", other], capture_output=True, text=True,
                                        check=True).stdout)[0]["NetworkSettings"]["Networks"]
    for joined in address.values():
        by_ip = compose(server.env_path, SERVER, "exec", "-T", "otree", "python", "-c", probe, joined["IPAddress"],
                        check=False)
        assert by_ip.returncode != 0


def test_the_unauthenticated_crawl_finds_only_participant_doors_open_on_each_study(server):
    """tests/test_closed_doors.py's crawl of every oTree route, against the second and third studies."""
    for study in (SECOND, THIRD):
        assert crawl(study_stack(server, study), PARTICIPANT) == [], study
    # A name no study has gets no answer.
    unknown = subprocess.run(["curl", "-sk", "--resolve", f"nobody.test:{server.values['HTTPS_PORT']}:127.0.0.1",
                              f"https://nobody.test:{server.values['HTTPS_PORT']}/login"], capture_output=True)
    assert unknown.returncode != 0
    # Nor does a port of STUDY_PORTS that no study uses (published, refused at the handshake).
    unused = study_ports(PORT_SHIFT)[3]
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://127.0.0.1:{unused}/login", verify=False, timeout=10)


def test_backup_restore_and_resetdb_of_one_study_leave_the_others_data_byte_identical(server, tmp_path):
    before = {study: export_digest(server, study, tmp_path, f"{study}-before") for study in (SECOND, THIRD)}
    server.invoke("backup", "--study", SERVER)
    server.invoke("resetdb", "--study", SERVER, "--confirm", SERVER)
    assert sql(server, SERVER, "SELECT count(*) FROM otree_session") == ["0"]
    server.invoke("restore", "latest", "--study", SERVER, "--confirm", SERVER)
    assert sql(server, SERVER, "SELECT count(*) FROM otree_session") != ["0"]
    for study in (SECOND, THIRD):
        assert export_digest(server, study, tmp_path, f"{study}-after") == before[study]
    backups_of_first = settings.load(server.env_path).study(SERVER).backup_dir
    backups_of_second = settings.load(server.env_path).study(SECOND).backup_dir
    assert os.path.commonpath([backups_of_first, backups_of_second]) not in (backups_of_first, backups_of_second)


def test_cpu_and_memory_limits_are_set_per_study(server):
    for service in ("otree", "postgres"):
        container = f"{SERVER}-{THIRD}-{service}-1"
        host = json.loads(subprocess.run(["docker", "inspect", container], capture_output=True, text=True,
                                         check=True).stdout)[0]["HostConfig"]
        assert host["NanoCpus"] == 1_500_000_000
        assert host["Memory"] == 2 * 1024 ** 3


def address_on(container, network_name):
    return subprocess.run(["docker", "inspect", "--format",
                           f'{{{{(index .NetworkSettings.Networks "{network_name}").IPAddress}}}}', container],
                          capture_output=True, text=True, check=True).stdout.strip()


def connections_from_proxy(server, study):
    """The TCP connections oTree's port 8000 has with nginx, in any state (its kernel's table,
    /proc/net/tcp: addresses in hex, little-endian)."""
    nginx = address_on(f"{SERVER}-nginx-1", settings.load(server.env_path).study(study).network)
    nginx_hex = "".join(f"{int(part):02X}" for part in reversed(nginx.split(".")))
    table = compose(server.env_path, study, "exec", "-T", "otree", "cat", "/proc/net/tcp").stdout.splitlines()[1:]
    return [fields[2] for fields in map(str.split, table)
            if fields[1].endswith(":1F40") and fields[2].startswith(nginx_hex + ":")]


def proxy_healthy(server):
    deadline = time.time() + 60
    while subprocess.run(["docker", "inspect", "--format", "{{.State.Health.Status}}", f"{SERVER}-nginx-1"],
                         capture_output=True, text=True).stdout.strip() != "healthy":
        assert time.time() < deadline, "the proxy did not become healthy"
        time.sleep(1)


def test_the_proxy_keeps_connections_to_otree_open_and_a_stopped_otree_or_an_old_network_stops_nothing(server):
    room = f"{study_stack(server, THIRD).https}/room/prolific"  # no rate limit, unlike /login
    earlier = set(connections_from_proxy(server, THIRD))  # earlier tests' ones linger in TIME_WAIT
    for _ in range(20):
        requests.get(room, verify=False, timeout=30).raise_for_status()
    # A connection per request would leave 20 new ones on oTree's side (closed, in TIME_WAIT);
    # kept open, each of nginx's workers opens about one.
    assert len(set(connections_from_proxy(server, THIRD)) - earlier) <= 4

    # oTree is stopped and the proxy restarted meanwhile (a reboot with a study down): the proxy
    # starts, the other studies answer, and the stopped one shows the maintenance page, soon.
    compose(server.env_path, THIRD, "stop", "otree")
    subprocess.run(["docker", "restart", f"{SERVER}-nginx-1"], capture_output=True, check=True)
    proxy_healthy(server)
    assert requests.get(f"{server.https}/room/prolific", verify=False, timeout=30).status_code == 200
    started = time.monotonic()
    stopped = requests.get(room, verify=False, timeout=30)
    assert stopped.status_code == 503 and "One moment, please" in stopped.text
    assert time.monotonic() - started < 5

    # A network made by an older stack (no fixed address for oTree): `invoke up` makes it again.
    study = settings.load(server.env_path).study(THIRD)
    members = [f"{SERVER}-nginx-1", f"{study.project}-otree-1"]
    for member in members:
        subprocess.run(["docker", "network", "disconnect", study.network, member], capture_output=True, check=True)
    subprocess.run(["docker", "network", "rm", study.network], capture_output=True, check=True)
    subprocess.run(["docker", "network", "create", "--internal", study.network], capture_output=True, check=True)
    for member in members:
        subprocess.run(["docker", "network", "connect", study.network, member], capture_output=True, check=True)
    assert "making its network to the proxy again" in server.invoke("up", "--study", THIRD).stdout
    subnet, ip_range = subprocess.run(["docker", "network", "inspect", "--format",
                                       "{{range .IPAM.Config}}{{.Subnet}} {{.IPRange}}{{end}}", study.network],
                                      capture_output=True, text=True, check=True).stdout.split()
    assert address_on(f"{study.project}-otree-1", study.network) == network.otree_address(subnet)
    assert ip_range == network.dynamic_range(subnet)
    assert requests.get(room, verify=False, timeout=30).status_code == 200
    assert requests.get(f"{server.https}/room/prolific", verify=False, timeout=30).status_code == 200


@pytest.mark.parametrize("args, message", [
    (["Bad_Name", "--project", "otree_project"], "is not a valid study name"),
    ([SECOND, "--project", "otree_project"], "There is already a study named 'second'"),
    (["fourth", "--project", "no-such-folder"], "does not exist"),
    (["fourth", "--project", "tests/.old-otree"], "pins oTree before 5"),
])
def test_study_add_refuses_bad_input_before_anything_is_built(server, args, message):
    old = os.path.join(REPO_ROOT, "tests", ".old-otree")
    os.makedirs(old, exist_ok=True)
    for name, text in (("settings.py", ""), ("requirements.txt", "otree==3.4.0\n")):
        with open(os.path.join(old, name), "w") as handle:
            handle.write(text)
    try:
        result = server.invoke("study", "add", *args, check=False)
    finally:
        shutil.rmtree(old)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert "fourth" not in [study.name for study in settings.load(server.env_path).studies]
    assert "Building" not in result.stdout


def test_a_killed_postgres_comes_back_by_itself_and_a_second_one_on_its_volume_is_refused(server):
    container = f"{SERVER}-{THIRD}-postgres-1"
    # A crash, not `docker kill` (Docker restarts no container that was stopped on purpose): the
    # server's process is killed from the host.
    pid = subprocess.run(["docker", "inspect", "--format", "{{.State.Pid}}", container], capture_output=True,
                         text=True, check=True).stdout.strip()
    os.kill(int(pid), 9)
    deadline = time.time() + 120
    while True:
        restarted = subprocess.run(["docker", "inspect", "--format", "{{.State.Pid}} {{.State.Health.Status}}",
                                    container], capture_output=True, text=True).stdout.split()
        if restarted[0] not in ("0", pid) and restarted[1] == "healthy" or time.time() > deadline:
            break
        time.sleep(2)
    assert restarted[0] not in ("0", pid) and restarted[1] == "healthy", restarted
    assert sql(server, THIRD, "SELECT count(*) FROM otree_participant WHERE label LIKE 'third%'") == ["3"]
    # oTree finds its database again by itself (its first query after the crash may fail).
    deadline = time.time() + 60
    while True:
        try:
            rest(server, THIRD, "POST", "/api/sessions", json={"session_config_name": "prolific_study",
                                                               "num_participants": 3})
            break
        except requests.HTTPError:
            assert time.time() < deadline, "oTree did not reconnect to its restarted database"
            time.sleep(2)
    second = compose(server.env_path, THIRD, "run", "--rm", "--no-deps", "-T", "postgres", check=False)
    assert second.returncode != 0
    assert "another Postgres container" in second.stdout + second.stderr
    assert sql(server, THIRD, "SELECT count(*) FROM otree_participant WHERE label LIKE 'third%'") == ["3"]
    assert "postgres" in compose(server.env_path, THIRD, "ps", "--status", "running", "--services").stdout.split()


def test_study_remove_takes_a_verified_backup_needs_the_name_and_leaves_the_others(server, tmp_path):
    before = export_digest(server, SERVER, tmp_path, "first-before")
    refused = server.invoke("study", "remove", THIRD, "--confirm", "wrong", check=False)
    assert refused.returncode == 1 and "Nothing was changed" in refused.stderr
    removed = server.invoke("study", "remove", THIRD, "--confirm", THIRD)
    assert "before-remove" in removed.stdout and f"Removed the study '{THIRD}'" in removed.stdout
    backup_dir = [line for line in removed.stdout.splitlines() if "Its data as it was is backup" in line][0]
    path = backup_dir.split(": ", 1)[1].strip()
    assert os.path.isfile(os.path.join(path, "otree.dump"))
    assert [study.name for study in settings.load(server.env_path).studies] == [SERVER, SECOND]
    with pytest.raises(requests.exceptions.SSLError):  # the port stays published; no study answers
        requests.get(f"https://127.0.0.1:{THIRD_PORT}/login", verify=False, timeout=10)
    assert export_digest(server, SERVER, tmp_path, "first-after") == before
