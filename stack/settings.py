"""The settings, read once into typed objects, with every default in one place.

A server has one settings file (.env: the proxy's ports and Let's Encrypt account, the stack's
name) and one file per study (studies/NAME.env: its project, secrets, web address, backups and
limits). `load()` reads them all; tasks get a `Server` and the `Study` they act on."""
import dataclasses
import glob
import os

from . import envfile, names
from .console import StackError

# key: default. The server's own settings; everything else in a settings file belongs to a study.
SERVER_DEFAULTS = {
    "STACK_NAME": "otree",
    "BASE_IMAGE": "debian:trixie-slim",
    "STUDIES_DIR": "studies",
    "BIND_ADDRESS": "0.0.0.0",
    "HTTP_PORT": "80",
    "HTTPS_PORT": "443",
    "STUDY_PORTS": "8444-8453",
    "LETSENCRYPT_EMAIL": "",
    "ACME_DIRECTORY_URL": "",
    "ACME_CA_FILE": "",
    # Alerts from the monitor service (monitor/): by mail, and/or to a chat's incoming webhook.
    "ALERT_EMAIL": "",
    "ALERT_WEBHOOK_URL": "",
    "SMTP_HOST": "",
    "SMTP_PORT": "587",
    "SMTP_USER": "",
    "SMTP_PASSWORD": "",
    "SMTP_FROM": "",
    "SMTP_TLS": "starttls",
    "MONITOR_INTERVAL": "30",
}
STUDY_DEFAULTS = {
    "OTREE_PRODUCTION": "1",
    "OTREE_AUTH_LEVEL": "STUDY",
    "OTREE_ADMIN_PASSWORD": "",
    "OTREE_REST_KEY": "",
    "OTREE_SECRET_KEY": "",
    "OTREE_PROJECT_DIR": "otree_project",
    "OTREE_RENDER_CACHE": "on",
    "OTREE_COMPILED_LOOKUPS": "on",
    "POSTGRES_PASSWORD": "",
    # 1: Postgres starts even on a data folder it cannot lock (postgres/entrypoint.sh).
    "POSTGRES_ALLOW_UNLOCKED": "",
    "DOMAIN": "",
    "HTTPS_PORT": "",
    "TLS_CERT_FILE": "",
    "TLS_KEY_FILE": "",
    "LOGIN_RATE_LIMIT": "10r/m",
    "LOGIN_RATE_BURST": "5",
    "MAX_BODY_SIZE": "10m",
    "HSTS_MAX_AGE": "31536000",
    "ADMIN_ALLOW_IPS": "",
    "CPU_LIMIT": "1.5",
    "MEMORY_LIMIT": "2g",
    "BACKUP_DIR": "",
    "BACKUP_SCHEDULE": "daily 03:00",
    "BACKUP_KEEP_DAILY": "7",
    "BACKUP_KEEP_WEEKLY": "4",
    "BACKUP_KEEP_MONTHLY": "6",
    "RESTIC_REPOSITORY": "",
    "RESTIC_PASSWORD": "",
    "RESTIC_AWS_ACCESS_KEY_ID": "",
    "RESTIC_AWS_SECRET_ACCESS_KEY": "",
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    # oTree reports errors to Sentry by itself when the project lists sentry-sdk.
    "SENTRY_DSN": "",
    # Only in a study moved over from the one-study layout: the database volume it already had.
    "POSTGRES_VOLUME": "",
}
# Settings a one-study .env had that no longer exist.
RETIRED = ("REDIS_ENABLED",)
STUDY_EXAMPLE = os.path.join(envfile.REPO_ROOT, "study.env.example")


def _absolute(path):
    return os.path.normpath(os.path.join(envfile.REPO_ROOT, os.path.expanduser(path)))


def with_defaults(defaults, raw):
    """The defaults, overridden by what the file sets (blank means the default)."""
    return {key: (raw.get(key, "").strip() or default) for key, default in defaults.items()}


@dataclasses.dataclass(frozen=True)
class Server:
    env_path: str
    values: dict  # every server key, defaults filled in

    @property
    def name(self):
        return self.values["STACK_NAME"]

    @property
    def studies_dir(self):
        return _absolute(self.values["STUDIES_DIR"])

    @property
    def proxy_dir(self):
        """The proxy's rendered configuration (stack/proxy.py), mounted read-only into nginx."""
        return os.path.join(self.studies_dir, ".proxy")

    @property
    def https_port(self):
        return int(self.values["HTTPS_PORT"])

    @property
    def http_port(self):
        return int(self.values["HTTP_PORT"])

    @property
    def study_ports(self):
        """The HTTPS ports for studies reached by address, published from the proxy's start, so
        adding such a study only reloads nginx (Docker publishes ports only when it makes a
        container). "8444-8453", or one port."""
        first, _, last = self.values["STUDY_PORTS"].partition("-")
        return range(int(first), int(last or first) + 1)

    @property
    def base_image(self):
        return self.values["BASE_IMAGE"]

    def public_host(self):
        bind = self.values["BIND_ADDRESS"]
        return bind if bind not in ("0.0.0.0", "::") else "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class Study:
    name: str
    env_path: str
    values: dict  # every study key, defaults filled in
    server: Server

    def get(self, key):
        return self.values[key]

    @property
    def project(self):
        """Its Compose project: containers, networks and images are named after it."""
        return f"{self.server.name}-{self.name}"

    @property
    def domain(self):
        return self.values["DOMAIN"]

    @property
    def https_port(self):
        """Where participants reach it: the server's port by name, or a port of its own on a bare IP."""
        return int(self.values["HTTPS_PORT"] or self.server.values["HTTPS_PORT"])

    @property
    def project_dir(self):
        return _absolute(self.values["OTREE_PROJECT_DIR"])

    @property
    def backup_dir(self):
        return _absolute(self.values["BACKUP_DIR"] or os.path.join("backups", self.name))

    @property
    def postgres_volume(self):
        return self.values["POSTGRES_VOLUME"] or f"{self.project}_postgres-data"

    @property
    def network(self):
        """The network between this study's oTree and the proxy (created by stack/proxy.py)."""
        return f"{self.project}-proxy"

    def url(self):
        host = self.domain or self.server.public_host()
        port = self.https_port
        return f"https://{host}{'' if port == 443 else f':{port}'}/"


@dataclasses.dataclass(frozen=True)
class Settings:
    server: Server
    studies: tuple  # of Study, sorted by name

    def study(self, name=None, purpose="acts on"):
        """The study a task acts on: the one named, or the only one. With several and no name,
        refuse and list them, so a task never changes the wrong study's data."""
        if name:
            names.check_study(name)
            for study in self.studies:
                if study.name == name:
                    return study
            raise StackError(f"There is no study {name!r} on this server. {self.listing()}")
        if len(self.studies) == 1:
            return self.studies[0]
        if not self.studies:
            raise StackError("There is no study on this server yet. Add one with: "
                             "invoke study add NAME --project FOLDER")
        raise StackError(f"This server has several studies, so say which one this {purpose}: add --study NAME. "
                         f"{self.listing()}")

    def with_values(self, name, values):
        """These settings as they would be with the study named holding `values` (nothing written)."""
        changed = dataclasses.replace(self.study(name), values=values)
        return Settings(self.server, tuple(changed if study.name == name else study for study in self.studies))

    def listing(self):
        return ("Studies: " + ", ".join(study.name for study in self.studies) + "."
                if self.studies else "It has no studies yet.")


def first_study_name(stack_name):
    """A server's first study is named after the stack (as a one-study server's was)."""
    name = stack_name.replace("_", "-")
    return name if names.STUDY.matches(name) else "study"


def study_path(server, name):
    return os.path.join(server.studies_dir, f"{name}.env")


def read_server(env_path=None):
    env_path = env_path or envfile.path()
    return Server(env_path, with_defaults(SERVER_DEFAULTS, envfile.load(env_path)))


def read_study(server, path):
    name = os.path.basename(path)[:-len(".env")]
    return Study(name, path, with_defaults(STUDY_DEFAULTS, envfile.load(path)), server)


def load(env_path=None):
    server = read_server(env_path)
    paths = sorted(glob.glob(os.path.join(server.studies_dir, "*.env")))
    return Settings(server, tuple(read_study(server, path) for path in paths))


def split(raw):
    """A one-study .env's values as (server's, study's); retired keys dropped."""
    server = {key: value for key, value in raw.items() if key in SERVER_DEFAULTS}
    study = {key: value for key, value in raw.items()
             if key not in SERVER_DEFAULTS and key not in RETIRED}
    # HTTPS_PORT is the server's; a study without a domain is served on it as before.
    return server, study


def holds_a_study(raw):
    """True for a .env of the one-study layout (before studies): it has a study's secrets."""
    return "OTREE_ADMIN_PASSWORD" in raw
