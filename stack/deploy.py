"""`invoke deploy`: a new release of a study's project, switched in without two oTree processes
ever sharing its database, without stranding participants, and put back by itself when it fails.

With --on NAME the laptop ships the project and the stack's files to that server and runs this
same task there (stack/remote.py). On the server (or without --on) the order is:

  1. checks: the settings with the new project, the project itself          (nothing stopped)
  2. build the new image, tagged as its release only, while the previous release keeps serving
  3. refuse while participants were active lately, unless --force
  4. a verified backup, page times saved, the models compared with the database: a change
     that would break the new server is refused
  5. the switch (`switch`): maintenance page on, old oTree stopped, the live image tag moved to
     the new release's, new tables and columns added, new oTree started, its health and its pages
     checked through nginx, the maintenance page as it was before
  6. on any failure in 5: the previous release is started again; nothing is deleted
  7. the release is recorded (stack/releases.py); old images beyond the last 5 are removed"""
import getpass
import json
import os
import shutil
import socket
import subprocess
import time

from . import (backups, commands, context, database, envfile, lock, maintenance, migrate, names, pagetimes,
               project, proxy, releases, study as study_module, validate)
from .compose import require_docker
from .console import StackError, info, step, warn

ACTIVE_MINUTES = 10
INCOMING = os.path.join(releases.RELEASES_DIR, ".incoming")


def deployer():
    return f"{getpass.getuser()}@{socket.gethostname()}"


def active_sessions(ctx, minutes):
    """[(session code, participants)] with a page request in the last `minutes` minutes."""
    rows = database.query(ctx, "SELECT s.code, count(*) FROM otree_participant p JOIN otree_session s ON "
                               "p.session_id = s.id WHERE p._last_request_timestamp > extract(epoch FROM now()) "
                               f"- {int(minutes) * 60} GROUP BY s.code ORDER BY s.code")
    return [tuple(row.split("|")) for row in rows]


def refuse_while_active(ctx, minutes, consequence):
    """Refuse (StackError) when participants made a request in the last `minutes` minutes; the
    message lists their sessions, then says what the operation would do to them and what to do."""
    active = active_sessions(ctx, minutes)
    if active:
        listed = ", ".join(f"{code} ({count} participant{'s' if count != '1' else ''})" for code, count in active)
        raise StackError(f"Participants were active in the last {minutes} minutes, in session(s) {listed}; "
                         f"{consequence}")


def _with_project(ctx, folder):
    """The study's context as it will be with this project folder (nothing written yet)."""
    values = dict(ctx.study.values, OTREE_PROJECT_DIR=os.path.relpath(folder, envfile.REPO_ROOT))
    loaded = ctx.settings.with_values(ctx.study.name, values)
    found = validate.settings_problems(loaded)
    if found:
        raise StackError("The settings with the new project have problems; nothing was changed:\n" +
                         "\n".join(f"  - {problem}" for problem in found))
    return context.Context(loaded, loaded.study(ctx.study.name))


def _room_names(ctx):
    script = "import json, settings; print(json.dumps([r['name'] for r in getattr(settings, 'ROOMS', [])]))"
    result = ctx.compose.run("exec", "-T", "otree", "python", "-c", script, capture=True, check=False)
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return []


def pages_answer(ctx, patience=20):
    """None when the study's pages answer through nginx as a participant's would; else why not.
    Asked from inside the proxy's container, by the study's name or port, so it also works for a
    DNS name that does not point here yet. nginx may take a moment to find the new container."""
    proxy_compose = proxy.compose(ctx.server)
    port = proxy.container_port(ctx.server, ctx.study)
    name = ctx.study.domain or "localhost"
    paths = [f"/room/{room}" for room in _room_names(ctx)[:3]] or ["/favicon.ico"]
    deadline = time.monotonic() + patience
    for path in paths:
        while True:
            result = proxy_compose.run("exec", "-T", "nginx", "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                                       "--max-time", "20", "--resolve", f"{name}:{port}:127.0.0.1",
                                       f"https://{name}:{port}{path}", capture=True, check=False)
            code = result.stdout.strip()
            if code == "200":
                break
            if time.monotonic() > deadline:
                return f"{path} answered HTTP {code or 'nothing'} through nginx"
            time.sleep(1)
    return None


def wait_healthy(compose, timeout=180):
    """None once the new oTree answers its healthcheck, else why not. The check is run here every
    second rather than waiting for Docker's (every 15 s): participants are waiting. A container
    that stops or restarts fails at once (its log is shown), not after the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container = compose.container("otree")
        found = subprocess.run(["docker", "inspect", "--format", "{{.State.Status}} {{.RestartCount}}",
                                container or "-"], capture_output=True, text=True).stdout.split()
        status, restarts = (found + ["", "0"])[:2]
        if status == "running" and not subprocess.run(
                ["docker", "exec", container, "python", "/opt/otree-server/healthcheck.py"],
                capture_output=True).returncode:
            return None
        if status in ("exited", "dead", "restarting") or restarts not in ("", "0"):
            compose.run("logs", "--no-color", "--tail", "30", "otree", check=False)
            return f"the new oTree stopped as it started ({status}; its last log lines are above)"
        time.sleep(1)
    compose.run("logs", "--no-color", "--tail", "30", "otree", check=False)
    return f"the new oTree was not healthy after {timeout} s (its last log lines are above)"


def switch(ctx, new_ctx, plan, previous_image, new_image=None):
    """Stop the running oTree, move the live tag to new_image (when given: a deploy's build left
    it alone), add what the plan adds, start the new one and check it, with the maintenance page
    up meanwhile and afterwards as it was before (still on when the researcher had it on). On
    failure the previous image starts again and StackError says why. Returns the seconds
    participants saw the maintenance page."""
    study = ctx.study
    started = time.monotonic()
    with maintenance.page_up(study):
        pagetimes.flush(ctx.compose)
        step("Stopping the running oTree (two oTree processes must never share a database)")
        ctx.compose.run("stop", "otree")
        failure = None
        try:
            if new_image:
                releases.tag(new_image, releases.current_image(study))
            if migrate.pending(plan):
                step("Adding the new tables and columns")
                migrate.check(new_ctx.compose, apply=True)
            step("Starting the new oTree and waiting until it is healthy")
            new_ctx.compose.run("up", "--detach", "--no-deps", "otree")
            failure = wait_healthy(new_ctx.compose) or pages_answer(new_ctx)
        except Exception as error:  # whatever went wrong, the previous release must serve again
            failure = str(error) or type(error).__name__
        if failure:
            _start_previous(ctx, previous_image)
            raise StackError(failure)
        proxy.publish_static(study)
    return time.monotonic() - started


def _start_previous(ctx, previous_image):
    warn("The new release failed; starting the previous one again.")
    ctx.compose.run("stop", "otree", check=False)
    releases.tag(previous_image, releases.current_image(ctx.study))
    ctx.compose.run("up", "--detach", "--no-deps", "otree")
    if wait_healthy(ctx.compose):
        raise StackError("The new release failed AND the previous one did not start again (its log is above). The "
                         "database is as the failed release left it. Run `invoke rollback` or `invoke up`.")
    proxy.publish_static(ctx.study)


def _adopt_running(ctx, records):
    """Before a study's first deploy: what runs now becomes release v1, so it can be rolled back to."""
    current = releases.image_id(releases.current_image(ctx.study))
    if not current:
        raise StackError(f"The study '{ctx.study.name}' has no oTree image yet. Start it with `invoke up --study "
                         f"{ctx.study.name}` first.")
    releases.tag(current, releases.image(ctx.study, 1))
    records.append({"number": 1, "time": releases.now(), "kind": "adopted", "outcome": releases.LIVE,
                    "deployer": "-", "revision": project.git_revision(ctx.project_dir),
                    "otree_version": commands.otree_version(ctx), "image_id": current, "image_kept": True,
                    "project_dir": os.path.relpath(ctx.project_dir, envfile.REPO_ROOT),
                    "changes": ["what ran before the first deploy"]})
    releases.save(ctx.study, records)


def _place(folder, target):
    """The shipped project moves into its release folder; a local one is copied. A folder already
    there is no one's to replace: the failure cleanup removes the target as this run's own."""
    if os.path.lexists(target):
        raise StackError(f"{os.path.relpath(target, envfile.REPO_ROOT)} is there already, though no release of that "
                         "number is recorded (left by an interrupted deploy?). Move it out of releases/, then deploy "
                         "again. Nothing was changed.")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.dirname(os.path.abspath(folder)) == INCOMING:
        os.replace(folder, target)
    else:
        shutil.copytree(folder, target, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.pyc", "db.sqlite3",
                                                                       "venv", ".venv", ".env"))


def _new_study(loaded, name, folder, revision, who, domain):
    """A study that does not exist yet: added as `invoke study add` adds one, as release v1, and
    registered only once it runs. On failure what this deploy made goes: releases/NAME, which it
    made (a folder there already is an earlier study's history, and is refused), and through
    study.create the rest."""
    require_docker()
    history = os.path.join(releases.RELEASES_DIR, name)
    if os.path.lexists(history):
        raise StackError(f"releases/{name} is there already, with the releases of an earlier study named {name!r}. "
                         "Move it out of releases/ to keep it, or choose another name. Nothing was changed.")
    target = os.path.join(history, "v1")

    def record_v1(ctx):
        releases.tag(releases.current_image(ctx.study), releases.image(ctx.study, 1))
        releases.save(ctx.study, [{
            "number": 1, "time": releases.now(), "kind": "deploy", "outcome": releases.LIVE, "deployer": who,
            "revision": revision, "otree_version": commands.otree_version(ctx),
            "image_id": releases.image_id(releases.current_image(ctx.study)), "image_kept": True,
            "project_dir": os.path.relpath(target, envfile.REPO_ROOT), "changes": ["a new study"]}])

    _place(folder, target)
    try:
        ctx = study_module.create(loaded, name, target, domain=domain, before_registering=record_v1)
    except BaseException:
        shutil.rmtree(history, ignore_errors=True)
        raise
    step(f"Release v1 of the new study '{name}' is live: {ctx.https_url()}")


def run(study=None, project_folder=None, force=False, active_minutes=ACTIVE_MINUTES, revision=None, who=None,
        domain=None):
    """Deploy the project in project_folder (on this server) as the study's next release."""
    folder = os.path.abspath(project_folder or "otree_project")
    try:
        if study is not None:
            names.check_study(study)
        _locked_run(folder, study, force, active_minutes, revision, who, domain)
    finally:
        if os.path.dirname(folder) == INCOMING:  # shipped, and not moved into a release
            shutil.rmtree(folder, ignore_errors=True)


def _locked_run(folder, study, force, active_minutes, revision, who, domain):
    loaded = context.checked_settings()
    with lock.held(loaded.server, f"deploy of {study or 'the study'}"):
        project.directory(folder)
        project.check_settings(folder)
        revision = revision if revision is not None else project.git_revision(folder)
        who = who or deployer()
        if study and not any(existing.name == study for existing in loaded.studies):
            return _new_study(loaded, study, folder, revision, who, domain)
        ctx = context.Context(loaded, loaded.study(study, purpose="deploys to"))
        require_docker()
        backups.require_running(ctx, "otree", "postgres", "backup")
        records = releases.load(ctx.study)
        if not releases.live(records):
            _adopt_running(ctx, records)
        previous = releases.live(records)
        number = releases.next_number(records)
        target = releases.project_dir(ctx.study, number)
        _place(folder, target)
        new_ctx = _with_project(ctx, target)
        record = {"number": number, "time": releases.now(), "kind": "deploy", "deployer": who, "revision": revision,
                  "project_dir": os.path.relpath(target, envfile.REPO_ROOT), "image_kept": False, "changes": []}
        previous_image = releases.image(ctx.study, previous["number"])
        try:
            _deploy(ctx, new_ctx, record, previous_image, force, active_minutes)
        except StackError as error:
            # The running release was never touched, or was started again: the tag goes back to it.
            releases.tag(previous_image, releases.current_image(ctx.study))
            shutil.rmtree(target, ignore_errors=True)  # the laptop has the code; the record says what failed
            if record.get("outcome") == releases.FAILED:
                record["reason"] = str(error).splitlines()[0]
                releases.save(ctx.study, [*records, record])
            raise
        previous["outcome"] = releases.REPLACED
        records.append(record)
        releases.prune(ctx.study, records)
        releases.save(ctx.study, records)
        _summary(new_ctx, record)


def _deploy(ctx, new_ctx, record, previous_image, force, active_minutes):
    study = ctx.study
    step(f"Release v{record['number']} of the study '{study.name}': building its image while v"
         f"{previous_image.rsplit('-v', 1)[1]} keeps serving")
    # Built and checked under the release's own tag: the live tag, which every start of oTree
    # uses (a crashed oTree's restart too), keeps naming what runs until the switch.
    new_image = releases.image(study, record["number"])
    release = releases.compose_for(new_ctx.study, new_image)
    try:
        release.run("build", "otree")
    except StackError:
        record["outcome"] = releases.FAILED
        raise StackError("The new image did not build (the reason is above); the running release was not touched.")
    if not force:
        refuse_while_active(ctx, active_minutes, "a deploy would interrupt them. Nothing was changed. Deploy when "
                            "they have finished, or add --force (they see a maintenance page for the seconds of the switch).")
    step("Comparing the new models with the database")
    try:
        plan = migrate.check(release)
    except StackError:
        record["outcome"] = releases.FAILED
        raise StackError("The new project does not load (the error is above, often a mistake in an app's code), so "
                         "nothing was stopped: the running release keeps serving and the database is unchanged.")
    found = migrate.problems(plan)
    if found:
        record["outcome"] = releases.FAILED
        raise StackError(migrate.refusal(found, True))
    record["changes"] = migrate.report(plan) if migrate.pending(plan) else ["no changes to the database"]
    for line in record["changes"]:
        info(line)
    pagetimes.flush(ctx.compose)
    backup = backups.take(ctx, "before-deploy")
    record["backup_id"] = backup.id
    started = time.monotonic()
    try:
        record["downtime_seconds"] = round(switch(ctx, new_ctx, plan, previous_image, new_image), 1)
    except StackError as error:
        record.update(outcome=releases.FAILED, downtime_seconds=round(time.monotonic() - started, 1))
        kept = (" The tables and columns it added stay, empty; the previous release ignores them."
                if migrate.pending(plan) else "")
        raise StackError(f"Release v{record['number']} failed: {error}. The previous release serves again (participants "
                         f"saw the maintenance page for {record['downtime_seconds']:.1f} s); no data was deleted.{kept} "
                         f"The backup from just before is {backup.id} (`invoke restore {backup.id}` would undo the "
                         "schema changes, and lose answers given since).")
    envfile.set_values(ctx.env_path, {"OTREE_PROJECT_DIR": record["project_dir"]})
    releases.tag(releases.current_image(study), releases.image(study, record["number"]))
    record.update(outcome=releases.LIVE, image_kept=True, image_id=releases.image_id(releases.current_image(study)),
                  otree_version=commands.otree_version(new_ctx))


def _summary(ctx, record):
    step(f"Release v{record['number']} of the study '{ctx.study.name}' is live: {ctx.https_url()}")
    info(f"git {record['revision'] or '(not in git)'}, oTree {record['otree_version'] or '?'}, "
         f"backup before it: {record['backup_id']}")
    info(f"Participants saw the maintenance page for {record['downtime_seconds']:.1f} s.")
    for line in record["changes"]:
        info(line)
    info("`invoke releases` lists every release; `invoke rollback` starts the previous one again.")
