"""Pure logic of several studies on one server: choosing the study a task acts on, the checks
between studies, the proxy's rendered configuration, and the move from the one-study layout."""
import os

import pytest

from stack import envfile, network, proxy, settings, validate
from stack.console import StackError

pytestmark = pytest.mark.unit
# Each study's oTree on its network to the proxy (stack/network.py gives them at run time).
ADDRESSES = {"named": "172.19.255.254", "second": "172.20.255.254", "first": "172.21.255.254"}


def make(tmp_path, studies, **server):
    server_values = settings.with_defaults(settings.SERVER_DEFAULTS, {"STACK_NAME": "lab", "HTTPS_PORT": "443",
                                                                      "STUDIES_DIR": str(tmp_path), **server})
    host = settings.Server(str(tmp_path / ".env"), server_values)
    made = []
    for name, values in studies.items():
        with open(settings.STUDY_EXAMPLE, encoding="utf-8") as handle:
            raw = envfile.parse(envfile.render_from_example(handle.read()))
        made.append(settings.Study(name, str(tmp_path / f"{name}.env"),
                                   settings.with_defaults(settings.STUDY_DEFAULTS, {**raw, **values}), host))
    return settings.Settings(host, tuple(made))


def test_the_only_study_is_the_default_and_several_need_a_name(tmp_path):
    one = make(tmp_path, {"ultimatum": {}})
    assert one.study().name == "ultimatum"
    two = make(tmp_path, {"ultimatum": {}, "trust": {"DOMAIN": "trust.example.edu"}})
    with pytest.raises(StackError, match="several studies.*--study NAME.*Studies: ultimatum, trust"):
        two.study(purpose="restores")
    assert two.study("trust").domain == "trust.example.edu"
    with pytest.raises(StackError, match="There is no study 'nope'"):
        two.study("nope")


def test_each_study_has_its_own_project_network_volume_and_backups(tmp_path):
    study = make(tmp_path, {"trust": {}}).study()
    assert (study.project, study.network) == ("lab-trust", "lab-trust-proxy")
    assert study.postgres_volume == "lab-trust_postgres-data"
    assert study.backup_dir.endswith(os.path.join("backups", "trust"))
    assert study.url() == "https://127.0.0.1/"


def test_otree_has_the_last_address_of_its_network_and_the_others_the_lower_half():
    assert network.otree_address("172.20.0.0/16") == "172.20.255.254"
    assert network.dynamic_range("172.20.0.0/16") == "172.20.0.0/17"
    assert network.otree_address("192.168.16.0/20") == "192.168.31.254"
    assert network.dynamic_range("192.168.16.0/20") == "192.168.16.0/21"
    for unusable in ("10.0.0.0/29", "fd00::/64"):
        with pytest.raises(StackError, match="default-address-pools"):
            network.dynamic_range(unusable)


@pytest.mark.parametrize("studies, message", [
    ({"a": {"DOMAIN": "x.example.edu"}, "b": {"DOMAIN": "x.example.edu"}}, "both want x.example.edu"),
    ({"a": {}, "b": {}}, "both want port 443"),
    ({"a": {"BACKUP_DIR": "/srv/b"}, "b": {"BACKUP_DIR": "/srv/b/inner"}}, "share the backup folder"),
    ({"Bad_Name": {}}, "not a valid study name"),
    ({"a": {"CPU_LIMIT": "lots"}}, "CPU_LIMIT 'lots' is not valid"),
    ({"a": {"MEMORY_LIMIT": "2 GB"}}, "MEMORY_LIMIT '2 GB' is not valid"),
])
def test_what_two_studies_cannot_share_is_refused_with_the_file_named(tmp_path, studies, message):
    found = validate.settings_problems(make(tmp_path, studies))
    assert any(message in problem for problem in found), found


def test_studies_by_name_share_443_and_studies_by_address_get_their_own_port(tmp_path):
    loaded = make(tmp_path, {"named": {"DOMAIN": "named.example.edu"}, "first": {}, "second": {"HTTPS_PORT": "8444"}},
                  LETSENCRYPT_EMAIL="me@example.edu")
    files = proxy.render(loaded, ADDRESSES)
    servers = files["studies.conf"]
    assert "server_name named.example.edu;" in servers
    assert "listen 8443 ssl default_server;" in servers  # first: by address on the server's port
    assert "listen 8444 ssl default_server;" in servers
    # Each study's oTree at its fixed address, in a group of its own that keeps connections open.
    assert "upstream otree_second {\n    server 172.20.255.254:8000 max_fails=0;\n    keepalive 8;" in servers
    assert "set $otree_upstream http://otree_second;" in servers
    assert "alias /srv/static/named/;" in servers
    assert files["letsencrypt.list"] == "named named.example.edu\n"
    assert files["studies/named/name"] == "named.example.edu\n"
    # A port with a study reached by address needs no handshake refusal; the unused STUDY_PORTS do.
    assert "listen 8443 ssl default_server;\n    ssl_reject_handshake" not in files["proxy.conf"]
    assert "listen 8444 ssl default_server;\n    ssl_reject_handshake" not in files["proxy.conf"]
    assert "listen 8445 ssl default_server;\n    ssl_reject_handshake on;" in files["proxy.conf"]
    assert "listen 8453 ssl default_server;\n    ssl_reject_handshake on;" in files["proxy.conf"]


def test_a_server_with_named_studies_only_refuses_unknown_names_at_the_handshake(tmp_path):
    files = proxy.render(make(tmp_path, {"named": {"DOMAIN": "named.example.edu", "ADMIN_ALLOW_IPS": "10.0.0.0/8"}}),
                         ADDRESSES)
    assert "listen 8443 ssl default_server;\n    ssl_reject_handshake on;" in files["proxy.conf"]
    assert '"named.example.edu" 1;' in files["proxy.conf"]
    assert "default 0; 10.0.0.0/8 1;" in files["studies.conf"]


def test_a_one_study_env_splits_into_the_servers_and_the_studys_settings():
    raw = {"STACK_NAME": "otree", "HTTPS_PORT": "443", "DOMAIN": "a.example.edu", "OTREE_ADMIN_PASSWORD": "x",
           "REDIS_ENABLED": "0", "BACKUP_DIR": "backups"}
    assert settings.holds_a_study(raw)
    server, study = settings.split(raw)
    assert server == {"STACK_NAME": "otree", "HTTPS_PORT": "443"}
    assert study == {"DOMAIN": "a.example.edu", "OTREE_ADMIN_PASSWORD": "x", "BACKUP_DIR": "backups"}
    assert settings.first_study_name("otree_lab") == "otree-lab"


def test_a_study_by_address_gets_the_first_free_port_of_study_ports(tmp_path):
    from stack import study
    assert study._free_port(make(tmp_path, {"first": {}})) == 8444
    assert study._free_port(make(tmp_path, {"first": {}, "b": {"HTTPS_PORT": "8444"}, "c": {"HTTPS_PORT": "8446"}})) == 8445
    full = make(tmp_path, {"first": {}, "b": {"HTTPS_PORT": "8444"}}, STUDY_PORTS="8444")
    with pytest.raises(StackError, match="Every port of STUDY_PORTS"):
        study._free_port(full)


@pytest.mark.parametrize("ports, message", [
    ("8444-8453", None), ("9000", None), ("8453-8444", "is not a port range"), ("84x", "is not a port range"),
    ("8000-8100", "at most 50"), ("440-450", "includes the server's port 443"), ("70000", "is not a port range"),
])
def test_study_ports_are_checked(ports, message):
    found = validate.server_problems({"STUDY_PORTS": ports})
    assert (message is None and not found) or (message and any(message in problem for problem in found)), found


def test_a_study_outside_study_ports_is_refused(tmp_path):
    found = validate.settings_problems(make(tmp_path, {"first": {}, "b": {"HTTPS_PORT": "9000"}}))
    assert any("HTTPS_PORT 9000 is neither the server's HTTPS_PORT (443) nor in its STUDY_PORTS" in problem
               for problem in found), found


def test_the_participant_links_location_keeps_the_maintenance_page(tmp_path):
    """nginx drops the server's error_page lines in a location that has any of its own: the
    location of room and session links (a malformed Prolific ID's page) repeats the maintenance page's."""
    servers = proxy.render(make(tmp_path, {"first": {}}), ADDRESSES)["studies.conf"]
    start = servers.index("location ~ ^/(room|join)/ {")
    links = servers[start:servers.index("\n    }\n", start)]
    assert "error_page 400 @prolific_link_invalid;" in links
    assert "error_page 502 503 504 =503 @maintenance;" in links


def test_a_new_studys_settings_file_holds_each_value_as_it_reads_back_and_refuses_a_line_break():
    from stack import study
    written = envfile.parse(study._render_study_file({"OTREE_PROJECT_DIR": "projects/'quoted'",
                                                      "BACKUP_DIR": " padded "}))
    assert (written["OTREE_PROJECT_DIR"], written["BACKUP_DIR"]) == ("projects/'quoted'", " padded ")
    with pytest.raises(StackError, match="OTREE_PROJECT_DIR contains a line break"):
        study._render_study_file({"OTREE_PROJECT_DIR": "projects/x\nPOSTGRES_VOLUME=other"})
