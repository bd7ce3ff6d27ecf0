"""One operation at a time on a server: every task that changes a study (deploy, rollback, config,
up, rebuild, restore, resetdb, migrate, down, study add/remove, maintenance, backup) holds this
lock; a second one is refused at once, with who holds the lock and since when, and never
interleaves with the first. The lock is the kernel's (flock), so a task that dies releases it by
itself. Within one process it is re-entrant: a deploy that starts a new study runs `up`, a
restore runs the migration, under the lock they already hold."""
import contextlib
import json
import os
import time

from .console import StackError

# The lock files this process holds. flock is per open file: a second open of the same file in
# this process would be refused as if it were another process.
_held_here = set()


def path(server):
    return os.path.join(server.studies_dir, ".operations.lock")


def _read(handle):
    handle.seek(0)
    try:
        return json.loads(handle.read() or "{}")
    except ValueError:
        return {}


@contextlib.contextmanager
def held(server, what):
    import fcntl  # here: servers are Linux; a Windows laptop imports this module but never locks
    os.makedirs(server.studies_dir, exist_ok=True)
    lock_path = path(server)
    if lock_path in _held_here:
        yield  # the outer operation of this process holds it
        return
    with open(lock_path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            found = _read(handle)
            raise StackError(f"Another operation is running on this server: {found.get('what', 'unknown')}, "
                             f"started {found.get('since', '?')} (process {found.get('pid', '?')}). Nothing was "
                             "done; run this again when it has finished (`invoke releases` "
                             "shows a deploy's outcome).") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"what": what, "pid": os.getpid(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}))
        handle.flush()
        _held_here.add(lock_path)
        try:
            yield
        finally:
            _held_here.discard(lock_path)
