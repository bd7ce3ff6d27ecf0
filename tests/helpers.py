"""Helpers for the end-to-end tests: run the README's invoke tasks, query the real Postgres."""
import contextlib
import hashlib
import os
import socket
import subprocess

from stack import compose as compose_module, envfile, settings

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def invoke(env_path, *args, check=True, timeout=900, stdin=subprocess.DEVNULL):
    """Run `invoke ARGS` as a user would, against the stack described by env_path."""
    result = subprocess.run(["invoke", *args], cwd=REPO_ROOT, env=dict(os.environ, OTREE_STACK_ENV=env_path),
                            capture_output=True, text=True, timeout=timeout, stdin=stdin)
    if check and result.returncode:
        raise AssertionError(f"invoke {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def compose(env_path, study_name, *args, check=True):
    """`docker compose ARGS` for a test server's study, or its proxy when ARGS name nginx or
    certbot, with the values invoke derives (stack.compose)."""
    loaded = settings.load(env_path)
    if any(service in args for service in compose_module.PROXY_SERVICES):
        project = compose_module.for_proxy(loaded.server)
    else:
        project = compose_module.for_study(loaded.study(study_name))
    return subprocess.run(project.command(*args), env=project.environment, cwd=REPO_ROOT, capture_output=True,
                          text=True, check=check)


def containers_of(stack_name):
    """The containers of a test server: its proxy's and its studies' (STACK_NAME-STUDY)."""
    result = subprocess.run(["docker", "ps", "--all", "--format", '{{.ID}} {{.Label "com.docker.compose.project"}}'],
                            capture_output=True, text=True, check=True)
    return [cid for cid, _, project in (line.partition(" ") for line in result.stdout.splitlines())
            if project == stack_name or project.startswith(stack_name + "-")]


def psql(env_path, stack_name, sql):
    """Rows of a query in the stack's Postgres, as lists of strings (run inside its container,
    since the database is never published on the host)."""
    result = compose(env_path, stack_name, "exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "otree",
                     "--no-align", "--tuples-only", "--field-separator", "|", "-c", sql, check=False)
    assert result.returncode == 0, f"psql failed: {result.stderr}"
    return [line.split("|") for line in result.stdout.splitlines() if line]


@contextlib.contextmanager
def resolving_here(*names):
    """These DNS names resolve to 127.0.0.1 for this process's clients (requests, websockets), as a
    study's DNS would for its participants: the proxy sees the name in SNI and Host, as for real."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return real("127.0.0.1" if host in names else host, *args, **kwargs)
    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = real


def write_file(path, values):
    """KEY=VALUE lines, as they are (a settings file of any layout)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{key}={value}\n" for key, value in values.items())
    os.chmod(path, 0o600)


def write_env(path, values):
    """A test server's settings from one dict, as the tests edit them: the server's keys into
    `path`, a study's into STUDIES_DIR/<first study>.env."""
    if not settings.holds_a_study(values):
        write_file(path, values)
        return
    server, study = settings.split(values)
    write_file(path, server)
    name = settings.first_study_name(server.get("STACK_NAME", "otree"))
    write_file(settings.study_path(settings.read_server(path), name), study)


def load_env(path):
    """The server's and its first study's settings as one dict (what write_env takes)."""
    loaded = settings.load(path)
    study = loaded.studies[0]
    raw = envfile.load(study.env_path)
    return {**envfile.load(path), **raw}


def tree_digest(path):
    """A sha256 over everything under path: each file's and folder's relative path, mode and size,
    a file's content hash, a symlink's target (not followed). Equal digests before and after a
    command mean it changed nothing there; a missing path has its own digest."""
    digest = hashlib.sha256()
    if not os.path.lexists(path):
        digest.update(b"missing")
        return digest.hexdigest()
    if not os.path.isdir(path) or os.path.islink(path):
        entries = [(os.path.basename(path), path)]
    else:
        entries = []
        for folder, dirs, files in os.walk(path):
            for name in dirs + files:
                full = os.path.join(folder, name)
                entries.append((os.path.relpath(full, path), full))
    for relative, full in sorted(entries):
        info = os.lstat(full)
        if os.path.islink(full):
            content = "link:" + os.readlink(full)
        elif os.path.isfile(full):
            with open(full, "rb") as handle:
                content = hashlib.file_digest(handle, "sha256").hexdigest()
        else:
            content = "folder" if os.path.isdir(full) else "other"
        digest.update(f"{relative}\0{info.st_mode:o}\0{info.st_size}\0{content}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()
