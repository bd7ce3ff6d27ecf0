"""The env file: where it is, reading it, and creating it with strong secrets on first run."""
import os
import re
import secrets
import unicodedata

from .console import StackError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO_ROOT, ".env.example")
GENERATED = "<generated>"
SECRET_LENGTHS = {"OTREE_ADMIN_PASSWORD": 24, "OTREE_REST_KEY": 32, "OTREE_SECRET_KEY": 48,
                  "POSTGRES_PASSWORD": 32}


def path():
    """.env beside this repository, or the file named by OTREE_STACK_ENV (tests use their own)."""
    return os.path.abspath(os.environ.get("OTREE_STACK_ENV") or os.path.join(REPO_ROOT, ".env"))


# Longer values are refused: no setting needs one, and Linux refuses to start a program (Compose,
# which gets the values in its environment) with a variable over 128 KiB.
MAX_VALUE_LENGTH = 4096
KEY_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
# Names of the control characters people meet, for messages.
CHARACTER_NAMES = {"\n": "a line break (newline, \\n)", "\r": "a carriage return (\\r)", "\0": "a NUL byte (\\0)",
                   "\t": "a tab (\\t)", "\x7f": "DEL", "\u2028": "a line separator", "\u2029": "a paragraph separator"}


def lines_of(text):
    """The file's lines: split at \\n only (a value can hold no other line break; see value_problem)."""
    return text.split("\n")


def read_value(raw):
    """A value as the file holds it, read: white space around it dropped, then one level of
    matching quotes removed, with nothing inside them interpreted."""
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


def written_value(value):
    """A value as the file holds it: as it is when read_value gives it back unchanged, else in
    single quotes (read_value removes exactly those)."""
    return value if read_value(value) == value else f"'{value}'"


def value_problem(key, value):
    """Why value cannot be stored under key (a message that names the key and the character), or
    None. Control characters and line separators would start new lines or hide text; nothing else
    is refused here, so every other value reads back as written."""
    for character in value:
        if unicodedata.category(character) == "Cs":
            return f"{key} holds bytes that are not UTF-8 text at position {value.index(character) + 1}; retype it."
        if unicodedata.category(character) in ("Cc", "Zl", "Zp"):
            name = CHARACTER_NAMES.get(character, f"a control character (U+{ord(character):04X})")
            return (f"{key} contains {name} at position {value.index(character) + 1}; a setting is one line of "
                    f"printable text. Give {key} without it.")
    if len(value) > MAX_VALUE_LENGTH:
        return f"{key} is {len(value)} characters long; at most {MAX_VALUE_LENGTH} are allowed."
    return None


def parse(text):
    """KEY=VALUE lines as a dict; comments and blank lines skipped, values as read_value reads them."""
    values = {}
    for number, line in enumerate(lines_of(text), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = KEY_LINE.match(line)
        if not match:
            raise StackError(f"line {number} of the env file is not KEY=VALUE: {line!r}")
        key, value = match.groups()
        values[key] = read_value(value)
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
    """Set (or, with None, remove) keys in a settings file, keeping its comments, order and other
    lines as they are. A value that cannot be stored is refused before anything is written. The
    new text is written beside the file (mode 600), read back and compared with what was meant,
    and only then replaces the file whole, so a reader never sees half of it or a surprise."""
    for key, value in changes.items():
        problem = value_problem(key, value) if value is not None else None
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key, re.ASCII):
            problem = f"{key!r} is not a setting's name."
        if problem:
            raise StackError(f"{problem} Nothing was changed.")
    with open(env_path, encoding="utf-8") as handle:
        text = handle.read()
    intended = {key: value for key, value in {**parse(text), **changes}.items() if value is not None}
    written, kept = set(), []
    for line in lines_of(text.removesuffix("\n")):
        match = KEY_LINE.match(line.strip())
        key = match.group(1) if match else None
        if key in changes:
            # The first line of a key takes the new value; any later ones (which would win) go.
            if key not in written and changes[key] is not None:
                kept.append(f"{key}={written_value(changes[key])}")
            written.add(key)
            continue
        kept.append(line)
    kept += [f"{key}={written_value(value)}" for key, value in changes.items()
             if value is not None and key not in written]
    partial = f"{env_path}.partial"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(kept) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    try:
        with open(partial, encoding="utf-8") as handle:
            read_back = parse(handle.read())
    except StackError:
        read_back = None
    if read_back != intended:
        os.remove(partial)
        differ = sorted(key for key in intended.keys() | (read_back or {}).keys()
                        if intended.get(key) != (read_back or {}).get(key))
        raise StackError(f"Writing {env_path} would not have kept {', '.join(differ)} as meant, so it was left as it "
                         "was. Nothing was changed.")
    os.replace(partial, env_path)
