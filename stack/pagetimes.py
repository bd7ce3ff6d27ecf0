"""Save the page times a running oTree server holds in memory, before anything stops it."""
from .console import StackError, info


def flush(compose):
    """Flush when oTree runs; nothing is buffered when it does not. A failure stops the caller,
    because stopping the server then would lose those rows."""
    if compose.states().get("otree", {}).get("state") != "running":
        return
    result = compose.run("exec", "-T", "otree", "python", "/opt/otree-server/flush_page_times.py", check=False)
    if result.returncode:
        raise StackError("oTree did not save the page times it holds in memory, so nothing was stopped "
                         "(stopping now would lose them). Check `invoke logs otree`, then try again.")
    info("Saved the page times oTree held in memory.")
