"""`invoke status`: the proxy, then each study (or the one named): its services' state and
health, oTree version, participants' load and errors (stack/load.py), backups, certificate and
address. `--watch` prints it again every few seconds until Ctrl-C."""
import time

from . import backups, base_image, certificates, commands, context, envfile, load, proxy, redact, stack_version
from .console import info, step

WATCH_SECONDS = 5


def run(study=None, watch=False):
    if not watch:
        _once(study)
        return
    try:
        while True:
            print("\033[H\033[2J", end="")  # clear the terminal, as `watch` does
            _once(study)
            print(f"\nEvery {WATCH_SECONDS} s; Ctrl-C to stop.", flush=True)
            time.sleep(WATCH_SECONDS)
    except KeyboardInterrupt:
        print()


def _once(study=None):
    loaded = context.checked_settings()
    server = loaded.server
    edge = proxy.compose(server)
    step(f"Server '{server.name}' (settings {server.env_path})")
    info(f"stack     {stack_version.installed_line(envfile.REPO_ROOT)}")
    for service, state in sorted(edge.states().items()):
        info(f"{service:<9} {state['state']:<10} {state['health'] or '-'}")
    if not edge.running("nginx"):
        info("The proxy is not running. Start everything with: invoke up")
    info(f"base      {server.base_image}{' (built here with debootstrap)' if base_image.built_here(server.base_image) else ''}")
    monitor = load.monitor_report(server) if edge.running("monitor") else None
    for chosen in ([loaded.study(study)] if study else loaded.studies):
        _study(context.Context(loaded, chosen), monitor)


def _study(ctx, monitor):
    states = ctx.compose.states()
    step(f"Study '{ctx.study.name}' (settings {ctx.env_path})")
    if not states:
        info(f"Not running. Start it with: invoke up --study {ctx.study.name}")
        return
    for service, state in sorted(states.items()):
        info(f"{service:<9} {state['state']:<10} {state['health'] or '-'}")
    if ctx.compose.running("otree"):
        info(f"oTree     {commands.otree_version(ctx) or 'unknown (the server does not answer)'}")
    load.report(ctx, monitor)
    if ctx.compose.running("backup"):
        for line in backups.status_lines(ctx):
            info(f"backups   {redact.credentials_hidden(line)}")  # it names the off-site repository
    if proxy.compose(ctx.server).running("nginx"):
        if proxy.compose(ctx.server).running("certbot"):
            certificates.report_letsencrypt(ctx)
        info(f"TLS       {certificates.status_line(ctx) or 'unknown (nginx does not answer)'}")
    info(f"URL       {ctx.https_url()}")
