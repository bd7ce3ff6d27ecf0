"""The causes for an alert besides participants' errors: a certificate near its end, a full disk,
a failing backup, an oTree that stays down. Each check returns alerts as dicts: cause, subject, text (and fields for webhooks)."""
import datetime
import os
import ssl
import subprocess

CERTIFICATE_DAYS = 14
DISK_PERCENT = 90
UNHEALTHY_SECONDS = 180


def certificate_end(path):
    """The certificate's end as a Unix time, or None when there is none to read."""
    result = subprocess.run(["openssl", "x509", "-enddate", "-noout", "-in", path], capture_output=True, text=True)
    if result.returncode or not result.stdout.startswith("notAfter="):
        return None
    return ssl.cert_time_to_seconds(result.stdout.strip()[len("notAfter="):])


def certificates(certs_dir, studies, now):
    """Real certificates (yours or Let's Encrypt's) ending within 14 days. Self-signed ones are
    left out: browsers warn about them anyway, and nginx makes a new one for a year."""
    alerts = []
    for study in studies:
        folder = os.path.join(certs_dir, study)
        if os.path.exists(os.path.join(folder, "self-signed-for")):
            continue
        end = certificate_end(os.path.join(folder, "fullchain.pem"))
        if end is None:
            continue
        days = (end - now) / 86400
        if days < CERTIFICATE_DAYS:
            date = datetime.datetime.fromtimestamp(end, datetime.timezone.utc).strftime("%Y-%m-%d")
            alerts.append({"cause": f"certificate:{study}", "study": study, "days_left": int(days),
                           "subject": f"The certificate of study {study} ends in {int(days)} days",
                           "text": f"Study {study}'s HTTPS certificate is valid until {date}. Let's Encrypt renews 30 "
                                   "days ahead, so renewal is failing: `invoke status` shows its message. For your "
                                   "own certificate, renew it, point TLS_CERT_FILE and TLS_KEY_FILE at the new "
                                   "files and run `invoke up`."})
    return alerts


def disk(path):
    """The disk holding Docker's volumes (the databases), past 90% used."""
    stats = os.statvfs(path)
    if not stats.f_blocks:
        return []
    used = 100 * (1 - stats.f_bavail / stats.f_blocks)
    if used < DISK_PERCENT:
        return []
    free = stats.f_bavail * stats.f_frsize / 1e9
    return [{"cause": "disk", "used_percent": round(used, 1),
             "subject": f"The disk is {used:.0f}% full",
             "text": f"The disk that holds the databases has {free:.1f} GB left ({used:.0f}% used). When it is full, "
                     "PostgreSQL stops taking participants' answers. Delete old backups or exports (`invoke "
                     "backups` lists them), `docker image prune` old images, or give the server a bigger disk."}]


def study_health(reports, now):
    """Alerts from the studies' health reports (backup/otree_backup/report.py): a failed backup,
    and an oTree that has not answered for UNHEALTHY_SECONDS (a restart's minute is no alert)."""
    alerts = []
    for report in reports:
        study = report["study"]
        if report.get("backup_problem"):
            alerts.append({"cause": f"backup:{study}", "study": study, "problem": report["backup_problem"],
                           "subject": f"The backups of study {study} are failing",
                           "text": f"Study {study}: {report['backup_problem']}. `invoke backups --study {study}` lists "
                                   f"them, `invoke logs --study {study} --service backup` says why; take one by hand "
                                   f"with `invoke backup --study {study}` once it is fixed."})
        since = report.get("otree_failing_since")
        if since and now - since >= UNHEALTHY_SECONDS:
            minutes = int((now - since) // 60)
            alerts.append({"cause": f"unhealthy:{study}", "study": study, "problem": report["otree_problem"],
                           "subject": f"oTree of study {study} has not answered for {minutes} minutes",
                           "text": f"Study {study}: {report['otree_problem']}, for {minutes} minutes; participants see "
                                   f"the maintenance page. `invoke status --study {study}` shows the services, "
                                   f"`invoke logs --study {study} --service otree` why; `invoke up --study {study}` "
                                   "starts it again."})
    return alerts
