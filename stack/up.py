"""`invoke up` and `invoke rebuild`: env file, checks, base image, images, containers, health."""
import os

from . import backups, base_image, certificates, context, envfile, migrate, pagetimes, project
from .console import info, step


def run(rebuild=False, pull=False):
    env_path = envfile.path()
    if envfile.create_if_missing(env_path):
        step(f"Created {env_path} with new random secrets (mode 600; keep it private, never commit it).")
        info("The admin password is OTREE_ADMIN_PASSWORD in that file.")

    ctx = context.load()
    step(f"{env_path} checked; serving the oTree project in {os.path.relpath(ctx.project_dir, envfile.REPO_ROOT)}/")
    project.check_settings(ctx.project_dir)
    if ctx.compose.redis:
        info("Redis is on: the project pins oTree before 5, or REDIS_ENABLED=1.")

    image = ctx.values.get("BASE_IMAGE", "").strip() or "debian:trixie-slim"
    if pull:
        step(f"Fetching a fresh {image}")
        base_image.refresh(image)
    else:
        base_image.ensure(image)

    step("Building images" + (" from scratch" if pull else " (unchanged layers come from the cache)"))
    ctx.compose.build(no_cache=pull)
    backups.prepare(ctx)
    certificates.install_provided(ctx)
    # Starting may recreate a running oTree server (new image or settings), and the migration
    # step may restart the database under it.
    pagetimes.flush(ctx.compose)
    # The new models against the live database, before a new server could meet a missing column.
    migrate.before_start(ctx)
    step("Starting containers and waiting until every service is healthy")
    ctx.compose.up(recreate=rebuild)

    for line in backups.status_lines(ctx):
        info(line)
    certificates.request_letsencrypt(ctx)
    served = certificates.status_line(ctx)
    if served:
        info(f"certificate: {served}")

    url = ctx.https_url()
    username = project.admin_username(ctx.project_dir)
    step(f"The stack '{ctx.compose.name}' is up: {url}")
    info(f"Admin: {url} (user '{username}', password: OTREE_ADMIN_PASSWORD in {env_path})")
    if not ctx.values.get("DOMAIN", "").strip():
        info("No DOMAIN is set: the certificate is self-signed, so browsers warn once. From other "
             "machines use this server's IP address instead of 127.0.0.1.")
