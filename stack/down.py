"""`invoke down`: stop a study, and the proxy with the last running one. Its data stays unless
deleting it is confirmed by typing the study's name."""
import subprocess

from . import backups, compose, context, lock, pagetimes, proxy
from .console import confirm_by_typing, info, step, warn


def run(study=None, delete_data=False, confirm=None):
    ctx = context.load(study, purpose="stops")
    name = ctx.study.name
    with lock.held(ctx.server, f"down{' --delete-data' if delete_data else ''} of {name}"):
        if delete_data:
            _delete(ctx, confirm)
            return
        pagetimes.flush(ctx.compose)
        step(f"Stopping the study '{name}'; its database is kept")
        ctx.compose.run("down", "--remove-orphans")
        _stop_proxy_if_idle(ctx)
    info(f"Start it again with: invoke up --study {name}")


def _delete(ctx, confirm):
    name = ctx.study.name
    running = ctx.compose.running("postgres", "backup")
    confirm_by_typing(name, f"This deletes every session, participant and answer of the study '{name}'. "
                            + ("oTree is stopped and a last backup is taken first; backups in BACKUP_DIR stay."
                               if running else
                               "The study is not running, so no last backup can be taken (run `invoke up` "
                               "and `invoke backup` first if you want one)."), confirm)
    if running:
        with backups.stopped_and_backed_up(ctx, "before-delete") as last:
            info(f"The data as it was is backup {last.id}: {last.path}")
            step(f"Stopping the study '{name}' and deleting its database")
            delete_containers_and_data(ctx)
    else:
        warn("No last backup was taken: the study is not running.")
        step(f"Stopping the study '{name}' and deleting its database")
        delete_containers_and_data(ctx)
    _stop_proxy_if_idle(ctx)
    info(f"All data of the study '{name}' is gone. `invoke up --study {name}` starts it empty.")
    if running:
        info(f"To bring it back: invoke up --study {name}, then invoke restore {last.id} --study {name}")


def _stop_proxy_if_idle(ctx):
    """The proxy serves the studies; with none running it stops too (and `invoke up` starts it),
    as a one-study server always did. Its certificates are kept."""
    others = [study for study in ctx.settings.studies
              if study.name != ctx.study.name and compose.for_study(study).running("otree")]
    if not others:
        step("No other study is running, so the proxy stops too; its certificates are kept")
        proxy.compose(ctx.server).run("down", "--remove-orphans")


def delete_containers_and_data(ctx):
    ctx.compose.run("down", "--remove-orphans", "--volumes")
    # A volume kept from the one-study layout belongs to another Compose project, so `down` leaves it.
    subprocess.run(["docker", "volume", "rm", ctx.study.postgres_volume], capture_output=True)

