"""Docker Compose, called with this stack's env file and project name, and nothing else."""
import json
import os
import shutil
import subprocess

from . import envfile
from .console import StackError, info

COMPOSE_FILE = os.path.join(envfile.REPO_ROOT, "docker-compose.yml")
# The oTree image first: nginx copies the static files out of it.
BUILD_ORDER = [["otree"], ["postgres", "nginx"]]
SERVICES = ("otree", "postgres", "nginx", "redis")


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
        started = self.run("up", "--detach", "--remove-orphans", "--wait", "--wait-timeout", str(timeout),
                           *extra, check=False)
        if started.returncode:
            self.explain_unhealthy()
            raise StackError("The stack did not become healthy. The failing service's last log lines are "
                             "above; fix what they say and run `invoke up` again (your data is kept).")

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
