"""Pure logic of the proxy's doors (tests/test_proxy_doors.py runs them through nginx): the Host
oTree sees for each client Host, read from the rendered map as nginx reads it, and the maintenance
page as the body of a `return`, which any method gets."""
import re

import pytest

from stack import proxy
from stack.console import StackError
from tests.test_studies_logic import make

pytestmark = pytest.mark.unit


def host_map(loaded, name):
    """The study's map from "client-address Host" to the Host oTree sees, as nginx applies it: the
    first matching regex (case-insensitive), its value with the named captures filled in."""
    entries = re.findall(r'^    "~\*(.+)" "(.*)";$', proxy._host_map(loaded.server, loaded.study(name)), re.M)
    assert entries

    def otree_host(client, host):
        for pattern, value in entries:
            found = re.match(pattern.replace("(?<", "(?P<"), f"{client} {host}", re.I)
            if found:
                return re.sub(r"\$(\w+)", lambda capture: found.group(capture.group(1)), value)
        return ""
    return otree_host


@pytest.mark.parametrize("client, host, seen", [
    ("203.0.113.9", "trust.example.edu", "trust.example.edu"),
    ("203.0.113.9", "TRUST.example.edu:443", "trust.example.edu"),
    ("203.0.113.9", "trust.example.edu:8443", ""),  # the container's port, from outside
    ("127.0.0.1", "trust.example.edu:8443", "trust.example.edu"),  # the deploy's check, inside
    ("203.0.113.9", "trust.example.edu:443:@evil.example", ""),
    ("203.0.113.9", "trust.example.edu@evil.example", ""),
    ("203.0.113.9", "trust.example.edu.evil.example", ""),
    ("203.0.113.9", "trustXexample.edu", ""),
    ("203.0.113.9", "", ""),
])
def test_a_study_with_a_domain_shows_otree_its_name_and_nothing_else(tmp_path, client, host, seen):
    otree_host = host_map(make(tmp_path, {"trust": {"DOMAIN": "trust.example.edu"}}), "trust")
    assert otree_host(client, host) == seen


@pytest.mark.parametrize("client, host, seen", [
    ("198.51.100.7", "203.0.113.5:8444", "203.0.113.5:8444"),
    ("198.51.100.7", "203.0.113.5", "203.0.113.5:8444"),
    ("198.51.100.7", "[2001:db8::5]:8444", "[2001:db8::5]:8444"),
    ("198.51.100.7", "localhost:8444", "localhost:8444"),
    ("198.51.100.7", "203.0.113.5:8445", ""),
    ("198.51.100.7", "203.0.113.5:1", ""),
    ("198.51.100.7", "203.0.113.5:8444:@evil.example", ""),
    ("198.51.100.7", "203.0.113.5:8444@evil.example", ""),
    ("198.51.100.7", "localhost:8444.evil.example", ""),
    ("198.51.100.7", "evil.example:8444", ""),
    ("198.51.100.7", "[fe80::1%25eth0]:8444", ""),
])
def test_a_study_by_address_shows_otree_the_address_used_with_its_port(tmp_path, client, host, seen):
    # Its own port: the container listens on it too, so no other port is taken from inside.
    otree_host = host_map(make(tmp_path, {"first": {}, "pilot": {"HTTPS_PORT": "8444"}}), "pilot")
    assert otree_host(client, host) == seen


def test_the_first_study_by_address_takes_the_container_port_only_from_inside(tmp_path):
    otree_host = host_map(make(tmp_path, {"first": {}}, HTTPS_PORT="18443"), "first")
    assert otree_host("198.51.100.7", "127.0.0.1:18443") == "127.0.0.1:18443"
    assert otree_host("198.51.100.7", "127.0.0.1:8443") == ""
    assert otree_host("127.0.0.1", "localhost:8443") == "localhost:18443"


def test_the_maintenance_page_is_the_body_of_a_return_with_its_quotes_escaped(monkeypatch):
    rendered = proxy.maintenance_page()
    assert rendered.startswith('return 503 "<!DOCTYPE html>') and rendered.endswith('</html>\n";\n')
    assert 'http-equiv=\\"refresh\\"' in rendered and "enter your last answer again" in rendered
    body = rendered[len('return 503 "'):-len('";\n')]
    assert '"' not in body.replace('\\"', "")  # every quote escaped: nginx reads one string
    monkeypatch.setattr(proxy, "_template", lambda name: "<p>Costs $5</p>")
    with pytest.raises(StackError, match="holds a '\\$'"):
        proxy.maintenance_page()
