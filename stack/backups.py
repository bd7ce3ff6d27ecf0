"""`invoke backup` and `invoke backups`, and the backup service's commands for the other tasks.
The work happens in the backup container (backup/otree_backup); this side passes requests in
and reads the answers."""
import contextlib
import os
import subprocess
import sys

from . import folders, lock, maintenance, names, pagetimes
from .console import StackError, info, step, warn

# The backup container's user (backup/Dockerfile). Dumps hold participants' data, so the folder
# belongs to it alone (and root).
BACKUP_UID = 10002
ID_LINE = "BACKUP_ID="


# `otree_backup take`'s exit code when the backup is good but its off-site copy failed.
OFFSITE_FAILED = 3


class Backup:
    def __init__(self, backup_id, host_dir, offsite_failed=False):
        self.id = backup_id
        self.path = os.path.join(host_dir, backup_id)
        self.offsite_failed = offsite_failed


def host_dir(ctx):
    return ctx.study.backup_dir


def prepare(ctx):
    """Give BACKUP_DIR (and a local restic repository's folder) to the backup service's user, as
    `invoke up` and `invoke config --set` both do before they start it: made (private, marked as
    the stack's) when missing; an existing one only when the stack may take it over (stack/folders.py);
    the owner changed through Docker, which can do that for a non-root operator too."""
    mounts = {"BACKUP_DIR": "/backups", "RESTIC_REPOSITORY": "/restic-local"}
    for key, folder, instead in folders.of_study(ctx.study):
        problem = folders.problem(key, folder, BACKUP_UID, instead)
        if problem:
            raise StackError(f"{problem} Nothing was started.")
        folders.create(folder, f"Made by the oTree stack for {key} of the study '{ctx.study.name}'; its backup "
                               f"service (uid {BACKUP_UID}) owns it.")
        if os.stat(folder).st_uid != BACKUP_UID:
            # Private first, while this user may still change the mode: dumps hold participants' data.
            if os.stat(folder).st_uid == os.getuid():
                os.chmod(folder, 0o700)
            # The service drops every capability (docker-compose.yml); this one-off root needs
            # CAP_CHOWN back to give away a folder it does not own, and nothing else.
            ctx.compose.run("run", "--rm", "--no-deps", "--user", "root", "--cap-add", "CHOWN",
                            "--entrypoint", "chown", "backup",
                            f"{BACKUP_UID}:{BACKUP_UID}", mounts[key])


def require_running(ctx, *services):
    stopped = [service for service in services if not ctx.compose.running(service)]
    if stopped:
        raise StackError(f"{' and '.join(stopped)} of the study '{ctx.study.name}' not running, so nothing was done. "
                         f"Start it with: invoke up --study {ctx.study.name}")


def service(ctx, *args, stdin=None, echo=True):
    """Run `python3 -m otree_backup ARGS` in the backup container. Its messages are shown as they
    come unless echo is False. Returns (exit code, the BACKUP_ID it reported or None, lines)."""
    command = ctx.compose.command("exec", "-T", "backup", "python3", "-m", "otree_backup", *args)
    process = subprocess.Popen(command, env=ctx.compose.environment, stdin=stdin, stdout=subprocess.PIPE, text=True)
    backup_id, lines = None, []
    for line in process.stdout:
        line = line.rstrip("\n")
        if line.startswith(ID_LINE):
            backup_id = line[len(ID_LINE):]
            continue
        lines.append(line)
        if echo:
            info(line)
    return process.wait(), backup_id, lines


def take(ctx, reason="manual"):
    """A verified backup of the live database, or StackError. Returns a Backup. A failed off-site
    copy is only warned of here: the local backup is what a following step relies on."""
    require_running(ctx, "postgres", "backup")
    step(f"Backing up the database ({reason})")
    code, backup_id, _ = service(ctx, "take", "--reason", reason)
    if code == OFFSITE_FAILED and backup_id:
        warn(f"Backup {backup_id} is verified and kept in BACKUP_DIR, but its off-site copy failed (see above).")
        return Backup(backup_id, host_dir(ctx), offsite_failed=True)
    if code or not backup_id:
        raise StackError("No verified backup was made; the reason is above. Nothing else was changed.")
    return Backup(backup_id, host_dir(ctx))


@contextlib.contextmanager
def stopped_and_backed_up(ctx, reason):
    """Before a task replaces or deletes the data under oTree: the maintenance page up, oTree's
    buffered page times saved, oTree stopped, and only then the verified backup, so that it holds
    every answer a participant saw acknowledged. Yields that Backup (the way back); the maintenance
    page is then as it was before. When no backup can be made, oTree starts again and nothing else
    is changed."""
    with maintenance.page_up(ctx.study):
        was_running = ctx.compose.running("otree")
        pagetimes.flush(ctx.compose)
        step("Stopping oTree (participants see the maintenance page)")
        ctx.compose.run("stop", "otree")
        try:
            backup = take(ctx, reason)
        except StackError:
            if was_running:
                step("Starting oTree again")
                ctx.compose.start("otree")
            raise
        yield backup


def run_backup(ctx):
    with lock.held(ctx.server, f"backup of {ctx.study.name}"):
        backup = take(ctx)
    info(f"Restore it with: invoke restore {backup.id}")
    if backup.offsite_failed:
        raise StackError("The off-site copy failed. Check RESTIC_REPOSITORY, RESTIC_PASSWORD and the network, "
                         "then run `invoke backup` again.")


def run_list(ctx, offsite=False):
    require_running(ctx, "backup")
    step(f"Backups in {host_dir(ctx)}")
    code, _, _ = service(ctx, "list", *(["--offsite"] if offsite else []))
    if code:
        raise StackError("Listing the backups failed; the reason is above.")


def stream(ctx, backup_id):
    """A backup's folder as a tar on standard output: what `invoke backup --download` reads over SSH."""
    names.check_backup_id(backup_id)
    require_running(ctx, "backup")
    sys.stdout.flush()
    result = subprocess.run(ctx.compose.command("exec", "-T", "backup", "tar", "-cf", "-", "-C", "/backups", backup_id),
                            env=ctx.compose.environment, stdout=sys.stdout.buffer)
    if result.returncode:
        raise StackError(f"There is no backup {backup_id} to send (`invoke backups` lists them).")


def status_lines(ctx):
    """For `invoke status`: the last good backup, the next one, and any failure."""
    code, _, lines = service(ctx, "health", "--summary", echo=False)
    if code:
        warn("Backups need attention: " + (lines[-1] if lines else "the backup service does not answer"))
    return lines
