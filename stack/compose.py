"""Docker Compose for a study's project and the proxy's, called with the values from the settings
and nothing else."""
import json
import os
import re
import shutil
import subprocess

from . import envfile, network, project
from .console import StackError, info

STUDY_FILE = os.path.join(envfile.REPO_ROOT, "docker-compose.yml")
PROXY_FILE = os.path.join(envfile.REPO_ROOT, "docker-compose.proxy.yml")
# The oTree image first (static files are copied out of it); the backup image builds on the
# postgres image, for the same pg_dump and a scratch server to verify with.
STUDY_BUILD_ORDER = [["otree", "postgres"], ["backup"]]
STUDY_SERVICES = ("otree", "postgres", "backup")
PROXY_SERVICES = ("nginx", "certbot", "monitor")
# Started after the others, without waiting on their health: a failing backup or certificate
# request is reported loudly, but must not keep the study from starting.
AFTER_START = ("backup", "certbot", "monitor")
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
    """One Compose project: a study's (docker-compose.yml) or the proxy's (docker-compose.proxy.yml).
    Every value the files use is passed in `environment`, so what runs is what was checked."""

    def __init__(self, name, files, services, build_order, environment, addresses=dict):
        self.name = name
        self.files = files
        self.services = services
        self.build_order = build_order
        # The settings win over the caller's shell.
        self.environment = {**os.environ, **environment}
        # Fixed addresses ({variable: address}), for `up` only: a one-off `run` of the same service
        # beside the running one must not claim its address.
        self.addresses = addresses

    def command(self, *args):
        files = [argument for path in self.files for argument in ("-f", path)]
        # --env-file /dev/null: the repository's .env is the server's settings file, not Compose's.
        return ["docker", "compose", "--project-directory", envfile.REPO_ROOT, *files,
                "--env-file", os.devnull, "-p", self.name, *args]

    def run(self, *args, check=True, capture=False, stdin=None):
        environment = self.environment
        if args and args[0] in ("up", "run", "create"):
            create_health_volume(self.environment["PROXY_PROJECT"])
        if args and args[0] in ("up", "create"):
            environment = {**environment, **self.addresses()}
        result = subprocess.run(self.command(*args), env=environment, text=True,
                                stdout=subprocess.PIPE if capture else None, stdin=stdin)
        if check and result.returncode:
            raise StackError(f"`docker compose {' '.join(args)}` failed (exit {result.returncode}); "
                             "see its messages above.")
        return result

    def build(self, no_cache=False):
        extra = ["--no-cache"] if no_cache else []
        for services in self.build_order:
            self.run("build", *extra, *services)

    def up(self, recreate=False, timeout=300):
        extra = ["--force-recreate"] if recreate else []
        core = [service for service in self.services if service not in AFTER_START]
        started = self.run("up", "--detach", "--remove-orphans", "--wait", "--wait-timeout", str(timeout),
                           *extra, *core, check=False)
        later = [service for service in self.services if service in AFTER_START]
        if not started.returncode:
            started = self.run("up", "--detach", "--no-deps", *extra, *later, check=False)
        if started.returncode:
            self.explain_unhealthy()
            raise StackError(f"{self.name} did not become healthy. The failing service's last log lines are "
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

    def running(self, *services):
        """True when every one of these services has a running container."""
        states = self.states()
        return all(states.get(service, {}).get("state") == "running" for service in services)

    def container(self, service):
        """The ID of the service's container, or None."""
        result = self.run("ps", "--all", "--quiet", service, capture=True, check=False)
        return (result.stdout or "").strip().splitlines()[0] if (result.stdout or "").strip() else None

    def explain_unhealthy(self):
        for service, state in self.states().items():
            if state["health"] not in ("healthy", "") or state["state"] != "running":
                info(f"{service} is {state['state']} {state['health']}; its last log lines:")
                self.run("logs", "--no-color", "--tail", "30", service, check=False)


def health_volume(server_name):
    return f"{server_name}_health"


def create_health_volume(server_name):
    """The volume every study's backup service writes its health report to, for the proxy's
    monitor: external to both Compose files, so whichever project starts first makes it (as the
    proxy's, like the static volume). Existing, it is left as it is."""
    subprocess.run(["docker", "volume", "create", "--label", f"com.docker.compose.project={server_name}",
                    "--label", "com.docker.compose.volume=health", health_volume(server_name)],
                   check=True, stdout=subprocess.DEVNULL)


def local_restic_path(repository):
    """The folder of a restic repository on this machine, or None for a remote one."""
    repository = repository.strip()
    if not repository or RESTIC_REMOTE.match(repository):
        return None
    path = repository[len("local:"):] if repository.startswith("local:") else repository
    return os.path.join(envfile.REPO_ROOT, path)


def backup_environment(study):
    """What the backup service learns from this host: where its files land, the project's
    oTree version and git revision for the manifests, and how to reach the restic repository."""
    repository = study.get("RESTIC_REPOSITORY")
    local = local_restic_path(repository)
    environment = {"BACKUP_DIR_ON_HOST": study.backup_dir,
                   "RESTIC_REPOSITORY_IN_CONTAINER": "/restic-local" if local else repository,
                   "RESTIC_LOCAL_DIR": os.path.normpath(local) if local else "restic-unused",
                   "OTREE_VERSION": "", "PROJECT_REVISION": ""}
    try:
        folder = project.directory(study.project_dir)
        environment["OTREE_VERSION"] = (project.otree_requirement(folder) or "").lstrip("=")
        environment["PROJECT_REVISION"] = project.git_revision(folder)
    except StackError:
        pass  # reported by the checks that run before anything starts
    return environment


def for_study(study):
    environment = {**study.values, **backup_environment(study),
                   "BASE_IMAGE": study.server.base_image, "STUDY": study.name, "COMPOSE_PROJECT": study.project,
                   "OTREE_PROJECT_DIR": os.path.relpath(study.project_dir, envfile.REPO_ROOT),
                   "PROXY_NETWORK": study.network, "OTREE_ADDRESS": "", "OTREE_RELEASE_IMAGE": "",
                   "POSTGRES_VOLUME": study.postgres_volume, "PROXY_PROJECT": study.server.name,
                   "HEALTH_VOLUME": health_volume(study.server.name)}
    return Compose(study.project, [STUDY_FILE], STUDY_SERVICES, STUDY_BUILD_ORDER, environment,
                   addresses=lambda: {"OTREE_ADDRESS": network.ensure(study)})


def for_proxy(server):
    ca_file = server.values["ACME_CA_FILE"]
    environment = {**server.values, "PROXY_DIR": server.proxy_dir, "PROXY_PROJECT": server.name,
                   "HEALTH_VOLUME": health_volume(server.name),
                   "ACME_CA_FILE_ON_HOST": os.path.join(envfile.REPO_ROOT, ca_file) if ca_file else os.devnull}
    return Compose(server.name, [PROXY_FILE], PROXY_SERVICES, [list(PROXY_SERVICES)], environment)
