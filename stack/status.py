"""`invoke status`: the proxy, then each study (or the one named): its services' state and
health, oTree version, backups, certificate and address."""
from . import backups, base_image, certificates, commands, context, proxy
from .console import info, step


def run(study=None):
    loaded = context.checked_settings()
    server = loaded.server
    edge = proxy.compose(server)
    step(f"Server '{server.name}' (settings {server.env_path})")
    for service, state in sorted(edge.states().items()):
        info(f"{service:<9} {state['state']:<10} {state['health'] or '-'}")
    if not edge.running("nginx"):
        info("The proxy is not running. Start everything with: invoke up")
    info(f"base      {server.base_image}{' (built here with debootstrap)' if base_image.built_here(server.base_image) else ''}")
    for chosen in ([loaded.study(study)] if study else loaded.studies):
        _study(context.Context(loaded, chosen))


def _study(ctx):
    states = ctx.compose.states()
    step(f"Study '{ctx.study.name}' (settings {ctx.env_path})")
    if not states:
        info(f"Not running. Start it with: invoke up --study {ctx.study.name}")
        return
    for service, state in sorted(states.items()):
        info(f"{service:<9} {state['state']:<10} {state['health'] or '-'}")
    if ctx.compose.running("otree"):
        info(f"oTree     {commands.otree_version(ctx) or 'unknown (the server does not answer)'}")
    if ctx.compose.running("backup"):
        for line in backups.status_lines(ctx):
            info(f"backups   {line}")
    if proxy.compose(ctx.server).running("nginx"):
        if proxy.compose(ctx.server).running("certbot"):
            certificates.report_letsencrypt(ctx)
        info(f"TLS       {certificates.status_line(ctx) or 'unknown (nginx does not answer)'}")
    info(f"URL       {ctx.https_url()}")
