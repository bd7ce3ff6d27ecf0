"""Participants' requests, read from nginx's request log (one JSON line per request, one file per
hour, written by each study's server block: nginx/study-server.conf.template), summed per study
and minute, and the windows `invoke status` shows. Pure functions, tested without Docker."""
import json
import math
import re

# What a participant's browser asks oTree for: their pages (GET and the form's POST), the start
# links and room pages. Websockets (wait and live pages) stay open for minutes: not page times.
PARTICIPANT_PAGE = re.compile(r"^/(p|InitializeParticipant|join|room|MTurkStart)/")
# oTree's participant codes: 8 of a-z and 0-9 (otree/common.py, random_chars_8). Anything else
# in their place is no participant, so a flood of made-up paths adds no one.
PARTICIPANT_CODE = re.compile(r"^/(?:p|InitializeParticipant)/([a-z0-9]{8})(?:/|$)")
# The path segment after these is a login link (a participant's code, a session's join or start
# code): alerts and `invoke status` name the page with it replaced by "*".
LINK_CODE = re.compile(r"^/(p|InitializeParticipant|join|MTurkStart|OutOfRangeNotification)/[^/]*")
# Participants remembered per study for the counts of the last hour; past this many the oldest
# seen are forgotten, so the state stays small whatever paths arrive.
MAX_PARTICIPANTS = 5000
WEBSOCKET = 101
# Page times are kept as a histogram with buckets 10% apart: p50 and p95 of an hour of
# requests at any rate, in a few hundred numbers.
BUCKET_RATIO = 1.1
KEEP_MINUTES = 61


def _last(value):
    """nginx lists one value per upstream tried ("0.010, 0.004"); the last one answered."""
    value = (value or "").split(",")[-1].strip()
    return None if value in ("", "-") else value


def parse(line):
    """One log line as a dict, or None for a line that is not a request record."""
    try:
        record = json.loads(line)
        return record if isinstance(record, dict) and "study" in record and "t" in record else None
    except ValueError:
        return None


def is_server_error(record):
    """oTree itself answered with a 5xx. A stopped oTree (a deploy, `invoke down`) shows
    participants the maintenance page instead, and is not counted as an error."""
    upstream = _last(record.get("upstream_status"))
    return int(record.get("status", 0)) >= 500 and upstream == str(record.get("status"))


def bucket(seconds):
    milliseconds = max(seconds * 1000, 1.0)
    return int(math.ceil(math.log(milliseconds) / math.log(BUCKET_RATIO)))


def bucket_seconds(index):
    return BUCKET_RATIO ** index / 1000


def empty_minute():
    return {"requests": 0, "times": {}, "errors": 0}


def page_name(uri):
    """The page without the code that logs a participant in: /p/*/app/Page/3."""
    return LINK_CODE.sub(lambda found: f"/{found.group(1)}/*", uri, count=1)


def _seen(study, code, minute):
    """Remember when a participant was last seen, newest last; forget the oldest past the cap."""
    participants = study.setdefault("participants", {})
    participants.pop(code, None)
    participants[code] = minute
    while len(participants) > MAX_PARTICIPANTS:
        del participants[next(iter(participants))]


def add(studies, record):
    """Count one request into studies[study]["minutes"][minute]; returns True for a server error."""
    study = studies.setdefault(record["study"], {"minutes": {}, "last_error": None})
    minute = str(int(float(record["t"]) // 60 * 60))
    counts = study["minutes"].setdefault(minute, empty_minute())
    uri = record.get("uri", "")
    status = int(record.get("status", 0))
    if PARTICIPANT_PAGE.match(uri) and status != WEBSOCKET:
        counts["requests"] += 1
        upstream_time = _last(record.get("upstream_time"))
        if upstream_time is not None:
            key = str(bucket(float(upstream_time)))
            counts["times"][key] = counts["times"].get(key, 0) + 1
        code = PARTICIPANT_CODE.match(uri)
        if code:
            _seen(study, code.group(1), int(minute))
    if is_server_error(record):
        counts["errors"] += 1
        study["last_error"] = {"t": float(record["t"]), "uri": page_name(uri), "status": status}
        return True
    return False


def prune(studies, now):
    oldest = now - KEEP_MINUTES * 60
    for study in studies.values():
        study["minutes"] = {minute: counts for minute, counts in study["minutes"].items() if int(minute) >= oldest}
        study["participants"] = {code: minute for code, minute in study.get("participants", {}).items()
                                 if minute >= oldest}


def percentile(times, fraction):
    total = sum(times.values())
    if not total:
        return None
    seen = 0
    for index in sorted(times, key=int):
        seen += times[index]
        if seen >= fraction * total:
            return bucket_seconds(int(index))
    return None


def window(study, now, minutes):
    """The last `minutes` minutes of one study: requests per minute, p50 and p95 page time in
    seconds (None without requests), server errors, participants seen."""
    start = now - minutes * 60
    times, requests, errors = {}, 0, 0
    for minute, counts in study.get("minutes", {}).items():
        if int(minute) + 60 <= start:
            continue
        requests += counts["requests"]
        errors += counts["errors"]
        for index, count in counts["times"].items():
            times[index] = times.get(index, 0) + count
    return {"minutes": minutes, "requests_per_minute": requests / minutes, "p50": percentile(times, 0.5),
            "p95": percentile(times, 0.95), "errors": errors,
            "participants": sum(1 for minute in study.get("participants", {}).values() if minute + 60 > start)}


def report(studies, now):
    return {name: {"last_5": window(study, now, 5), "last_60": window(study, now, 60),
                   "last_error": study.get("last_error")}
            for name, study in studies.items()}
