"""`invoke status`: each service's state and health, the oTree version and the address."""
from . import backups, base_image, certificates, context
from .console import info, step


def run():
    ctx = context.load()
    states = ctx.compose.states()
    step(f"Stack '{ctx.compose.name}' (env file {ctx.env_path})")
    if not states:
        info("Not running. Start it with: invoke up")
        return
    for service, state in sorted(states.items()):
        info(f"{service:<9} {state['state']:<10} {state['health'] or '-'}")
    if states.get("otree", {}).get("state") == "running":
        version = ctx.compose.run("exec", "-T", "otree", "python", "-c", "import otree; print(otree.__version__)",
                                  capture=True, check=False).stdout.strip()
        info(f"oTree     {version or 'unknown (the server does not answer)'}")
    if states.get("backup", {}).get("state") == "running":
        for line in backups.status_lines(ctx):
            info(f"backups   {line}")
    if states.get("nginx", {}).get("state") == "running":
        if states.get("certbot", {}).get("state") == "running":
            certificates.report_letsencrypt(ctx)
        info(f"TLS       {certificates.status_line(ctx) or 'unknown (nginx does not answer)'}")
    base = ctx.values.get("BASE_IMAGE", "").strip() or "debian:trixie-slim"
    info(f"base      {base}{' (built here with debootstrap)' if base_image.built_here(base) else ''}")
    info(f"URL       {ctx.https_url()}")
