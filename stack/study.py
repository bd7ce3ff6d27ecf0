"""`invoke study add`, `invoke study list` and `invoke study remove`: the studies on this server.

A study is one oTree process, one Postgres, its own backups, secrets and settings file
(STUDIES_DIR/NAME.env, made from study.env.example), behind the one proxy."""
import os
import re
import shutil
import subprocess
import time

from . import (backups, base_image, commands, compose, context, database, down, envfile, lock, names, project, proxy,
               settings, validate)
from .compose import require_docker
from .console import StackError, confirm_by_typing, info, step, warn

def _render_study_file(values):
    """study.env.example with fresh secrets and the given values set."""
    with open(settings.STUDY_EXAMPLE, encoding="utf-8") as handle:
        text = envfile.render_from_example(handle.read())
    for key, value in values.items():
        problem = envfile.value_problem(key, value)
        if problem:
            raise StackError(f"{problem} Nothing was added.")
        line = f"{key}={envfile.written_value(value)}"
        text, found = re.subn(rf"^{key}=.*$", lambda _: line, text, flags=re.M)
        if not found:
            text += line + "\n"
    return text


def _write_new(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def _free_port(loaded):
    """The first of the server's STUDY_PORTS that no study uses."""
    used = {study.https_port for study in loaded.studies}
    for port in loaded.server.study_ports:
        if port not in used:
            return port
    raise StackError(f"Every port of STUDY_PORTS ({loaded.server.values['STUDY_PORTS']}) has a study. Widen "
                     f"STUDY_PORTS in {loaded.server.env_path} (the proxy then restarts once: a moment without "
                     "connections for every study), or give the new study a DNS name with --domain. "
                     "Nothing was added.")


def _backup_dir_for(loaded, name):
    """backups/NAME, unless another study's backup folder holds that path (a server moved from the
    one-study layout keeps its backups in backups/): then NAME-backups."""
    wanted = os.path.join(envfile.REPO_ROOT, "backups", name)
    for study in loaded.studies:
        if os.path.commonpath([study.backup_dir, wanted]) in (study.backup_dir, wanted):
            return f"{name}-backups"
    return os.path.join("backups", name)


def add_first(server):
    """On a new server: the example study, named after the stack, reached by the server's address."""
    name = settings.first_study_name(server.name)
    path = settings.study_path(server, name)
    _write_new(path, _render_study_file({"OTREE_PROJECT_DIR": "otree_project"}))
    step(f"Created the study '{name}' for the example project: {path} (its secrets are new; keep it private).")


def add(name, project_folder, domain=None, port=None):
    """Check everything, build and start the study, and only then write its settings file."""
    names.check_study(name)
    loaded = context.checked_settings()
    _check_name_free(loaded, name)
    project.check_settings(project.directory(os.path.abspath(project_folder)))
    with lock.held(loaded.server, f"study add of {name}"):
        create(loaded, name, project_folder, domain=domain, port=port)


def create(loaded, name, project_folder, domain=None, port=None, before_registering=None):
    """A new study, with new secrets: everything checked, its images built and its containers
    started, `before_registering(ctx)` run, and only then its settings file written, which is
    what makes it one of the server's studies. When any of it fails, what this run made for the
    study goes (its containers, volumes, images, network, proxy entry and backup folder), and
    nothing it found. Returns the study's Context."""
    _check_name_free(loaded, name)
    folder = os.path.abspath(project_folder)
    project.directory(folder)
    values = {"OTREE_PROJECT_DIR": os.path.relpath(folder, envfile.REPO_ROOT),
              "BACKUP_DIR": _backup_dir_for(loaded, name)}
    if domain:
        values["DOMAIN"] = domain
    elif port or any(not study.domain and study.https_port == loaded.server.https_port for study in loaded.studies):
        # The server's HTTPS port already serves a study by address: this one gets its own.
        values["HTTPS_PORT"] = str(port or _free_port(loaded))
    path = settings.study_path(loaded.server, name)
    text = _render_study_file(values)
    candidate = settings.Study(name, path, settings.with_defaults(settings.STUDY_DEFAULTS, envfile.parse(text)),
                               loaded.server)
    with_it = settings.Settings(loaded.server, tuple(sorted((*loaded.studies, candidate), key=lambda s: s.name)))
    problems = validate.settings_problems(with_it)
    if problems:
        raise StackError("The study was not added:\n" + "\n".join(f"  - {problem}" for problem in problems))
    require_docker()
    found = _Found(candidate)
    if found.containers or found.volumes:
        raise StackError(f"Docker still has containers or volumes of a study named {name!r} (an earlier one's, "
                         f"perhaps its data): {', '.join(found.containers + found.volumes)}. Look at them with "
                         f"`docker volume ls --filter label=com.docker.compose.project={candidate.project}`; "
                         "remove them if nothing in them is needed, or choose another name. Nothing was added.")
    ctx = context.Context(with_it, candidate)
    try:
        _start_new(ctx)
        if before_registering:
            before_registering(ctx)
        _write_new(path, text)
    except BaseException:  # a failure or Ctrl-C: the study must not stay half added
        _take_back(loaded, candidate, found)
        raise
    step(f"Added the study '{name}': its settings are in {path} (new secrets; keep it private)")
    from . import up  # here: up imports this module for the first study
    up._summary(ctx)  # what `invoke up` says of a study it started
    return ctx


def _check_name_free(loaded, name):
    """A new study's name follows the rule, is not taken, and shares no image tag with another's."""
    names.check_study(name)
    if any(study.name == name for study in loaded.studies):
        raise StackError(f"There is already a study named {name!r} ({settings.study_path(loaded.server, name)}). "
                         f"Choose another name; `invoke studies` lists them. Nothing was added.")
    for study in loaded.studies:
        shorter, longer = sorted((name, study.name), key=len)
        if re.fullmatch(rf"{re.escape(shorter)}-v[0-9]+", longer):  # release N of a study is tagged STUDY-vN
            raise StackError(f"A study named {name!r} would share image names with the releases of the study "
                             f"{study.name!r} (they are named STUDY-vN). Choose another name. Nothing was changed.")


def _start_new(ctx):
    """As `invoke up --study NAME` starts a study, from its settings in memory: its images are
    built before the proxy learns of it, so a project that does not build changes nothing there."""
    from . import up  # here: up imports this module for the first study
    base_image.ensure(ctx.server.base_image)
    step(f"Study {ctx.study.name}: building its images")
    ctx.compose.build()
    proxy.up(ctx.settings)
    up.start_study(ctx)


class _Found:
    """What Docker and the disk held for a new study's names before it was added: the cleanup
    after a failure removes only what is not in here."""

    def __init__(self, study):
        label = f"label=com.docker.compose.project={study.project}"
        self.containers = _docker_lines("ps", "--all", "--quiet", "--filter", label)
        self.volumes = _docker_lines("volume", "ls", "--quiet", "--filter", label)
        self.network = not subprocess.run(["docker", "network", "inspect", study.network], capture_output=True).returncode
        self.images = _images_of(study)
        self.backup_dir = os.path.lexists(study.backup_dir)


def _docker_lines(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True).stdout.split()


def _images_of(study):
    """The study's image tags: its services' and its releases' (PROJECT-vN)."""
    pattern = rf"otree-stack/[a-z]+:{re.escape(study.project)}(-v[0-9]+)?"
    return {ref for ref in _docker_lines("images", "--format", "{{.Repository}}:{{.Tag}}",
                                          "--filter", "reference=otree-stack/*")
            if re.fullmatch(pattern, ref)}


def _take_back(loaded, study, found):
    """After a failed add: the study's containers and volumes, its proxy entry, network, static
    files, images and backup folder go, each only when this run made it."""
    warn(f"The study '{study.name}' was not added; removing what this attempt made for it.")
    compose.for_study(study).run("down", "--remove-orphans", "--volumes", check=False)
    try:
        if proxy.write(loaded):
            proxy.reload(loaded.server)
    except StackError as error:
        warn(f"The proxy's configuration could not be put back: {error}")
    nginx = proxy.compose(loaded.server).container("nginx")
    if not found.network:
        if nginx:
            subprocess.run(["docker", "network", "disconnect", study.network, nginx], capture_output=True)
        subprocess.run(["docker", "network", "rm", study.network], capture_output=True)
    if nginx:  # its static files, published when it started (no server block serves them now)
        subprocess.run(["docker", "run", "--rm", "--user", "root", "--network", "none", "-v",
                        f"{loaded.server.name}_static:/out", "--entrypoint", "rm", f"otree-stack/nginx:{loaded.server.name}",
                        "-rf", f"/out/{study.name}"], capture_output=True)
    made = sorted(_images_of(study) - found.images)
    if made:
        subprocess.run(["docker", "image", "rm", *made], capture_output=True)
    if not found.backup_dir and os.path.isdir(study.backup_dir):
        _remove_backup_dir(loaded.server, study.backup_dir)


def _remove_backup_dir(server, folder):
    """A backup folder this run made; it belongs to the backup service's user by now, so what is
    in it is removed through Docker, as that folder was given away (stack/backups.py)."""
    try:
        shutil.rmtree(folder)
    except PermissionError:
        subprocess.run(["docker", "run", "--rm", "--user", "root", "--network", "none", "-v", f"{folder}:/gone",
                        "--entrypoint", "find", f"otree-stack/nginx:{server.name}", "/gone", "-mindepth", "1",
                        "-delete"], capture_output=True)
        os.rmdir(folder)


def _facts(ctx):
    states = ctx.compose.states()
    health = ", ".join(f"{service} {state['health'] or state['state']}" for service, state in sorted(states.items()))
    facts = {"address": ctx.https_url(), "health": health or "stopped", "otree": "-", "sessions": "-",
             "active": "-", "backup": "-", "disk": "-"}
    if ctx.compose.running("otree"):
        facts["otree"] = commands.otree_version(ctx) or "?"
    if ctx.compose.running("postgres"):
        rows = database.query(ctx, "SELECT (SELECT count(*) FROM otree_session), (SELECT count(*) FROM otree_participant "
                                   "WHERE _last_request_timestamp > extract(epoch FROM now()) - 600), "
                                   "pg_size_pretty(pg_database_size('otree'))")
        if rows:
            facts["sessions"], facts["active"], facts["disk"] = rows[0].split("|")
        else:
            facts["sessions"], facts["active"] = "0", "0"
    if ctx.compose.running("backup"):
        code, _, lines = backups.service(ctx, "health", "--summary", echo=False)
        good = [line for line in lines if line.startswith("last good backup:")]
        facts["backup"] = good[0].split(":", 1)[1].strip() if good else "?"
        if code:
            facts["backup"] += " (PROBLEM: see invoke status)"
        used = ctx.compose.run("exec", "-T", "backup", "du", "-sh", "/backups", capture=True, check=False).stdout
        facts["disk"] += f", backups {used.split()[0] if used.strip() else '?'}"
    return facts


def list_studies():
    loaded = context.checked_settings()
    step(f"Studies on this server ({len(loaded.studies)}), settings in {loaded.server.studies_dir}")
    if not loaded.studies:
        info("None yet. Add one with: invoke study add NAME --project FOLDER [--domain NAME]")
        return
    for study in loaded.studies:
        facts = _facts(context.Context(loaded, study))
        info(f"{study.name}")
        info(f"  address       {facts['address']}")
        info(f"  oTree         {facts['otree']}")
        info(f"  health        {facts['health']}")
        info(f"  sessions      {facts['sessions']}, participants active in the last 10 minutes: {facts['active']}")
        info(f"  last backup   {facts['backup']}")
        info(f"  disk used     database {facts['disk']}")


def _has_database(study):
    return subprocess.run(["docker", "volume", "inspect", study.postgres_volume], capture_output=True).returncode == 0


def _start_for_final_backup(ctx):
    """Postgres and the backup service alone, without oTree: a study whose oTree cannot start
    (its image does not build, its project does not load) still gets its final backup."""
    step(f"Starting the Postgres and backup service of the study '{ctx.study.name}' alone, for the final backup")
    backups.prepare(ctx)
    # The backup service's health reports on its scheduled backups, not on readiness: not waited for.
    for service, wait in (("postgres", ["--wait"]), ("backup", [])):
        if ctx.compose.run("up", "--detach", "--no-deps", *wait, service, check=False).returncode:
            ctx.compose.explain_unhealthy()
            raise StackError(f"The {service} service of the study '{ctx.study.name}' did not start (its last log "
                             "lines are above), so no final backup could be taken and nothing was removed.")


def remove(name, confirm=None):
    """The maintenance page, oTree stopped, a verified final backup, the typed name, then the study's
    containers, database, network and proxy entry are removed. Its backups and (renamed) settings
    file stay. A study whose oTree cannot start is backed up with its Postgres started alone; one
    that never started has no database to back up."""
    ctx = context.load(name, purpose="removes")
    study = ctx.study
    with lock.held(ctx.server, f"study remove of {study.name}"):
        has_database = _has_database(study)
        confirm_by_typing(study.name, f"This removes the study '{study.name}': its oTree, its database and its "
                                      "address. " + (f"A verified final backup is taken first; its backups in "
                                                     f"{study.backup_dir} stay." if has_database else
                                                     "It has no database (it never started), so there is "
                                                     "nothing to back up."), confirm)
        final = None
        if has_database:
            if not ctx.compose.running("postgres", "backup"):
                _start_for_final_backup(ctx)
            with backups.stopped_and_backed_up(ctx, "before-remove") as final:
                step(f"Removing the study '{study.name}'")
                down.delete_containers_and_data(ctx)
        else:
            warn(f"The study '{study.name}' has no database (it never started): no final backup is taken.")
            step(f"Removing the study '{study.name}'")
            down.delete_containers_and_data(ctx)
        kept = f"{study.env_path}.removed-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        shutil.move(study.env_path, kept)
        loaded = context.checked_settings()
        proxy.remove_study(loaded, study)
    step(f"Removed the study '{study.name}'.")
    if final:
        info(f"Its data as it was is backup {final.id}: {final.path}")
        info(f"Its settings are kept in {kept}. To bring it back: rename that file to {study.name}.env, run "
             f"`invoke up --study {study.name}`, then `invoke restore {final.path} --study {study.name}`.")
        if final.offsite_failed:
            warn("The final backup's off-site copy failed; the local one is verified.")
    else:
        info(f"Its settings are kept in {kept}.")
