"""Your own certificate (a university CA's): checked before anything starts, served with the
full chain, HSTS and Mozilla's "intermediate" TLS settings (sslyze), expiry in `invoke status`.
One stack of its own, DOMAIN=study.test, with certificates from a test CA made here."""
import datetime
import re
import socket
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sslyze import (CertificateInfoExtraArgument, ScanCommandsExtraArguments, Scanner, ServerNetworkLocation,
                    ServerScanRequest, ServerScanStatusEnum)
from sslyze.mozilla_tls_profile.tls_config_checker import (MozillaTlsConfiguration,
                                                           ServerNotCompliantWithTlsConfiguration,
                                                           TlsConfigurationEnum,
                                                           check_server_against_tls_configuration)

from tests.conftest import TEST_STACK, Stack, make_env_values, stop_stack
from tests.helpers import invoke, write_env
from tests.pki import NOW, issue, key_pem, pem

NAME = f"{TEST_STACK}-tls"
DOMAIN = "study.test"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA (root and intermediate) and certificate files, good and bad, in a folder."""
    folder = tmp_path_factory.mktemp("pki")
    root = issue("otree-stack test root", ca=True, days=3650)
    intermediate = issue("otree-stack test intermediate", issuer=root, ca=True, days=1800)

    # Our root is in no trust store, so the files end with it, as a private university CA's would.
    def write(label, leaf, chain=(intermediate[0], root[0]), key=None):
        (folder / f"{label}.pem").write_bytes(pem(leaf[0], *chain))
        (folder / f"{label}.key").write_bytes(key_pem(key or leaf[1]))

    write("good", issue(DOMAIN, intermediate, names=[DOMAIN]))
    write("expired", issue(DOMAIN, intermediate, names=[DOMAIN], start=NOW - datetime.timedelta(days=100)))
    write("other-domain", issue("other.test", intermediate, names=["other.test"]))
    write("wrong-key", issue(DOMAIN, intermediate, names=[DOMAIN]), key=ec.generate_private_key(ec.SECP256R1()))
    write("no-intermediate", issue(DOMAIN, intermediate, names=[DOMAIN]), chain=(root[0],))
    write("ending-soon", issue(DOMAIN, intermediate, names=[DOMAIN], days=10))
    (folder / "root.pem").write_bytes(pem(root[0]))
    return folder


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory, pki):
    path, values = make_env_values(str(tmp_path_factory.mktemp("tls")), NAME, port_shift=3)
    values.update(DOMAIN=DOMAIN, TLS_CERT_FILE=str(pki / "good.pem"), TLS_KEY_FILE=str(pki / "good.key"))
    write_env(path, values)
    result = invoke(path, "up")
    assert f"Installed the certificate for {DOMAIN}" in result.stdout
    assert "chains to a root that Debian does not trust" in result.stderr
    stack = Stack(path)
    yield stack
    stop_stack(stack)


def use_certificate(stack, pki, label, check=True):
    values = dict(stack.values, TLS_CERT_FILE=str(pki / f"{label}.pem"), TLS_KEY_FILE=str(pki / f"{label}.key"))
    write_env(stack.env_path, values)
    return stack.invoke("up", check=check)


def served(stack, pki):
    """The chain nginx serves, checked against the test root for DOMAIN, and the response headers."""
    context = ssl.create_default_context(cafile=str(pki / "root.pem"))
    with socket.create_connection(("127.0.0.1", int(stack.values["HTTPS_PORT"])), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=DOMAIN) as tls:
            leaf = tls.getpeercert()
            tls.sendall(f"GET /login HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode())
            response = b""
            while chunk := tls.recv(65536):
                response += chunk
    return leaf, response.split(b"\r\n\r\n", 1)[0].decode()


def test_a_valid_certificate_is_served_with_its_chain_and_hsts(tls_stack, pki):
    leaf, headers = served(tls_stack, pki)
    assert ("DNS", DOMAIN) in leaf["subjectAltName"]
    assert re.search(r"^Strict-Transport-Security: max-age=\d+", headers, re.M | re.I)
    stapling = tls_stack.compose("exec", "-T", "nginx", "cat", f"/tmp/nginx/studies/{tls_stack.name}/tls.conf").stdout
    assert "ssl_stapling on;" in stapling  # a real chain: OCSP stapling on (a self-signed one has none)
    status = tls_stack.invoke("status").stdout
    assert re.search(r"TLS\s+yours, valid until \d{4}-\d\d-\d\d \((8[89]|90) days\)", status), status


def test_sslyze_finds_mozilla_intermediate_compliance_and_no_old_protocols(tls_stack, pki):
    location = ServerNetworkLocation(hostname=DOMAIN, port=int(tls_stack.values["HTTPS_PORT"]), ip_address="127.0.0.1")
    request = ServerScanRequest(server_location=location, scan_commands_extra_arguments=ScanCommandsExtraArguments(
        certificate_info=CertificateInfoExtraArgument(custom_ca_file=Path(pki / "root.pem"))))
    scanner = Scanner()
    scanner.queue_scans([request])
    [result] = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED
    try:
        check_server_against_tls_configuration(
            result, MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE))
    except ServerNotCompliantWithTlsConfiguration as error:
        pytest.fail(f"not Mozilla intermediate compliant: {error.issues}")
    scans = result.scan_result
    for old in (scans.ssl_2_0_cipher_suites, scans.ssl_3_0_cipher_suites, scans.tls_1_0_cipher_suites,
                scans.tls_1_1_cipher_suites):
        assert old.result.accepted_cipher_suites == []
    assert scans.tls_1_2_cipher_suites.result.accepted_cipher_suites
    assert scans.tls_1_3_cipher_suites.result.accepted_cipher_suites


@pytest.mark.parametrize("label, message", [
    ("expired", "The certificate in TLS_CERT_FILE expired on"),
    ("wrong-key", "TLS_KEY_FILE does not belong to the certificate in TLS_CERT_FILE"),
    ("other-domain", f"does not cover DOMAIN={DOMAIN} (it names: DNS:other.test)"),
    ("no-intermediate", "The chain in TLS_CERT_FILE is incomplete"),
])
def test_a_bad_certificate_is_refused_and_the_site_keeps_its_own(tls_stack, pki, label, message):
    try:
        result = use_certificate(tls_stack, pki, label, check=False)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert "Nothing was started or changed" in result.stderr
        leaf, _ = served(tls_stack, pki)  # still the good one, still trusted
        assert ("DNS", DOMAIN) in leaf["subjectAltName"]
    finally:
        write_env(tls_stack.env_path, tls_stack.values)


def test_a_certificate_near_its_end_is_warned_of(tls_stack, pki):
    try:
        result = use_certificate(tls_stack, pki, "ending-soon")
        assert re.search(r"The certificate expires in (8|9) days", result.stderr), result.stderr
        assert "The certificate expires in" in tls_stack.invoke("status").stderr
        leaf, _ = served(tls_stack, pki)
        assert datetime.datetime.strptime(leaf["notAfter"], "%b %d %H:%M:%S %Y %Z").date() < \
            (NOW + datetime.timedelta(days=11)).date()  # the renewed file is served, no restart needed
    finally:
        write_env(tls_stack.env_path, tls_stack.values)
        tls_stack.invoke("up")
