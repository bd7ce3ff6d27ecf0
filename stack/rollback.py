"""`invoke rollback [--to vN]`: start the previous (or a given) release's image again, with the same
stop-first switch and maintenance page as a deploy. Collected data is never rolled back: tables
and columns added since stay (the older code ignores them). Putting the database back as it was
is a separate, explicit `invoke restore` of the backup the release names."""
import os

from . import backups, commands, context, deploy, envfile, lock, names, releases
from .compose import require_docker
from .console import StackError, info, step

NO_CHANGES = {"new_tables": [], "new_columns": []}
# What a deploy records as its changes when its models matched the database (stack/deploy.py).
NO_SCHEMA_CHANGES = "no changes to the database"


def _target(study, records, version):
    current = releases.live(records)
    if version:
        number = names.release_number(version)
        chosen = releases.find(records, number)
        if current and chosen["number"] == current["number"]:
            raise StackError(f"Release v{number} is the one running. Nothing was changed.")
    else:
        earlier = [record for record in records if record.get("image_kept") and record["outcome"] != releases.FAILED
                   and current and record["number"] < current["number"]]
        if not earlier:
            raise StackError("There is no earlier release to roll back to (`invoke releases` lists them).")
        chosen = earlier[-1]
    if not chosen.get("image_kept") or not releases.image_id(releases.image(study, chosen["number"])):
        raise StackError(f"The image of release v{chosen['number']} is no longer kept (the last {releases.KEEP} "
                         "are), so it cannot be started again. Deploy that code again instead.")
    if chosen["outcome"] == releases.FAILED:
        raise StackError(f"Release v{chosen['number']} failed when it was deployed; choose another.")
    return chosen


def run(study=None, version=None):
    loaded = context.checked_settings()
    with lock.held(loaded.server, f"rollback of {study or 'the study'}"):
        ctx = context.Context(loaded, loaded.study(study, purpose="rolls back"))
        require_docker()
        backups.require_running(ctx, "otree", "postgres")
        records = releases.load(ctx.study)
        current = releases.live(records)
        if not current:
            raise StackError(f"The study '{ctx.study.name}' has no releases yet: it runs what `invoke up` built. "
                             "Nothing was changed.")
        chosen = _target(ctx.study, records, version)
        number = releases.next_number(records)
        step(f"Rolling the study '{ctx.study.name}' back to the code of release v{chosen['number']} (as release "
             f"v{number})")
        new_ctx = deploy._with_project(ctx, os.path.join(envfile.REPO_ROOT, chosen["project_dir"]))
        previous_image = releases.image(ctx.study, current["number"])
        record = {"number": number, "time": releases.now(), "kind": "rollback", "deployer": deploy.deployer(),
                  "revision": chosen.get("revision"), "project_dir": chosen["project_dir"], "image_kept": True,
                  "changes": [f"the code of v{chosen['number']}; the data stays as it is"]}
        try:
            # The live tag moves to the chosen release only once the running oTree has stopped.
            record["downtime_seconds"] = round(deploy.switch(ctx, new_ctx, NO_CHANGES, previous_image,
                                                             new_image=releases.image(ctx.study, chosen["number"])), 1)
        except StackError as error:
            releases.tag(previous_image, releases.current_image(ctx.study))
            record.update(outcome=releases.FAILED, image_kept=False, reason=str(error).splitlines()[0])
            releases.save(ctx.study, [*records, record])
            raise StackError(f"The rollback failed: {error}. Release v{current['number']} serves again.")
        envfile.set_values(ctx.env_path, {"OTREE_PROJECT_DIR": chosen["project_dir"]})
        releases.tag(releases.current_image(ctx.study), releases.image(ctx.study, number))
        record.update(outcome=releases.LIVE, image_id=releases.image_id(releases.current_image(ctx.study)),
                      otree_version=commands.otree_version(new_ctx))
        current["outcome"] = releases.REPLACED
        records.append(record)
        releases.prune(ctx.study, records)
        releases.save(ctx.study, records)
        step(f"Release v{number} (the code of v{chosen['number']}) is live: {ctx.https_url()}")
        info(f"Participants saw the maintenance page for {record['downtime_seconds']:.1f} s.")
        changed = first_schema_change(records, chosen)
        if changed:
            info("The data was not rolled back: tables and columns added by later releases stay, and this code "
                 "ignores them.")
            info(f"To put the database back as it was before v{changed['number']} changed its tables, restore that "
                 f"release's backup (this loses what participants entered since): invoke restore "
                 f"{changed['backup_id']} --study {ctx.study.name}")
        else:
            info(f"No release since v{chosen['number']} changed the database's tables: the data fits this code as it "
                 "is, and nothing needs restoring.")


def first_schema_change(records, chosen):
    """The first release after `chosen` whose deploy changed the database's tables (it added tables
    or columns, which stay even when its switch failed): its backup is the database as `chosen`
    had it. None when none did, as for releases of code only and rollbacks."""
    for record in sorted(records, key=lambda record: record["number"]):
        if record["number"] > chosen["number"] and record.get("backup_id") \
                and record.get("changes") != [NO_SCHEMA_CHANGES]:
            return record
    return None
