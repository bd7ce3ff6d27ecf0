"""`invoke export-data`: every export the oTree admin offers, in a timestamped folder and a zip.

The export runs in its own process in the oTree container (otree_server/export_data.py), never
through the server, so it is safe while participants play. It sends back one zip; this module
checks it against its manifest and only then gives the folder and the zip their final names, so
an interrupted export never looks complete."""
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import zipfile

from . import context, pagetimes
from .console import StackError, info, step
from .envfile import REPO_ROOT

DEFAULT_OUTPUT = os.path.join(REPO_ROOT, "exports")
# Sent to the container's Python on stdin (as stack/pagetimes.py does), so a container built
# before this script existed can export too.
SCRIPT = os.path.join(REPO_ROOT, "otree_server", "export_data.py")
MANIFEST = "manifest.json"
USER_ERROR = 2  # the container script's exit code for a mistake the user can fix


def run(study=None, session=None, app=None, output=None):
    ctx = context.load(study, purpose="exports")
    output = os.path.abspath(os.path.expanduser(output or os.path.join(DEFAULT_OUTPUT, ctx.study.name)))
    if not ctx.compose.running("otree"):
        raise StackError(f"The study '{ctx.study.name}' is not running, so there is nothing to export from. "
                         f"Start it with `invoke up --study {ctx.study.name}`, then run this again.")
    staging = _staging_folder(output)  # before the export, so a bad --output fails at once
    try:
        try:
            pagetimes.flush(ctx.compose)  # the server holds recent page times in memory
        except StackError:
            raise StackError("oTree did not save the page times it holds in memory, so an export now "
                             "would miss them; nothing was exported. Check `invoke logs otree`, then "
                             "try again.") from None
        step("Exporting the data in a separate process in the oTree container")
        data = _export_in_container(ctx.compose, session, app)
        manifest = _unpack(data, staging)
        folder = _publish(output, staging, data, manifest["exported_at"])
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _summary(folder, manifest, hashlib.sha256(data).hexdigest())
    return folder


def _staging_folder(output):
    """A hidden folder next to where the export will go (so the final rename stays on one disk),
    readable only by this user: exports hold participants' data."""
    if os.path.exists(output) and not os.path.isdir(output):
        raise StackError(f"--output {output} is a file, not a folder. Name a folder (it is created if "
                         "missing), or leave --output out to use exports/ in this repository.")
    try:
        os.makedirs(output, exist_ok=True)
        return tempfile.mkdtemp(prefix=".export-", suffix=".partial", dir=output)
    except OSError as error:
        raise StackError(f"Cannot write to the output folder {output}: {error.strerror}. Choose a folder "
                         "you can write to with --output DIR, or fix its permissions.") from None


def _export_in_container(compose, session, app):
    args = (["--session", session] if session else []) + (["--app", app] if app else [])
    # Binary stdout (the zip), so not Compose.run, which reads text.
    with open(SCRIPT, "rb") as script:
        result = subprocess.run(compose.command("exec", "-T", "otree", "python", "-", *args), stdin=script,
                                env=compose.environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    message = result.stderr.decode("utf-8", "replace").strip()
    if result.returncode == USER_ERROR:
        raise StackError(f"{message.splitlines()[-1] if message else 'The export refused its options.'} "
                         "Nothing was exported.")
    if result.returncode:
        tail = "\n".join(message.splitlines()[-20:])
        raise StackError(f"The export failed in the oTree container (exit {result.returncode}); nothing was "
                         f"written. Its last messages:\n{tail}\nFix what they say (a custom_export function "
                         "of your project, for instance), then run `invoke export-data` again.")
    return result.stdout


def _unpack(data, staging):
    """Write the zip's files into staging and check each against the manifest's sha256."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        manifest = json.loads(archive.read(MANIFEST))
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise StackError(f"The oTree container sent no readable export ({error}); nothing was written. Run "
                         "`invoke export-data` again; if it keeps failing, see `invoke logs otree`.") from None
    listed = {entry["name"]: entry["sha256"] for entry in manifest["files"]}
    if sorted(archive.namelist()) != sorted([*listed, MANIFEST]):
        raise StackError("The export's files do not match its manifest; nothing was written. Run it again.")
    for name in archive.namelist():
        if os.path.basename(name) != name or name.startswith("."):
            raise StackError(f"The export holds an unexpected file name {name!r}; nothing was written.")
        content = archive.read(name)
        if name != MANIFEST and hashlib.sha256(content).hexdigest() != listed[name]:
            raise StackError(f"{name} does not match its checksum in the manifest; nothing was written. "
                             "Run `invoke export-data` again.")
        with open(os.path.join(staging, name), "wb") as handle:
            handle.write(content)
    return manifest


def folder_name(exported_at):
    """'2026-05-04T10:11:12Z' -> '2026-05-04T101112Z': sorts by time, no colons (Windows, zip tools)."""
    date, time = exported_at.rstrip("Z").split("T")
    return f"{date}T{time.replace(':', '')}Z"


def _publish(output, staging, data, exported_at):
    """The zip, then the folder: each gets its final name only when it is complete."""
    base = folder_name(exported_at)
    name, number = base, 1
    while os.path.exists(os.path.join(output, name)) or os.path.exists(os.path.join(output, name + ".zip")):
        number += 1
        name = f"{base}-{number}"
    handle, partial_zip = tempfile.mkstemp(prefix=".export-", suffix=".zip.partial", dir=output)
    try:
        with os.fdopen(handle, "wb") as archive:
            archive.write(data)
            archive.flush()
            os.fsync(archive.fileno())
        os.rename(partial_zip, os.path.join(output, name + ".zip"))
    except BaseException:
        os.unlink(partial_zip)
        raise
    folder = os.path.join(output, name)
    os.rename(staging, folder)
    return folder


def _summary(folder, manifest, zip_sha256):
    shown = os.path.relpath(folder) if folder.startswith(os.getcwd() + os.sep) else folder
    step(f"Exported to {shown}/ and {shown}.zip")
    # The zip's own checksum, recorded as it is written: `export-data --on` checks its copy against it.
    info(f"{os.path.basename(folder)}.zip has sha256 {zip_sha256}")
    info(f"{len(manifest['sessions'])} session(s), {manifest['participants']} participant(s); "
         f"{MANIFEST} lists them, the options and each file's sha256:")
    for entry in manifest["files"]:
        info(f"  {entry['name']:<44} {entry['what']}")
