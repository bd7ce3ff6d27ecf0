"""`python3 -m otree_monitor run`: the service's loop. `python3 -m otree_monitor report`: the
figures as JSON, for `invoke status`."""
import datetime
import json
import os
import sys
import time

from . import alerts, checks, traffic

LOG_DIR = "/var/log/otree-stack"  # nginx's request log, one file per hour (read-only here)
STATE = "/var/lib/otree-monitor/state.json"
EDGE = "/etc/nginx/edge"  # the proxy's rendered configuration: which studies there are
CERTS = "/etc/nginx/certs"
HEALTH = "/var/lib/otree-health"  # each study's backup service reports there (backup/otree_backup/report.py)
SETTINGS = ("ALERT_EMAIL", "ALERT_WEBHOOK_URL", "SMTP_HOST", "SMTP_PORT", "SMTP_USER", "SMTP_PASSWORD", "SMTP_FROM",
            "SMTP_TLS", "MONITOR_INTERVAL", "STACK_NAME")
# Errors older than this when first read (the monitor was stopped) are counted, not mailed.
FRESH_SECONDS = 600
SLOW_CHECK_SECONDS = 600  # certificates and the disk change slowly
# A study that stopped reporting was stopped (`invoke down`): its last report no longer counts.
REPORT_FRESH_SECONDS = 300


def log(message):
    print(f"monitor: {message}", flush=True)


def load_state():
    try:
        with open(STATE, encoding="utf-8") as handle:
            return json.load(handle)
    except (FileNotFoundError, ValueError):
        return {"files": {}, "studies": {}, "sent": {}}


def save_state(state):
    partial = STATE + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    os.replace(partial, STATE)


def new_lines(offsets):
    """Complete lines added to the request log files since the offsets; updates them."""
    names = sorted(name for name in os.listdir(LOG_DIR) if name.startswith("requests-") and name.endswith(".log"))
    for name in list(offsets):
        if name not in names:
            del offsets[name]  # nginx's entrypoint deletes files after two hours
    for name in names:
        with open(os.path.join(LOG_DIR, name), "rb") as handle:
            start = offsets.get(name, 0)
            handle.seek(0, os.SEEK_END)
            if handle.tell() < start:
                start = 0
            handle.seek(start)
            data = handle.read()
        complete = data[:data.rfind(b"\n") + 1]
        offsets[name] = start + len(complete)
        yield from complete.decode("utf-8", "replace").splitlines()


def error_alerts(errors):
    """One alert per study whose participants hit server errors since the last check. It names the
    page, not the participant: a participant's code in a mail is a link that logs in as them."""
    found = []
    for study, records in sorted(errors.items()):
        newest = max(records, key=lambda record: record["t"])
        page = traffic.page_name(newest["uri"])
        moment = datetime.datetime.fromtimestamp(newest["t"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        found.append({"cause": f"server-errors:{study}", "study": study, "errors": len(records),
                      "page": page, "status": newest["status"], "time": moment,
                      "subject": f"Participants of study {study} hit server errors",
                      "text": f"{len(records)} request(s) of study {study} ended in a server error (HTTP "
                              f"{newest['status']}); the newest at {moment} on {page}. "
                              f"`invoke status --study {study}` shows the exception, and "
                              f"`invoke logs --study {study} --service otree` the traceback."})
    return found


def health_reports(studies, now):
    """The fresh health reports of the studies the proxy serves."""
    reports = []
    for study in studies:
        try:
            with open(os.path.join(HEALTH, f"{study}.json"), encoding="utf-8") as handle:
                found = json.load(handle)
        except (OSError, ValueError):
            continue
        if now - found.get("t", 0) <= REPORT_FRESH_SECONDS:
            reports.append(found)
    return reports


def check(config, state, now, slow_due):
    errors = {}
    for line in new_lines(state["files"]):
        record = traffic.parse(line)
        if record and traffic.add(state["studies"], record) and float(record["t"]) >= now - FRESH_SECONDS:
            errors.setdefault(record["study"], []).append(record)
    traffic.prune(state["studies"], now)
    served = os.path.join(EDGE, "studies")
    studies = sorted(os.listdir(served)) if os.path.isdir(served) else []
    found = error_alerts(errors) + checks.study_health(health_reports(studies, now), now)
    if slow_due:
        found += checks.certificates(CERTS, studies, now) + checks.disk(os.path.dirname(STATE))
    alerts.raise_alerts(config, config["STACK_NAME"], found, state["sent"], now, log)
    state["updated"] = now


def run():
    config = {key: os.environ.get(key, "") for key in SETTINGS}
    interval = float(config["MONITOR_INTERVAL"] or 30)
    ways = [way for way, key in (("mail to " + config["ALERT_EMAIL"], "ALERT_EMAIL"),
                                 ("a webhook", "ALERT_WEBHOOK_URL")) if config[key]]
    log(f"checking every {interval:g} s; alerts by {' and '.join(ways) if ways else 'nothing (no ALERT_EMAIL or ALERT_WEBHOOK_URL)'}")
    state = load_state()
    state["interval"] = interval
    last_slow = 0
    while True:
        now = time.time()
        slow_due = now - last_slow >= SLOW_CHECK_SECONDS
        try:
            check(config, state, now, slow_due)
            save_state(state)
            last_slow = now if slow_due else last_slow
        except OSError as error:  # e.g. nginx has not made the log folder yet: try again
            log(f"check failed: {error}")
        time.sleep(interval)


def report():
    state = load_state()
    now = time.time()
    print(json.dumps({"updated": state.get("updated"), "interval": state.get("interval"), "now": now,
                      "studies": traffic.report(state["studies"], now)}))


if __name__ == "__main__":
    {"run": run, "report": report}[sys.argv[1] if len(sys.argv) > 1 else "run"]()
