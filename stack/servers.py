"""`invoke server add|setup|remove` and `invoke servers`: the servers this laptop deploys to.

They are kept by name in servers.ini in this repository (ignored by git), one section each:

    [lab]
    host = deploy@203.0.113.7
    port = 22
    path = otree-stack

SSH signs in with your own keys and agent; no password is stored anywhere. `path` is the stack's
folder on the server, relative to the SSH user's home unless it starts with /."""
import configparser
import dataclasses
import os
import re
import tempfile

from . import names
from . import stack_version
from .console import StackError, info, step
from .envfile import REPO_ROOT

SERVERS_FILE = os.environ.get("OTREE_SERVERS_FILE") or os.path.join(REPO_ROOT, "servers.ini")
DEFAULT_PATH = "otree-stack"
# user@host, neither starting with - (ssh would read an option)
TARGET = r"([A-Za-z0-9][A-Za-z0-9._-]*@)?[A-Za-z0-9][A-Za-z0-9.:_-]*"


@dataclasses.dataclass(frozen=True)
class Server:
    name: str
    target: str  # user@host, as ssh takes it
    port: int = 22
    path: str = DEFAULT_PATH


def _read():
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(SERVERS_FILE, encoding="utf-8")
    except configparser.Error as error:
        raise StackError(f"{SERVERS_FILE} cannot be read ({error}). Fix the line it names, or remove the file and "
                         "add your servers again with `invoke server add`.") from None
    return parser


def all_servers():
    parser = _read()
    return [Server(name, parser[name].get("host", ""), int(parser[name].get("port", "22") or 22),
                   parser[name].get("path", DEFAULT_PATH) or DEFAULT_PATH) for name in parser.sections()]


def get(name):
    """The server named, or a message listing the known ones."""
    names.check_server(name)
    for server in all_servers():
        if server.name == name:
            return server
    known = ", ".join(server.name for server in all_servers()) or "none yet"
    raise StackError(f"There is no server named {name!r} on this laptop (known: {known}). Add it with: "
                     f"invoke server add {name} --host USER@HOST")


def problems(name, target, port, path):
    found = [problem for problem in [names.SERVER.problem(name)] if problem]
    if not re.fullmatch(TARGET, target or "", re.ASCII):
        found.append(f"{target!r} is not an SSH address: write USER@HOST, e.g. deploy@203.0.113.7 or "
                     "deploy@study.example.edu.")
    if not str(port).isdigit() or not 0 < int(port) < 65536:
        found.append(f"SSH port {port!r} is not a port number (1 to 65535).")
    if not path or any(part == ".." for part in path.split("/")):
        found.append(f"The stack's folder {path!r} must be a plain path on the server (no ..).")
    return found


def _write(parser):
    directory = os.path.dirname(SERVERS_FILE)
    handle, partial = tempfile.mkstemp(dir=directory, prefix=".servers-", suffix=".partial")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write("# The servers `invoke ... --on NAME` reaches over SSH (invoke server add). No secrets here.\n")
        parser.write(out)
    os.replace(partial, SERVERS_FILE)


def add(name, target, port=22, path=DEFAULT_PATH):
    found = problems(name, target, port, path)
    if found:
        raise StackError("The server was not added:\n" + "\n".join(f"  - {problem}" for problem in found) +
                         f"\n{names.UNCHANGED}")
    parser = _read()
    if parser.has_section(name):
        raise StackError(f"There is already a server named {name!r} ({parser[name].get('host')}). Remove it first "
                         f"with `invoke server remove {name}`, or choose another name.")
    parser[name] = {"host": target, "port": str(port), "path": path}
    _write(parser)
    step(f"Added the server '{name}': {target}, SSH port {port}, stack in {path}")
    info(f"Next: `invoke server setup {name}` installs the stack there (a fresh Debian or Ubuntu server), then "
         f"`invoke deploy --on {name}` ships your project.")


def remove(name):
    get(name)
    parser = _read()
    parser.remove_section(name)
    _write(parser)
    step(f"Removed the server '{name}' from this laptop (nothing on the server was changed).")


def list_servers():
    """Each server, and under it the stack's version there (asked over SSH of all at once, each
    with a short timeout) next to this laptop's."""
    known = all_servers()
    step(f"Servers on this laptop ({len(known)}), in {SERVERS_FILE}")
    ours = stack_version.of_checkout(REPO_ROOT)
    info(f"This laptop's stack: {stack_version.describe(ours)}")
    if not known:
        info("None yet. Add one with: invoke server add NAME --host USER@HOST [--port N]")
    found = stack_version.on_servers(known)
    for server in known:
        info(f"{server.name:<16} {server.target}  SSH port {server.port}  stack in {server.path}")
        version, missing = found[server.name]
        described = (f"{stack_version.describe(version)}, {stack_version.compared(ours, version)}" if version
                     else missing)
        info(f"{'':<16} stack {described}")
