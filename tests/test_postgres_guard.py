"""Postgres's double-start guard (postgres/entrypoint.sh), on real containers with the stack's
hardening: a second Postgres on a data volume that one already uses refuses to start and leaves
both alone, while a container killed outright (SIGKILL, as in a host crash) starts again at once.
Runs its own image, containers and volumes (named guardtest-...), never the shared test stack."""
import json
import os
import secrets
import subprocess
import time

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.docker

IMAGE = "otree-guardtest/postgres"
BASE_IMAGE = os.environ.get("BASE_IMAGE", "debian:trixie-slim")
DATA = "/var/lib/postgresql/data"
# The postgres service's options in docker-compose.yml (x-hardening, tmpfs, shm_size, stop_signal);
# its socket folder, there a tmpfs volume it shares with oTree, is a tmpfs of its own here.
HARDENING = ["--read-only", "--tmpfs", "/run/postgresql:size=16m", "--tmpfs", "/tmp:size=256m",
             "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true", "--shm-size", "256m",
             "--stop-signal", "SIGINT"]
REFUSAL = "another Postgres container"
TIMEOUT = 60  # seconds for a container to become ready, or to give up


def docker(*args, check=True, timeout=120):
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="module")
def image():
    docker("build", "-q", "-t", IMAGE, "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
           os.path.join(REPO_ROOT, "postgres"), timeout=900)
    return IMAGE


class Volume:
    """A fresh data volume and the Postgres containers started on it, all removed afterwards."""

    def __init__(self, image):
        self.image = image
        self.name = f"guardtest-{secrets.token_hex(4)}"
        self.password = secrets.token_urlsafe(24)
        self.containers = []
        docker("volume", "create", self.name)

    def start(self, wait=True, options=()):
        name = f"{self.name}-{len(self.containers) + 1}"
        self.containers.append(name)
        docker("run", "-d", "--name", name, *HARDENING, *options, "-v", f"{self.name}:{DATA}",
               "-e", "POSTGRES_DB=otree", "-e", "POSTGRES_USER=otree", "-e", f"POSTGRES_PASSWORD={self.password}",
               self.image)
        if wait:
            wait_ready(name)
        return name

    def remove(self):
        for name in self.containers:
            docker("rm", "-f", name, check=False)
        docker("volume", "rm", "-f", self.name, check=False)


@pytest.fixture
def volume(image):
    created = Volume(image)
    try:
        yield created
    finally:
        created.remove()


def running(container):
    return docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip() == "true"


def logs(container):
    result = docker("logs", container, check=False)
    return result.stdout + result.stderr


def wait_ready(container, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(container):
            raise AssertionError(f"{container} exited while starting:\n{logs(container)[-4000:]}")
        if docker("exec", container, "pg_isready", "-h", "127.0.0.1", "-U", "otree", "-d", "otree",
                  check=False, timeout=30).returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"{container} not ready after {timeout} s:\n{logs(container)[-4000:]}")


def wait_exit(container, timeout=TIMEOUT):
    """The container's exit status, once it has stopped by itself."""
    try:
        return int(docker("wait", container, timeout=timeout).stdout.strip())
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{container} still running after {timeout} s:\n{logs(container)[-4000:]}") from None


def sql(container, query):
    return docker("exec", container, "psql", "-U", "postgres", "-d", "otree", "-v", "ON_ERROR_STOP=1",
                  "--no-align", "--tuples-only", "-c", query, timeout=30).stdout.split()


def write_row(container):
    sql(container, "CREATE TABLE guard (note text); INSERT INTO guard VALUES ('written before')")


def assert_row(container):
    assert sql(container, "SELECT note FROM guard") == ["written", "before"]


def test_first_container_starts_and_postgres_keeps_the_lock(volume):
    first = volume.start()
    write_row(first)
    assert_row(first)
    # The lock lives on the entrypoint's fd 9: every Postgres process must still hold it,
    # or the lock would go with the process that closed it.
    listing = docker("exec", first, "sh", "-c", 'for p in /proc/[0-9]*; do '
                     'echo "$(head -c 8 $p/cmdline | tr "\\0" " ")|$(readlink $p/fd/9)"; done').stdout
    processes = [line.split("|") for line in listing.splitlines() if line.startswith("postgres")]
    assert len(processes) >= 5, listing  # postmaster, checkpointer, writers, launchers
    assert all(fd9 == DATA for _, fd9 in processes), listing


def test_second_container_on_the_volume_refuses_and_leaves_the_first_alone(volume):
    first = volume.start()
    write_row(first)
    second = volume.start(wait=False)
    assert wait_exit(second) != 0
    refusal = [line for line in logs(second).splitlines() if REFUSAL in line]
    assert refusal, logs(second)
    first_id = docker("inspect", "-f", "{{.Config.Hostname}}", first).stdout.strip()
    assert f"({first_id})" in refusal[0]  # which container holds the volume
    assert f"docker ps --filter volume={volume.name}" in refusal[0]  # and how to find it
    assert "nothing was touched" in refusal[0]
    # The second container printed nothing else: it touched nothing.
    assert logs(second).strip() == refusal[0]
    assert running(first)
    wait_ready(first, timeout=5)
    assert_row(first)
    sql(first, "INSERT INTO guard VALUES ('after')")


def test_restart_after_sigkill_starts_at_once(volume):
    first = volume.start()
    write_row(first)
    docker("kill", "--signal", "KILL", first)
    assert wait_exit(first) == 137
    # The same container again, as `restart: unless-stopped` or a host reboot would start it.
    docker("start", first)
    wait_ready(first)
    assert_row(first)
    # The lock is held again: a second container still refuses.
    second = volume.start(wait=False)
    assert wait_exit(second) != 0
    assert REFUSAL in logs(second)
    # And after another SIGKILL a new container takes the volume over.
    docker("kill", "--signal", "KILL", first)
    wait_exit(first)
    third = volume.start()
    assert_row(third)


def test_two_containers_started_together_on_a_new_volume(volume):
    """Both arrive before a cluster exists (a study added twice): exactly one creates it."""
    names = [volume.start(wait=False), volume.start(wait=False)]
    deadline = time.monotonic() + TIMEOUT
    while all(running(name) for name in names) and time.monotonic() < deadline:
        time.sleep(0.5)
    refused = [name for name in names if not running(name)]
    assert len(refused) == 1, [logs(name) for name in names]
    assert REFUSAL in logs(refused[0])
    (winner,) = set(names) - set(refused)
    wait_ready(winner)
    write_row(winner)
    assert_row(winner)


def test_a_data_folder_that_cannot_be_locked_is_refused_unless_allowed(volume, tmp_path):
    """A file system that takes no locks (some network and FUSE ones): here the kernel answers the
    container's flock with ENOLCK, through a seccomp profile, as such a file system does."""
    profile = tmp_path / "no-locks.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["flock"], "action": "SCMP_ACT_ERRNO", "errnoRet": 37}]}))  # 37: ENOLCK
    no_locks = ["--security-opt", f"seccomp={profile}"]
    refused = volume.start(wait=False, options=no_locks)
    assert wait_exit(refused) != 0
    said = logs(refused).strip()
    assert said.startswith("postgres: refusing to start: ") and "\n" not in said, said
    assert "cannot be locked (flock: 9: No locks available" in said and "nothing was touched" in said
    assert "set POSTGRES_ALLOW_UNLOCKED=1" in said  # how to start it anyway
    allowed = volume.start(options=[*no_locks, "-e", "POSTGRES_ALLOW_UNLOCKED=1"])
    said = logs(allowed)
    # The refused one touched nothing: the allowed one found the volume empty.
    assert "creating a new database cluster" in said
    assert "WARNING: cannot lock" in said and "as POSTGRES_ALLOW_UNLOCKED=1 says" in said
    write_row(allowed)
    assert_row(allowed)
