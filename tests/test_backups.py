"""Backups on the real stack: the restore drill, damaged and foreign files, the scheduler and its
rotation, restic off-site copies, a full backup disk, and a safe resetdb. Each test that changes
.env puts it back."""
import contextlib
import glob
import json
import os
import re
import shutil
import subprocess
import time

import pytest
import requests

from tests.helpers import load_env, write_env
from tests.participants import join, play_together

APPS = ("consent", "demographics", "public_goods", "questionnaire", "payment")


def exports(stack):
    """Every export oTree offers, through nginx: what a researcher would compare."""
    paths = ["/api/export_wide", "/api/export_page_times", "/api/export_chat"] + \
        [f"/api/export_app?app={app}" for app in APPS]
    files = {}
    for path in paths:
        response = requests.get(stack.https + path, headers={"otree-rest-key": stack.values["OTREE_REST_KEY"]},
                                verify=False, timeout=60)
        response.raise_for_status()
        files[path] = response.content
    return files


def session_codes(stack):
    return stack.sql("SELECT code FROM otree_session ORDER BY id")


def backup_dir(stack):
    return load_env(stack.env_path)["BACKUP_DIR"]


def manifest(stack, backup_id):
    with open(os.path.join(backup_dir(stack), backup_id, "manifest.json"), encoding="utf-8") as handle:
        return json.load(handle)


def backup_ids(stack):
    return sorted(os.path.basename(os.path.dirname(path))
                  for path in glob.glob(os.path.join(backup_dir(stack), "*", "manifest.json")))


def take_backup(stack):
    output = stack.invoke("backup").stdout
    return re.search(r"invoke restore (\S+)", output).group(1)


@contextlib.contextmanager
def changed_env(stack, **changes):
    """Run with some .env values changed (`invoke up` applies them), then put them back."""
    original = load_env(stack.env_path)
    write_env(stack.env_path, {**original, **changes})
    stack.invoke("up")
    try:
        yield
    finally:
        write_env(stack.env_path, original)
        stack.invoke("up")


def test_restore_drill_brings_back_every_export_byte_for_byte(stack):
    played = stack.create_session(3)
    play_together(join(played, 3, "D"))
    stack.create_session(3)
    before = exports(stack)
    backup_id = take_backup(stack)
    assert manifest(stack, backup_id)["verification"]["status"] == "passed"

    stack.invoke("down", "--delete-data", "--confirm", stack.name)
    stack.invoke("up")
    assert session_codes(stack) == []

    result = stack.invoke("restore", backup_id, "--confirm", stack.name)
    assert "the live row counts match the backup" in result.stdout
    assert exports(stack) == before
    safety = re.search(r"To undo: invoke restore (\S+)", result.stdout).group(1)
    assert manifest(stack, safety)["reason"] == "before-restore"


def test_damaged_backups_fail_verification_and_change_nothing(stack, tmp_path):
    stack.create_session(3)
    backup_id = take_backup(stack)
    codes = session_codes(stack)
    dump = os.path.join(backup_dir(stack), backup_id, "otree.dump")
    size = os.path.getsize(dump)

    # Truncated, without its manifest: it does not restore.
    truncated = tmp_path / "truncated.dump"
    with open(dump, "rb") as source:
        truncated.write_bytes(source.read(size // 2))
    result = stack.invoke("restore", str(truncated), "--confirm", stack.name, check=False)
    assert result.returncode == 1 and "cannot be restored" in result.stderr, result.stderr
    assert "does not restore" in result.stderr or "not a backup of this stack" in result.stderr

    # Corrupted on disk after it was verified (bit rot): its checksum no longer matches.
    with open(dump, "r+b") as handle:
        handle.seek(size // 2)
        byte = handle.read(1)
        handle.seek(size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    result = stack.invoke("restore", backup_id, "--confirm", stack.name, check=False)
    assert result.returncode == 1 and "checksum does not match" in result.stderr, result.stderr
    assert "The live database is untouched" in result.stderr
    assert manifest(stack, backup_id)["verification"]["status"] == "failed"
    listing = stack.invoke("backups").stdout
    assert re.search(rf"{backup_id}\s.*FAILED", listing) and f"FAILED {backup_id}:" in listing
    assert session_codes(stack) == codes


def test_missing_and_foreign_files_are_refused(stack, tmp_path):
    codes = session_codes(stack)
    missing = stack.invoke("restore", str(tmp_path / "nowhere.dump"), "--confirm", stack.name, check=False)
    assert missing.returncode == 1 and "There is no file" in missing.stderr
    unknown = stack.invoke("restore", "2020-01-01T00-00-00Z", "--confirm", stack.name, check=False)
    assert unknown.returncode == 1 and "There is no backup '2020-01-01T00-00-00Z'" in unknown.stderr
    foreign = tmp_path / "notes.dump"
    foreign.write_text("participant notes, not a database\n")
    result = stack.invoke("restore", str(foreign), "--confirm", stack.name, check=False)
    assert result.returncode == 1 and "not a backup of this stack" in result.stderr, result.stderr
    assert session_codes(stack) == codes


def test_resetdb_asks_first_and_backs_up_before_it_empties_the_tables(stack):
    stack.create_session(3)
    codes, backups_before = session_codes(stack), backup_ids(stack)
    refused = stack.invoke("resetdb", check=False)
    assert refused.returncode == 1 and "typed confirmation" in refused.stderr
    assert session_codes(stack) == codes and backup_ids(stack) == backups_before

    result = stack.invoke("resetdb", "--confirm", stack.name)
    backup_id = re.search(r"To undo: invoke restore (\S+)", result.stdout).group(1)
    taken = manifest(stack, backup_id)
    assert taken["reason"] == "before-resetdb" and taken["verification"]["status"] == "passed"
    assert taken["tables"]["otree_session"] == len(codes)
    assert session_codes(stack) == []
    stack.create_session(3)  # the fresh tables work

    stack.invoke("restore", backup_id, "--confirm", stack.name)
    assert session_codes(stack) == codes


def test_the_scheduler_backs_up_by_itself_and_rotates(stack):
    manual = take_backup(stack)
    with changed_env(stack, BACKUP_SCHEDULE="every 4s"):
        deadline = time.time() + 120
        while time.time() < deadline:
            log = stack.compose("logs", "--no-color", "backup").stdout
            taken = re.findall(r"Backup (\S+) verified", log)
            if len(taken) >= 3 and "Rotation removed" in log:
                break
            time.sleep(2)
        assert len(taken) >= 3 and "Rotation removed" in log, log
        status = stack.invoke("status").stdout
        assert re.search(r"backups\s+last good backup: \S+ \((just now|\d+ min ago)\)", status), status
    # Stopped (a stop lets a running backup and its rotation finish), so the folder holds still.
    scheduled = [b for b in backup_ids(stack) if manifest(stack, b)["reason"] == "scheduled"]
    # All on one day: the rotation keeps that day's newest, and the first while fewer than 7 days
    # have backups (restic's rule). Backups taken by hand are never pruned.
    assert len(scheduled) == 2 and scheduled[0] == taken[0] and scheduled[1] >= taken[-1], (scheduled, taken)
    assert manual in backup_ids(stack)


def test_restic_round_trip_and_an_unreachable_repository(stack, tmp_path):
    repository = str(tmp_path / "restic")
    with changed_env(stack, RESTIC_REPOSITORY=repository, RESTIC_PASSWORD="a long restic passphrase"):
        stack.create_session(3)
        codes = session_codes(stack)
        output = stack.invoke("backup").stdout
        snapshot = re.search(r"restic repository as snapshot (\w+)", output).group(1)
        backup_id = re.search(r"invoke restore (\S+)", output).group(1)
        assert snapshot in stack.invoke("backups", "--offsite").stdout
        assert os.path.isfile(os.path.join(repository, "config"))  # encrypted: restic's own layout

        # Lose the server: the local backup and the database.
        shutil.rmtree(os.path.join(backup_dir(stack), backup_id))
        stack.invoke("down", "--delete-data", "--confirm", stack.name)
        stack.invoke("up")
        assert session_codes(stack) == []
        stack.invoke("restore", "latest", "--offsite", "--confirm", stack.name)
        assert session_codes(stack) == codes

    with changed_env(stack, RESTIC_REPOSITORY="rest:http://127.0.0.1:9/", RESTIC_PASSWORD="a long restic passphrase"):
        result = stack.invoke("backup", check=False)
        assert result.returncode == 1 and "127.0.0.1 port 9 does not answer" in result.stderr, result.stderr
        assert "is verified and kept in BACKUP_DIR" in result.stderr
        refused = stack.invoke("restore", "latest", "--offsite", "--confirm", stack.name, check=False)
        assert refused.returncode == 1 and "cannot be reached" in refused.stderr
        assert "Backups need attention" in stack.invoke("status").stderr
        assert session_codes(stack) == codes
    take_backup(stack)  # a good backup clears the failure


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_a_full_backup_disk_is_reported_and_changes_nothing(stack, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(full)], check=True)
    try:
        codes = session_codes(stack)
        with changed_env(stack, BACKUP_DIR=str(full)):
            result = stack.invoke("backup", check=False)
            assert result.returncode == 1 and "is full, so no backup was made" in result.stderr, result.stderr
            assert [name for name in os.listdir(full) if not name.startswith(".")] == []
            assert "Backups need attention" in stack.invoke("status").stderr
            assert session_codes(stack) == codes
    finally:
        subprocess.run(["umount", str(full)], check=False)
    take_backup(stack)
