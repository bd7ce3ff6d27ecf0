"""python3 -m otree_backup COMMAND: the backup service's commands (see `--help`)."""
import argparse
import os
import shutil
import signal
import sys
import time

from . import BackupError, database, health, offsite, report, restore, schedule, store, take

# A line the host reads to learn which backup a command made or used.
ID_LINE = "BACKUP_ID="
# `take`'s exit code when the backup is good but its off-site copy failed.
OFFSITE_FAILED = 3


def _keep():
    return tuple(int(os.environ.get(f"BACKUP_KEEP_{kind}", default))
                 for kind, default in (("DAILY", 7), ("WEEKLY", 4), ("MONTHLY", 6)))


def _age(moment):
    seconds = int((store.now() - store.parse_time(moment)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def _size(count):
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024


def cmd_take(args):
    manifest = take.take(args.reason)
    print(f"Backup {manifest['id']} is verified: {manifest['verification']['detail']}.")
    print(f"  {os.environ.get('BACKUP_DIR_ON_HOST', store.ROOT)}/{manifest['id']}/ "
          f"({_size(manifest['dump']['bytes'])}; page times {manifest['page_times']})")
    if manifest["offsite"]["status"] == "copied":
        print(f"  copied to the restic repository as snapshot {manifest['offsite']['snapshot']}")
    print(ID_LINE + manifest["id"], flush=True)
    if manifest["offsite"]["status"] == "failed":
        print(f"error: the off-site copy failed: {manifest['offsite']['detail']}", file=sys.stderr)
        sys.exit(OFFSITE_FAILED)


def cmd_list(args):
    manifests = store.all_backups()
    if not manifests:
        print("No backups yet. Take one with: invoke backup")
    else:
        print(f"{'ID':<27} {'taken':<12} {'reason':<16} {'size':>9}  {'verified':<9} off-site")
        for manifest in manifests:
            verification = manifest.get("verification", {}).get("status", "pending")
            offsite_state = manifest.get("offsite", {})
            print(f"{manifest['id']:<27} {_age(manifest['created_at']):<12} {manifest['reason']:<16} "
                  f"{_size(manifest['dump']['bytes']):>9}  {'yes' if verification == 'passed' else verification.upper():<9} "
                  f"{offsite_state.get('snapshot') or offsite_state.get('status', '-')}")
        failed = [m for m in manifests if m.get("verification", {}).get("status") == "failed"]
        for manifest in failed:
            print(f"FAILED {manifest['id']}: {manifest['verification']['detail']}")
    kept = restore.replaced()
    if kept:
        print(f"\nKept until the next restore or resetdb: {_kept(kept)}")
    if args.offsite:
        if not offsite.configured():
            raise BackupError("No restic repository is set: add RESTIC_REPOSITORY and RESTIC_PASSWORD to .env")
        print(f"\nSnapshots in {offsite.shown_repository()}:")
        for item in offsite.snapshots():
            tags = dict(tag.split("=", 1) for tag in item.get("tags", []) if "=" in tag)
            print(f"  {item['short_id']}  {item['time'][:19]}  {tags.get('id', '?'):<27} {tags.get('reason', '')}")


def _kept(note):
    """The database the last restore or resetdb replaced, and how to bring it back."""
    return (f"the database as it was before the {note['by']} of {note['at'][:16].replace('T', ' ')} UTC, untouched, "
            f"as database {note['database']}. Backup {note['backup']} holds the same data, verified; to bring it "
            f"back: invoke restore {note['backup']}")


def cmd_import(args):
    print(ID_LINE + restore.import_archive(sys.stdin.buffer))


def cmd_fetch_offsite(args):
    if not offsite.configured():
        raise BackupError("No restic repository is set: add RESTIC_REPOSITORY and RESTIC_PASSWORD to .env")
    print(ID_LINE + offsite.fetch(args.snapshot))


def cmd_prove(args):
    backup_id = store.latest_good()["id"] if args.id == "latest" else args.id
    manifest = restore.prove(backup_id)
    print(f"Backup {backup_id} ({manifest['created_at']}) is verified: {manifest['verification']['detail']}.")
    print(ID_LINE + backup_id)


def cmd_put_live(args):
    manifest = restore.put_live(args.id, args.backup_of_live)
    print(f"Restored {args.id}: {sum(manifest['tables'].values())} rows in {len(manifest['tables'])} tables; "
          "the live row counts match the backup.")


def cmd_set_aside(args):
    restore.set_aside(args.backup_of_live)
    print(f"The database is empty; the one it replaces is kept as database {database.REPLACED}.")


def cmd_health(args):
    status = store.read_status()
    problem = health.problem(status, schedule.parse(os.environ.get("BACKUP_SCHEDULE", "daily 03:00")), store.now())
    success = status.get("last_success")
    if not args.summary:  # the healthcheck, every minute: the study's health for the monitor
        try:
            report.write(os.environ.get("STACK_NAME", "study"), problem, report.otree_problem(), time.time())
        except OSError as error:  # the monitor's volume is no reason to call the backups unhealthy
            print(f"could not report to the monitor: {error}")
    if args.summary:
        print(f"last good backup: {success['id']} ({_age(success['at'])})" if success else "last good backup: none yet")
        print(f"next scheduled:   {status.get('next_run') or 'none (BACKUP_SCHEDULE=off)'}")
        print(f"off-site copy:    {'restic, ' + offsite.shown_repository() if offsite.configured() else 'off'}")
        kept = restore.replaced()
        if kept:
            print(f"kept:             {_kept(kept)}")
    if problem:
        print(f"PROBLEM: {problem}")
        sys.exit(1)


def cmd_schedule(args):
    """The service's main loop: back up when due, then rotate. A stop request waits for a running
    backup to finish, so a stop never leaves half a backup or an unrotated folder."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))  # PID 1 ignores SIGTERM unless handled
    spec = schedule.parse(os.environ.get("BACKUP_SCHEDULE", "daily 03:00"))
    store.check_writable()
    with store.exclusive():  # a backup cut short by a crash leaves its folder behind
        for name in os.listdir(store.ROOT):
            if name.startswith(store.INCOMPLETE_PREFIX):
                shutil.rmtree(os.path.join(store.ROOT, name), ignore_errors=True)
    store.update_status(scheduler_started=store.now().isoformat())
    previous = None
    while not stopping:
        due = schedule.next_run(spec, store.now(), previous)
        store.update_status(next_run=due.isoformat() if due else None)
        print("BACKUP_SCHEDULE=off: backups are taken only by `invoke backup`." if due is None
              else f"Next backup at {due.isoformat()}")
        while not stopping and (due is None or store.now() < due):
            time.sleep(1)
        if stopping:
            break
        previous = due
        try:
            manifest = take.take("scheduled")
            print(f"Backup {manifest['id']} verified: {manifest['verification']['detail']}")
            removed = take.rotate(*_keep())
            if removed:
                print(f"Rotation removed {len(removed)} older backup(s): {', '.join(removed)}")
        except BackupError as error:
            print(f"BACKUP FAILED: {error}", file=sys.stderr)


def main(argv=None):
    os.umask(0o077)  # dumps hold participants' data
    parser = argparse.ArgumentParser(prog="otree_backup")
    commands = parser.add_subparsers(dest="command", required=True)
    taker = commands.add_parser("take", help="take, verify and copy off-site one backup")
    taker.add_argument("--reason", default="manual")
    taker.set_defaults(run=cmd_take)
    lister = commands.add_parser("list", help="list backups")
    lister.add_argument("--offsite", action="store_true")
    lister.set_defaults(run=cmd_list)
    commands.add_parser("import", help="read a backup as tar from stdin").set_defaults(run=cmd_import)
    fetcher = commands.add_parser("fetch-offsite", help="copy a restic snapshot into the backup folder")
    fetcher.add_argument("snapshot")
    fetcher.set_defaults(run=cmd_fetch_offsite)
    prover = commands.add_parser("prove", help="verify a backup (ID or latest) before a restore")
    prover.add_argument("id")
    prover.set_defaults(run=cmd_prove)
    live = commands.add_parser("put-live", help="replace the live database with a backup (oTree stopped)")
    live.add_argument("id")
    live.add_argument("--backup-of-live", required=True, help="the backup just taken of the database it replaces")
    live.set_defaults(run=cmd_put_live)
    aside = commands.add_parser("set-aside", help="an empty database in place of the live one, which is kept "
                                                  "(oTree stopped)")
    aside.add_argument("--backup-of-live", required=True, help="the backup just taken of the live database")
    aside.set_defaults(run=cmd_set_aside)
    health = commands.add_parser("health", help="exit 1 when backups are failing or overdue")
    health.add_argument("--summary", action="store_true")
    health.set_defaults(run=cmd_health)
    commands.add_parser("schedule", help="run backups on BACKUP_SCHEDULE").set_defaults(run=cmd_schedule)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except BackupError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
