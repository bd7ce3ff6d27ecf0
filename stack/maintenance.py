"""`invoke maintenance on|off`: participants of a study see a page that reloads itself (HTTP 503
with Retry-After) while the researcher's admin stays reachable.

The switch is a file beside the study's rendered proxy configuration, which nginx looks for on
every request (nginx/study-server.conf.template): turning it on or off needs no reload."""
import contextlib
import os

from . import lock
from .console import StackError, info, step


def flag(study):
    return os.path.join(study.server.proxy_dir, "studies", study.name, "maintenance")


def is_on(study):
    return os.path.exists(flag(study))


def switch(study, on):
    path = flag(study)
    if on:
        if not os.path.isdir(os.path.dirname(path)):
            raise StackError(f"The proxy has no configuration for the study '{study.name}' yet. Start it with "
                             f"`invoke up --study {study.name}` first.")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("on\n")
        os.chmod(path, 0o644)
    elif os.path.exists(path):
        os.remove(path)


@contextlib.contextmanager
def page_up(study):
    """The maintenance page for the duration of a task, then back to what it was: still on when the
    researcher had turned it on. A study the proxy has no configuration for has no participants to show it to."""
    was_on = is_on(study)
    configured = os.path.dirname(flag(study))
    if os.path.isdir(configured):
        switch(study, True)
    try:
        yield
    finally:
        if os.path.isdir(configured):  # a removed study's configuration is gone
            switch(study, was_on)


def run(ctx, action):
    if action not in ("on", "off"):
        raise StackError(f"Use `invoke maintenance on` or `invoke maintenance off`, not {action!r}.")
    with lock.held(ctx.server, f"maintenance {action} of {ctx.study.name}"):
        switch(ctx.study, action == "on")
    if action == "on":
        step(f"The study '{ctx.study.name}' is in maintenance: participants see a page that reloads by itself "
             "every few seconds; the admin stays reachable.")
        info(f"End it with: invoke maintenance off --study {ctx.study.name}")
    else:
        step(f"The study '{ctx.study.name}' serves participants again: {ctx.https_url()}")
