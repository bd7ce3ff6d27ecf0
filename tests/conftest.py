"""The end-to-end tests share one real stack, named otreetest, on 127.0.0.1:18080/18443, with an
env file of its own, so that a researcher's own stack on the same machine is never touched."""
import os
import subprocess
import sys

import pytest
import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stack import compose as compose_module, envfile, settings  # noqa: E402
from tests.helpers import compose, invoke, load_env, psql, write_env  # noqa: E402

# OTREE_TEST_STACK and OTREE_TEST_PORT_OFFSET let two runs of the suite share one machine.
TEST_STACK = os.environ.get("OTREE_TEST_STACK", "otreetest")
_OFFSET = int(os.environ.get("OTREE_TEST_PORT_OFFSET", "0"))
TEST_PORTS = {"HTTP_PORT": str(18080 + _OFFSET), "HTTPS_PORT": str(18443 + _OFFSET)}
# Room for the suite's own logins before the limit test pushes past it.
TEST_LOGIN_LIMIT = {"LOGIN_RATE_LIMIT": "60r/m", "LOGIN_RATE_BURST": "20"}



class Stack:
    """A test server with one study (the tests' own stacks)."""

    def __init__(self, env_path, study=None):
        """The server's first study, or the study named, as participants reach it from here."""
        self.env_path = env_path
        loaded = settings.load(env_path)
        chosen = loaded.study(study) if study else loaded.studies[0]
        self.values = {**loaded.server.values, **chosen.values} if study else load_env(env_path)
        self.name = chosen.name
        self.https = chosen.url().rstrip("/") if study else f"https://127.0.0.1:{self.values['HTTPS_PORT']}"
        self.http = f"http://127.0.0.1:{self.values['HTTP_PORT']}"

    def invoke(self, *args, **kwargs):
        return invoke(self.env_path, *args, **kwargs)

    def sql(self, query):
        return psql(self.env_path, self.name, query)

    def compose(self, *args, check=True):
        return compose(self.env_path, self.name, *args, check=check)

    def rest(self, method, path, **kwargs):
        response = requests.request(method, self.https + path, verify=False, timeout=60,
                                    headers={"otree-rest-key": self.values["OTREE_REST_KEY"]}, **kwargs)
        response.raise_for_status()
        return response.json()

    def create_session(self, num_participants=3, room=None, **config):
        body = dict(session_config_name="prolific_study", num_participants=num_participants,
                    modified_session_config_fields=config)
        if room:
            body["room_name"] = room
        return self.rest("POST", "/api/sessions", json=body)

    def otree_log(self):
        return self.compose("logs", "--no-color", "otree").stdout


def study_ports(port_shift=0):
    """Four ports for a test server's studies reached by address, apart from every other's."""
    first = 18600 + _OFFSET + 4 * port_shift
    return range(first, first + 4)


def make_env_values(directory, name=TEST_STACK, port_shift=0):
    """Working settings for a test server with one study: the examples with fresh secrets, as
    `invoke up` makes them, and the name, loopback address, ports and folders changed as a user
    would edit them. Returns the server's settings path and the values (write them with write_env)."""
    path = os.path.join(directory, f"{name}.env")
    assert envfile.create_if_missing(path)
    with open(settings.STUDY_EXAMPLE, encoding="utf-8") as handle:
        values = {**envfile.load(path), **envfile.parse(envfile.render_from_example(handle.read()))}
    ports = {key: str(int(port) + port_shift) for key, port in TEST_PORTS.items()}
    span = study_ports(port_shift)
    ports["STUDY_PORTS"] = f"{span[0]}-{span[-1]}"
    values.update(STACK_NAME=name, BIND_ADDRESS="127.0.0.1", **ports, **TEST_LOGIN_LIMIT,
                  STUDIES_DIR=os.path.join(directory, f"{name}-studies"),
                  BACKUP_DIR=os.path.join(directory, f"{name}-backups"))
    return path, values


def start_stack(directory, name=TEST_STACK, port_shift=0, **overrides):
    """Write an env file and `invoke up` a stack; the caller tears it down with stop_stack."""
    path, values = make_env_values(directory, name, port_shift)
    values.update(overrides)
    write_env(path, values)
    result = invoke(path, "up")
    assert f"The study '{name}' is up: https://127.0.0.1:{values['HTTPS_PORT']}/" in result.stdout
    return Stack(path)


def stop_stack(stack):
    """Every study's containers, database and network, then the proxy's containers and volumes."""
    loaded = settings.load(stack.env_path)
    for study in loaded.studies:
        invoke(stack.env_path, "down", "--study", study.name, "--delete-data", "--confirm", study.name, check=False)
    proxy = compose_module.for_proxy(loaded.server)
    subprocess.run(proxy.command("down", "--volumes", "--remove-orphans"), env=proxy.environment, capture_output=True)
    subprocess.run(["docker", "volume", "rm", compose_module.health_volume(loaded.server.name)], capture_output=True)
    for study in loaded.studies:
        subprocess.run(["docker", "network", "rm", study.network], capture_output=True)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    shared = start_stack(str(tmp_path_factory.mktemp("stack")))
    yield shared
    stop_stack(shared)
