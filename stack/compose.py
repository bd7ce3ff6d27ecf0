"""Docker Compose, called with this stack's env file and project name, and nothing else."""
import json
import os
import re
import shutil
import subprocess

from . import envfile, project
from .console import StackError, info

COMPOSE_FILE = os.path.join(envfile.REPO_ROOT, "docker-compose.yml")
# The oTree image first: nginx copies the static files out of it. The backup image builds on
# the postgres image, for the same pg_dump and a scratch server to verify with.
BUILD_ORDER = [["otree"], ["postgres", "nginx", "certbot"], ["backup"]]
SERVICES = ("otree", "postgres", "nginx", "backup", "certbot", "redis")
# Started after the others, without waiting on their health: a failing backup or certificate
# request is reported loudly, but must not keep the study from starting.
AFTER_START = ("backup", "certbot")
# restic repositories that are not a folder on this machine start with their backend's name.
RESTIC_REMOTE = re.compile(r"^(sftp|rest|s3|b2|azure|gs|swift|rclone):")


def require_docker():
    if not shutil.which("docker"):
        raise StackError("Docker is not installed. Run ./setup.sh, which installs it.")
    if subprocess.run(["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
        raise StackError("The Docker engine is not running or not yours to use. Run ./setup.sh, or start "
                         "it with `sudo systemctl start docker`.")
    if subprocess.run(["docker", "compose", "version"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode:
        raise StackError("The Docker Compose v2 plugin is missing. Run ./setup.sh, which installs it.")


class Compose:
    def __init__(self, env_path, values, redis=False, extra_env=None):
        self.env_path = env_path
        self.values = values
        self.name = values.get("STACK_NAME", "otree").strip() or "otree"
        self.redis = redis
        # The env file wins over the caller's shell, so what runs is what `invoke up` checked.
        self.environment = {k: v for k, v in os.environ.items() if k not in values}
        self.environment.update(extra_env or {})
        if redis:
            self.environment["REDIS_URL"] = "redis://redis:6379"
        self.environment.update(backup_environment(values))
        ca_file = values.get("ACME_CA_FILE", "").strip()
        if ca_file:
            self.environment["ACME_CA_FILE_ON_HOST"] = os.path.join(envfile.REPO_ROOT, ca_file)

    def command(self, *args):
        profiles = ["--profile", "redis"] if self.redis else []
        return ["docker", "compose", "--project-directory", envfile.REPO_ROOT, "-f", COMPOSE_FILE,
                "--env-file", self.env_path, "-p", self.name, *profiles, *args]

    def run(self, *args, check=True, capture=False, stdin=None):
        result = subprocess.run(self.command(*args), env=self.environment, text=True,
                                stdout=subprocess.PIPE if capture else None, stdin=stdin)
        if check and result.returncode:
            raise StackError(f"`docker compose {' '.join(args)}` failed (exit {result.returncode}); "
                             "see its messages above.")
        return result

    def build(self, no_cache=False):
        extra = ["--no-cache"] if no_cache else []
        for services in BUILD_ORDER + ([["redis"]] if self.redis else []):
            self.run("build", *extra, *services)

    def up(self, recreate=False, timeout=300):
        extra = ["--force-recreate"] if recreate else []
        core = [service for service in SERVICES if service not in AFTER_START and (self.redis or service != "redis")]
        started = self.run("up", "--detach", "--remove-orphans", "--wait", "--wait-timeout", str(timeout),
                           *extra, *core, check=False)
        if not started.returncode:
            started = self.run("up", "--detach", "--no-deps", *extra, *AFTER_START, check=False)
        if started.returncode:
            self.explain_unhealthy()
            raise StackError("The stack did not become healthy. The failing service's last log lines are "
                             "above; fix what they say and run `invoke up` again (your data is kept).")

    def start(self, service, timeout=300):
        """Start one service of a running stack again, and wait until it is healthy."""
        self.run("up", "--detach", "--no-deps", "--wait", "--wait-timeout", str(timeout), service)

    def states(self):
        """{service: {'state': ..., 'health': ...}} for this stack's containers."""
        result = self.run("ps", "--all", "--format", "json", capture=True, check=False)
        text = (result.stdout or "").strip()
        if not text:
            return {}
        rows = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines()]
        return {row["Service"]: {"state": row.get("State", ""), "health": row.get("Health", "")} for row in rows}

    def explain_unhealthy(self):
        for service, state in self.states().items():
            if state["health"] not in ("healthy", "") or state["state"] != "running":
                info(f"{service} is {state['state']} {state['health']}; its last log lines:")
                self.run("logs", "--no-color", "--tail", "30", service, check=False)


def local_restic_path(repository):
    """The folder of a restic repository on this machine, or None for a remote one."""
    repository = repository.strip()
    if not repository or RESTIC_REMOTE.match(repository):
        return None
    path = repository[len("local:"):] if repository.startswith("local:") else repository
    return os.path.join(envfile.REPO_ROOT, path)


def backup_environment(values):
    """What the backup service learns from this host: where its files land, the project's
    oTree version and git revision for the manifests, and how to reach the restic repository."""
    backup_dir = os.path.join(envfile.REPO_ROOT, values.get("BACKUP_DIR", "").strip() or "backups")
    repository = values.get("RESTIC_REPOSITORY", "").strip()
    local = local_restic_path(repository)
    environment = {"BACKUP_DIR_ON_HOST": os.path.normpath(backup_dir),
                   "RESTIC_REPOSITORY_IN_CONTAINER": "/restic-local" if local else repository}
    if local:
        environment["RESTIC_LOCAL_DIR"] = os.path.normpath(local)
    try:
        folder = project.directory(values)
        environment["OTREE_VERSION"] = (project.otree_requirement(folder) or "").lstrip("=")
        environment["PROJECT_REVISION"] = project.git_revision(folder)
    except StackError:
        pass  # reported by the checks that run before anything starts
    return environment
