"""One deploy, rollback or settings change at a time on a server: a second one is refused at once,
with who holds the lock and since when, and never interleaves with the first. The lock is the
kernel's (flock), so a deploy that dies releases it by itself."""
import contextlib
import json
import os
import time

from .console import StackError


@contextlib.contextmanager
def held(server, what):
    import fcntl  # here: servers are Linux; a Windows laptop imports this module but never locks
    os.makedirs(server.studies_dir, exist_ok=True)
    path = os.path.join(server.studies_dir, ".operations.lock")
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            try:
                holder = json.loads(handle.read() or "{}")
            except ValueError:
                holder = {}
            raise StackError(f"Another operation is running on this server: {holder.get('what', 'unknown')}, "
                             f"started {holder.get('since', '?')} (process {holder.get('pid', '?')}). Nothing was "
                             "done; run this again when it has finished (`invoke releases` shows a deploy's "
                             "outcome).") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"what": what, "pid": os.getpid(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}))
        handle.flush()
        yield
