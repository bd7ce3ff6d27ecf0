"""Pure logic of the monitor and of `invoke status`'s load lines: nginx's request records summed
per minute, the windows and percentiles, one alert per cause per hour, CPU shares, the newest
exception in oTree's log, the warnings, and the alert settings' checks."""
import http.server
import json
import random
import string
import threading

import pytest

from backup.otree_backup import report
from monitor.otree_monitor import __main__ as monitor_main
from monitor.otree_monitor import alerts, checks, traffic
from stack import load, validate

pytestmark = pytest.mark.unit
NOW = 1_800_000_000.0  # a minute boundary


def record(t, uri="/p/abcd1234/app/Page/1", status=200, upstream_status=None, upstream_time="0.050", study="s"):
    return {"t": t, "study": study, "uri": uri, "status": status,
            "upstream_status": str(status) if upstream_status is None else upstream_status,
            "upstream_time": upstream_time}


def summed(*records):
    studies = {}
    errors = [traffic.add(studies, item) for item in records]
    return studies, errors


def test_participant_pages_are_counted_and_timed_but_not_websockets_or_admin_pages():
    studies, _ = summed(record(NOW - 30), record(NOW - 20, uri="/InitializeParticipant/zzzz9999"),
                        record(NOW - 10, uri="/live", status=101, upstream_time="300.0"),
                        record(NOW - 5, uri="/SessionMonitor/abc", upstream_time="9.0"),
                        record(NOW - 4, uri="/room/prolific", upstream_time="0.010, 0.020"))
    figures = traffic.window(studies["s"], NOW, 5)
    assert figures["requests_per_minute"] == pytest.approx(3 / 5)
    assert figures["participants"] == 2
    assert figures["errors"] == 0
    assert figures["p95"] == pytest.approx(0.05, rel=0.1)


def test_percentiles_are_within_ten_percent():
    times = [0.010 * (index + 1) for index in range(100)]  # 10 ms .. 1 s
    studies, _ = summed(*(record(NOW - 60, upstream_time=f"{value:.3f}") for value in times))
    figures = traffic.window(studies["s"], NOW, 5)
    assert figures["p50"] == pytest.approx(0.5, rel=0.1)
    assert figures["p95"] == pytest.approx(0.95, rel=0.1)


def test_only_errors_oTree_answered_count_not_the_maintenance_page():
    studies, errors = summed(record(NOW - 50, status=500, uri="/p/abcd1234/crash/Crash/2"),
                             record(NOW - 40, status=503, upstream_status="502"),  # oTree stopped: maintenance page
                             record(NOW - 30, status=503, upstream_status="-"))  # `invoke maintenance on`
    assert errors == [True, False, False]
    assert studies["s"]["last_error"] == {"t": NOW - 50, "uri": "/p/*/crash/Crash/2", "status": 500}


def test_windows_and_pruning_keep_only_the_last_hour():
    studies, _ = summed(record(NOW - 30 * 60, status=500), record(NOW - 61 * 60), record(NOW - 3 * 3600))
    assert traffic.window(studies["s"], NOW, 5)["errors"] == 0
    assert traffic.window(studies["s"], NOW, 60)["errors"] == 1
    traffic.prune(studies, NOW)
    assert len(studies["s"]["minutes"]) == 2
    report = traffic.report(studies, NOW)["s"]
    assert report["last_60"]["requests_per_minute"] == pytest.approx(1 / 60)


def test_a_line_that_is_not_a_record_is_skipped():
    assert traffic.parse("not json") is None
    assert traffic.parse(json.dumps({"t": 1})) is None
    assert traffic.parse(json.dumps(record(NOW)))["study"] == "s"


def test_one_alert_per_cause_per_hour_and_a_failed_delivery_is_retried_sooner():
    sent = {}
    assert alerts.due(sent, "server-errors:s", NOW)
    sent["server-errors:s"] = {"t": NOW, "delivered": True}
    assert not alerts.due(sent, "server-errors:s", NOW + 3599)
    assert alerts.due(sent, "server-errors:s", NOW + 3600)
    assert alerts.due(sent, "disk", NOW)
    sent["disk"] = {"t": NOW, "delivered": False}
    assert not alerts.due(sent, "disk", NOW + 60)
    assert alerts.due(sent, "disk", NOW + alerts.RETRY_SECONDS)


def test_nothing_is_sent_without_alert_settings():
    sent = {}
    alerts.raise_alerts({"ALERT_EMAIL": "", "ALERT_WEBHOOK_URL": ""}, "otree",
                        [{"cause": "disk", "subject": "x", "text": "y"}], sent, NOW, print)
    assert sent == {}


def test_the_webhook_body_has_slacks_text_and_the_details():
    body = alerts.webhook_body("lab", {"cause": "server-errors:s", "subject": "Errors", "text": "3 requests",
                                       "errors": 3})
    assert body["text"] == "[lab] Errors\n3 requests"
    assert body["errors"] == 3 and body["server"] == "lab"


def test_cpu_share_over_a_window():
    samples = load.parse_cpu_samples("".join(f"{NOW + 15 * index:.0f} {3.0 * index:.3f}\n" for index in range(300)))
    # 3 CPU seconds every 15 s: a fifth of a core.
    assert load.cpu_share(samples, 5) == pytest.approx(0.2)
    assert load.cpu_share(samples, 60) == pytest.approx(0.2)
    assert load.cpu_share(samples[:2], 5) is None  # under a minute of samples


def test_the_newest_exception_in_otrees_log():
    log = "\n".join([
        "2026-11-30T23:40:00.1Z INFO: 127.0.0.1 - GET /p/x/crash/Crash/2 500",
        "2026-11-30T23:40:00.2Z Traceback (most recent call last):",
        '2026-11-30T23:40:00.2Z   File "/app/old/__init__.py", line 3, in f',
        "2026-11-30T23:40:00.2Z KeyError: 'x'",
        "2026-11-30T23:41:00.5Z Traceback (most recent call last):",
        '2026-11-30T23:41:00.5Z   File "/app/crash/__init__.py", line 34, in vars_for_template',
        "2026-11-30T23:41:00.5Z     return dict(ratio=1 / 0)",
        "2026-11-30T23:41:00.5Z ZeroDivisionError: division by zero",
        "2026-11-30T23:41:01.0Z INFO: something else",
    ])
    assert load.newest_exception(log) == ("2026-11-30 23:41:00 UTC", "ZeroDivisionError: division by zero")
    assert load.newest_exception("2026-11-30T23:41:01.0Z INFO: quiet\n") is None


def test_warnings_say_what_to_do():
    slow = {"minutes": 5, "requests_per_minute": 100.0, "p50": 0.2, "p95": 1.4, "errors": 0, "participants": 40}
    found = load.warnings("s", slow, 0.9, 1.5)
    assert len(found) == 2
    assert "p95 1.4 s" in found[0] and "invoke loadtest" in found[0]
    assert "90% of its 1 core" in found[1]
    assert load.warnings("s", dict(slow, p95=0.3), 0.3, 0.5) == []
    assert len(load.warnings("s", dict(slow, p95=0.3), 0.45, 0.5)) == 1  # 80% of half a core


@pytest.mark.parametrize("values, message", [
    ({"ALERT_EMAIL": "nobody", "SMTP_HOST": "smtp.example.edu"}, "ALERT_EMAIL 'nobody' is not an email address"),
    ({"ALERT_EMAIL": "me@example.edu"}, "SMTP_HOST is empty"),
    ({"SMTP_TLS": "yes"}, "SMTP_TLS 'yes' must be starttls"),
    ({"SMTP_PORT": "smtp"}, "SMTP_PORT 'smtp' is not a port"),
    ({"SMTP_USER": "me"}, "SMTP_USER and SMTP_PASSWORD go together"),
    ({"ALERT_WEBHOOK_URL": "hooks.slack.com/x"}, "ALERT_WEBHOOK_URL must be an http(s):// address"),
    ({"MONITOR_INTERVAL": "0"}, "MONITOR_INTERVAL '0' must be seconds between 1 and 120"),
])
def test_alert_settings_are_checked(values, message):
    found = validate.alert_problems(values)
    assert len(found) == 1 and message in found[0], found


def test_good_alert_settings_pass():
    assert validate.alert_problems({"ALERT_EMAIL": "me@example.edu", "SMTP_HOST": "smtp.example.edu",
                                    "SMTP_USER": "me", "SMTP_PASSWORD": "pw", "SMTP_PORT": "465", "SMTP_TLS": "tls",
                                    "ALERT_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X"}) == []
    assert validate.alert_problems({}) == []


def test_a_sentry_dsn_needs_sentry_sdk_in_the_project(tmp_path):
    dsn = "https://abc123@o1.ingest.sentry.io/42"
    found = validate._sentry_problems({"SENTRY_DSN": dsn, "OTREE_PROJECT_DIR": "otree_project"})
    assert len(found) == 1 and "does not list sentry-sdk" in found[0]
    assert "not a Sentry DSN" in validate._sentry_problems({"SENTRY_DSN": "abc"})[0]
    (tmp_path / "requirements.txt").write_text("otree==6.0.15\nsentry-sdk==2.75.0\n")
    assert validate._sentry_problems({"SENTRY_DSN": dsn, "OTREE_PROJECT_DIR": str(tmp_path)}) == []


def test_study_health_alerts_for_a_failed_backup_and_an_otree_that_stays_down(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "FOLDER", str(tmp_path))
    monkeypatch.setattr(report, "otree_problem", lambda: "oTree does not answer (refused)")
    report.write("s", None, report.otree_problem(), NOW)
    report.write("s", "the last backup attempt failed (x): disk full", report.otree_problem(), NOW + 60)
    found = json.loads((tmp_path / "s.json").read_text())
    assert found["otree_failing_since"] == NOW  # carried over while it keeps failing
    assert [alert["cause"] for alert in checks.study_health([found], NOW + 60)] == ["backup:s"]
    causes = [alert["cause"] for alert in checks.study_health([found], NOW + checks.UNHEALTHY_SECONDS)]
    assert causes == ["backup:s", "unhealthy:s"]
    report.write("s", None, None, NOW + 120)
    assert checks.study_health([json.loads((tmp_path / "s.json").read_text())], NOW + 600) == []


def request_line(t, uri, status=404, study="s"):
    return json.dumps({"t": t, "study": study, "uri": uri, "status": status, "upstream_status": str(status),
                       "upstream_time": "0.003"}) + "\n"


def random_paths(generator, count):
    """Made-up /p/ paths, as a scanner or a flood sends them: codes of any length and alphabet,
    and well-formed codes of participants who do not exist."""
    alphabet = string.ascii_letters + string.digits + "-_.~%"
    paths = []
    for index in range(count):
        if index % 2:
            code = "".join(generator.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        else:
            code = "".join(generator.choice(alphabet) for _ in range(generator.randint(1, 40)))
        paths.append(f"/p/{code}/app/Page/{generator.randint(1, 9)}")
    return paths


@pytest.fixture
def monitor_folders(tmp_path, monkeypatch):
    """The monitor's folders (nginx's request log, the proxy's studies, the health reports) in tmp_path."""
    for name, constant in (("log", "LOG_DIR"), ("edge", "EDGE"), ("health", "HEALTH")):
        (tmp_path / name).mkdir()
        monkeypatch.setattr(monitor_main, constant, str(tmp_path / name))
    return tmp_path


def test_a_flood_of_random_participant_paths_leaves_the_state_under_a_fixed_size(monitor_folders):
    """10,000 made-up /p/ paths a minute for 4 minutes, read by the monitor's own check: the
    participants it remembers stop at MAX_PARTICIPANTS (about 24 bytes each)."""
    generator = random.Random(22)
    state = {"files": {}, "studies": {}, "sent": {}}
    config = {key: "" for key in monitor_main.SETTINGS}
    log = monitor_folders / "log" / "requests-2027-01-15T08.log"
    sizes = []
    for minute in range(4):
        now = NOW + minute * 60
        with open(log, "a", encoding="utf-8") as handle:
            handle.writelines(request_line(now - 30, path) for path in random_paths(generator, 10_000))
        monitor_main.check(config, state, now, slow_due=False)
        sizes.append(len(json.dumps(state)))
    assert max(sizes) < 160_000, sizes
    assert len(state["studies"]["s"]["participants"]) == traffic.MAX_PARTICIPANTS
    figures = traffic.window(state["studies"]["s"], NOW + 4 * 60, 60)
    assert figures["requests_per_minute"] == pytest.approx(4 * 10_000 / 60)


@pytest.mark.parametrize("uri, counted", [
    ("/p/abcd1234/app/Page/1", True),
    ("/InitializeParticipant/zzzz9999", True),
    ("/p/abcd1234", True),
    ("/p/ABCD1234/app/Page/1", False),  # oTree's codes are lower case
    ("/p/abcd123/app/Page/1", False),  # 7 characters
    ("/p/abcd12345/app/Page/1", False),  # 9
    ("/p/abcd-234/app/Page/1", False),
    ("/p/abcd1234%2F/app/Page/1", False),
])
def test_only_well_formed_participant_codes_are_counted(uri, counted):
    studies, _ = summed(record(NOW - 30, uri=uri))
    assert traffic.window(studies["s"], NOW, 5)["participants"] == (1 if counted else 0)
    assert traffic.window(studies["s"], NOW, 5)["requests_per_minute"] == pytest.approx(1 / 5)


def test_a_participant_is_counted_once_in_each_window_they_were_seen_in():
    studies, _ = summed(record(NOW - 50 * 60), record(NOW - 2 * 60, uri="/p/abcd1234/app/Other/2"),
                        record(NOW - 40 * 60, uri="/p/efgh5678/app/Page/1"))
    assert traffic.window(studies["s"], NOW, 5)["participants"] == 1
    assert traffic.window(studies["s"], NOW, 60)["participants"] == 2
    traffic.prune(studies, NOW + 30 * 60)  # efgh5678 was last seen 70 minutes before
    assert list(studies["s"]["participants"]) == ["abcd1234"]


class Receiver(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        Receiver.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_an_alert_names_the_page_but_not_the_participants_code(monitor_folders):
    """Server errors read from the request log, and the alert as a webhook receives it on a real socket."""
    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.received.clear()
    config = dict({key: "" for key in monitor_main.SETTINGS}, STACK_NAME="lab",
                  ALERT_WEBHOOK_URL=f"http://127.0.0.1:{server.server_address[1]}/hook")
    codes = ["k3x9q2ma", "b7tz4w1c"]
    lines = [request_line(NOW - 20, f"/InitializeParticipant/{codes[0]}", status=500),
             request_line(NOW - 10, f"/p/{codes[1]}/crash/Crash/2", status=500)]
    (monitor_folders / "log" / "requests-2027-01-15T08.log").write_text("".join(lines))
    state = {"files": {}, "studies": {}, "sent": {}}
    try:
        monitor_main.check(config, state, NOW, slow_due=False)
    finally:
        server.shutdown()
    (alert,) = Receiver.received
    assert alert["page"] == "/p/*/crash/Crash/2" and "on /p/*/crash/Crash/2" in alert["text"]
    assert state["studies"]["s"]["last_error"]["uri"] == "/p/*/crash/Crash/2"  # as `invoke status` shows it
    for code in codes:
        assert code not in json.dumps(alert) and code not in json.dumps(state["studies"]["s"]["last_error"])


@pytest.mark.parametrize("uri, page", [
    ("/p/abcd1234/app/Page/3", "/p/*/app/Page/3"),
    ("/InitializeParticipant/abcd1234", "/InitializeParticipant/*"),
    ("/join/bafudoze", "/join/*"),
    ("/MTurkStart/abc12345", "/MTurkStart/*"),
    ("/OutOfRangeNotification/abcd1234", "/OutOfRangeNotification/*"),
    ("/p/not-a-code-at-all/x", "/p/*/x"),
    ("/room/prolific", "/room/prolific"),
    ("/SessionMonitor/abc", "/SessionMonitor/abc"),
])
def test_the_page_is_named_without_the_code_that_logs_in(uri, page):
    assert traffic.page_name(uri) == page
