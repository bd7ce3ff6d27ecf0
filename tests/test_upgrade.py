"""A server set up by the release before studies becomes a one-study server on its first
`invoke up` after the update: the same data (exports compared byte for byte), certificate, admin
password, address and backups. The old release runs from a git worktree of its commit; the
update is this checkout run against that server's .env."""
import hashlib
import os
import shutil
import socket
import ssl
import subprocess

import pytest
import requests

from stack import envfile, settings
from tests.conftest import TEST_LOGIN_LIMIT
from tests.helpers import REPO_ROOT, invoke, write_file
from tests.participants import join, play_together
from tests.test_https_proxy import login

pytestmark = pytest.mark.docker

# The last commit of the one-study layout.
BEFORE_STUDIES = "f8e3781c33f3eec16558f7826e84db89b54a5722"
NAME = "otreeupgrade"
HTTP_PORT, HTTPS_PORT, STUDY_PORTS = 18086, 18450, "18451-18452"


def old_invoke(folder, *args):
    """The old release's invoke, run in its own checkout (its own .env), as its user did."""
    result = subprocess.run(["invoke", *args], cwd=folder, capture_output=True, text=True, timeout=900,
                            env={k: v for k, v in os.environ.items() if k != "OTREE_STACK_ENV"})
    assert result.returncode == 0, f"old invoke {args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def served_certificate():
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def digests(folder):
    (export,) = [path for path in folder.iterdir() if path.is_dir()]
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(export.iterdir())
            if path.name != "manifest.json"}


class Server:
    """Enough of tests.conftest.Stack for the participants and the login helper."""

    def __init__(self, values):
        self.values = values
        self.https = f"https://127.0.0.1:{HTTPS_PORT}"


@pytest.fixture(scope="module")
def old_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("upgrade")
    checkout = folder / "old"
    subprocess.run(["git", "-C", REPO_ROOT, "worktree", "add", "--detach", str(checkout), BEFORE_STUDIES],
                   check=True, capture_output=True)
    env_path = str(checkout / ".env")
    with open(checkout / ".env.example", encoding="utf-8") as handle:
        values = envfile.parse(envfile.render_from_example(handle.read()))
    values.update(STACK_NAME=NAME, BIND_ADDRESS="127.0.0.1", HTTP_PORT=str(HTTP_PORT), HTTPS_PORT=str(HTTPS_PORT),
                  STUDY_PORTS=STUDY_PORTS, BACKUP_DIR=str(folder / "backups"), **TEST_LOGIN_LIMIT,
                  # Where this checkout keeps the studies' files and their ports after the update (the
                  # old release ignores both); by default the files would go into the repository
                  # under test and the ports clash with other test servers.
                  STUDIES_DIR=str(folder / "studies"))
    write_file(env_path, values)  # as the old release's .env: one file
    try:
        old_invoke(checkout, "up")
        yield checkout, env_path, values, folder
    finally:
        if os.path.exists(settings.study_path(settings.read_server(env_path), NAME)):
            invoke(env_path, "down", "--delete-data", "--confirm", NAME, check=False)
        subprocess.run(["docker", "compose", "-p", NAME, "down", "--volumes", "--remove-orphans"],
                       capture_output=True, cwd=str(checkout))
        for volume in ("postgres-data", "certs", "acme-webroot", "letsencrypt", "static"):
            subprocess.run(["docker", "volume", "rm", f"{NAME}_{volume}"], capture_output=True)
        subprocess.run(["docker", "network", "rm", f"{NAME}-{NAME}-proxy"], capture_output=True)
        subprocess.run(["git", "-C", REPO_ROOT, "worktree", "remove", "--force", str(checkout)], capture_output=True)
        shutil.rmtree(checkout, ignore_errors=True)


def test_a_one_study_server_upgrades_in_place_with_the_same_data_certificate_password_and_backups(old_server):
    checkout, env_path, values, folder = old_server
    server = Server(values)
    response = requests.post(f"https://127.0.0.1:{HTTPS_PORT}/api/sessions", verify=False, timeout=60,
                             headers={"otree-rest-key": values["OTREE_REST_KEY"]},
                             json={"session_config_name": "prolific_study", "num_participants": 3})
    response.raise_for_status()
    session = response.json()
    play_together(join(session, 3, "old"))
    old_invoke(checkout, "backup")
    old_invoke(checkout, "export-data", "--output", str(folder / "before"))
    certificate = served_certificate()

    updated = invoke(env_path, "up")
    assert f"its study becomes '{NAME}'" in updated.stdout
    assert f"The study '{NAME}' is up: https://127.0.0.1:{HTTPS_PORT}/" in updated.stdout
    assert os.path.exists(env_path + ".before-studies")
    assert "OTREE_ADMIN_PASSWORD" not in envfile.load(env_path)

    invoke(env_path, "export-data", "--output", str(folder / "after"))
    assert digests(folder / "after") == digests(folder / "before")
    assert served_certificate() == certificate
    _, response = login(server, values["OTREE_ADMIN_PASSWORD"])
    assert response.status_code == 302
    listed = invoke(env_path, "backups").stdout
    assert sum(1 for line in listed.splitlines() if "manual" in line) >= 1
    # No container of the old layout is left, and the old database volume is the one in use.
    study = settings.load(env_path).study()
    assert study.postgres_volume == f"{NAME}_postgres-data"
    old_containers = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}", "--filter",
                                     f"label=com.docker.compose.project={NAME}"], capture_output=True, text=True)
    # Only the proxy's services are left in the old Compose project's name.
    assert sorted(old_containers.stdout.split()) == [f"{NAME}-certbot-1", f"{NAME}-monitor-1", f"{NAME}-nginx-1"]
