"""Save the page times a running oTree server holds in memory, before anything stops it."""
import os

from .console import StackError, info
from .envfile import REPO_ROOT

# Sent to the container's Python on stdin, so it also works in a container from an older image.
SCRIPT = os.path.join(REPO_ROOT, "otree_server", "flush_page_times.py")


def flush(compose):
    """Flush when oTree runs; nothing is buffered when it does not. A failure stops the caller,
    because stopping the server then would lose those rows."""
    if not compose.running("otree"):
        return
    with open(SCRIPT, encoding="utf-8") as script:
        result = compose.run("exec", "-T", "otree", "python", "-", check=False, stdin=script)
    if result.returncode:
        raise StackError("oTree did not save the page times it holds in memory, so nothing was stopped "
                         "(stopping now would lose them). Check `invoke logs otree`, then try again.")
    info("Saved the page times oTree held in memory.")
