"""A server set up before studies existed becomes a one-study server, in place, on its first
`invoke up` after the update: the same database volume, certificate, secrets, backups and
address. Its .env held the one study's settings; they move to studies/NAME.env (NAME is the
stack's name), and .env keeps the server's. The old file is kept as .env.before-studies."""
import os
import subprocess

from . import envfile, settings
from .console import StackError, info, step
from .envfile import REPO_ROOT

FLUSH_SCRIPT = os.path.join(REPO_ROOT, "otree_server", "flush_page_times.py")
# Stopped in this order: oTree first (never two servers on one database), the database last.
OLD_SERVICES = ("otree", "backup", "certbot", "nginx", "redis", "postgres")


def needed(env_path):
    return os.path.exists(env_path) and settings.holds_a_study(envfile.load(env_path))


def run(env_path):
    """Move a one-study .env to the studies layout and stop the old containers. Does nothing on
    a server that has moved already."""
    if not needed(env_path):
        return
    raw = envfile.load(env_path)
    server_values, study_values = settings.split(raw)
    stack = server_values.get("STACK_NAME", "").strip() or settings.SERVER_DEFAULTS["STACK_NAME"]
    server = settings.Server(env_path, settings.with_defaults(settings.SERVER_DEFAULTS, server_values))
    name = settings.first_study_name(stack)
    target = settings.study_path(server, name)
    if os.path.exists(target):
        raise StackError(f"{env_path} still holds a study's settings, but {target} exists already. Compare the "
                         f"two, keep the study's settings in {target} and remove them from {env_path} (keep only "
                         f"{', '.join(settings.SERVER_DEFAULTS)} there), then run `invoke up` again.")
    step(f"Moving this server to the studies layout: its study becomes '{name}' ({target})")
    # Its volumes and folders keep their names, so nothing is copied.
    study_values["POSTGRES_VOLUME"] = f"{stack}_postgres-data"
    study_values["BACKUP_DIR"] = study_values.get("BACKUP_DIR", "").strip() or "backups"
    study_values.pop("HTTPS_PORT", None)
    _write_private(target, "# Moved from .env by `invoke up` (the studies layout); see study.env.example.\n",
                   study_values)
    _stop_old_containers(stack)
    _move_certificate(stack, name)
    backup_copy = env_path + ".before-studies"
    os.replace(env_path, backup_copy)
    _write_private(env_path, "# The server's settings; each study's are in STUDIES_DIR/NAME.env. See .env.example.\n",
                   server_values)
    info(f"{env_path} now holds the server's settings; the old file is {backup_copy}.")


def _write_private(path, header, values):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(header + "".join(f"{key}={envfile.written_value(value)}\n" for key, value in values.items()))


def _containers(stack):
    """{service: container id} of the one-study layout's Compose project."""
    result = subprocess.run(["docker", "ps", "--all", "--format",
                             '{{.ID}} {{.Label "com.docker.compose.service"}}',
                             "--filter", f"label=com.docker.compose.project={stack}"],
                            capture_output=True, text=True)
    return {service: cid for cid, _, service in (line.partition(" ") for line in result.stdout.splitlines())}


def _running(container):
    result = subprocess.run(["docker", "inspect", "--format", "{{.State.Running}}", container],
                            capture_output=True, text=True)
    return result.stdout.strip() == "true"


def _stop_old_containers(stack):
    containers = _containers(stack)
    if "otree" not in containers and "postgres" not in containers:
        return
    otree = containers.get("otree")
    if otree and _running(otree):
        with open(FLUSH_SCRIPT, "rb") as script:
            flushed = subprocess.run(["docker", "exec", "-i", otree, "python", "-"], stdin=script)
        if flushed.returncode:
            raise StackError("The running oTree did not save the page times it holds in memory, so nothing was "
                             "stopped. Check `docker logs` of its container, then run `invoke up` again.")
    step("Stopping the one-study containers (oTree first)")
    for service in OLD_SERVICES:
        if service in containers:
            subprocess.run(["docker", "stop", "--time", "60", containers[service]], check=True,
                           stdout=subprocess.DEVNULL)
            subprocess.run(["docker", "rm", containers[service]], check=True, stdout=subprocess.DEVNULL)


def _move_certificate(stack, name):
    """The certificate nginx served moves into the study's own folder of the same volume."""
    volume = f"{stack}_certs"
    if subprocess.run(["docker", "volume", "inspect", volume], capture_output=True).returncode:
        return
    image = f"otree-stack/nginx:{stack}"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
        return
    files = "fullchain.pem privkey.pem self-signed-for issued-for provided-for"
    script = (f"set -e; mkdir -p /c/{name}; for f in {files}; do if [ -e /c/$f ]; then mv /c/$f /c/{name}/; fi; done")
    subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", "-v", f"{volume}:/c",
                    image, "-c", script], check=True)
