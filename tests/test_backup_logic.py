"""Pure logic of the backup service: schedules, rotation, health, repository addresses."""
import datetime

import pytest

from backup.otree_backup import rotation, schedule
from stack.compose import local_restic_path

pytestmark = pytest.mark.unit

UTC = datetime.timezone.utc


def at(text):
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("text, parsed", [
    ("daily 03:00", ("daily", (3, 0))), ("daily", ("daily", (3, 0))), ("Daily  23:59", ("daily", (23, 59))),
    ("hourly", ("hourly", None)), ("every 6h", ("every", 21600)), ("every 10 s", ("every", 10)),
    ("every 2d", ("every", 172800)), ("off", ("off", None)),
])
def test_schedules_parse(text, parsed):
    assert schedule.parse(text) == parsed


@pytest.mark.parametrize("text", ["nightly", "daily 24:00", "daily 3", "every 0s", "every 5 weeks", ""])
def test_bad_schedules_say_what_is_accepted(text):
    with pytest.raises(ValueError, match="daily 03:00"):
        schedule.parse(text)


def test_next_run():
    now = at("2026-11-22T10:15:30")
    assert schedule.next_run(("daily", (3, 0)), now) == at("2026-11-23T03:00:00")
    assert schedule.next_run(("daily", (11, 0)), now) == at("2026-11-22T11:00:00")
    assert schedule.next_run(("hourly", None), now) == at("2026-11-22T11:00:00")
    assert schedule.next_run(("every", 60), now) == at("2026-11-22T10:16:30")
    assert schedule.next_run(("every", 60), now, previous=at("2026-11-22T10:15:00")) == at("2026-11-22T10:16:00")
    assert schedule.next_run(("off", None), now) is None


def test_rotation_keeps_the_newest_of_each_day_week_and_month():
    # Four backups a day for 120 days.
    start = at("2026-01-01T00:00:00")
    backups = [(f"b{n}", start + datetime.timedelta(hours=6 * n)) for n in range(4 * 120)]
    kept = rotation.keep(backups, daily=7, weekly=4, monthly=6)
    moments = sorted(moment for backup_id, moment in backups if backup_id in kept)
    newest = backups[-1][1]
    assert backups[-1][0] in kept
    # 7 daily, then weekly and monthly ones that are not already a daily: the last of each.
    days = {moment.date() for moment in moments}
    assert len([day for day in days if (newest.date() - day).days < 7]) == 7
    assert len({rotation.buckets(moment)["weekly"] for moment in moments}) >= 4
    assert len({rotation.buckets(moment)["monthly"] for moment in moments}) == 4  # Jan to April: all of them
    assert all(moment.hour == 18 for moment in moments[1:])  # always the day's newest, but the first
    assert len(kept) < 7 + 4 + 6 + 1
    # Only 4 months so far (of 6 to keep): the very first backup is kept as well.
    assert backups[0][0] in kept


def test_rotation_of_several_backups_in_one_day_keeps_its_newest_and_the_first():
    day = [(f"b{n}", at("2026-11-22T10:00:00") + datetime.timedelta(seconds=10 * n)) for n in range(5)]
    # Fewer days than BACKUP_KEEP_DAILY so far: like restic, the oldest is kept too.
    assert rotation.keep(day, daily=7, weekly=4, monthly=6) == {"b0", "b4"}


def test_rotation_with_full_periods_and_nothing_to_keep_of_a_kind():
    backups = [("a", at("2026-11-20T03:00:00")), ("b", at("2026-11-21T03:00:00")), ("c", at("2026-11-22T03:00:00"))]
    assert rotation.keep(backups, daily=2, weekly=0, monthly=0) == {"b", "c"}
    assert rotation.keep(backups, daily=3, weekly=0, monthly=0) == {"a", "b", "c"}
    assert rotation.keep([], daily=7, weekly=4, monthly=6) == set()


def test_health_reports_failures_and_overdue_backups():
    from backup.otree_backup.health import problem as health_problem
    daily = ("daily", (3, 0))
    now = at("2026-11-22T12:00:00")
    assert health_problem({}, daily, now) is None
    fresh = {"scheduler_started": "2026-11-22T11:00:00+00:00"}
    assert health_problem(fresh, daily, now) is None
    overdue = {"scheduler_started": "2026-11-18T11:00:00+00:00",
               "last_success": {"at": "2026-11-19T03:00:00+00:00", "id": "x"}}
    assert "no good backup since 2026-11-19" in health_problem(overdue, daily, now)
    failed = dict(fresh, last_failure={"at": "2026-11-22T11:30:00+00:00", "error": "disk full"})
    assert "disk full" in health_problem(failed, daily, now)
    assert health_problem(overdue, ("off", None), now) is None


def test_local_and_remote_restic_repositories():
    assert local_restic_path("/mnt/disk/restic") == "/mnt/disk/restic"
    assert local_restic_path("local:/mnt/disk/restic") == "/mnt/disk/restic"
    assert local_restic_path("backups-offsite").endswith("/backups-offsite")
    for remote in ("s3:s3.example.org/bucket", "sftp:user@host:/srv/restic", "rest:https://host:8000/", "b2:bucket:path", ""):
        assert local_restic_path(remote) is None


def test_network_endpoints_of_repositories():
    from backup.otree_backup.offsite import network_endpoint
    assert network_endpoint("rest:http://127.0.0.1:9/") == ("127.0.0.1", 9)
    assert network_endpoint("rest:https://user:secret@backup.example.org/otree/") == ("backup.example.org", 443)
    assert network_endpoint("s3:s3.example.org/bucket") == ("s3.example.org", 443)
    assert network_endpoint("s3:http://minio.local:9000/bucket") == ("minio.local", 9000)
    assert network_endpoint("sftp:researcher@files.example.edu:/srv/restic") == ("files.example.edu", 22)
    assert network_endpoint("sftp://researcher@files.example.edu:2222//srv/restic") == ("files.example.edu", 2222)
    assert network_endpoint("/mnt/disk/restic") is None
    assert network_endpoint("b2:bucket:path") is None
