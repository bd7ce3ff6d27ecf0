"""The laptop's side of `--on NAME`: ship files to a server and run the stack's own tasks there.

Files travel as one gzipped tar stream over ssh (Python's tarfile here, tar there), so the laptop
needs only Python, invoke and OpenSSH, on Linux, macOS or Windows. The stack's files arrive in a
staging folder and are installed from there under the server's lock (stack/stack_install.py). A
deploy runs detached on the server and the laptop follows its log: a lost connection stops the
following, not the deploy."""
import fnmatch
import io
import json
import hashlib
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile

from . import project, servers, ssh, stack_install, stack_version
from .console import StackError, step
from .envfile import REPO_ROOT

# Never shipped, whatever git says (tracked, untracked, ignored or not): secrets and settings, the
# laptop's and the server's own state, virtual environments and caches. A pattern ending in "/"
# names a folder at the top of the stack's (or the project's) folder; any other, any part of a
# path. Compared in lower case, as Windows's and macOS's file systems compare names.
NEVER_SHIPPED = (
    ".env", ".env.*", "*.env", "servers.ini", "studies/",
    "downloads/", "exports/", "backups/", "releases/", "loadtests/", "test-artifacts/", ".test-projects/",
    ".bench-projects/", "db.sqlite3",
    ".git", ".venv*", "venv", "node_modules", ".idea", "__pycache__", "*.pyc", ".pytest_cache", ".hypothesis",
    ".mypy_cache", ".ruff_cache",
)
SHIPPED_EXAMPLES = {".env.example", "study.env.example"}  # no secrets: the server fills them in
# The stack's programs, for a laptop without a working git (modes never come from its file system).
EXECUTABLES = "stack/executables.txt"
INCOMING = "releases/.incoming"


def never_shipped(path, folder=False):
    """True when NEVER_SHIPPED names path ('/'-separated, relative; a folder's with folder=True),
    or when it is not a plain relative path."""
    parts = path.lower().split("/")
    if any(part in ("", ".", "..") for part in parts):
        return True
    return any(fnmatch.fnmatchcase(parts[0], pattern[:-1]) if pattern.endswith("/") else
               any(part not in SHIPPED_EXAMPLES and fnmatch.fnmatchcase(part, pattern) for part in parts)
               for pattern in NEVER_SHIPPED if not pattern.endswith("/") or len(parts) > 1 or folder)


def _slashed(relative):
    """A relative path as the server's tar reads it: Windows's separators (and a backslash in a
    name, which a Windows checkout would have made a folder) become '/'."""
    return relative.replace(os.sep, "/").replace("\\", "/")


def _git_files(folder):
    """{relative path: mode} of the files git lists in folder: tracked ones with the mode in git's
    index (0o755 or 0o644), new ones it does not ignore with None. None outside git, or when git
    is missing or refuses to run."""
    listed = {}
    for args in (["--stage"], ["--others", "--exclude-standard"]):
        try:
            result = subprocess.run(["git", "-C", folder, "ls-files", "-z", *args], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if result.returncode:
            return None
        for entry in filter(None, result.stdout.decode("utf-8", "surrogateescape").split("\0")):
            if args == ["--stage"]:
                mode, _, path = entry.partition("\t")
                listed[path] = 0o755 if int(mode.split()[0], 8) & 0o111 else 0o644
            else:
                listed[entry] = None
    return {path: mode for path, mode in listed.items() if os.path.isfile(os.path.join(folder, path))}


def _listing(folder):
    """{'/'-separated path: (path on this laptop, mode from git's index or None)} of the files to
    ship from folder: git's view when git answers, else every file found."""
    found = _git_files(folder)
    if found is None:
        found = {}
        for root, dirs, names in os.walk(folder):
            dirs[:] = [name for name in dirs if not never_shipped(_slashed(os.path.relpath(
                os.path.join(root, name), folder)), folder=True)]
            found.update((os.path.relpath(os.path.join(root, name), folder), None) for name in names)
    listed = {_slashed(path): (path, mode) for path, mode in found.items()}
    return {name: entry for name, entry in listed.items() if not never_shipped(name)}


def files_of(folder):
    """The files to ship from folder, as '/'-separated relative paths."""
    return sorted(_listing(folder))


def _lines(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        return []


def _add_files(archive, folder, prefix, executables=frozenset(), lf_patterns=()):
    """Every file of folder into the archive under prefix: a mode of its own (git's index, else
    0o755 for the executables and 0o644 for the rest), owner 0, LF in files lf_patterns name."""
    for name, (path, indexed) in sorted(_listing(folder).items()):
        full = os.path.join(folder, path)
        entry = tarfile.TarInfo(prefix + name)
        entry.uid = entry.gid = 0
        entry.uname = entry.gname = ""
        entry.mtime = int(os.lstat(full).st_mtime)
        if os.path.islink(full):
            entry.type, entry.linkname, entry.mode = tarfile.SYMTYPE, _slashed(os.readlink(full)), 0o777
            archive.addfile(entry)
            continue
        entry.mode = indexed if indexed is not None else 0o755 if name in executables else 0o644
        with open(full, "rb") as handle:
            if any(fnmatch.fnmatchcase(name if "/" in pattern else name.rsplit("/", 1)[-1], pattern.lstrip("/"))
                   for pattern in lf_patterns):
                content = handle.read().replace(b"\r\n", b"\n")
                entry.size = len(content)
                archive.addfile(entry, io.BytesIO(content))
            else:
                entry.size = os.fstat(handle.fileno()).st_size
                archive.addfile(entry, handle)


def bundle(project_folder=None, incoming=None):
    """A gzipped tar of the stack's files, and the project under INCOMING/<incoming>/ when given.
    Nothing in it depends on the laptop's file system's modes, owners, line ends or separators."""
    executables = set(_lines(os.path.join(REPO_ROOT, EXECUTABLES)))
    # .gitattributes names the files that must keep LF (a Windows checkout without git has CRLF).
    lf_patterns = [line.split()[0] for line in _lines(os.path.join(REPO_ROOT, ".gitattributes"))
                   if "eol=lf" in line.split()[1:]]
    buffer = tempfile.TemporaryFile()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        _add_files(archive, REPO_ROOT, "", executables, lf_patterns)
        if project_folder:
            _add_files(archive, project_folder, f"{INCOMING}/{incoming}/")
    buffer.seek(0)
    return buffer


COPY_FAILED, NO_PYTHON = 95, 94  # the remote shell's exit codes in _ship


def _ship(server, archive, allow_downgrade=False):
    """Unpack the bundle into a staging folder in the stack's folder; once the copy is whole,
    install it from there under the server's operations lock (stack/stack_install.py says how):
    a copy that breaks off, or a stack older than the server's, leaves the server's stack as it was."""
    from .deploy import deployer  # here: deploy imports most of the stack, which a laptop needs only now
    version = stack_version.of_checkout(REPO_ROOT)
    staging = shlex.quote(f"{stack_install.STAGING_PREFIX}{secrets.token_hex(6)}")
    installer = shlex.join(stack_install.command(version, deployer(), allow_downgrade))
    code, _ = ssh.run(server, f"mkdir -p {shlex.quote(server.path)} && cd {shlex.quote(server.path)} && "
                              f"mkdir {staging} && {{ tar -xzf - --no-same-owner -C {staging} || "
                              f"{{ rm -rf {staging}; exit {COPY_FAILED}; }}; }} && "
                              f"{{ command -v python3 >/dev/null || {{ rm -rf {staging}; exit {NO_PYTHON}; }}; }} && "
                              f"cd {staging} && exec {installer}", stdin=archive)
    if code == COPY_FAILED:
        raise StackError(f"Copying the files to the server '{server.name}' failed (tar's message is above; \"No space "
                         "left on device\" means its disk is full). The server's stack is as it was, and the running "
                         "studies were not touched.")
    if code == NO_PYTHON:
        raise StackError(f"The server '{server.name}' has no python3, which installs the stack there. Install it on "
                         "the server (`sudo apt-get install -y python3`) and run this again. The server's stack is as "
                         "it was.")
    if code == 1:  # the installer's refusal, printed above
        raise StackError(f"The stack was not installed on '{server.name}' (the reason is above).")
    if code:
        raise StackError(f"The copy to the server '{server.name}' broke off (exit status {code}). The server's stack "
                         "is as it was: a copy is installed only once it has arrived whole. Run the command again.")


def invoke_on(name, *args):
    """`invoke ARGS` in the stack's folder on the server named; its output streams here. Returns
    its exit code. Interactive (a terminal on the server) when this one is."""
    server = servers.get(name)
    code, _ = ssh.run(server, ssh.invoke_args(server, *args), tty=sys.stdin.isatty() and sys.stdout.isatty())
    return code


def setup(name, allow_downgrade=False):
    """Ship the stack's files to the server (installed as a deploy installs them, which a first
    install passes: no version is recorded there yet) and run setup.sh there, as on any fresh server."""
    server = servers.get(name)
    step(f"Copying the stack to {server.target}:{server.path}")
    _ship(server, bundle(), allow_downgrade)
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


def deploy(name, study=None, project_folder=None, allow_dirty=False, force=False, active_minutes=10, domain=None,
           allow_downgrade=False):
    server = servers.get(name)
    folder = os.path.abspath(project_folder or os.path.join(REPO_ROOT, "otree_project"))
    project.directory(folder, inside_repository=False)
    revision = _revision(folder, allow_dirty)
    ssh.run(server, ssh.in_stack(server, "true"))  # reachable, key accepted, stack there: before any work
    incoming = f"{revision.replace('(not in git)', 'nogit')}-{secrets.token_hex(4)}"
    step(f"Shipping {folder} (git {revision}) and the stack's files to '{name}'")
    _ship(server, bundle(folder, incoming), allow_downgrade)
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
AGAIN = "Nothing was written here; run the command again (the files on the server are untouched)."
# What `invoke export-data` prints for its zip (stack/export_data.py): the laptop checks the copy against it.
ZIP_RECORD = re.compile(r"(\S+\.zip) has sha256 ([0-9a-f]{64})")


def _extract(stream, destination):
    """Unpack a tar stream into destination: regular files and folders only, nothing outside it.
    Returns the files' paths. A stream that ends early or is damaged is an error."""
    os.makedirs(destination, exist_ok=True)
    names = []
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                path = os.path.normpath(member.name)
                if path.startswith("..") or os.path.isabs(path) or not (member.isfile() or member.isdir()):
                    raise StackError(f"The server sent an unexpected entry ({member.name!r}). {AGAIN}")
                member.mode = 0o700 if member.isdir() else 0o600  # participants' data: yours alone
                archive.extract(member, destination, set_attrs=True,
                                **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
                names += [path] if member.isfile() else []
    except (tarfile.TarError, EOFError) as error:
        raise StackError(f"The copy from the server broke off or arrived damaged ({error}). {AGAIN}") from None
    except OSError as error:
        raise StackError(f"Writing the copy to {destination} failed: {error.strerror}. {AGAIN}") from None
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
            raise StackError(f"{file_name} does not match the checksum the server recorded: the copy was damaged or "
                             f"cut short. {AGAIN}")


def _staging(destination):
    """A hidden folder in destination, yours alone, where a copy arrives before it is checked."""
    try:
        os.makedirs(destination, exist_ok=True)
        return tempfile.mkdtemp(prefix=".download-", suffix=".partial", dir=destination)
    except OSError as error:
        raise StackError(f"Cannot write to {destination}: {error.strerror}. Choose a folder you can write to "
                         "with --output, or fix its permissions.") from None


def _fetch(server, folder, staging):
    """The server's folder (in its stack's folder) copied into staging: the copy's exit status, and
    every file against the sha256 the server computes just before sending."""
    quoted = shlex.quote(folder)
    code, listing = ssh.run(server, f"{ssh.enter_stack(server)}; cd {quoted} && "
                                    "exec find . -type f -exec sha256sum --zero -- {} +", capture=True)
    if code:
        raise StackError(f"The server '{server.name}' could not read the files to send (the reason is above). {AGAIN}")
    expected = {os.path.normpath(name): digest for digest, _, name in
                (entry.partition("  ") for entry in listing.split("\0") if entry.strip())}
    received = []
    code, _ = ssh.run(server, f"{ssh.enter_stack(server)}; exec tar -cf - -C {quoted} .",
                      consume=lambda stream: received.extend(_extract(stream, staging)))
    if code:
        raise StackError(f"The copy from '{server.name}' failed (tar's message is above). {AGAIN}")
    if sorted(received) != sorted(expected):
        raise StackError(f"The copy from '{server.name}' did not bring the files the server listed. {AGAIN}")
    _check(staging, expected)


def _publish(staging, destination):
    """Move what staging holds into destination, files before folders (an export's zip before its
    folder), never over an existing one. Returns their paths."""
    entries = sorted(os.listdir(staging), key=lambda entry: (os.path.isdir(os.path.join(staging, entry)), entry))
    taken = [entry for entry in entries if os.path.lexists(os.path.join(destination, entry))]
    if taken:
        raise StackError(f"{os.path.join(destination, taken[0])} already exists and is never overwritten. Move it "
                         "away, then run the command again.")
    for entry in entries:
        os.rename(os.path.join(staging, entry), os.path.join(destination, entry))
    return [os.path.join(destination, entry) for entry in entries]


def _manifest(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        raise StackError(f"{os.path.basename(path)} did not arrive whole. {AGAIN}") from None


def export_data(name, study=None, session=None, app=None, output=None):
    """Export on the server and bring the export to this laptop: checked (the copy's exit status,
    every file's sha256 as the server lists it and as the export's manifest records it, the zip's
    as the export printed it) before it gets its place in the destination; then the server's
    temporary copy is removed."""
    server = servers.get(name)
    scratch = f"exports/.for-laptop-{secrets.token_hex(4)}"
    options = {"study": study, "session": session, "app": app, "output": scratch}
    destination = os.path.abspath(output or os.path.join(DOWNLOADS, name))
    staging = _staging(destination)
    try:
        try:
            code, text = ssh.run(server, ssh.invoke_args(server, *ssh.task_args("export_data", options)),
                                 capture=True)
            print(text, end="")
            if code:
                raise StackError(f"The export on '{name}' failed (the reason is above). Nothing was written here.")
            zips = dict(ZIP_RECORD.findall(text))
            step(f"Copying the export to {destination}")
            _fetch(server, scratch, staging)
        finally:
            ssh.run(server, f"{ssh.enter_stack(server)}; rm -rf {shlex.quote(scratch)}")
        folders = sorted(entry for entry in os.listdir(staging) if os.path.isdir(os.path.join(staging, entry)))
        if not folders or sorted(os.listdir(staging)) != sorted(folders + [folder + ".zip" for folder in folders]):
            raise StackError(f"The export from '{name}' did not arrive as a folder and its zip. {AGAIN}")
        for folder in folders:
            _check(staging, {f"{folder}.zip": zips.get(f"{folder}.zip")})
            manifest = _manifest(os.path.join(staging, folder, "manifest.json"))
            _check(os.path.join(staging, folder), {entry["name"]: entry["sha256"] for entry in manifest["files"]})
        published = _publish(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for folder in (path for path in published if os.path.isdir(path)):
        step(f"Exported to {folder}/ (and its .zip); every file matches its sha256 in manifest.json, and the zip "
             "the one the server recorded")


def download_backup(name, study=None, output=None):
    """A verified backup on the server, brought to this laptop and checked against its manifest
    before it gets its place in the destination."""
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
    staging = _staging(destination)
    try:
        code, _ = ssh.run(server, ssh.invoke_args(server, "backups", *study_args, "--tar", backup_id),
                          consume=lambda stream: _extract(stream, staging))
        if code:
            raise StackError(f"Copying backup {backup_id} from '{name}' failed (the reason is above). {AGAIN}")
        if os.listdir(staging) != [backup_id]:
            raise StackError(f"The copy from '{name}' did not hold backup {backup_id} alone. {AGAIN}")
        manifest = _manifest(os.path.join(staging, backup_id, "manifest.json"))
        _check(os.path.join(staging, backup_id), {manifest["dump"]["file"]: manifest["dump"]["sha256"]})
        (folder,) = _publish(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    step(f"Backup {backup_id} is on this laptop: {folder} (its dump matches the sha256 in manifest.json)")


def prolific(name, action, study=None, room=None, config=None, session=None, output=None):
    """`invoke prolific ACTION --on NAME`: run it on the server, then bring the file it wrote to
    this laptop (downloads/SERVER/ unless --output; never overwritten), checked against the
    sha256 the server computes, and remove the server's copy."""
    from . import prolific as prolific_module

    server = servers.get(name)
    options = {"action": action, "study": study, "room": room, "config": config, "session": session}
    if action not in prolific_module.ACTIONS or action == "link":  # nothing to bring back
        if invoke_on(name, *ssh.task_args("prolific", options)):
            raise StackError(f"`invoke prolific {action}` on '{name}' failed (the reason is above).")
        return
    destination = prolific_module.output_path(output, os.path.join(DOWNLOADS, name), action, session)
    scratch = f"exports/.for-laptop-{secrets.token_hex(4)}"
    staging = _staging(os.path.dirname(destination))
    try:
        try:
            code, _ = ssh.run(server, ssh.invoke_args(server, *ssh.task_args(
                "prolific", {**options, "output": f"{scratch}/{os.path.basename(destination)}"})))
            if code:
                raise StackError(f"`invoke prolific {action}` on '{name}' failed (the reason is above); nothing was "
                                 "written here.")
            _fetch(server, scratch, staging)
        finally:
            ssh.run(server, f"{ssh.enter_stack(server)}; rm -rf {shlex.quote(scratch)}")
        with open(os.path.join(staging, os.path.basename(destination)), "rb") as handle:
            text = handle.read().decode("utf-8")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    prolific_module.write_new(destination, text)
    step(f"Brought to this laptop: {destination} (the server kept no copy)")
