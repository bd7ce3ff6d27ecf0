"""Container hardening, read from the running test stack (docker inspect, /proc inside each
container) rather than from docker-compose.yml alone: non-root users, no capabilities, no
privilege gain, read-only root filesystems, only nginx published, nginx cut off from the
database, and no secret in `invoke status` or in any service's log."""
import json
import socket
import subprocess

import pytest

from tests.helpers import containers_of
from tests.test_https_proxy import login

# What each service runs as, and what it is allowed beyond the common hardening (x-hardening in
# docker-compose.yml, a study's services, and docker-compose.proxy.yml, the proxy's).
USERS = {"otree": "otree", "postgres": "postgres", "nginx": "www-data", "backup": "backup-runner",
         "certbot": "www-data", "monitor": "monitor"}
# Capabilities a service gets back after `cap_drop: [ALL]`, with the reason. None does: all run
# unprivileged, nginx on 8080/8443. (The one-off `chown` run of stack/backups.py adds CHOWN.)
CAP_ADD = {}
# Services whose root filesystem may stay writable, with the reason. None.
WRITABLE_ROOT = {}
# Where each service may write besides its volumes.
TMPFS = {"otree": {"/tmp"}, "postgres": {"/tmp"}, "nginx": {"/tmp"}, "backup": {"/tmp"},
         "certbot": {"/tmp"}, "monitor": set()}
NETWORKS = {"otree": {"proxy", "backend", "outbound"}, "postgres": {"backend"}, "nginx": {"outside"},
            "backup": {"backend", "offsite"}, "certbot": {"outside"}, "monitor": {"outside"}}
SECRETS = ("OTREE_ADMIN_PASSWORD", "OTREE_REST_KEY", "OTREE_SECRET_KEY", "POSTGRES_PASSWORD")


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture(scope="module")
def containers(stack):
    """{service: docker inspect of its running container}."""
    found = json.loads(docker("inspect", *containers_of(stack.name)).stdout)
    running = {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in found if c["State"]["Running"]}
    assert set(running) == set(USERS), f"expected exactly {sorted(USERS)} running, found {sorted(running)}"
    return running


def in_container(container, *command, check=True):
    return docker("exec", container["Id"], *command, check=check)


def proc_status(container, pid="1"):
    lines = in_container(container, "cat", f"/proc/{pid}/status").stdout.splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


@pytest.mark.parametrize("service", sorted(USERS))
def test_each_service_runs_unprivileged_on_a_read_only_root(containers, service):
    container = containers[service]
    host = container["HostConfig"]
    assert container["Config"]["User"] not in ("", "root", "0", "0:0")
    assert in_container(container, "id", "-un").stdout.strip() == USERS[service]
    assert "no-new-privileges:true" in host["SecurityOpt"] or "no-new-privileges" in host["SecurityOpt"]
    assert host["CapDrop"] == ["ALL"]
    assert sorted(host["CapAdd"] or []) == sorted(CAP_ADD.get(service, {}))
    assert host["ReadonlyRootfs"] is not (service in WRITABLE_ROOT)
    assert set(host.get("Tmpfs") or {}) == TMPFS[service]
    assert not host["Privileged"]

    # What the kernel says of the main process: no capabilities at all, and no privilege gain.
    status = proc_status(container)
    assert status["Uid"].split()[1] != "0"
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    # No process of the container runs as root (nginx's master and workers, oTree's timeout worker...).
    # (docker top needs the pid column.)
    processes = docker("top", container["Id"], "-eo", "pid,uid,args").stdout.splitlines()[1:]
    assert processes and all(line.split()[1] != "0" for line in processes), processes
    mounts = [line.split() for line in in_container(container, "cat", "/proc/mounts").stdout.splitlines()]
    root_options = [fields[3].split(",") for fields in mounts if fields[1] == "/"][-1]
    assert "ro" in root_options


def test_every_service_in_the_compose_files_is_hardened(stack):
    """Checked in the resolved configuration of both Compose files."""
    services = {**json.loads(stack.compose("config", "--format", "json").stdout)["services"],
                **json.loads(stack.compose("config", "--format", "json", "nginx", "certbot", "monitor").stdout)["services"]}
    config = json.loads(stack.compose("config", "--format", "json").stdout)
    # A new service must be hardened too, and entered in the tables above.
    assert set(services) == set(TMPFS), "add each new service to the tables at the top"
    for name, service in services.items():
        assert service.get("security_opt") == ["no-new-privileges:true"], name
        assert service.get("cap_drop") == ["ALL"] and not service.get("cap_add"), name
        assert service.get("read_only") is True, name
        assert not service.get("privileged"), name
        assert set(service.get("networks", {})) == NETWORKS[name], name
        assert bool(service.get("ports")) == (name == "nginx"), name
    assert config["networks"]["backend"].get("internal") is True


def test_the_timeout_worker_runs_and_nginx_made_its_certificate(stack, containers):
    processes = docker("top", containers["otree"]["Id"], "-eo", "pid,args").stdout
    assert "prodserver" in processes and "timeoutsubprocess" in processes, processes
    assert in_container(containers["nginx"], "test", "-s", f"/etc/nginx/certs/{stack.name}/fullchain.pem",
                        check=False).returncode == 0


def test_only_nginx_http_and_https_are_published_on_the_host(stack, containers):
    first, _, last = stack.values["STUDY_PORTS"].partition("-")
    for service, container in containers.items():
        published = docker("port", container["Id"]).stdout.split("\n")
        published = sorted(line.strip() for line in published if line.strip())
        if service == "nginx":
            assert published == sorted([f"8080/tcp -> 127.0.0.1:{stack.values['HTTP_PORT']}",
                                        f"8443/tcp -> 127.0.0.1:{stack.values['HTTPS_PORT']}",
                                        *(f"{port}/tcp -> 127.0.0.1:{port}" for port in range(int(first), int(last) + 1))])
        else:
            assert published == [], service
    server = stack.values["STACK_NAME"]
    between = f"{server}-{stack.name}-proxy"
    assert set(containers["nginx"]["NetworkSettings"]["Networks"]) == {f"{server}_outside", between}
    # No way out on the network between nginx and oTree: joining it can never move nginx's ports.
    assert docker("network", "inspect", "--format", "{{.Internal}}", between).stdout.strip() == "true"
    # oTree's port is only on the Docker network: nothing answers on the host's 8000.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 8000), timeout=3).close()


def ip_on(container, network):
    return container["NetworkSettings"]["Networks"][network]["IPAddress"]


def test_nginx_cannot_reach_the_database_but_otree_can(stack, containers):
    nginx, backend = containers["nginx"], f"{stack.values['STACK_NAME']}-{stack.name}_backend"
    for service in ("nginx", "certbot", "monitor"):  # the containers outside the study's backend network
        assert in_container(containers[service], "getent", "hosts", "postgres", check=False).returncode != 0
    # Not by its address either: the networks are separate bridges.
    address = ip_on(containers["postgres"], backend)
    probe = in_container(nginx, "curl", "-sS", "--max-time", "3", f"telnet://{address}:5432", check=False)
    assert probe.returncode in (7, 28), probe  # refused, or timed out
    # The same probe from oTree succeeds, so the one above proves the isolation, not a broken probe.
    reach = "import socket, sys; socket.create_connection((sys.argv[1], 5432), timeout=3).close()"
    assert in_container(containers["otree"], "python", "-c", reach, address, check=False).returncode == 0


def mount_of(container, path):
    """(filesystem type, options) of what is mounted at path in the container."""
    for fields in (line.split() for line in in_container(container, "cat", "/proc/mounts").stdout.splitlines()):
        if fields[1] == path:
            return fields[2], fields[3].split(",")
    raise AssertionError(f"nothing mounted at {path}")


def test_otree_reaches_postgres_through_its_socket_with_the_password(stack, containers):
    """oTree's database connection is the Unix socket in a tmpfs that its Postgres shares with
    oTree alone (read-only there), and the socket still asks for the password."""
    postgres_mount, otree_mount = mount_of(containers["postgres"], "/run/postgresql"), \
        mount_of(containers["otree"], "/run/postgresql")
    assert postgres_mount[0] == otree_mount[0] == "tmpfs"
    assert "rw" in postgres_mount[1] and "ro" in otree_mount[1]
    for service in ("nginx", "backup", "certbot", "monitor"):
        assert in_container(containers[service], "test", "-e", "/run/postgresql/.s.PGSQL.5432",
                            check=False).returncode != 0, service
    # The server's own connection: a session over the socket has no client address; the backup
    # service, which connects over the network, could not make one.
    stack.create_session()
    [[over_socket]] = stack.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'otree' AND "
                                "backend_type = 'client backend' AND client_addr IS NULL")
    assert int(over_socket) >= 1
    connect = ("import sys, psycopg2\ntry:\n    psycopg2.connect(host='/run/postgresql', dbname='otree', "
               "user=sys.argv[1], password='not-the-password')\nexcept psycopg2.OperationalError as error:\n"
               "    print(error)")
    refused = in_container(containers["otree"], "python", "-c", connect, "otree").stdout
    assert 'password authentication failed for user "otree"' in refused, refused
    # Postgres's superuser only from inside Postgres's own container, as its own Linux user.
    refused = in_container(containers["otree"], "python", "-c", connect, "postgres").stdout
    assert 'Peer authentication failed for user "postgres"' in refused, refused


def test_no_secret_in_status_or_any_log_after_a_login_a_session_and_a_backup(stack):
    session, response = login(stack, stack.values["OTREE_ADMIN_PASSWORD"])
    assert response.status_code == 302
    stack.create_session()
    stack.invoke("backup")
    status = stack.invoke("status")
    logs = stack.compose("logs", "--no-color", "--timestamps")
    texts = {"invoke status": status.stdout + status.stderr, "docker compose logs": logs.stdout + logs.stderr}
    assert "backup" in logs.stdout and "otree" in logs.stdout
    for key in SECRETS:
        secret = stack.values[key]
        assert len(secret) >= 8
        for where, text in texts.items():
            assert secret not in text, f"{key} appears in {where}"
