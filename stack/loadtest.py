"""`invoke loadtest`: how many participants a study's oTree serves on this server, in the
researcher's terms, measured by playing the project's own bots against it through nginx.

Before each step a session is created in oTree's browser-bot mode, so the project's tests.py
decides every answer; then Locust (loadtest/, in a container of its own on the host's network)
plays its participants over plain HTTPS through nginx, each Locust user one participant after
another (loadtest/locustfile.py). The number of concurrent
participants steps up (5, 10, 20, ... up to --participants) until the 95th percentile of the
response times passes 1 s or a request fails. Every session it created is deleted at the end,
also after a failure or Ctrl-C, so none appears in the study's exports."""
import csv
import datetime
import html
import json
import os
import shutil
import subprocess
import threading

from . import context, deploy, lock, pagetimes
from .console import StackError, info, step, warn
from .envfile import REPO_ROOT

OUTPUT = os.path.join(REPO_ROOT, "loadtests")
IMAGE_DIR = os.path.join(REPO_ROOT, "loadtest")
CONFIGS_SCRIPT = os.path.join(REPO_ROOT, "otree_server", "session_configs.py")
CREATE_SCRIPT = os.path.join(REPO_ROOT, "otree_server", "create_bot_session.py")
FIRST_STEP = 5
P95_LIMIT_MS = 1000
# Participants per user created before a step while the pace is unknown (the first step): a
# short single-player config went through about one per user and second on a 2-core VM.
UNKNOWN_PACE_FACTOR = 50
# The most participants created for one step before it starts.
MOST_PER_SESSION = 2000
# Prints, every second until its input closes, the time and the container's CPU counter (cgroup
# v2 usage_usec or v1 nanoseconds), then an empty line. One `docker exec` for the whole step
# (CpuSampler), since starting one takes seconds on a loaded machine.
CPU_SAMPLES = ("while :; do date +%s.%N; cat /sys/fs/cgroup/cpu.stat 2>/dev/null "
               "|| cat /sys/fs/cgroup/cpuacct/cpuacct.usage; echo; read -r -t 1 _; [ $? -gt 128 ] || exit 0; done")
FIRST_SAMPLE_WAIT_SECONDS = 60


def steps(ceiling, multiple=1, first=FIRST_STEP):
    """Participants per step: first, doubled each step, the ceiling last; each a multiple of the
    group size, since a group game's session needs whole groups."""
    found, number = [], first
    while number < ceiling:
        found.append(_whole_groups(number, multiple))
        number *= 2
    found.append(_whole_groups(ceiling, multiple))
    return sorted(set(found))


def _whole_groups(number, multiple):
    return -(-int(number) // multiple) * multiple


def session_size(participants, multiple, seconds, pace=None):
    """Participants to create before a step, so that no session is created while it is measured:
    each user plays one after another at `pace` (participants finished per user and second, from
    the step before), with half again as margin."""
    needed = participants * (1 + pace * seconds * 1.5) if pace else participants * UNKNOWN_PACE_FACTOR
    return _whole_groups(min(max(needed, participants), MOST_PER_SESSION), multiple)


def cpu_seconds(text):
    """The CPU seconds in a cgroup's counter file: v2 cpu.stat or v1 cpuacct.usage."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    return int(text.strip()) / 1e9


def cpu_samples(lines):
    """(time, cpu seconds) from CPU_SAMPLES's output, each as its block ends; an unfinished last
    block is left out."""
    block = []
    for line in lines:
        line = line.strip()
        if line:
            block.append(line)
        elif len(block) > 1:
            yield float(block[0]), cpu_seconds("\n".join(block[1:]))
            block = []


def share_between(samples, start, stop):
    """CPU used per second (1.0 = one core) between two times, from (time, cpu seconds) samples:
    the first and last samples inside the window, or None when fewer than two fall in it."""
    inside = [sample for sample in samples if start <= sample[0] <= stop]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def step_figures(rows, facts, participants, otree_cpu):
    """One step's figures from Locust's stats CSV rows and the locustfile's facts."""
    total = next(row for row in rows if row["Name"] == "Aggregated")
    count = int(total["Request Count"])

    def milliseconds(key):
        return float(total[key]) if count and total[key] not in ("", "N/A") else 0.0
    return {"participants": participants,
            "requests": count,
            "requests_per_second": float(total["Requests/s"]),
            "submits_per_second": sum(float(row["Requests/s"]) for row in rows if row["Name"].startswith("submit ")),
            "p50_ms": milliseconds("50%"), "p95_ms": milliseconds("95%"), "p99_ms": milliseconds("99%"),
            "errors": int(total["Failure Count"]),
            "participants_finished": facts.get("participants_finished", 0),
            "seconds": round(facts.get("stopped", 0) - facts.get("started", 0), 1),
            "otree_cpu": otree_cpu, "generator_cpu": facts.get("generator_cpu")}


def passed(figures):
    return figures["requests"] > 0 and not figures["errors"] and figures["p95_ms"] < P95_LIMIT_MS


def capacity(results):
    """(participants, seconds between one participant's page submits) of the largest passing
    step, or None when not even the first step passed."""
    good = [figures for figures in results if passed(figures)]
    if not good:
        return None
    best = max(good, key=lambda figures: figures["participants"])
    interval = best["participants"] / best["submits_per_second"] if best["submits_per_second"] else None
    return best["participants"], interval


def capacity_line(results, config, study):
    found = capacity(results)
    if not found:
        return (f"Not even {results[0]['participants']} participants of '{config}' stayed under 1 s at the 95th "
                f"percentile without errors on the study '{study}'; see the first step above.")
    participants, interval = found
    every = f"every {interval:.1f} seconds" if interval else "now and then"
    # Every step passed: the server may serve more than this run tried.
    tail = " (every step passed: raise --participants to look further)" if all(map(passed, results)) else ""
    return (f"Capacity: about {participants} participants, each submitting a page {every}, at p95 under 1 s "
            f"for '{config}' on the study '{study}' on this server{tail}.")


def _row(figures):
    cpu = "?" if figures["otree_cpu"] is None else f"{figures['otree_cpu'] * 100:.0f}%"
    generator = "?" if figures["generator_cpu"] is None else f"{figures['generator_cpu'] * 100:.0f}%"
    return (f"{figures['participants']:>12} {figures['requests_per_second']:>10.1f} {figures['submits_per_second']:>9.1f} "
            f"{figures['p50_ms']:>7.0f} {figures['p95_ms']:>7.0f} {figures['p99_ms']:>7.0f} {figures['errors']:>6} "
            f"{cpu:>10} {generator:>10}")


HEADER = (f"{'participants':>12} {'requests/s':>10} {'submits/s':>9} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
          f"{'errors':>6} {'oTree CPU':>10} {'Locust CPU':>10}")


def _plot(title, points_by_series, y_label, limit=None):
    """An inline SVG line plot: x is participants. Each series is (name, colour, [(x, y)])."""
    width, height, left, bottom, top, right = 560, 320, 60, 40, 30, 20
    xs = [x for _, _, points in points_by_series for x, _ in points] or [1]
    ys = [y for _, _, points in points_by_series for _, y in points] + ([limit] if limit else []) + [0]
    x_max, y_max = max(xs) or 1, (max(ys) or 1) * 1.1

    def px(x):
        return left + (width - left - right) * x / x_max

    def py(y):
        return height - bottom - (height - bottom - top) * y / y_max
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="{width / 2}" y="18" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#333"/>',
             f'<text x="{width / 2}" y="{height - 6}" text-anchor="middle">participants</text>',
             f'<text x="14" y="{height / 2}" text-anchor="middle" transform="rotate(-90 14 {height / 2})">'
             f'{html.escape(y_label)}</text>',
             f'<text x="{left - 4}" y="{py(y_max / 1.1) + 4:.1f}" text-anchor="end" font-size="11">{y_max / 1.1:.0f}</text>',
             f'<text x="{left - 4}" y="{height - bottom + 4}" text-anchor="end" font-size="11">0</text>']
    for x in sorted(set(xs)):
        parts.append(f'<text x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle" font-size="11">{x}</text>')
    if limit:
        parts.append(f'<line x1="{left}" y1="{py(limit):.1f}" x2="{width - right}" y2="{py(limit):.1f}" '
                     'stroke="#c00" stroke-dasharray="6 4"/>')
    for number, (name, colour, points) in enumerate(points_by_series):
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        parts.extend(f'<circle class="point" cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{colour}">'
                     f'<title>{name}: {y:.1f} at {x} participants</title></circle>' for x, y in points)
        parts.append(f'<text x="{left + 10}" y="{top + 14 + 16 * number}" fill="{colour}" font-size="12">'
                     f'{html.escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def report_html(summary):
    """A page that needs nothing from the network (servers may be offline): two inline SVG plots
    and the table of steps."""
    results = summary["steps"]
    throughput = _plot("Throughput against participants",
                       [("requests/s", "#1f77b4", [(r["participants"], r["requests_per_second"]) for r in results]),
                        ("page submits/s", "#2ca02c", [(r["participants"], r["submits_per_second"]) for r in results])],
                       "per second")
    latency = _plot("Response time against participants (dashed: 1 s)",
                    [("p95 ms", "#d62728", [(r["participants"], r["p95_ms"]) for r in results]),
                     ("p50 ms", "#9467bd", [(r["participants"], r["p50_ms"]) for r in results])],
                    "milliseconds", limit=P95_LIMIT_MS)
    rows = "\n".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in (
        r["participants"], f"{r['requests_per_second']:.1f}", f"{r['submits_per_second']:.1f}", f"{r['p50_ms']:.0f}",
        f"{r['p95_ms']:.0f}", f"{r['p99_ms']:.0f}", r["errors"],
        "?" if r["otree_cpu"] is None else f"{r['otree_cpu'] * 100:.0f}%",
        "?" if r["generator_cpu"] is None else f"{r['generator_cpu'] * 100:.0f}%")) + "</tr>" for r in results)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Load test of {html.escape(summary['study'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}.plots{{display:flex;flex-wrap:wrap;gap:1em}}</style>
</head><body>
<h1>Load test of the study '{html.escape(summary['study'])}'</h1>
<p>Session config <b>{html.escape(summary['config'])}</b>, {summary['step_seconds']} s per step, started
{html.escape(summary['started'])} against {html.escape(summary['target'])}.</p>
<p id="capacity"><b>{html.escape(summary['capacity_line'])}</b></p>
<div class="plots">
{throughput}
{latency}
</div>
<table><tr><th>participants</th><th>requests/s</th><th>page submits/s</th><th>p50 ms</th><th>p95 ms</th>
<th>p99 ms</th><th>errors</th><th>oTree CPU</th><th>Locust CPU</th></tr>
{rows}
</table>
<p>oTree CPU: the share of one core its container used; oTree serves every request in one process.
Each step's Locust CSVs are in this folder.</p>
</body></html>
"""


class CpuSampler:
    """A container's CPU counter every second, read by one `docker exec` that runs until the
    sampler closes its input. Entering waits for the first sample, since starting the exec took
    seconds on a loaded machine, and the step's first seconds must be covered."""

    def __init__(self, container):
        self.samples = []
        self._first = threading.Event()
        self._process = subprocess.Popen(["docker", "exec", "-i", container, "bash", "-c", CPU_SAMPLES],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self):
        for sample in cpu_samples(self._process.stdout):
            self.samples.append(sample)
            self._first.set()
        self._first.set()  # the exec ended without a sample: the step shows "?"

    def __enter__(self):
        self._thread.start()
        self._first.wait(timeout=FIRST_SAMPLE_WAIT_SECONDS)
        return self

    def __exit__(self, *exc):
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._thread.join()


def _session_configs(ctx):
    with open(CONFIGS_SCRIPT, encoding="utf-8") as script:
        result = ctx.compose.run("exec", "-T", "otree", "python", "-", capture=True, check=False, stdin=script)
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise StackError("The study's oTree could not list its session configs (its messages are above). Check "
                         "that the project loads: `invoke otree -- test`.") from None


def choose_config(configs, name):
    """The session config to play (the first when none is named), with its group size."""
    if not configs:
        raise StackError("The project has no session configs (SESSION_CONFIGS in settings.py); nothing to test.")
    if name and name not in configs:
        raise StackError(f"There is no session config {name!r}. The project has: {', '.join(configs)}. "
                         "Choose one with --config NAME.")
    name = name or next(iter(configs))
    missing = configs[name]["without_bots"]
    if missing:
        raise StackError(f"The session config '{name}' has apps without bots ({', '.join(missing)}: no tests.py), "
                         "and the load test plays the project's own bots. Write bots for them (oTree's docs, "
                         "'Bots'), or choose another config with --config NAME. Nothing was started.")
    return name, configs[name]["multiple"]


def _positive(value, what):
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise StackError(f"{what} must be a whole number above 0, not {value!r}. Nothing was started.")
    return number


def _build_image(ctx):
    image = f"otree-stack/loadtest:{ctx.server.name}"
    step("Building the load generator's image (Locust)")
    result = subprocess.run(["docker", "build", "--quiet", "--build-arg", f"BASE_IMAGE={ctx.server.base_image}",
                             "--tag", image, IMAGE_DIR], capture_output=True, text=True)
    if result.returncode:
        raise StackError(f"The load generator's image did not build:\n{result.stderr[-2000:]}")
    return image


def _target(ctx):
    """(URL Locust uses, docker run options): by the study's name when it has one, resolved to
    this machine, so nginx sees the name participants use (TLS SNI and Host)."""
    address = ctx.server.public_host()
    port = ctx.study.https_port
    if ctx.study.domain:
        return f"https://{ctx.study.domain}:{port}", ["--add-host", f"{ctx.study.domain}:{address}"]
    return f"https://{address}:{port}", []


def _create_session(ctx, folder, config, size):
    """A browser-bot session of `size` participants; their start links. Its code is written down
    before anything else, so it is deleted whatever happens next."""
    with open(CREATE_SCRIPT, encoding="utf-8") as script:
        result = ctx.compose.run("exec", "-T", "otree", "python", "-", config, str(size), capture=True, check=False,
                                 stdin=script)
    try:
        created = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise StackError(f"oTree did not create a browser-bot session of '{config}' (its messages are above; "
                         "`invoke logs --service otree` has more). Check that its bots pass: "
                         f"`invoke otree -- test {config}`.") from None
    with open(os.path.join(folder, "sessions.txt"), "a", encoding="utf-8") as handle:
        handle.write(created["code"] + "\n")
    return [f"/InitializeParticipant/{code}" for code in created["participants"]]


def _container(ctx):
    return f"{ctx.server.name}-loadtest"


def _run_step(ctx, image, folder, target, config, participants, multiple, seconds, number, pace):
    """One step's figures. Its session is created first; should its participants be used up
    early (the first step guesses how many it needs), the step runs again with a session sized
    by the pace just seen."""
    for attempt in (1, 2):
        size = session_size(participants, multiple, seconds, pace)
        facts, figures = _run_locust(ctx, image, folder, target, config, participants, seconds, number,
                                     _create_session(ctx, folder, config, size))
        used_up = facts.get("ran_out", facts["stopped"]) - facts["started"]
        if "ran_out" not in facts or used_up > 0.8 * seconds or attempt == 2:
            return figures
        info(f"({participants} at once used up the {size} participants created in {used_up:.0f} s; again with more)")
        pace = facts["participants_finished"] / participants / max(used_up, 1)


def _run_locust(ctx, image, folder, target, config, participants, seconds, number, links):
    url, extra = target
    prefix = f"step{number:02d}-{participants}"
    facts_name = f"{prefix}-facts.json"
    with open(os.path.join(folder, f"{prefix}-links.txt"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(links) + "\n")
    container = _container(ctx)
    subprocess.run(["docker", "rm", "--force", container], capture_output=True)
    command = ["docker", "run", "--rm", "--name", container, "--network", "host", *extra,
               "--user", f"{os.getuid()}:{os.getgid()}", "--volume", f"{folder}:/out", image,
               "--headless", "--only-summary", "--host", url, "--users", str(participants),
               "--spawn-rate", str(participants), "--run-time", f"{seconds}s", "--csv", f"/out/{prefix}",
               "--links-file", f"/out/{prefix}-links.txt", "--facts-file", f"/out/{facts_name}"]
    with CpuSampler(ctx.compose.container("otree")) as sampler:
        result = subprocess.run(command, capture_output=True, text=True)
    facts_path = os.path.join(folder, facts_name)
    stats_path = os.path.join(folder, f"{prefix}_stats.csv")
    if not os.path.exists(facts_path) or not os.path.exists(stats_path):
        raise StackError(f"The load generator stopped without results (exit {result.returncode}):\n"
                         f"{result.stderr[-2000:]}")
    with open(facts_path, encoding="utf-8") as handle:
        facts = json.load(handle)
    os.unlink(facts_path)  # its figures go into summary.json
    with open(stats_path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    facts.setdefault("started", facts["stopped"])
    otree_cpu = share_between(sampler.samples, facts["started"], facts["stopped"])
    return facts, step_figures(rows, facts, participants, otree_cpu)


def _created_sessions(folder):
    path = os.path.join(folder, "sessions.txt")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return sorted({line.strip() for line in handle if line.strip().isalnum()})


# The browser-bot start link (/browser_bot_start) would otherwise keep handing out the last session's participants.
CLOSE_SCRIPT = """import os, urllib.request
request = urllib.request.Request("http://127.0.0.1:8000/close_browser_bots_session", data=b"{}", method="POST",
                                 headers={"otree-rest-key": os.environ.get("OTREE_REST_KEY", ""),
                                          "content-type": "application/json"})
urllib.request.urlopen(request, timeout=60).read()
"""


def delete_sessions(ctx, codes):
    """Delete the load test's sessions as the admin's "Delete" button does (one DELETE of the
    sessions; Postgres removes their participants, players, groups and wait-page rows by its
    cascades), and their rows in the page-time log, which oTree keeps apart and its delete
    leaves behind. The page times oTree holds in memory are saved first, so none comes later."""
    ctx.compose.run("exec", "-T", "otree", "python", "-c", CLOSE_SCRIPT, check=False, capture=True)
    if not codes:
        return
    pagetimes.flush(ctx.compose)
    listed = ", ".join(f"'{code}'" for code in codes)
    pattern = "^(" + "|".join(codes) + "),[^\\n]*\\n"
    sql = ("BEGIN; "
           f"DELETE FROM otree_session WHERE code IN ({listed}); "
           f"UPDATE otree_pagetimebatch SET text = regexp_replace(text, E'{pattern}', '', 'gn') "
           f"WHERE text ~ E'(^|\\n)({'|'.join(codes)}),'; "
           "COMMIT;")
    result = ctx.compose.run("exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "otree", "-v",
                             "ON_ERROR_STOP=1", "-q", "-c", sql, capture=True, check=False)
    if result.returncode:
        raise StackError(f"The load test's sessions ({', '.join(codes)}) could not be deleted; delete them in the "
                         "admin's Sessions page so they do not appear in your exports.")


def run(study=None, config=None, participants=160, duration=30, force=False, active_minutes=deploy.ACTIVE_MINUTES):
    ceiling = _positive(participants, "--participants")
    seconds = _positive(duration, "--duration")
    ctx = context.load(study, purpose="load-tests")
    # Not during a deploy, rollback or settings change: each would stop oTree under the load.
    with lock.held(ctx.server, f"load test of {ctx.study.name}"):
        return _locked_run(ctx, config, ceiling, seconds, force, active_minutes)


def _locked_run(ctx, config, ceiling, seconds, force, active_minutes):
    if not ctx.compose.running("otree"):
        raise StackError(f"The study '{ctx.study.name}' is not running. Start it with `invoke up --study "
                         f"{ctx.study.name}`, then run this again.")
    # Bad input first: its fix does not depend on who is online.
    config, multiple = choose_config(_session_configs(ctx), config)
    if not force:
        deploy.refuse_while_active(ctx, active_minutes, "a load test would slow their pages down. Nothing was "
                                   "started. Run it when they have finished, or add --force.")
    plan = steps(ceiling, multiple)
    image = _build_image(ctx)
    started = datetime.datetime.now(datetime.timezone.utc)
    folder = os.path.join(OUTPUT, started.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(folder, exist_ok=True)
    target = _target(ctx)
    step(f"Load test of '{config}' on the study '{ctx.study.name}' ({target[0]}): {', '.join(map(str, plan))} "
         f"participants, {seconds} s each, until p95 passes 1 s or a request fails")
    info(HEADER)
    results, pace = [], None
    try:
        for number, participants_now in enumerate(plan, 1):
            figures = _run_step(ctx, image, folder, target, config, participants_now, multiple, seconds, number, pace)
            results.append(figures)
            pace = figures["participants_finished"] / participants_now / max(figures["seconds"], 1) or None
            info(_row(figures))
            if not passed(figures):
                break
    except KeyboardInterrupt:
        warn("Stopped (Ctrl-C); the report covers the steps that finished.")
    finally:
        subprocess.run(["docker", "rm", "--force", _container(ctx)], capture_output=True)  # after Ctrl-C
        codes = _created_sessions(folder)
        step(f"Deleting the load test's {len(codes)} session(s), so they never appear in exports")
        delete_sessions(ctx, codes)
    if not results:
        shutil.rmtree(folder, ignore_errors=True)
        raise StackError("The load test stopped before its first step finished; its sessions were deleted.")
    line = capacity_line(results, config, ctx.study.name)
    summary = {"study": ctx.study.name, "config": config, "target": target[0], "step_seconds": seconds,
               "started": started.isoformat(timespec="seconds"), "steps": results, "capacity_line": line,
               "capacity": dict(zip(("participants", "seconds_between_submits"), capacity(results) or (None, None))),
               "sessions_deleted": _created_sessions(folder)}
    with open(os.path.join(folder, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    with open(os.path.join(folder, "report.html"), "w", encoding="utf-8") as handle:
        handle.write(report_html(summary))
    step(line)
    shown = os.path.relpath(folder)
    info(f"Locust's CSVs, summary.json and report.html (plots) are in {shown}/")
    return folder
