"""Which backup a rollback tells the researcher to restore: that of the first release after the
one rolled back to whose deploy changed the database's tables, and none when no such release
did (code-only releases, rollbacks, deploys that failed before their backup)."""
import pytest

from stack import rollback

pytestmark = pytest.mark.unit

UNCHANGED = ["no changes to the database"]
ADDED = ["questionnaire_player: new column comments (text); the table has no rows yet."]


def release(number, changes=UNCHANGED, outcome="replaced", kind="deploy", backup=True):
    """A release as stack/deploy.py and stack/rollback.py record it."""
    found = {"number": number, "kind": kind, "outcome": outcome, "changes": changes}
    if backup:
        found["backup_id"] = f"2027-01-1{number}T000000Z-before-deploy"
    return found


ADOPTED = {"number": 1, "kind": "adopted", "outcome": "replaced", "changes": ["what ran before the first deploy"]}


@pytest.mark.parametrize("records, chosen, advised", [
    # Releases of code only: the data fits the older code, nothing to restore.
    ([ADOPTED, release(2), release(3, outcome="live")], 2, None),
    ([ADOPTED, release(2), release(3, outcome="live")], 1, None),
    # v3 added a column: its backup is the database as v2 had it, even rolling back from v4.
    ([ADOPTED, release(2), release(3, ADDED), release(4, outcome="live")], 2, 3),
    ([ADOPTED, release(2, ADDED), release(3, ADDED), release(4, outcome="live")], 1, 2),
    # Rolled back over a rollback and a failed build (no backup, no change): nothing.
    ([ADOPTED, release(2, ADDED), release(3, outcome="failed", changes=[], backup=False),
      release(4, kind="rollback", changes=["the code of v1; the data stays as it is"], backup=False, outcome="live")],
     2, None),
    # A release whose switch failed keeps the columns it added.
    ([ADOPTED, release(2, outcome="live"), release(3, ADDED, outcome="failed")], 1, 3),
])
def test_the_advice_names_the_backup_of_the_first_release_that_changed_the_tables(records, chosen, advised):
    found = rollback.first_schema_change(records, next(r for r in records if r["number"] == chosen))
    assert (found and found["number"]) == advised
