"""Checks the env file before any container starts. Each problem comes back as one message that
says what is wrong and how to fix it; `invoke up` refuses to start while there is any."""
import ipaddress
import os
import re

from backup.otree_backup import schedule

from . import folders, names, redact, settings
from .backups import BACKUP_UID
from .envfile import GENERATED, REPO_ROOT, value_problem

WEAK_PASSWORDS = {"password", "admin", "changeme", "change-me", "example", "secret", "otree", "123456",
                  "12345678", "123456789", "1234567890", "qwerty", "letmein", "password1",
                  "administrator", "adminadmin", "passwordpassword"}
MIN_LENGTH = {"OTREE_ADMIN_PASSWORD": 12, "OTREE_REST_KEY": 16, "OTREE_SECRET_KEY": 32,
              "POSTGRES_PASSWORD": 16}
# ASCII: with re.I alone, [a-z] also matches the long s (ſ) and the Kelvin sign (K).
HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.I | re.ASCII)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def problems(values):
    """Every problem in one settings file of the one-study layout (a server's and a study's
    keys together), as fix-it messages (empty when all is well)."""
    server, study = settings.split(values)
    return server_problems(server) + study_problems(study)


def settings_problems(loaded):
    """Every problem in a server's settings and its studies', each naming its file, and the ones
    between studies: a name, address, port or backup folder two studies cannot share."""
    found = [f"{loaded.server.env_path}: {problem}" for problem in server_problems(loaded.server.values)]
    for study in loaded.studies:
        found += [f"{study.env_path}: {problem}" for problem in study_problems(study.values)]
        found += [f"{study.env_path}: {problem}" for problem in folder_problems(study)]
        name_problem = names.STUDY.problem(study.name)
        if name_problem:
            found.append(f"{study.env_path}: {name_problem}")
    if not found:  # the checks between studies read ports and paths that must be valid first
        found += _between_studies(loaded)
    return found


def _between_studies(loaded):
    found = []
    by_address, backup_dirs = {}, {}
    for study in loaded.studies:
        address = study.domain or f"port {study.https_port}"
        by_address.setdefault(address, []).append(study.name)
        server = loaded.server
        if not study.domain and study.https_port not in (server.https_port, *server.study_ports):
            found.append(f"Study {study.name}'s HTTPS_PORT {study.https_port} is neither the server's HTTPS_PORT "
                         f"({server.https_port}) nor in its STUDY_PORTS ({server.values['STUDY_PORTS']}). Choose "
                         f"a port from STUDY_PORTS, or widen STUDY_PORTS in {server.env_path} (the proxy then "
                         "restarts once: a moment without connections for every study).")
        for other, folder in backup_dirs.items():
            if os.path.commonpath([folder, study.backup_dir]) in (folder, study.backup_dir):
                found.append(f"Studies {other} and {study.name} share the backup folder {folder}: each needs its "
                             "own (a study's backup service must not read another's). Set BACKUP_DIR in one of "
                             "their settings files to another folder.")
        backup_dirs[study.name] = study.backup_dir
    for address, names in by_address.items():
        if len(names) > 1:
            found.append(f"Studies {' and '.join(names)} both want {address}. Give each its own DOMAIN, or "
                         "without DNS names its own HTTPS_PORT, in its settings file.")
    return found


def folder_problems(study):
    """The folders the study's backup service is given: only ones the stack may take over."""
    return [problem for key, path, instead in folders.of_study(study)
            if (problem := folders.problem(key, path, BACKUP_UID, instead))]


def value_problems(values):
    """Values no settings file can hold as one line of text (control characters, line breaks)."""
    return [problem for key, value in values.items() if (problem := value_problem(key, value))]


def server_problems(values):
    """Every problem in the server's settings (.env), credentials in URLs hidden."""
    found = _server_problems(values)
    return [redact.credentials_hidden(problem) for problem in found]


def _server_problems(values):
    found = value_problems(values)
    found += _address_problems(values)
    found += _acme_problems(values)
    found += alert_problems(values)
    name = values.get("STACK_NAME", "").strip()
    if name and not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        found.append(f"STACK_NAME {name!r} is not valid: use lower-case letters, digits, - and _, such as otree.")
    return found


def study_problems(values):
    """Every problem in one study's settings (studies/NAME.env), credentials in URLs hidden."""
    return [redact.credentials_hidden(problem) for problem in _study_problems(values)]


def _study_problems(values):
    found = value_problems(values)

    def get(key):
        return values.get(key, "").strip()

    if get("OTREE_PRODUCTION") != "1":
        found.append(f"OTREE_PRODUCTION is {get('OTREE_PRODUCTION')!r}; it must be 1. Anything else "
                     "shows tracebacks and debug panels to participants. Set OTREE_PRODUCTION=1.")
    if get("OTREE_AUTH_LEVEL") not in ("STUDY", "DEMO"):
        found.append(f"OTREE_AUTH_LEVEL is {get('OTREE_AUTH_LEVEL')!r}; it must be STUDY or DEMO, in capitals. "
                     "Unset, oTree makes every admin page and data export public. Set OTREE_AUTH_LEVEL=STUDY.")

    for key, minimum in MIN_LENGTH.items():
        value = get(key)
        if not value:
            found.append(f"{key} is missing. Set {key}= to "
                         f"a random value of at least {minimum} characters (e.g. `openssl rand -hex 24`).")
        elif value == GENERATED:
            found.append(f"{key} is still the example's placeholder. Set it to a random value of at "
                         f"least {minimum} characters (e.g. `openssl rand -hex 24`).")
        elif len(value) < minimum or value.lower() in WEAK_PASSWORDS or len(set(value)) < 6:
            found.append(f"{key} is too weak: use at least {minimum} characters, not a common word "
                         "(e.g. `openssl rand -hex 24`).")
    if get("POSTGRES_PASSWORD") and not re.fullmatch(r"[A-Za-z0-9._~-]+", get("POSTGRES_PASSWORD")):
        found.append("POSTGRES_PASSWORD may hold only letters, digits and - _ . ~ (it goes into the "
                     "database URL). Choose another, e.g. `openssl rand -hex 24`.")
    if any(c.isspace() for c in get("OTREE_ADMIN_PASSWORD")):
        found.append("OTREE_ADMIN_PASSWORD contains white space; choose one without.")
    for speedup in ("OTREE_RENDER_CACHE", "OTREE_COMPILED_LOOKUPS"):
        if get(speedup) not in ("", "on", "off"):
            found.append(f"{speedup} is {get(speedup)!r}; it must be on or off, in lower case "
                         "(on is the default: oTree's pages served faster, byte for byte the same).")
    if get("POSTGRES_ALLOW_UNLOCKED") not in ("", "1"):
        found.append(f"POSTGRES_ALLOW_UNLOCKED is {get('POSTGRES_ALLOW_UNLOCKED')!r}; it must be 1 or empty (empty, "
                     "the default: Postgres refuses to start on a data folder it cannot lock).")

    found += _domain_problems(values)
    found += _limit_problems(values)
    found += _backup_problems(values)
    found += _certificate_problems(values)
    found += _sentry_problems(values)
    return found


def _sentry_problems(values):
    dsn = values.get("SENTRY_DSN", "").strip()
    if not dsn:
        return []
    if not re.match(r"^https://[^@\s]+@[^/\s]+/\S+$", dsn):
        return ["SENTRY_DSN is not a Sentry DSN; copy it from your Sentry project's settings (Client Keys), it looks "
                "like https://KEY@o123.ingest.sentry.io/456."]
    folder = os.path.join(REPO_ROOT, values.get("OTREE_PROJECT_DIR", "").strip() or "otree_project")
    try:
        with open(os.path.join(folder, "requirements.txt"), encoding="utf-8") as handle:
            requirements = handle.read()
    except OSError:
        return []  # the project checks report a missing project
    if not re.search(r"^\s*sentry[-_]sdk\b", requirements, re.M | re.I):
        return [f"SENTRY_DSN is set, but {os.path.relpath(folder, REPO_ROOT)}/requirements.txt does not list "
                "sentry-sdk, and oTree refuses to start without it. Add a pinned sentry-sdk line (e.g. "
                "sentry-sdk==2.75.0) to it, or leave SENTRY_DSN empty."]
    return []


def _certificate_problems(values):
    cert, key = values.get("TLS_CERT_FILE", "").strip(), values.get("TLS_KEY_FILE", "").strip()
    if bool(cert) != bool(key):
        return ["TLS_CERT_FILE and TLS_KEY_FILE go together: set both to use your own certificate, or "
                "leave both empty."]
    if cert and not values.get("DOMAIN", "").strip():
        return ["TLS_CERT_FILE is set but DOMAIN is empty. Set DOMAIN to the name your certificate is for."]
    return []


def alert_problems(values):
    """The monitor's alert settings (ALERT_EMAIL with SMTP_*, ALERT_WEBHOOK_URL, MONITOR_INTERVAL)."""
    def get(key):
        return values.get(key, settings.SERVER_DEFAULTS[key]).strip() or settings.SERVER_DEFAULTS[key]

    found = []
    email = get("ALERT_EMAIL")
    if email and not EMAIL.match(email):
        found.append(f"ALERT_EMAIL {email!r} is not an email address, e.g. you@example.edu.")
    if email and not get("SMTP_HOST"):
        found.append("ALERT_EMAIL is set but SMTP_HOST is empty: name the mail server that sends the alerts (your "
                     "university's, e.g. smtp.example.edu, with SMTP_USER and SMTP_PASSWORD), or leave ALERT_EMAIL "
                     "empty.")
    if get("SMTP_FROM") and not EMAIL.match(get("SMTP_FROM")):
        found.append(f"SMTP_FROM {get('SMTP_FROM')!r} is not an email address (empty: ALERT_EMAIL is the sender).")
    if not get("SMTP_PORT").isdigit() or not 0 < int(get("SMTP_PORT")) < 65536:
        found.append(f"SMTP_PORT {get('SMTP_PORT')!r} is not a port: usually 587 (with SMTP_TLS=starttls) or 465 "
                     "(with SMTP_TLS=tls).")
    if get("SMTP_TLS") not in ("starttls", "tls", "off"):
        found.append(f"SMTP_TLS {get('SMTP_TLS')!r} must be starttls (port 587), tls (port 465) or off (a mail "
                     "server on this machine or network only: the password would travel unencrypted).")
    if bool(get("SMTP_USER")) != bool(get("SMTP_PASSWORD")):
        found.append("SMTP_USER and SMTP_PASSWORD go together: set both, or neither for a server without login.")
    webhook = get("ALERT_WEBHOOK_URL")
    if webhook and not re.match(r"^https?://[^\s/]+", webhook):
        found.append(f"ALERT_WEBHOOK_URL must be an http(s):// address, such as a Slack or Mattermost incoming "
                     f"webhook's; it is {redact.address_only(webhook)!r}.")
    interval = get("MONITOR_INTERVAL")
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", interval) or not 1 <= float(interval) <= 120:
        found.append(f"MONITOR_INTERVAL {interval!r} must be seconds between 1 and 120 (default 30).")
    return found


def _acme_problems(values):
    ca_file = values.get("ACME_CA_FILE", "").strip()
    if ca_file and not os.path.isfile(os.path.join(REPO_ROOT, ca_file)):
        return [f"ACME_CA_FILE={ca_file} is not a file. Give the path of your ACME server's CA certificate, or "
                "leave it empty for Let's Encrypt."]
    directory = values.get("ACME_DIRECTORY_URL", "").strip()
    if directory and not directory.startswith("https://"):
        return [f"ACME_DIRECTORY_URL={directory!r} is not an https:// address. Leave it empty for Let's Encrypt, "
                "or use its staging directory, https://acme-staging-v02.api.letsencrypt.org/directory."]
    return []


def _backup_problems(values):
    found = []
    try:
        schedule.parse(values.get("BACKUP_SCHEDULE", "daily 03:00"))
    except ValueError as error:
        found.append(str(error))
    keeps = {}
    for kind, default in (("DAILY", "7"), ("WEEKLY", "4"), ("MONTHLY", "6")):
        # Missing keys (an .env from before backups existed) mean the defaults, as in compose.
        text = values.get(f"BACKUP_KEEP_{kind}", default).strip() or default
        if not text.isdigit():
            found.append(f"BACKUP_KEEP_{kind}={text!r} is not a whole number of backups to keep, e.g. 7.")
        keeps[kind] = int(text) if text.isdigit() else 1
    if not any(keeps.values()):
        found.append("BACKUP_KEEP_DAILY, _WEEKLY and _MONTHLY are all 0, so every scheduled backup would be "
                     "deleted. Keep at least one, e.g. BACKUP_KEEP_DAILY=7.")
    backup_dir = os.path.realpath(os.path.join(REPO_ROOT, values.get("BACKUP_DIR", "").strip() or "backups"))
    project_dir = os.path.realpath(os.path.join(REPO_ROOT, values.get("OTREE_PROJECT_DIR", "").strip()
                                                or "otree_project"))
    if os.path.commonpath([backup_dir, project_dir]) == project_dir:
        found.append(f"BACKUP_DIR is inside the oTree project ({project_dir}), so backups would be copied into "
                     "the image. Choose another folder, e.g. BACKUP_DIR=backups.")
    if bool(values.get("RESTIC_REPOSITORY", "").strip()) != bool(values.get("RESTIC_PASSWORD", "").strip()):
        found.append("RESTIC_REPOSITORY and RESTIC_PASSWORD go together: set both for an off-site copy, or "
                     "leave both empty.")
    return found


def _domain_problems(values):
    found = []
    domain = values.get("DOMAIN", "").strip()
    if domain:
        if _is_ip(domain):
            found.append(f"DOMAIN is the IP address {domain}. Leave DOMAIN empty to serve by IP "
                         "address; set it only to a name such as study.example.edu.")
        elif not HOSTNAME.match(domain):
            found.append(f"DOMAIN {domain!r} is not a valid domain name. Write the name only, such as "
                         "study.example.edu: no https://, no path, no port.")
    port = values.get("HTTPS_PORT", "").strip()
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        found.append(f"HTTPS_PORT {port!r} is not a port number (1 to 65535).")
    found += admin_allow_problems(values.get("ADMIN_ALLOW_IPS", ""))
    return found


def _address_problems(values):
    found = []
    email = values.get("LETSENCRYPT_EMAIL", "").strip()
    if email and not EMAIL.match(email):
        found.append(f"LETSENCRYPT_EMAIL {email!r} is not an email address, e.g. you@example.edu.")
    bind = values.get("BIND_ADDRESS", "0.0.0.0").strip()
    if not _is_ip(bind):
        found.append(f"BIND_ADDRESS {bind!r} is not an IP address. Use 0.0.0.0 for every address "
                     "of this machine, or 127.0.0.1 for this machine only.")
    ports = {}
    for key, default in (("HTTP_PORT", "80"), ("HTTPS_PORT", "443")):
        value = values.get(key, default).strip()
        if not value.isdigit() or not 0 < int(value) < 65536:
            found.append(f"{key} {value!r} is not a port number (1 to 65535).")
        else:
            ports[key] = int(value)
    if len(ports) == 2 and ports["HTTP_PORT"] == ports["HTTPS_PORT"]:
        found.append("HTTP_PORT and HTTPS_PORT are the same; give them different ports (80 and 443).")
    found += _study_ports_problems(values.get("STUDY_PORTS", "").strip() or settings.SERVER_DEFAULTS["STUDY_PORTS"],
                                   ports.values())
    return found


MAX_STUDY_PORTS = 50  # Docker runs a small proxy process per published port


def _study_ports_problems(text, server_ports):
    first, dash, last = text.partition("-")
    if not (first.isdigit() and (last.isdigit() or not dash)) or not (
            0 < int(first) <= int(last or first) < 65536):
        return [f"STUDY_PORTS {text!r} is not a port range: write FIRST-LAST (8444-8453) or one port."]
    span = range(int(first), int(last or first) + 1)
    if len(span) > MAX_STUDY_PORTS:
        return [f"STUDY_PORTS {text!r} has {len(span)} ports; at most {MAX_STUDY_PORTS} (one per study reached "
                "by address) are allowed."]
    return [f"STUDY_PORTS {text!r} includes the server's port {port}; choose a range without HTTP_PORT and HTTPS_PORT."
            for port in server_ports if port in span]


def admin_allow_problems(text):
    """ADMIN_ALLOW_IPS: empty, or comma-separated IP addresses and networks (CIDR), which nginx
    renders into a geo block; each bad entry gets a message."""
    found = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            ipaddress.ip_network(entry, strict=True)
        except ValueError as error:
            hint = ""
            if "host bits set" in str(error):
                hint = f" (the network is {ipaddress.ip_network(entry, strict=False)})"
            found.append(f"ADMIN_ALLOW_IPS entry {entry!r} is not an IP address or network{hint}. Write "
                         "addresses or networks separated by commas, e.g. 203.0.113.7,198.51.100.0/24, "
                         "or leave it empty to allow the admin pages from everywhere.")
    return found


def _limit_problems(values):
    checks = [
        ("LOGIN_RATE_LIMIT", r"\d+r/[sm]", "a rate such as 10r/m (a minute) or 1r/s (a second)"),
        ("LOGIN_RATE_BURST", r"\d+", "a whole number such as 5"),
        ("MAX_BODY_SIZE", r"\d+[kKmMgG]?", "a size such as 10m"),
        ("HSTS_MAX_AGE", r"\d+", "a number of seconds such as 31536000"),
        ("CPU_LIMIT", r"\d+(\.\d+)?", "a number of CPU cores such as 1.5"),
        ("MEMORY_LIMIT", r"\d+[kmg]", "a size such as 2g or 512m"),
    ]
    found = []
    for key, pattern, expected in checks:
        value = values.get(key, "").strip()
        if value and not re.fullmatch(pattern, value, re.ASCII):
            found.append(f"{key} {value!r} is not valid: use {expected}.")
    return found


def _is_ip(text):
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
