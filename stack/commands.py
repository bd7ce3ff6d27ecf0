"""`invoke logs` and `invoke otree`: a study's (or the proxy's) log, and any oTree command in a
study's container."""
import sys

from . import context, proxy
from .compose import PROXY_SERVICES, STUDY_SERVICES
from .console import StackError


def logs(study=None, service=None, follow=True, tail=200):
    if service and service not in STUDY_SERVICES + PROXY_SERVICES:
        raise StackError(f"There is no service {service!r}; choose one of: {', '.join(STUDY_SERVICES + PROXY_SERVICES)}.")
    args = ["logs", "--tail", str(tail)] + (["--follow"] if follow else [])
    if service in PROXY_SERVICES:
        # The proxy serves every study: its log is the server's, not one study's.
        proxy.compose(context.checked_settings().server).run(*args, service, check=False)
        return
    ctx = context.load(study, purpose="shows the log of")
    ctx.compose.run(*args, *([service] if service else []), check=False)


def otree_version(ctx):
    """The oTree version installed in the study's running container, or '' when it does not answer."""
    return ctx.compose.run("exec", "-T", "otree", "python", "-c", "import otree; print(otree.__version__)",
                           capture=True, check=False).stdout.strip()


def otree(args, study=None):
    if not args:
        raise StackError("Name an oTree command after --, e.g.: invoke otree -- test prolific_study 3")
    ctx = context.load(study, purpose="runs an oTree command in")
    if not ctx.compose.running("otree"):
        raise StackError(f"The oTree container of the study '{ctx.study.name}' is not running. Start it with: "
                         f"invoke up --study {ctx.study.name}")
    tty = [] if sys.stdin.isatty() else ["-T"]
    return ctx.compose.run("exec", *tty, "otree", "otree", *args, check=False).returncode
