"""Which backups a rotation keeps: the newest backup of each of the last N days, weeks and
months that have one, and the oldest backup while there are fewer such periods than N. That is
the rule of `restic forget --keep-daily/--keep-weekly/--keep-monthly` (restic 0.17 and later),
so the local folder and the off-site repository keep the same backups."""


def buckets(moment):
    iso = moment.isocalendar()
    return {"daily": moment.strftime("%Y-%m-%d"), "weekly": f"{iso[0]}-W{iso[1]:02d}",
            "monthly": moment.strftime("%Y-%m")}


def keep(backups, daily, weekly, monthly):
    """backups: [(id, aware datetime)]. Returns the set of ids to keep."""
    limits = {"daily": daily, "weekly": weekly, "monthly": monthly}
    last_bucket = dict.fromkeys(limits)
    kept_per_kind = dict.fromkeys(limits, 0)
    kept = set()
    newest_first = sorted(backups, key=lambda item: item[1], reverse=True)
    for backup_id, moment in newest_first:
        for kind, bucket in buckets(moment).items():
            if kept_per_kind[kind] < limits[kind] and bucket != last_bucket[kind]:
                last_bucket[kind] = bucket
                kept_per_kind[kind] += 1
                kept.add(backup_id)
    if newest_first and any(kept_per_kind[kind] < limits[kind] for kind in limits):
        kept.add(newest_first[-1][0])
    return kept
