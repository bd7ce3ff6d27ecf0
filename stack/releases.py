"""`invoke releases`: every deploy and rollback of a study, numbered and recorded on the server.

A study's releases live in releases/STUDY/ of the stack's folder: releases.json (the record),
and vN/, the project as it was shipped for release N. Release N's image is tagged
otree-stack/otree:PROJECT-vN. The images and folders of the last KEEP releases are kept for
rollbacks; older ones are removed."""
import datetime
import json
import os
import shutil
import subprocess
import tempfile

from . import compose
from .console import StackError, info, step
from .envfile import REPO_ROOT

RELEASES_DIR = os.path.join(REPO_ROOT, "releases")
KEEP = 5
LIVE, REPLACED, FAILED = "live", "replaced", "failed"


def folder(study):
    return os.path.join(RELEASES_DIR, study.name)


def project_dir(study, number):
    return os.path.join(folder(study), f"v{number}")


def image(study, number):
    return f"otree-stack/otree:{study.project}-v{number}"


def current_image(study):
    """The tag every start of the study's oTree uses (docker-compose.yml)."""
    return f"otree-stack/otree:{study.project}"


def compose_for(study, reference):
    """The study's Compose project with its oTree image named `reference` instead of the live tag
    (docker-compose.yml's OTREE_RELEASE_IMAGE): what a deploy builds and checks its release with."""
    project = compose.for_study(study)
    project.environment["OTREE_RELEASE_IMAGE"] = reference
    return project


def load(study):
    try:
        with open(os.path.join(folder(study), "releases.json"), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return []


def save(study, records):
    os.makedirs(folder(study), exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=folder(study), prefix=".releases-", suffix=".partial")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(records, out, indent=1)
    os.replace(partial, os.path.join(folder(study), "releases.json"))


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_number(records):
    return max((record["number"] for record in records), default=0) + 1


def live(records):
    found = [record for record in records if record["outcome"] == LIVE]
    return found[-1] if found else None


def find(records, number):
    for record in records:
        if record["number"] == number:
            return record
    raise StackError(f"There is no release v{number}. `invoke releases` lists them.")


def image_id(reference):
    result = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", reference],
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def tag(source, target):
    subprocess.run(["docker", "tag", source, target], check=True)


def to_prune(records):
    """The releases whose images go: all but the newest KEEP that still have one, never the live one."""
    kept = [record for record in records if record.get("image_kept")]
    current = live(records)
    return [record for record in kept[:-KEEP] if not (current and record["number"] == current["number"])]


def prune(study, records):
    going = to_prune(records)
    # A rollback's release runs an earlier release's folder: a folder goes only when no kept release uses it.
    used = {record.get("project_dir") for record in records if record.get("image_kept") and record not in going}
    for record in going:
        subprocess.run(["docker", "image", "rm", image(study, record["number"])], capture_output=True)
        folder_of_release = record.get("project_dir", "")
        if folder_of_release not in used and folder_of_release.startswith(os.path.relpath(folder(study), REPO_ROOT)):
            shutil.rmtree(os.path.join(REPO_ROOT, folder_of_release), ignore_errors=True)
        record["image_kept"] = False
        info(f"Removed the image of release v{record['number']} (the last {KEEP} are kept for rollbacks).")


def describe(record):
    """One release in a line or more, as `invoke releases` shows it."""
    parts = [f"v{record['number']:<3} {record['time']}  {record['kind']:<8} {record['outcome']:<8}",
             f"by {record.get('deployer') or '?'}", f"git {record.get('revision') or '-'}",
             f"oTree {record.get('otree_version') or '?'}"]
    if record.get("downtime_seconds") is not None:
        parts.append(f"downtime {record['downtime_seconds']:.1f} s")
    if record.get("backup_id"):
        parts.append(f"backup {record['backup_id']}")
    lines = ["  ".join(parts)]
    lines += [f"       {change}" for change in record.get("changes", [])]
    if record.get("reason"):
        lines.append(f"       why: {record['reason']}")
    if not record.get("image_kept") and record["outcome"] != FAILED:
        lines.append("       (image removed: cannot be rolled back to)")
    return lines


def run(ctx):
    records = load(ctx.study)
    step(f"Releases of the study '{ctx.study.name}' ({len(records)}), newest last")
    if not records:
        info("None yet: the study runs what `invoke up` built. `invoke deploy` makes release v1 of what runs now "
             "and v2 of what it ships.")
    for record in records:
        for line in describe(record):
            info(line)
