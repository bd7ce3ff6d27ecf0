"""Let's Encrypt end to end against Pebble, its test server (Debian's package), on the stack's
network: a failed request reported with its reason while the self-signed certificate keeps the
site up, issuance, nginx serving the issued chain with HSTS, and a forced renewal picked up
without dropping a participant's open websocket."""
import json
import re
import socket
import ssl
import subprocess
import time

import pytest
import requests
import websocket
from cryptography import x509

from tests.conftest import TEST_STACK, Stack, make_env_values, stop_stack
from tests.helpers import REPO_ROOT, invoke, resolving_here, write_env
from tests.pki import issue, key_pem, pem

NAME = f"{TEST_STACK}-acme"
DOMAIN = "acme.test"
PEBBLE_IMAGE = "otree-stack/pebble:test"


def served_leaf(stack):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", int(stack.values["HTTPS_PORT"])), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=DOMAIN) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def wait_for_leaf(stack, condition, seconds=60):
    deadline = time.time() + seconds
    while True:
        leaf = served_leaf(stack)
        if condition(leaf) or time.time() > deadline:
            return leaf
        time.sleep(1)


def issuer(leaf):
    return leaf.issuer.rfc4514_string()


def https(stack, method, path, **kwargs):
    return requests.request(method, f"https://{DOMAIN}:{stack.values['HTTPS_PORT']}{path}", verify=False,
                            headers={"otree-rest-key": stack.values["OTREE_REST_KEY"]}, timeout=60, **kwargs)


@pytest.fixture(scope="module", autouse=True)
def domain_resolves_here():
    with resolving_here(DOMAIN):
        yield


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    """The stack (DOMAIN, LETSENCRYPT_EMAIL, the ACME directory at pebble) and a function that
    starts Pebble on its network."""
    folder = tmp_path_factory.mktemp("acme")
    ca = issue("pebble test CA", ca=True, days=30)
    cert, key = issue("pebble", ca, names=["pebble"])
    (folder / "ca.pem").write_bytes(pem(ca[0]))
    (folder / "cert.pem").write_bytes(pem(cert))
    (folder / "key.pem").write_bytes(key_pem(key))
    (folder / "config.json").write_text(json.dumps({"pebble": {
        "listenAddress": "0.0.0.0:14000", "managementListenAddress": "0.0.0.0:15000",
        "certificate": "/pebble/cert.pem", "privateKey": "/pebble/key.pem",
        # Pebble checks challenges on nginx's own port inside the network.
        "httpPort": 8080, "tlsPort": 8443, "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
    subprocess.run(["docker", "build", "-q", "-t", PEBBLE_IMAGE, f"{REPO_ROOT}/tests/pebble"], check=True,
                   capture_output=True)

    path, values = make_env_values(str(folder), NAME, port_shift=4)
    values.update(DOMAIN=DOMAIN, LETSENCRYPT_EMAIL="researcher@example.org",
                  ACME_DIRECTORY_URL="https://pebble:14000/dir", ACME_CA_FILE=str(folder / "ca.pem"))
    write_env(path, values)
    first_up = invoke(path, "up")
    stack = Stack(path)
    pebble = f"{NAME}-pebble"

    def start_pebble():
        nginx = stack.compose("ps", "--quiet", "nginx").stdout.strip()
        address = subprocess.run(["docker", "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{NAME}_outside")'
                                  '.IPAddress}}', nginx], capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(["docker", "run", "-d", "--rm", "--name", pebble, "--network", f"{NAME}_outside",
                        "--network-alias", "pebble", "--add-host", f"{DOMAIN}:{address}",
                        # A name that points at a closed port: a challenge that fails.
                        "--add-host", "unreachable.test:127.0.0.1",
                        "-e", "PEBBLE_VA_NOSLEEP=1", "-e", "PEBBLE_WFE_NONCEREJECT=0",
                        "-v", f"{folder}:/pebble:ro", PEBBLE_IMAGE], check=True, capture_output=True)
        time.sleep(2)

    yield stack, first_up, start_pebble
    subprocess.run(["docker", "rm", "-f", pebble], capture_output=True)
    stop_stack(stack)


def test_until_a_certificate_is_issued_the_self_signed_one_keeps_the_site_up(acme):
    stack, first_up, _ = acme
    # Pebble is not there yet: the request fails, and says why.
    assert first_up.returncode == 0
    assert f"Let's Encrypt could not issue a certificate for {DOMAIN}" in first_up.stderr, first_up.stderr
    assert "pebble" in first_up.stderr.split("could not issue", 1)[1]
    assert issuer(served_leaf(stack)) == f"CN={DOMAIN}"  # self-signed
    assert https(stack, "GET", "/login").status_code == 200


def test_issuance_renewal_without_dropping_a_websocket_and_a_failed_challenge(acme):
    stack, _, start_pebble = acme
    start_pebble()
    result = stack.invoke("up")  # tries again
    assert "could not issue" not in result.stderr, result.stderr
    leaf = wait_for_leaf(stack, lambda leaf: "Pebble" in issuer(leaf))
    assert "Pebble" in issuer(leaf)
    issued = stack.compose("exec", "-T", "certbot", "cat", f"/var/lib/acme/config/live/{stack.name}/cert.pem").stdout
    assert x509.load_pem_x509_certificate(issued.encode()).serial_number == leaf.serial_number
    assert re.search(r"TLS\s+Let's Encrypt, valid until", stack.invoke("status").stdout)
    assert "Strict-Transport-Security" in https(stack, "GET", "/login").headers

    # A participant waits in the room on a websocket while the certificate is renewed.
    waiting = websocket.create_connection(
        f"wss://{DOMAIN}:{stack.values['HTTPS_PORT']}/wait_for_session_in_room?room_name=prolific"
        "&participant_label=W1&tab_unique_id=w1", sslopt={"cert_reqs": ssl.CERT_NONE}, timeout=30)
    stack.compose("exec", "-T", "certbot", "acme", "once", stack.name, "--", "--force-renewal")
    renewed = wait_for_leaf(stack, lambda new: new.serial_number != leaf.serial_number)
    assert renewed.serial_number != leaf.serial_number and "Pebble" in issuer(renewed)
    https(stack, "POST", "/api/sessions", json=dict(session_config_name="prolific_study", num_participants=3,
                                                    room_name="prolific")).raise_for_status()
    assert json.loads(waiting.recv()) == {"status": "session_ready"}  # the same connection, still open
    waiting.close()

    failed = stack.compose("exec", "-T", "certbot", "acme", "once", stack.name, "unreachable.test", check=False)
    assert failed.returncode != 0
    status = stack.invoke("status")
    assert "Let's Encrypt could not issue" in status.stderr and "unreachable.test" in status.stderr, status.stderr
    assert served_leaf(stack).serial_number == renewed.serial_number  # the good one stays
