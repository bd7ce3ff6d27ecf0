"""`invoke prolific bonuses|report|blocklist|link` on the shared test server, after participants
played the example study as plain HTTP clients through nginx. The bonus file is checked against one
computed here, independently, from `invoke export-data`'s wide file."""
import csv
import glob
import os
import re
import secrets
import time
from decimal import ROUND_HALF_UP, Decimal

import pytest

from tests.participants import Participant, play_together

pytestmark = pytest.mark.docker

PROLIFIC_ID = re.compile(r"^[0-9a-f]{24}$")
DECLINE = {"Consent": {"consent": "False"}}


@pytest.fixture(scope="module")
def played(stack):
    """Session A (the group game, 9 places): three Prolific participants finish with different
    payoffs, one without a label and one Prolific participant decline consent, one stops on the
    demographics page. Session B (survey_only): the first of them takes part again."""
    ids = [secrets.token_hex(12) for _ in range(5)]
    a = stack.create_session(9)
    url = a["session_wide_url"]
    stuck = Participant(f"{url}?participant_label={ids[4]}")
    stuck.play_until("Demographics")
    game = [Participant(f"{url}?participant_label={pid}", answers={"Contribute": {"contribution": str(amount)}})
            for pid, amount in zip(ids[:3], (7, 13, 29))]
    play_together(game)
    Participant(url, answers=DECLINE).play_until()  # a fresh browser without a label: a new participant
    Participant(f"{url}?participant_label={ids[3]}", answers=DECLINE).play_until()
    b = stack.rest("POST", "/api/sessions", json=dict(session_config_name="survey_only", num_participants=2))
    Participant(f"{b['session_wide_url']}?participant_label={ids[0]}").play_until()
    return {"a": a["code"], "b": b["code"], "ids": ids}


def prolific(stack, *args, check=True):
    return stack.invoke("prolific", *args, check=check)


def expected_bonus_lines(stack, code, folder):
    """Prolific's bulk-bonus lines computed from the wide export: finished participants with a
    Prolific ID as label, payoff x real_world_currency_per_point, two decimals, above zero."""
    stack.invoke("export-data", "--session", code, "--output", str(folder))
    (wide,) = glob.glob(os.path.join(folder, "*", "all_apps_wide_*.csv"))
    lines = []
    with open(wide, encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            finished = row["participant.visited"] == "1" and \
                int(row["participant._index_in_pages"]) >= int(row["participant._max_page_index"])
            amount = (Decimal(row["participant.payoff"]) * Decimal(row["session.config.real_world_currency_per_point"])
                      ).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            if finished and PROLIFIC_ID.match(row["participant.label"]) and amount > 0:
                lines.append(f"{row['participant.label']},{amount}\n")
    return lines


def test_the_bonus_file_equals_one_computed_from_the_export_and_is_never_overwritten(stack, played, tmp_path):
    output = tmp_path / "bonuses.csv"
    result = prolific(stack, "bonuses", "--session", played["a"], "--output", str(output))
    expected = expected_bonus_lines(stack, played["a"], tmp_path / "export")
    written = output.read_text().splitlines(keepends=True)
    assert written == expected and len(written) == 3
    assert {line.split(",")[0] for line in written} == set(played["ids"][:3])
    assert len({line.split(",")[1] for line in written}) == 3  # the three payoffs differ
    total = sum(Decimal(line.split(",")[1]) for line in written)
    assert f"Wrote 3 bonus line(s), {total:.2f} GBP in all" in result.stdout
    # The left-out list: the one without a label, the one who declined, the one still playing.
    assert "no label: entered without a Prolific link" in result.stdout
    assert re.search(played["ids"][3] + r"\): bonus 0\.00", result.stdout)
    assert re.search(played["ids"][4] + r"\): not finished \(on demographics/Demographics\)", result.stdout)

    again = prolific(stack, "bonuses", "--session", played["a"], "--output", str(output), check=False)
    assert again.returncode == 1 and "already exists and is never overwritten" in again.stderr
    assert output.read_text().splitlines(keepends=True) == expected


def test_the_report_shows_who_finished_and_who_is_stuck_where(stack, played, tmp_path):
    output = tmp_path / "report.csv"
    result = prolific(stack, "report", "--session", played["a"], "--output", str(output))
    with open(output, encoding="utf-8") as handle:
        rows = {row["participant_code"]: row for row in csv.DictReader(handle)}
    by_id = {row["prolific_id"]: row for row in rows.values()}
    assert len(rows) == 6  # everyone who entered; the three unused places are nobody
    stuck = by_id[played["ids"][4]]
    assert (stuck["status"], stuck["stuck_on_page"], stuck["finished_utc"]) == ("stuck", "demographics/Demographics", "")
    assert stuck["on_page_since_utc"] and int(stuck["minutes_on_page"]) >= 0
    for pid in played["ids"][:4]:
        assert by_id[pid]["status"] == "finished" and by_id[pid]["finished_utc"] >= by_id[pid]["started_utc"]
    assert by_id[""]["notes"] == "no label"
    bonuses = sum(Decimal(by_id[pid]["bonus"]) for pid in played["ids"][:3])
    assert f"6 started, 5 finished, 1 stuck; bonuses of finished participants {bonuses:.2f} GBP" in result.stdout
    assert played["ids"][4] in result.stdout and "demographics/Demographics" in result.stdout  # the table


def test_the_report_names_a_page_that_timed_out(stack, tmp_path):
    """A participant who stops answering on the contribution page: oTree's timeout worker submits
    it for them, and the report says so from oTree's own page-time log."""
    session = stack.create_session(3, contribute_timeout_seconds=2)
    ids = [secrets.token_hex(12) for _ in range(3)]
    players = [Participant(f"{session['session_wide_url']}?participant_label={pid}") for pid in ids]
    play_together(players, page_name="Contribute")
    for player in players[:2]:
        player.step()
    gone, deadline = players[2], time.time() + 60
    while gone.page_name == "Contribute":  # its reloads, until the timeout moved it on
        assert time.time() < deadline, "the contribution page never timed out"
        time.sleep(0.5)
        gone._follow(gone._request("GET", gone.url))
    prolific(stack, "report", "--session", session["code"], "--output", str(tmp_path / "report.csv"))
    with open(tmp_path / "report.csv", encoding="utf-8") as handle:
        timed_out = {row["prolific_id"]: row["timed_out_pages"] for row in csv.DictReader(handle)}
    assert timed_out == {ids[0]: "", ids[1]: "", ids[2]: "public_goods/Contribute"}


def test_a_repeat_participant_is_flagged_and_the_blocklist_has_everyone_once(stack, played, tmp_path):
    result = prolific(stack, "report", "--session", played["b"], "--output", str(tmp_path / "b.csv"))
    with open(tmp_path / "b.csv", encoding="utf-8") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["prolific_id"], row["earlier_sessions"]) == (played["ids"][0], played["a"])
    assert f"already took part in an earlier session of this study: {played['ids'][0]} ({played['a']})" \
        in result.stderr.replace("\n", " ")

    blocklist = tmp_path / "blocklist.txt"
    prolific(stack, "blocklist", "--output", str(blocklist))
    listed = blocklist.read_text().splitlines()
    assert all(PROLIFIC_ID.match(line) for line in listed) and len(listed) == len(set(listed))
    assert set(played["ids"]) <= set(listed)  # the repeat participant once, the stuck one too


def test_bad_input_gets_a_clear_message_and_writes_nothing(stack, played, tmp_path):
    lab = stack.create_session(3)
    Participant(f"{lab['session_wide_url']}?participant_label=LAB-01", answers=DECLINE).play_until()
    cases = {
        ("bonuses", "--session", "nosuch"): "There is no session 'nosuch'. The newest are:",
        ("bonuses", "--session", played["b"]): "the session's apps never set player.payoff",
        ("bonuses", "--session", lab["code"]): "their labels (LAB-01) are not Prolific IDs",
        ("report", "--session", "nosuch"): "There is no session 'nosuch'.",
        ("link", "--room", "nosuch"): "The project has no room 'nosuch'. Its rooms: ",
        ("link", "--room", "prolific", "--config", "nosuch"): "no session config 'nosuch'",
    }
    for args, message in cases.items():
        output = tmp_path / "out.csv"
        result = prolific(stack, *args, "--output", str(output), check=False) if args[0] != "link" \
            else prolific(stack, *args, check=False)
        assert result.returncode == 1 and message in result.stderr.replace("\n", " "), (args, result.stderr)
        assert "Nothing was written" in result.stderr or args[0] == "link"
        assert not output.exists()


def test_the_link_checks_the_rooms_session_or_says_there_is_none(stack):
    url = (f"{stack.https}/room/prolific?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}&STUDY_ID={{{{%STUDY_ID%}}}}"
           f"&SESSION_ID={{{{%SESSION_ID%}}}}")
    stack.sql("DELETE FROM otree_roomtosession WHERE room_name = 'prolific'")  # the admin's "Close this room"
    empty = prolific(stack, "link", "--room", "prolific")
    assert url in empty.stdout
    assert "The room 'prolific' has no session yet" in empty.stderr and "invoke session create --room prolific" \
        in empty.stderr

    # The session in the room is checked with its own config: here a real-looking code, no warning.
    real = "https://app.prolific.com/submissions/complete?cc=C7Q2M4XZ"
    session = stack.create_session(3, room="prolific", completionlink=real)
    held = prolific(stack, "link", "--room", "prolific")
    assert f"The room holds session {session['code']}" in held.stdout
    assert f"Completion link of the session {session['code']} in the room: {real}" in held.stdout
    assert "warning" not in held.stderr

    # A config named is checked instead; the example's code is a placeholder, and the fix is named.
    placeholder = prolific(stack, "link", "--room", "prolific", "--config", "survey_only")
    assert url in placeholder.stdout
    assert "the completion code 'CEXAMPLE' is a placeholder" in placeholder.stderr.replace("\n", " ")
