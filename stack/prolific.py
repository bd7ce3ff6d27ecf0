"""`invoke prolific link|bonuses|report|blocklist`: Prolific's side of a study, from the study's own
data, with no Prolific account or key.

The figures come from the study's oTree, read in a process of its own in the oTree container
(otree_server/prolific_data.py; the rooms as `session create` reads them), so this is safe while
participants play. What they mean (who
finished, who gets a bonus, who took part before) is decided here, in pure functions that the unit
tests check (tests/test_prolific_logic.py). Files are never overwritten: a bonus file written
twice could pay the same bonuses twice."""
import csv
import datetime
import io
import json
import os
import re
import subprocess
import unicodedata
from decimal import ROUND_HALF_UP, Decimal

from . import context, pagetimes, session as session_module
from .console import StackError, info, step, warn
from .envfile import REPO_ROOT

SCRIPT = os.path.join(REPO_ROOT, "otree_server", "prolific_data.py")
USER_ERROR = 2  # the container script's exit code for a mistake the user can fix
DEFAULT_FOLDER = os.path.join(REPO_ROOT, "exports")
ACTIONS = ("link", "bonuses", "report", "blocklist")

# Prolific's participant IDs are 24 lower-case hexadecimal characters (MongoDB object IDs); \Z, as
# $ would let a line break after them into the bonus file.
PROLIFIC_ID = re.compile(r"^[0-9a-f]{24}\Z")
COMPLETION_PREFIX = "https://app.prolific.com/submissions/complete?cc="
# Codes that are obviously still the example's or a template's, not the study's own.
PLACEHOLDER_CODE = re.compile(r"example|xxx|your|todo|change|placeholder|[{}<>\[\]]|^$", re.IGNORECASE)
CENT = Decimal("0.01")
# A cell a spreadsheet runs as a formula (=HYPERLINK(...) sends the researcher's data away), unless
# it is a plain number; and characters that split a cell or a line, or rewrite or reorder what a
# terminal shows: control and format characters (bidi overrides), line and paragraph separators.
FORMULA_START = ("=", "+", "-", "@")
PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?\Z")
INVISIBLE = {"Cc", "Cf", "Zl", "Zp"}


def run(action, study=None, room=None, config=None, session=None, output=None):
    if action not in ACTIONS:
        raise StackError(f"There is no prolific action {action!r}: use one of {', '.join(ACTIONS)} "
                         "(`invoke --help prolific`).")
    if action == "link":
        if not room:
            raise StackError("Name the room participants enter: invoke prolific link --room NAME "
                             "(the project's ROOMS in settings.py).")
        return link(context.load(study, purpose="prolific link"), room, config)
    if action in ("bonuses", "report") and not session:
        raise StackError(f"Name the session: invoke prolific {action} --session CODE (its code is on the admin's "
                         "Sessions page, and printed by `invoke session create`).")
    ctx = context.load(study, purpose=f"prolific {action}")
    if action == "bonuses":
        return bonuses(ctx, session, output)
    if action == "report":
        return report(ctx, session, output)
    return blocklist(ctx, output)


# --- The commands --------------------------------------------------------------------------------

def link(ctx, room, config):
    _require_running(ctx)
    found = session_module.room_facts(ctx)
    if room not in found["rooms"]:
        names = ", ".join(sorted(found["rooms"])) or "none (add ROOMS to settings.py)"
        raise StackError(f"The project has no room {room!r}. Its rooms: {names}. Pass one of them to --room.")
    if config and config not in found["completionlinks"]:
        raise StackError(f"The project has no session config {config!r}. Its configs: "
                         f"{', '.join(sorted(found['completionlinks']))}.")
    in_room = found["rooms"][room]["session"]
    if config:
        checked, what = found["completionlinks"][config], f"the session config '{config}'"
    elif in_room:
        checked, what = in_room["completionlink"], f"the session {in_room['code']} in the room"
    else:
        checked = what = None
    step(f"The study URL to paste into Prolific (study '{ctx.study.name}', room '{room}'):")
    print(session_module.study_url(ctx.https_url(), room), flush=True)
    if in_room:
        info(f"The room holds session {in_room['code']} (config '{in_room.get('config_name', '?')}').")
    else:
        warn(f"The room '{room}' has no session yet: participants who arrive now wait on \"Waiting for your "
             f"session to begin\". Create it first: invoke session create --room {room} --config NAME --places N")
    if what:
        problem = completion_link_problem(checked)
        if problem:
            warn(f"{what}: {problem}")
        else:
            info(f"Completion link of {what}: {checked}")
    return found


def completion_link_problem(link):
    """What is wrong with a session config's `completionlink`, or None when it has Prolific's
    current form with a real-looking code."""
    fix = (f"set completionlink='{COMPLETION_PREFIX}YOURCODE' in the session config (settings.py), with the "
           "completion code from your study's page on Prolific")
    if not link:
        return f"there is no completionlink, so the last page cannot send participants back to Prolific: {fix}."
    if "prolific.co/" in link:
        return (f"{link} is Prolific's old address (app.prolific.co); use its current one: {fix}.")
    if not link.startswith(COMPLETION_PREFIX):
        return f"{link} is not a Prolific completion link ({COMPLETION_PREFIX}CODE): {fix}."
    code = link[len(COMPLETION_PREFIX):]
    if PLACEHOLDER_CODE.search(code):
        return f"the completion code {code!r} is a placeholder: {fix}."
    return None


def bonuses(ctx, code, output):
    path = output_path(output, os.path.join(DEFAULT_FOLDER, ctx.study.name), "bonuses", code)
    data = _ask(ctx, "session", code)
    lines, left_out, duplicates = bonus_lines(data["participants"])
    refusal = bonus_refusal(data, lines)
    _show_left_out(left_out, duplicates)
    if refusal:
        raise StackError(refusal + " Nothing was written.")
    write_new(path, "".join(f"{label},{amount}\n" for label, amount in lines))
    total = sum(Decimal(amount) for _, amount in lines)
    currency = data["session"]["currency"] or "your REAL_WORLD_CURRENCY_CODE"
    step(f"Wrote {len(lines)} bonus line(s), {total:.2f} {currency} in all, to {_shown(path)}")
    info(f"Amounts are in {currency} (the session's payoffs in real-world currency, not the participation fee); "
         "Prolific pays them in your study's currency, so check that it is the same.")
    info("In Prolific, open the study's submissions, choose bulk bonus payments, and paste the file's lines.")
    return path


def report(ctx, code, output):
    path = output_path(output, os.path.join(DEFAULT_FOLDER, ctx.study.name), "report", code)
    try:
        pagetimes.flush(ctx.compose)  # the server holds its newest page times in memory
    except StackError:
        raise StackError("oTree did not save the page times it holds in memory, so the report would miss the "
                         "newest pages; nothing was written. Check `invoke logs --service otree`, then try again.") \
            from None
    data = _ask(ctx, "session", code)
    rows = report_rows(data)
    if not rows:
        raise StackError(f"Nobody has started session {code} yet, so there is nothing to report. Nothing was written.")
    write_new(path, report_csv(rows))
    print(report_table(rows), flush=True)
    totals = report_totals(rows)
    step(f"Session {code}: {totals['started']} started, {totals['finished']} finished, {totals['stuck']} stuck; "
         f"bonuses of finished participants {totals['bonus']} {data['session']['currency'] or ''}".rstrip())
    repeats = [row for row in rows if row["earlier_sessions"]]
    if repeats:
        warn(f"{len(repeats)} Prolific ID(s) already took part in an earlier session of this study: "
             + ", ".join(f"{neutral(row['prolific_id'])} ({row['earlier_sessions']})" for row in repeats)
             + ". Keep them out of the next one with `invoke prolific blocklist`.")
    info(f"Written to {_shown(path)}")
    return path


def blocklist(ctx, output):
    path = output_path(output, os.path.join(DEFAULT_FOLDER, ctx.study.name), "blocklist")
    labels = [row["label"] for row in _ask(ctx, "labels")["participants"]]
    ids, skipped = blocklist_ids(labels)
    if not ids:
        raise StackError(f"No participant of the study '{ctx.study.name}' has a Prolific ID as label yet "
                         f"({skipped} without one), so there is nothing to block. Nothing was written.")
    write_new(path, "".join(f"{prolific_id}\n" for prolific_id in ids))
    step(f"Wrote {len(ids)} Prolific ID(s), everyone who took part in the study '{ctx.study.name}' so far, "
         f"to {_shown(path)}")
    if skipped:
        info(f"{skipped} participant(s) without a Prolific ID as label (lab or test participants) are not in it.")
    info("In Prolific, paste them into your next study's custom blocklist (a screener of its audience).")
    return path


# --- Pure logic (tests/test_prolific_logic.py) ---------------------------------------------------

def finished(participant):
    """On the last page or past it: the last page sends the participant back to Prolific."""
    return participant["visited"] and participant["index"] >= participant["max_index"] > 0


def people(participants):
    """Participants who entered the session; unused places and bots are nobody."""
    return [p for p in participants if p["visited"] and not p["is_bot"]]


def money(text):
    return Decimal(text).quantize(CENT, rounding=ROUND_HALF_UP)


def bonus_lines(participants):
    """([(prolific_id, 'amount')], [(participant, reason)], {duplicate label: count})."""
    entered = people(participants)
    counts = {}
    for participant in entered:
        if participant["label"]:
            counts[participant["label"]] = counts.get(participant["label"], 0) + 1
    duplicates = {label: count for label, count in counts.items() if count > 1}
    lines, left_out = [], []
    for participant in entered:
        label, bonus = participant["label"], money(participant["bonus"])
        if not label:
            reason = "no label: entered without a Prolific link"
        elif not PROLIFIC_ID.match(label):
            reason = f"label {label!r} is not a Prolific ID"
        elif label in duplicates:
            reason = f"Prolific ID seen {duplicates[label]} times in this session: check and pay by hand"
        elif not finished(participant):
            reason = f"not finished (on {participant['app']}/{participant['page']})"
        elif bonus <= 0:
            reason = f"bonus {bonus}"
        else:
            lines.append((label, f"{bonus}"))
            continue
        left_out.append((participant, reason))
    return lines, left_out, duplicates


def bonus_refusal(data, lines):
    """Why no bonus file should be written for this session, or None."""
    code = data["session"]["code"]
    entered = people(data["participants"])
    if not entered:
        return f"Nobody has started session {code} yet, so there are no bonuses."
    if not any(p["label"] and PROLIFIC_ID.match(p["label"]) for p in entered):
        labels = sorted({neutral(p["label"]) for p in entered if p["label"]})
        scheme = f"their labels ({', '.join(labels[:3])}{', ...' if len(labels) > 3 else ''}) are not" if labels \
            else "they have no labels, so none has"
        return (f"None of the {len(entered)} participants of session {code} came through Prolific: {scheme} "
                "Prolific IDs (24 characters, 0-9 and a-f). Bonuses are paid to Prolific IDs; for a lab or "
                "another panel pay from oTree's Payments page instead.")
    if all(Decimal(p["payoff"]) == 0 for p in entered):
        return (f"No participant of session {code} has a payoff: the session's apps never set player.payoff, so "
                "oTree computed no bonus. To pay bonuses, set player.payoff in your apps (it adds up into "
                "participant.payoff); otherwise pay only Prolific's fixed reward.")
    if not lines:
        return f"No participant of session {code} qualifies for a bonus (the list above says why)."
    return None


def report_rows(data):
    earlier = data.get("earlier", {})
    now = _parse(data["now"])
    counts = {}
    entered = people(data["participants"])
    for participant in entered:
        counts[participant["label"]] = counts.get(participant["label"], 0) + 1
    rows = []
    for participant in entered:
        label = participant["label"] or ""
        done = finished(participant)
        completed = [page["completed"] for page in participant["page_times"]]
        notes = []
        if not label:
            notes.append("no label")
        elif not PROLIFIC_ID.match(label):
            notes.append("not a Prolific ID")
        if label and counts[label] > 1:
            notes.append(f"label {counts[label]} times in this session")
        since = participant["on_page_since"]
        rows.append({
            "prolific_id": label,
            "participant_code": participant["code"],
            "status": "finished" if done else "stuck",
            "started_utc": participant["started"] or "",
            "finished_utc": (max(completed) if completed else "") if done else "",
            "stuck_on_page": "" if done else f"{participant['app']}/{participant['page']}",
            "on_page_since_utc": "" if done else (since or ""),
            "minutes_on_page": "" if done or not since else str(int((now - _parse(since)).total_seconds() // 60)),
            "timed_out_pages": ";".join(f"{page['app']}/{page['page']}" for page in participant["page_times"]
                                        if page["timeout"]),
            "bonus": f"{money(participant['bonus'])}",
            "earlier_sessions": ";".join(earlier.get(label, [])) if label else "",
            "notes": "; ".join(notes),
        })
    return rows


def report_totals(rows):
    done = [row for row in rows if row["status"] == "finished"]
    return {"started": len(rows), "finished": len(done), "stuck": len(rows) - len(done),
            "bonus": f"{sum(Decimal(row['bonus']) for row in done):.2f}"}


def neutral(text):
    """Participant-supplied text (a label comes from the start link) as a spreadsheet and a
    terminal show it harmlessly: control characters removed, and a quote before text that a
    spreadsheet would run as a formula. Numbers stay numbers."""
    text = "".join(character for character in text if unicodedata.category(character) not in INVISIBLE)
    if text.lstrip().startswith(FORMULA_START) and not PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def report_csv(rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: neutral(value) for key, value in row.items()} for row in rows)
    return buffer.getvalue()


def report_table(rows):
    """The report for the terminal: the columns needed to approve, reject or chase."""
    header = ["Prolific ID", "status", "started", "finished / stuck on", "min", "timed out", "bonus", "notes"]
    lines = [[neutral(row["prolific_id"]) or "-", row["status"], row["started_utc"][5:16].replace("T", " "),
              row["finished_utc"][5:16].replace("T", " ") if row["status"] == "finished" else row["stuck_on_page"],
              row["minutes_on_page"], row["timed_out_pages"] or "-", row["bonus"],
              "; ".join(filter(None, [row["notes"], row["earlier_sessions"] and
                                      f"also in {row['earlier_sessions']}"]))]
             for row in rows]
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in [header, *lines])


def blocklist_ids(labels):
    """(each Prolific ID once, in the order they first took part; how many labels were not one)."""
    ids, skipped = [], 0
    for label in labels:
        if label and PROLIFIC_ID.match(label):
            if label not in ids:
                ids.append(label)
        else:
            skipped += 1
    return ids, skipped


def _parse(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


# --- Files and the container ---------------------------------------------------------------------

def default_name(action, session=None):
    """Bonuses have one name per session, so a second bonus file for it is refused; reports and
    blocklists are dated, as they change while a study runs."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    return {"bonuses": f"prolific-bonuses-{session}.csv", "report": f"prolific-report-{session}-{stamp}.csv",
            "blocklist": f"prolific-blocklist-{stamp}.txt"}[action]


def output_path(output, folder, action, session=None):
    """--output, or the default name in folder; refused when the file exists (before anything is read)."""
    path = os.path.abspath(os.path.expanduser(output or os.path.join(folder, default_name(action, session))))
    if os.path.exists(path):
        hint = ": you may have paid these bonuses already, and pasting them twice pays twice" \
            if action == "bonuses" else ""
        raise StackError(f"{_shown(path)} already exists and is never overwritten{hint}. Name a new file with "
                         "--output FILE, or move the old one away. Nothing was written.")
    return path


def write_new(path, text):
    """Create the file, refusing to replace one; readable by this user only (participants' IDs)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise StackError(f"{_shown(path)} already exists and is never overwritten. Nothing was written.") from None
    except OSError as error:
        raise StackError(f"Cannot write {_shown(path)}: {error.strerror}. Choose another file with --output FILE. "
                         "Nothing was written.") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
    except BaseException:
        os.unlink(path)
        raise


def _shown(path):
    return os.path.relpath(path) if path.startswith(os.getcwd() + os.sep) else path


def _require_running(ctx):
    if not ctx.compose.running("otree"):
        raise StackError(f"The study '{ctx.study.name}' is not running, so its data cannot be read. Start it with "
                         f"`invoke up --study {ctx.study.name}`, then run this again.")


def _ask(ctx, *args):
    """Run otree_server/prolific_data.py in the study's oTree container and read its JSON."""
    _require_running(ctx)
    with open(SCRIPT, "rb") as script:
        result = subprocess.run(ctx.compose.command("exec", "-T", "otree", "python", "-", *args), stdin=script,
                                env=ctx.compose.environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    message = result.stderr.decode("utf-8", "replace").strip()
    if result.returncode == USER_ERROR:
        raise StackError(f"{message.splitlines()[-1]} Nothing was written.")
    if result.returncode:
        tail = "\n".join(message.splitlines()[-15:])
        raise StackError(f"Reading the study's data failed in the oTree container (exit {result.returncode}); "
                         f"nothing was written. Its last messages:\n{tail}")
    return json.loads(result.stdout)


def _show_left_out(left_out, duplicates):
    if duplicates:
        warn("A Prolific ID seen more than once in this session: " +
             ", ".join(f"{neutral(label)} ({count} times)" for label, count in duplicates.items()) +
             ". oTree gives a returning ID its old place, so this means labels set by hand: check before paying.")
    if left_out:
        step(f"Left out ({len(left_out)}):")
        for participant, reason in left_out:
            info(f"participant {participant['id_in_session']} ({participant['code']}"
                 f"{', ' + neutral(participant['label']) if participant['label'] else ''}): {reason}")
