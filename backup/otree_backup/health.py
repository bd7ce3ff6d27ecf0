"""When the backup service is unhealthy: its last attempt failed, or a scheduled backup is overdue."""
from . import schedule, store


def problem(status, spec, moment):
    """Why the service is unhealthy, or None."""
    failure = status.get("last_failure")
    if failure:
        return f"the last backup attempt failed ({failure['at']}): {failure['error']}"
    interval = schedule.interval_seconds(spec)
    started = status.get("scheduler_started")
    if interval and started:
        success = status.get("last_success")
        reference = store.parse_time(success["at"] if success else started)
        if (moment - reference).total_seconds() > 2 * interval + 600:
            return f"no good backup since {reference.isoformat()}, although one is due every {interval} s"
    return None
