"""Durable page times: each page-time row goes to the database with the page it times.

oTree keeps page-completion rows in its process's memory and writes them as one batch after 50
rows or 2 minutes (otree/common2.py, oTree 5 and 6 alike), with no flush on shutdown, so a crash
loses up to 50 pages' times that participants saw acknowledged. With the buffer's size at 0,
oTree's own code writes each row at once, through the request's database session, so the row is
committed in the same transaction as the participant's answers, before the answer is sent. The
rows and the export are as oTree writes them, one batch per page instead of per 50. The cost is
one INSERT in a transaction oTree commits anyway (README, "Page times")."""
import logging

log = logging.getLogger("otree.stack")


def apply():
    """Write every row at once; when this oTree keeps its buffer elsewhere, say so in the log."""
    import otree.common2
    if type(getattr(otree.common2, "BUFFER_SIZE", None)) is not int or not hasattr(
            otree.common2, "write_page_completion_buffer"):
        log.warning("Page times are kept in oTree's memory as it does by itself: this oTree version has no "
                    "page-time buffer where the stack knows it, so a crash of oTree may lose the last page times.")
        return False
    otree.common2.BUFFER_SIZE = 0
    log.info("Page times are saved with each page, in its own transaction: a crash of oTree loses none.")
    return True
