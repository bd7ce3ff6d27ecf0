"""A bare oTree: `otree prodserver` from a stack's oTree image with a Postgres of its own from the
stack's postgres image, on a network of their own, on 127.0.0.1:PORT only, with no proxy. For
tests/test_render_cache.py and benchmarks/stack_vs_bare.py. Everything it starts is named after
it, and `stop()` removes it all, volume included."""
import io
import os
import secrets
import subprocess
import tarfile
import time

import requests

from stack import envfile


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def build_otree_image(tag, project_dir, base_image="debian:trixie-slim"):
    """The stack's oTree image (its Dockerfile and otree_server/) for the project in `project_dir`,
    which may be a test project under tests/ (.dockerignore keeps tests/ out of the repository's
    build context, so the context is just what the Dockerfile copies)."""
    def clean(member):
        return None if "__pycache__" in member.name or member.name.endswith("db.sqlite3") else member

    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(os.path.join(envfile.REPO_ROOT, "Dockerfile"), "Dockerfile")
        tar.add(os.path.join(envfile.REPO_ROOT, "otree_server"), "otree_server", filter=clean)
        tar.add(project_dir, "project", filter=clean)
    image = f"otree-stack/otree:{tag}"
    subprocess.run(["docker", "build", "-q", "-t", image, "--build-arg", f"BASE_IMAGE={base_image}",
                    "--build-arg", "OTREE_PROJECT_DIR=project", "-"], input=context.getvalue(),
                   check=True, capture_output=True)
    return image


def build_postgres_image(tag, base_image="debian:trixie-slim"):
    image = f"otree-stack/postgres:{tag}"
    subprocess.run(["docker", "build", "-q", "-t", image, "--build-arg", f"BASE_IMAGE={base_image}",
                    os.path.join(envfile.REPO_ROOT, "postgres")], check=True, capture_output=True)
    return image


class BareOtree:
    def __init__(self, name, otree_image, postgres_image, port, environment=None, command=(), mounts=()):
        self.name, self.port = name, port
        self.otree_image, self.postgres_image = otree_image, postgres_image
        self.command, self.mounts = list(command), list(mounts)
        self.rest_key = secrets.token_hex(16)
        self.admin_password = secrets.token_hex(12)
        password = secrets.token_hex(16)
        self.environment = {"OTREE_PRODUCTION": "1", "OTREE_AUTH_LEVEL": "STUDY",
                            "OTREE_ADMIN_PASSWORD": self.admin_password, "OTREE_REST_KEY": self.rest_key,
                            "OTREE_SECRET_KEY": secrets.token_hex(24), "POSTGRES_PASSWORD": password,
                            "DATABASE_URL": f"postgresql://otree:{password}@postgres:5432/otree",
                            **(environment or {})}
        self.url = f"http://127.0.0.1:{port}"

    def start(self, timeout=180):
        """Postgres first (healthy), then oTree, answering its login page; on any failure
        everything started is removed again."""
        self.stop()
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout):
        docker("network", "create", f"{self.name}-net")
        docker("run", "-d", "--name", f"{self.name}-postgres", "--network", f"{self.name}-net",
               "--network-alias", "postgres", "-e", "POSTGRES_DB=otree", "-e", "POSTGRES_USER=otree",
               "-e", f"POSTGRES_PASSWORD={self.environment['POSTGRES_PASSWORD']}",
               "--tmpfs", "/run/postgresql:size=16m", "--shm-size", "256m",
               "-v", f"{self.name}-pgdata:/var/lib/postgresql/data", self.postgres_image)
        self._wait(lambda: docker("exec", f"{self.name}-postgres", "pg_isready", "-h", "127.0.0.1", "-U", "otree",
                                  "-d", "otree", check=False).returncode == 0, timeout, "Postgres")
        env = [argument for key, value in self.environment.items() if key != "POSTGRES_PASSWORD"
               for argument in ("-e", f"{key}={value}")]
        mounts = [argument for source, target in self.mounts for argument in ("-v", f"{source}:{target}:ro")]
        docker("run", "-d", "--name", f"{self.name}-otree", "--network", f"{self.name}-net",
               "-p", f"127.0.0.1:{self.port}:8000", "--tmpfs", "/tmp:size=256m", *env, *mounts,
               self.otree_image, *self.command)
        self._wait(self._answers, timeout, "oTree")

    def _answers(self):
        try:
            return requests.get(self.url + "/login", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def _wait(self, ready, timeout, what):
        deadline = time.time() + timeout
        while not ready():
            if time.time() > deadline:
                raise AssertionError(f"{what} of {self.name} did not start:\n{self.logs()[-5000:]}")
            time.sleep(0.5)

    def logs(self):
        result = docker("logs", f"{self.name}-otree", check=False)
        return result.stdout + result.stderr

    def stop(self):
        docker("rm", "-f", "-v", f"{self.name}-otree", f"{self.name}-postgres", check=False)
        docker("volume", "rm", f"{self.name}-pgdata", check=False)
        docker("network", "rm", f"{self.name}-net", check=False)

    def rest(self, method, path, **kwargs):
        response = requests.request(method, self.url + path, headers={"otree-rest-key": self.rest_key},
                                    timeout=60, **kwargs)
        response.raise_for_status()
        return response.json()
