"""`invoke up` and `invoke rebuild`: settings, checks, base image, the proxy, then each study:
its images, database migration, containers, static files, certificate and health."""
import os

from . import backups, base_image, certificates, context, envfile, lock, migrate, network, pagetimes, project, proxy, study, upgrade
from .compose import require_docker
from .console import info, step


def run(study_name=None, rebuild=False, pull=False):
    env_path = envfile.path()
    if envfile.create_if_missing(env_path):
        step(f"Created {env_path}, the server's settings (ports, Let's Encrypt account, the stack's name).")
    upgrade.run(env_path)
    loaded = context.checked_settings()
    with lock.held(loaded.server, f"{'rebuild' if rebuild else 'up'} of {study_name or 'every study'}"):
        _run_locked(loaded, study_name, rebuild, pull)


def _run_locked(loaded, study_name, rebuild, pull):
    if not loaded.studies:
        study.add_first(loaded.server)
        loaded = context.checked_settings()
    targets = [loaded.study(study_name)] if study_name else list(loaded.studies)
    # Every project is checked before anything is built or stopped.
    for target in targets:
        project.directory(target.project_dir)
        project.check_settings(target.project_dir)
    contexts = [context.Context(loaded, target) for target in targets]
    require_docker()

    image = loaded.server.base_image
    if pull:
        step(f"Fetching a fresh {image}")
        base_image.refresh(image)
    else:
        base_image.ensure(image)
    proxy.up(loaded, rebuild=rebuild, pull=pull)
    for ctx in contexts:
        start_study(ctx, rebuild=rebuild, pull=pull)
    for ctx in contexts:
        _summary(ctx)


def start_study(ctx, rebuild=False, pull=False):
    name = ctx.study.name
    step(f"Study {name}: building its images" + (" from scratch" if pull else " (unchanged layers come from the cache)"))
    ctx.compose.build(no_cache=pull)
    network.ensure(ctx.study)
    backups.prepare(ctx)
    certificates.install_provided(ctx)
    # Starting may recreate a running oTree server (new image or settings), and the migration
    # step may restart the database under it.
    pagetimes.flush(ctx.compose)
    # The new models against the live database, before a new server could meet a missing column.
    migrate.before_start(ctx)
    step(f"Study {name}: starting its containers and waiting until they are healthy")
    ctx.compose.up(recreate=rebuild)
    proxy.publish_static(ctx.study)
    proxy.connect(ctx.settings)
    for line in backups.status_lines(ctx):
        info(line)
    certificates.request_letsencrypt(ctx)


def _summary(ctx):
    served = certificates.status_line(ctx)
    url = ctx.https_url()
    username = project.admin_username(ctx.project_dir)
    step(f"The study '{ctx.study.name}' is up: {url}")
    if served:
        info(f"certificate: {served}")
    info(f"Admin: {url} (user '{username}', password: OTREE_ADMIN_PASSWORD in {os.path.relpath(ctx.env_path)})")
    if not ctx.study.domain:
        info("No DOMAIN is set: the certificate is self-signed, so browsers warn once. From other "
             "machines use this server's IP address instead of 127.0.0.1.")
