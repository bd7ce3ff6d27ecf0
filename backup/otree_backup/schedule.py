"""BACKUP_SCHEDULE: when the backup service runs. Times are UTC.

  daily HH:MM    once a day (the default is daily 03:00)
  hourly         at the start of every hour
  every N[smhd]  every N seconds, minutes, hours or days from the service's start
  off            never; backups are taken only by hand (invoke backup)
"""
import datetime
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse(text):
    """('daily', (hour, minute)) | ('hourly', None) | ('every', seconds) | ('off', None);
    ValueError with the accepted forms otherwise."""
    spec = " ".join((text or "").split()).lower()
    if spec == "off":
        return ("off", None)
    if spec == "hourly":
        return ("hourly", None)
    daily = re.fullmatch(r"daily(?: (\d{1,2}):(\d{2}))?", spec)
    if daily:
        hour, minute = (int(daily.group(1)), int(daily.group(2))) if daily.group(1) else (3, 0)
        if hour < 24 and minute < 60:
            return ("daily", (hour, minute))
    every = re.fullmatch(r"every (\d+) ?([smhd])", spec)
    if every and int(every.group(1)) > 0:
        return ("every", int(every.group(1)) * _UNITS[every.group(2)])
    raise ValueError(f"BACKUP_SCHEDULE={text!r} is not a schedule; use `daily 03:00` (UTC), `hourly`, "
                     "`every 6h` (s, m, h or d) or `off`.")


def interval_seconds(spec):
    """The longest gap between two scheduled backups, or None when off."""
    kind, value = spec
    return {"daily": 86400, "hourly": 3600, "every": value}.get(kind)


def next_run(spec, now, previous=None):
    """The next time a backup is due after `now` (aware UTC datetimes). `every` counts from the
    previous run, or from now when there was none."""
    kind, value = spec
    if kind == "off":
        return None
    if kind == "every":
        return (previous or now) + datetime.timedelta(seconds=value)
    if kind == "hourly":
        return now.replace(minute=0, second=0, microsecond=0) + datetime.timedelta(hours=1)
    hour, minute = value
    today = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return today if today > now else today + datetime.timedelta(days=1)
