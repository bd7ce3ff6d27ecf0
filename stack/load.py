"""The load lines of `invoke status`: for the last 5 and 60 minutes, participants' requests per
minute, page times (p50/p95, oTree's answer time as nginx measured it), oTree's CPU share, its
server errors with the newest one's page and exception, and participants active; a warning with
what to do when p95 or the CPU passes its threshold.

Requests, page times and errors come from the monitor service (monitor/), which reads nginx's
request log; the CPU share from the samples oTree's healthcheck records in its container
(otree_server/healthcheck.py); the exception from oTree's own log."""
import datetime
import json
import re

from . import proxy
from .console import info, warn

SLOW_P95_SECONDS = 1.0
BUSY_SHARE_OF_CORE = 0.8
WINDOWS = (5, 60)
# The line that ends a Python traceback: the exception's type and message.
EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Failure)[\w.]*)(?::\s?(.*))?$")


def monitor_report(server):
    """The monitor's figures for every study, or None when it does not answer."""
    result = proxy.compose(server).run("exec", "-T", "monitor", "python3", "-m", "otree_monitor", "report",
                                       capture=True, check=False)
    try:
        return json.loads(result.stdout) if result.returncode == 0 else None
    except ValueError:
        return None


def parse_cpu_samples(text):
    samples = []
    for line in text.splitlines():
        try:
            moment, used = line.split()
            samples.append((float(moment), float(used)))
        except ValueError:
            continue
    return samples


def cpu_share(samples, minutes):
    """Cores used on average over the last `minutes` (1.0 is one core), or None with under a
    minute of samples (the container just started)."""
    if len(samples) < 2:
        return None
    newest = samples[-1]
    start = [sample for sample in samples if sample[0] <= newest[0] - minutes * 60]
    first = start[-1] if start else samples[0]
    span = newest[0] - first[0]
    return (newest[1] - first[1]) / span if span >= 50 else None


def newest_exception(log_text):
    """(time, 'Type: message') of the last traceback in oTree's log (`docker compose logs
    --timestamps`), or None."""
    found, in_traceback = None, False
    for line in log_text.splitlines():
        stamp, _, text = line.partition(" ")
        if text.startswith("Traceback (most recent call last)"):
            in_traceback = True
            continue
        if in_traceback and text and not text[0].isspace():
            match = EXCEPTION.match(text)
            if match:
                found = (stamp[:19].replace("T", " ") + " UTC", text.strip())
                in_traceback = False
            elif not text.startswith(("During handling", "The above exception")):
                in_traceback = False
    return found


def _seconds(value):
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _clock(moment):
    return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def window_line(figures, share):
    cpu = "-" if share is None else f"{share * 100:.0f}%"
    return (f"last {figures['minutes']:>2} min: {figures['requests_per_minute']:.1f} requests/min, page time "
            f"p50 {_seconds(figures['p50'])} p95 {_seconds(figures['p95'])}, oTree CPU {cpu}, "
            f"{figures['errors']} server error{'' if figures['errors'] == 1 else 's'}, "
            f"{figures['participants']} participant{'' if figures['participants'] == 1 else 's'} active")


def warnings(study, figures, share, cpu_limit):
    """What to do when the last 5 minutes were slow or oTree's core was nearly full."""
    found = []
    core = min(1.0, cpu_limit)  # oTree is one process: it uses one core at most
    p95 = figures["p95"]
    if p95 is not None and p95 > SLOW_P95_SECONDS:
        found.append(f"Study {study}: participants waited over {SLOW_P95_SECONDS:g} s for 5% of their pages in the last "
                     f"5 minutes (p95 {_seconds(p95)}). Run fewer participants at once, move the study to a server "
                     "with faster cores, or find this server's ceiling first with `invoke loadtest`.")
    if share is not None and share > BUSY_SHARE_OF_CORE * core:
        found.append(f"Study {study}: oTree used {share * 100:.0f}% of its {core:g} core over the last 5 minutes; "
                     "near the limit, pages slow down for everyone. Run fewer participants at once, raise CPU_LIMIT "
                     "to 1 if it is lower, or use a server with faster cores (`invoke loadtest` finds the ceiling).")
    return found


def report(ctx, monitor):
    """Print a study's load lines (and warnings); `monitor` is monitor_report()'s answer."""
    study = ctx.study.name
    if monitor is None:
        info("load      unknown: the monitor service does not answer (`invoke up` starts it)")
        return
    figures = monitor.get("studies", {}).get(study)
    samples = []
    if ctx.compose.running("otree"):
        samples = parse_cpu_samples(ctx.compose.run("exec", "-T", "otree", "cat", "/tmp/cpu-samples",
                                                    capture=True, check=False).stdout or "")
    empty = {"requests_per_minute": 0.0, "p50": None, "p95": None, "errors": 0, "participants": 0}
    shares = {}
    for minutes in WINDOWS:
        shares[minutes] = cpu_share(samples, minutes)
        shown = (figures or {}).get(f"last_{minutes}") or dict(empty, minutes=minutes)
        info(f"load      {window_line(shown, shares[minutes])}")
    last_error = (figures or {}).get("last_error")
    if last_error:
        logs = ctx.compose.run("logs", "--no-color", "--no-log-prefix", "--timestamps", "--since", "65m", "otree",
                               capture=True, check=False).stdout or ""
        exception = newest_exception(logs)
        cause = f": {exception[1]}" if exception else ""
        info(f"errors    newest {_clock(last_error['t'])} on {last_error['uri']} (HTTP {last_error['status']}){cause}; "
             f"the traceback: invoke logs --study {study} --service otree")
    for line in warnings(study, (figures or {}).get("last_5") or dict(empty, minutes=5), shares[5],
                         float(ctx.study.get("CPU_LIMIT"))):
        warn(line)
