"""`invoke migrate`, and the same step in `invoke up`: bring the database to the models of the
oTree image without losing data.

oTree creates missing tables when it starts, but never adds a column: a field added mid-study
would make the new server fail with "column does not exist" (and leave half-created sessions
that break exports). otree_server/migrate_schema.py compares the image's models with the live
database inside the image; this module reports what it found, refuses what would break the
server, backs up and applies the rest."""
import json

from . import backups, lock, pagetimes
from .console import StackError, info, step

SCRIPT = "/opt/otree-server/migrate_schema.py"


def _rows(count, noun="row"):
    return f"{count} {noun}{'' if count == 1 else 's'}"


def pending(plan):
    """True when there are new tables or columns to add."""
    return bool(plan["new_tables"] or plan["new_columns"])


def problems(plan):
    """[(table, problem, fix)] that a new server could not work with: a column whose type changed,
    or a column the models dropped that the database still requires (NOT NULL, no default), so
    that new rows could not be saved."""
    found = [(c["table"], f"{c['table']}.{c['column']} is {c['database']} in the database, but {c['models']} "
                          "in your models.",
              f"give the field a new name in your models (e.g. {c['column']} -> {c['column']}_2): the old "
              "column keeps its data and the new one is added")
             for c in plan["changed_columns"]]
    found += [(c["table"], f"{c['table']}.{c['column']} is no longer in your models, but the database requires "
                           "a value in it (NOT NULL), so oTree could not save new rows.",
               "put the field back in your models")
              for c in plan["removed_columns"] if c["not_null"] and not c["has_default"]]
    return found


def report(plan):
    """One line per difference, in the words a researcher needs: what is added, what old rows get,
    what is kept. Problems (see problems()) are left to the refusal."""
    if not plan["otree_tables"]:
        return ["The database has no oTree tables yet: oTree creates them when it starts."]
    lines = []
    if plan["new_tables"]:
        lines.append("New tables (a new app or model): " + ", ".join(t["table"] for t in plan["new_tables"]) + ".")
    for c in plan["new_columns"]:
        if c["rows"]:
            lines.append(f"{c['table']}: {_rows(c['rows'], 'existing row')} "
                         f"{'gets' if c['rows'] == 1 else 'get'} an empty value in column {c['column']} "
                         f"(new, {c['type']}).")
        else:
            lines.append(f"{c['table']}: new column {c['column']} ({c['type']}); the table has no rows yet.")
    if any(c["rows"] for c in plan["new_columns"]):
        lines.append("An empty value (NULL) is what oTree shows for a field that was never set; initial= "
                     "only applies to rows created from now on. Nothing is filled in.")
    for c in plan["removed_columns"]:
        if c["not_null"] and not c["has_default"]:
            continue
        lines.append(f"{c['table']}.{c['column']} is no longer in your models: the column is kept, with its "
                     f"{_rows(c['values'], 'stored value')}, and ignored by oTree.")
    lines += [f"Table {t['table']} is no longer in your project: kept, with its {_rows(t['rows'])}, and ignored."
              for t in plan["removed_tables"]]
    return lines


def refusal(found, server_running, starting=True):
    """The message for problems(): what is wrong, that nothing happened, how to fix it."""
    outcome = "the new oTree server was not started and nothing was changed" if starting else "nothing was changed"
    kept = " The running server keeps running the previous code." if server_running else ""
    listed = "".join(f"\n  - {problem}" for _, problem, _ in found)
    fixes = "".join(f"\n  - {fix};" for fix in dict.fromkeys(fix for _, _, fix in found))
    version = ("\nA table named otree_... is oTree's own: the oTree version changed. Pin the one the database "
               "was made with in requirements.txt." if any(t.startswith("otree_") for t, _, _ in found) else "")
    return (f"Your models no longer match data already in the database, so {outcome}.{kept}{listed}\n"
            f"To fix it, either{fixes}\n"
            "  - or, if the data in the database can go, start with an empty one: invoke resetdb (it backs up "
            f"first).{version}\nThen run `invoke up` again.")


def check(compose, apply=False):
    """Run the comparison in a one-off oTree container beside the running database."""
    result = compose.run("run", "--rm", "--no-deps", "-T", "otree", "python", SCRIPT,
                         *(["--apply"] if apply else []), capture=True, check=False)
    if result.returncode:
        raise StackError("Comparing your models with the database failed; the reason is above (often an error "
                         "in your project's code). Nothing was changed, and a running server keeps running.")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _server_running(compose):
    return compose.running("otree")


def _start(compose, service, wait=True):
    """Start a service, or recreate it if its image or settings changed: the comparison must see
    the database the new server will use, with the password it will use."""
    started = compose.run("up", "--detach", "--no-deps", *(["--wait"] if wait else []), service, check=False)
    if started.returncode:
        compose.explain_unhealthy()
        raise StackError(f"The {service} service did not start; its last log lines are above. Nothing was changed.")


def _apply(ctx, plan):
    if plan["otree_tables"]:
        # Not waiting for its health: that reports on the last scheduled backup, not readiness.
        _start(ctx.compose, "backup", wait=False)
        backup = backups.take(ctx, reason="before-migrate")
        info(f"Backed up the database first: {backup.id} ({backup.path})")
    done = check(ctx.compose, apply=True)
    added = [_rows(len(done[key]), noun) for key, noun in (("new_tables", "table"), ("new_columns", "column"))
             if done[key]]
    info(f"Added {' and '.join(added)}, in one transaction.")


def _show(plan):
    for line in report(plan):
        info(line)


def before_start(ctx):
    """The step in `invoke up`: after the images are built and the running server's page times
    are saved (the database may restart here), before a new server starts."""
    _start(ctx.compose, "postgres")
    step("Comparing your models with the database")
    plan = check(ctx.compose)
    _show(plan)
    found = problems(plan)
    if found:
        raise StackError(refusal(found, _server_running(ctx.compose)))
    if pending(plan):
        _apply(ctx, plan)
    elif plan["otree_tables"]:
        info("The database schema is up to date.")


def run(ctx, dry_run=False):
    """`invoke migrate`: the same on a running stack, then oTree restarted on the new schema."""
    with lock.held(ctx.server, f"migrate of {ctx.study.name}"):
        _run_locked(ctx, dry_run)


def _run_locked(ctx, dry_run):
    stopped = [name for name in ("postgres", "otree") if not ctx.compose.running(name)]
    if stopped:
        raise StackError(f"The study '{ctx.study.name}' is not running ({' and '.join(stopped)} stopped). Start it "
                         f"with `invoke up`: it migrates the database too, before the server starts (add --study "
                         f"{ctx.study.name} for this study alone).")
    step("Comparing the models in the oTree image with the database")
    plan = check(ctx.compose)
    _show(plan)
    found = problems(plan)
    if found:
        raise StackError(refusal(found, True, starting=False))
    if not pending(plan):
        step("The database schema is up to date: nothing to change. (After you edit your models, "
             "`invoke up` builds them and migrates.)")
        return
    if dry_run:
        step("Dry run: nothing was changed. `invoke migrate` applies the changes above.")
        return
    _apply(ctx, plan)
    # Restarted so that what the server maps is what the database has; it holds page times in memory.
    pagetimes.flush(ctx.compose)
    step("Restarting oTree on the new schema and waiting until every service is healthy")
    ctx.compose.run("up", "--detach", "--no-deps", "--force-recreate", "otree")
    ctx.compose.up()
    step(f"Migrated; the study '{ctx.study.name}' is up: {ctx.https_url()}")
