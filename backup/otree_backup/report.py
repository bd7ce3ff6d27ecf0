"""The study's health for the monitor service (monitor/), which has no Docker socket and so cannot
ask Docker: the backup service's healthcheck (every minute) writes whether the last backup failed
and whether oTree answers into a volume the monitor reads, one file per study."""
import json
import os
import urllib.request

FOLDER = "/health"
# oTree's own healthcheck asks the same page (otree_server/healthcheck.py); it touches the database.
OTREE_PAGE = "http://otree:8000/login"


def otree_problem():
    try:
        urllib.request.urlopen(OTREE_PAGE, timeout=5)  # within the healthcheck's 10 s
    except Exception as error:  # any failure: say what it was
        return f"oTree does not answer ({error})"
    return None


def write(study, backup_problem, otree, now):
    """Record this check; `otree_failing_since` carries over while oTree keeps failing, so the
    monitor can tell a blip from a server that stays down."""
    path = os.path.join(FOLDER, f"{study}.json")
    try:
        with open(path, encoding="utf-8") as handle:
            previous = json.load(handle)
    except (OSError, ValueError):
        previous = {}
    since = (previous.get("otree_failing_since") or now) if otree else None
    report = {"t": now, "study": study, "backup_problem": backup_problem, "otree_problem": otree,
              "otree_failing_since": since}
    partial = os.path.join(FOLDER, f".{study}.partial")
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(report, handle)
    os.chmod(partial, 0o644)  # the service's umask keeps its backups private; this is for the monitor
    os.replace(partial, path)
