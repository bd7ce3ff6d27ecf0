"""The laptop's side of `--on NAME`: ship files to a server and run the stack's own tasks there.

Files travel as one gzipped tar stream over ssh (Python's tarfile here, tar there), so the laptop
needs only Python, invoke and OpenSSH, on Linux, macOS or Windows. A deploy runs detached on the
server and the laptop follows its log: a lost connection stops the following, not the deploy."""
import json
import hashlib
import os
import re
import secrets
import shlex
import subprocess
import sys
import tarfile
import tempfile

from . import project, servers, ssh
from .console import StackError, step
from .envfile import REPO_ROOT

# Never shipped: secrets, local state, caches, the laptop's own list of servers.
SKIPPED_DIRS = {".git", "__pycache__", ".venv", "venv", ".venv-test", "node_modules", ".idea", ".pytest_cache"}
SKIPPED_FILES = {".env", "db.sqlite3", "servers.ini"}
INCOMING = "releases/.incoming"


def _git_files(folder):
    """Files git knows in folder (tracked, and new ones it does not ignore), or None outside git."""
    try:
        result = subprocess.run(["git", "-C", folder, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode:
        return None
    return [path for path in result.stdout.decode("utf-8").split("\0")
            if path and os.path.isfile(os.path.join(folder, path))]


def files_of(folder):
    """The files to ship from folder, as relative paths: git's view when it is a repository."""
    listed = _git_files(folder)
    if listed is None:
        listed = []
        for root, dirs, names in os.walk(folder):
            dirs[:] = [name for name in dirs if name not in SKIPPED_DIRS]
            listed += [os.path.relpath(os.path.join(root, name), folder) for name in names]
    return sorted(path for path in listed
                  if not set(path.replace("\\", "/").split("/")) & SKIPPED_DIRS
                  and os.path.basename(path) not in SKIPPED_FILES and not path.endswith(".pyc")
                  and not path.startswith(("studies/", "backups/", "exports/", "releases/")))


def bundle(project_folder=None, incoming=None):
    """A gzipped tar of the stack's files, and the project under INCOMING/<incoming>/ when given."""
    buffer = tempfile.TemporaryFile()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in files_of(REPO_ROOT):
            archive.add(os.path.join(REPO_ROOT, path), arcname=path.replace("\\", "/"), recursive=False)
        if project_folder:
            for path in files_of(project_folder):
                archive.add(os.path.join(project_folder, path),
                            arcname=f"{INCOMING}/{incoming}/{path.replace(os.sep, '/')}", recursive=False)
    buffer.seek(0)
    return buffer


def _ship(server, archive):
    folder = shlex.quote(server.path)
    code, _ = ssh.run(server, f"mkdir -p {folder} && cd {folder} && tar -xzf - --no-same-owner", stdin=archive)
    if code:
        raise StackError(f"Copying the files to the server '{server.name}' failed (tar's message is above; \"No space "
                         "left on device\" means its disk is full). The running studies were not touched.")


def invoke_on(name, *args):
    """`invoke ARGS` in the stack's folder on the server named; its output streams here. Returns
    its exit code. Interactive (a terminal on the server) when this one is."""
    server = servers.get(name)
    code, _ = ssh.run(server, ssh.invoke_args(server, *args), tty=sys.stdin.isatty() and sys.stdout.isatty())
    return code


def setup(name):
    """Ship the stack's files to the server and run setup.sh there, as on any fresh server."""
    server = servers.get(name)
    step(f"Copying the stack to {server.target}:{server.path}")
    _ship(server, bundle())
    step(f"Running setup.sh on '{name}' (it installs what is missing, then starts the stack)")
    code, _ = ssh.run(server, f"cd {shlex.quote(server.path)} && ./setup.sh --yes",
                      tty=sys.stdin.isatty() and sys.stdout.isatty())
    if code:
        raise StackError(f"setup.sh failed on '{name}' (its message is above). Fix what it says and run "
                         f"`invoke server setup {name}` again: it is safe to repeat.")
    step(f"The server '{name}' is set up. Deploy your project with: invoke deploy --on {name} --project FOLDER")


def _revision(folder, allow_dirty):
    revision = project.git_revision(folder)
    if not revision and not allow_dirty:
        raise StackError(f"{folder} is not in git, so this deploy could not be told apart from the next one. Commit "
                         "it to a git repository (`git init`, `git add .`, `git commit`), or add --allow-dirty.")
    if revision.endswith("-dirty") and not allow_dirty:
        raise StackError(f"{folder} has uncommitted changes (`git status` lists them). Commit them, so the release "
                         "records exactly what runs, or add --allow-dirty. Nothing was shipped.")
    return revision or "(not in git)"


def deploy(name, study=None, project_folder=None, allow_dirty=False, force=False, active_minutes=10, domain=None):
    server = servers.get(name)
    folder = os.path.abspath(project_folder or os.path.join(REPO_ROOT, "otree_project"))
    project.directory(folder, inside_repository=False)
    revision = _revision(folder, allow_dirty)
    ssh.run(server, ssh.in_stack(server, "true"))  # reachable, key accepted, stack there: before any work
    incoming = f"{revision.replace('(not in git)', 'nogit')}-{secrets.token_hex(4)}"
    step(f"Shipping {folder} (git {revision}) and the stack's files to '{name}'")
    _ship(server, bundle(folder, incoming))
    from .deploy import deployer
    args = ["deploy", "--project", f"{INCOMING}/{incoming}", "--revision", revision, "--who", deployer(),
            "--active-minutes", str(active_minutes)]
    args += (["--study", study] if study else []) + (["--domain", domain] if domain else [])
    args += ["--force"] if force else []
    # Detached from this connection, so losing it does not stop the deploy half-way.
    code, _ = ssh.run(server, ssh.detached_invoke(server, f"{INCOMING}/{incoming}.log", *args))
    if code:
        raise StackError(f"The deploy to '{name}' did not go through (the reason is above).")


DOWNLOADS = os.path.join(REPO_ROOT, "downloads")


def _extract(stream, destination):
    """Unpack a tar stream into destination: regular files and folders only, nothing outside it."""
    os.makedirs(destination, exist_ok=True)
    names = []
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            path = os.path.normpath(member.name)
            if path.startswith("..") or os.path.isabs(path) or not (member.isfile() or member.isdir()):
                raise StackError(f"The server sent an unexpected entry ({member.name!r}); nothing more was unpacked.")
            member.mode = 0o700 if member.isdir() else 0o600  # participants' data: yours alone
            archive.extract(member, destination, set_attrs=True, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
            names.append(path)
    return names


def sha256(path):
    """As the backup service's (backup/otree_backup/store.py), which a laptop cannot import: it
    locks with fcntl, which Windows does not have."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(folder, expected):
    """expected: {file name: sha256}. Raises when a file is missing or differs."""
    for file_name, digest in expected.items():
        path = os.path.join(folder, file_name)
        if not os.path.isfile(path) or sha256(path) != digest:
            raise StackError(f"{path} does not match the checksum the server recorded: the transfer was damaged. "
                             "Run the command again; the files on the server are untouched.")


def export_data(name, study=None, session=None, app=None, output=None):
    """Export on the server, bring the export to this laptop, check every file's sha256 against
    the export's manifest, then remove the server's temporary copy."""
    server = servers.get(name)
    scratch = f"exports/.for-laptop-{secrets.token_hex(4)}"
    options = {"study": study, "session": session, "app": app, "output": scratch}
    try:
        code, _ = ssh.run(server, ssh.invoke_args(server, *ssh.task_args("export_data", options)))
        if code:
            raise StackError(f"The export on '{name}' failed (the reason is above).")
        destination = os.path.abspath(output or os.path.join(DOWNLOADS, name))
        step(f"Copying the export to {destination}")
        unpacked = []
        ssh.run(server, f"{ssh.enter_stack(server)}; exec tar -cf - -C {shlex.quote(scratch)} .",
                consume=lambda stream: unpacked.extend(_extract(stream, destination)))
    finally:
        ssh.run(server, f"{ssh.enter_stack(server)}; rm -rf {shlex.quote(scratch)}")
    folders = sorted({path.split(os.sep)[0] for path in unpacked if os.sep in path})
    for folder in folders:
        with open(os.path.join(destination, folder, "manifest.json"), encoding="utf-8") as handle:
            manifest = json.load(handle)
        _check(os.path.join(destination, folder), {entry["name"]: entry["sha256"] for entry in manifest["files"]})
        step(f"Exported to {os.path.join(destination, folder)}/ (and its .zip); every file matches its sha256 "
             "in manifest.json")


def download_backup(name, study=None, output=None):
    """A verified backup on the server, brought to this laptop and checked against its manifest."""
    server = servers.get(name)
    study_args = ["--study", study] if study else []
    code, text = ssh.run(server, ssh.invoke_args(server, "backup", *study_args), capture=True)
    print(text, end="")
    found = re.search(r"invoke restore (\S+)", text)
    if code or not found:
        raise StackError(f"The backup on '{name}' failed (the reason is above); nothing was downloaded.")
    backup_id = found.group(1)
    destination = os.path.abspath(output or os.path.join(DOWNLOADS, name, "backups"))
    step(f"Copying backup {backup_id} to {destination}")
    code, _ = ssh.run(server, ssh.invoke_args(server, "backups", *study_args, "--tar", backup_id),
                      consume=lambda stream: _extract(stream, destination))
    if code:
        raise StackError(f"Copying backup {backup_id} from '{name}' failed (the reason is above).")
    folder = os.path.join(destination, backup_id)
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    _check(folder, {manifest["dump"]["file"]: manifest["dump"]["sha256"]})
    step(f"Backup {backup_id} is on this laptop: {folder} (its dump matches the sha256 in manifest.json)")


def prolific(name, action, study=None, room=None, config=None, session=None, output=None):
    """`invoke prolific ACTION --on NAME`: run it on the server, then bring the file it wrote to
    this laptop (downloads/SERVER/ unless --output; never overwritten) and remove the server's copy."""
    from . import prolific as prolific_module

    server = servers.get(name)
    options = {"action": action, "study": study, "room": room, "config": config, "session": session}
    if action not in prolific_module.ACTIONS or action == "link":  # nothing to bring back
        if invoke_on(name, *ssh.task_args("prolific", options)):
            raise StackError(f"`invoke prolific {action}` on '{name}' failed (the reason is above).")
        return
    destination = prolific_module.output_path(output, os.path.join(DOWNLOADS, name), action, session)
    scratch = f"exports/.for-laptop-{secrets.token_hex(4)}"
    try:
        code, _ = ssh.run(server, ssh.invoke_args(server, *ssh.task_args(
            "prolific", {**options, "output": f"{scratch}/{os.path.basename(destination)}"})))
        if code:
            raise StackError(f"`invoke prolific {action}` on '{name}' failed (the reason is above); nothing was "
                             "written here.")
        code, text = ssh.run(server, f"{ssh.enter_stack(server)}; exec cat {shlex.quote(scratch)}/*", capture=True)
        if code:
            raise StackError(f"The file did not come back from '{name}'; nothing was written here. Run it again.")
    finally:
        ssh.run(server, f"{ssh.enter_stack(server)}; rm -rf {shlex.quote(scratch)}")
    prolific_module.write_new(destination, text)
    step(f"Brought to this laptop: {destination} (the server kept no copy)")
