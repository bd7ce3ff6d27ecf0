"""`invoke study add`, `invoke study list` and `invoke study remove`: the studies on this server.

A study is one oTree process, one Postgres, its own backups, secrets and settings file
(STUDIES_DIR/NAME.env, made from study.env.example), behind the one proxy."""
import os
import re
import shutil
import subprocess
import time

from . import backups, commands, context, database, down, envfile, lock, names, project, proxy, settings, validate
from .console import StackError, confirm_by_typing, info, step, warn

def _render_study_file(values):
    """study.env.example with fresh secrets and the given values set."""
    with open(settings.STUDY_EXAMPLE, encoding="utf-8") as handle:
        text = envfile.render_from_example(handle.read())
    for key, value in values.items():
        text, found = re.subn(rf"^{key}=.*$", lambda _: f"{key}={value}", text, flags=re.M)
        if not found:
            text += f"{key}={value}\n"
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
    """Check everything, write the study's settings file, then start it with `invoke up`."""
    create(context.checked_settings(), name, project_folder, domain=domain, port=port)
    from . import up  # here: up imports this module for the first study
    up.run(study_name=name)


def create(loaded, name, project_folder, domain=None, port=None):
    """Check everything and write a new study's settings file (with new secrets)."""
    names.check_study(name)
    if any(study.name == name for study in loaded.studies):
        raise StackError(f"There is already a study named {name!r} ({settings.study_path(loaded.server, name)}). "
                         f"Choose another name; `invoke studies` lists them. Nothing was added.")
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
    problems = validate.settings_problems(settings.Settings(loaded.server, (*loaded.studies, candidate)))
    if problems:
        raise StackError("The study was not added:\n" + "\n".join(f"  - {problem}" for problem in problems))
    _write_new(path, text)
    step(f"Added the study '{name}': its settings are in {path} (new secrets; keep it private)")


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
