"""The env file: where it is, reading it, and creating it with strong secrets on first run."""
import os
import re
import secrets

from .console import StackError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO_ROOT, ".env.example")
GENERATED = "<generated>"
SECRET_LENGTHS = {"OTREE_ADMIN_PASSWORD": 24, "OTREE_REST_KEY": 32, "OTREE_SECRET_KEY": 48,
                  "POSTGRES_PASSWORD": 32}


def path():
    """.env beside this repository, or the file named by OTREE_STACK_ENV (tests use their own)."""
    return os.path.abspath(os.environ.get("OTREE_STACK_ENV") or os.path.join(REPO_ROOT, ".env"))


def parse(text):
    """KEY=VALUE lines as a dict; comments and blank lines skipped, one level of quotes removed."""
    values = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", line)
        if not match:
            raise StackError(f"line {number} of the env file is not KEY=VALUE: {line!r}")
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def load(env_path=None):
    env_path = env_path or path()
    try:
        with open(env_path, encoding="utf-8") as handle:
            return parse(handle.read())
    except FileNotFoundError:
        raise StackError(f"{env_path} does not exist. Run `invoke up` to create it from .env.example.")


def new_secret(length):
    """Letters and digits only: safe in URLs, shell lines and SQL without quoting."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def render_from_example(example_text):
    """The example's text with every <generated> value replaced by a fresh secret."""
    def fill(match):
        key = match.group(1)
        return f"{key}={new_secret(SECRET_LENGTHS.get(key, 32))}"
    return re.sub(rf"^([A-Z_]+)={re.escape(GENERATED)}$", fill, example_text, flags=re.M)


def create_if_missing(env_path=None):
    """Create the env file from .env.example with new secrets. Never overwrites. True if created."""
    env_path = env_path or path()
    with open(EXAMPLE, encoding="utf-8") as handle:
        text = render_from_example(handle.read())
    try:
        # O_EXCL: never replace an existing file, even one created a moment ago by someone else.
        descriptor = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    return True


def set_values(env_path, changes):
    """Set (or, with None, remove) keys in a settings file, keeping its comments and order; the
    file is replaced whole, mode 600, so a reader never sees half of it."""
    with open(env_path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    pending = dict(changes)
    kept = []
    for line in lines:
        match = re.match(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", line.strip())
        key = match.group(1) if match else None
        if key in pending:
            value = pending.pop(key)
            if value is not None:
                kept.append(f"{key}={value}")
            continue
        kept.append(line)
    kept += [f"{key}={value}" for key, value in pending.items() if value is not None]
    partial = f"{env_path}.partial"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(kept) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, env_path)
