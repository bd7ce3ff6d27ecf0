"""Backups of the oTree database: take, verify, rotate, copy off-site, restore.

Runs in the backup container (`python3 -m otree_backup COMMAND`); `invoke backup`, `backups`,
`restore` and `resetdb` call it there. schedule.py and rotation.py are pure logic, also
imported on the host to check .env."""


class BackupError(Exception):
    """A failure with a message that says what happened and how to fix it."""
