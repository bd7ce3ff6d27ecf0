"""Postgres work: a dump with row counts from the same snapshot, a throwaway server to prove a
dump restores, and the swap that puts a restored copy live. Connection settings come from the
libpq variables PGHOST, PGUSER, PGPASSWORD and PGDATABASE in the container's environment."""
import contextlib
import os
import shutil
import subprocess
import tempfile
import time

import psycopg2
from psycopg2 import sql

from . import BackupError

LIVE = os.environ.get("PGDATABASE", "otree")
INCOMING = LIVE + "_restoring"
REPLACED = LIVE + "_replaced"


def _run(command, failure, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise BackupError(f"{failure}: {detail[-1] if detail else 'exit ' + str(result.returncode)}")
    return result.stdout


def _connect(**params):
    try:
        return psycopg2.connect(**params)
    except psycopg2.OperationalError as error:
        raise BackupError(f"Cannot reach the database: {str(error).strip()}. Is the stack up? Run `invoke up`.")


def _tables(cursor):
    cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    return [row[0] for row in cursor.fetchall()]


def _counts(cursor):
    counts = {}
    for table in _tables(cursor):
        cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        counts[table] = cursor.fetchone()[0]
    return counts


def dump(path):
    """pg_dump (custom format) of the live database into path. The row counts are read in the
    snapshot that pg_dump uses, so they describe exactly what the dump holds, even while
    participants write. Returns (row counts per table, server version)."""
    connection = _connect()
    try:
        connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_export_snapshot(), current_setting('server_version')")
            snapshot, version = cursor.fetchone()
            counts = _counts(cursor)
            # The snapshot lives as long as this transaction, so pg_dump runs inside it.
            _run(["pg_dump", "--format=custom", f"--snapshot={snapshot}", f"--file={path}"],
                 "pg_dump failed")
        connection.rollback()
    finally:
        connection.close()
    return counts, version


def archive_tables(path):
    """The tables in a dump's table of contents; a clear error for anything but a pg_dump archive."""
    listing = _run(["pg_restore", "--list", path],
                   f"{os.path.basename(path)} is not a backup of this stack (not a pg_dump custom-format "
                   "archive, or damaged)")
    return sorted(line.split()[-2] for line in listing.splitlines()
                  if " TABLE public " in line and not line.startswith(";"))


@contextlib.contextmanager
def scratch_server():
    """A private Postgres in a temporary folder, reached by its socket only, gone afterwards."""
    base = tempfile.mkdtemp(prefix="verify-")
    data = os.path.join(base, "data")
    try:
        _run(["initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"],
             "Could not create the scratch database for verification")
        _run(["pg_ctl", "-D", data, "-w", "-l", os.path.join(base, "log"), "-o",
              f"-c listen_addresses='' -c unix_socket_directories={base} -c fsync=off", "start"],
             "Could not start the scratch database for verification")
        try:
            yield {"host": base, "user": "postgres", "dbname": "postgres", "password": ""}
        finally:
            subprocess.run(["pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _libpq_env(params):
    env = dict(os.environ, PGHOST=params["host"], PGUSER=params["user"], PGDATABASE=params["dbname"])
    if params.get("password") is not None:
        env["PGPASSWORD"] = params["password"]
    return env


def _create_database(params, name):
    connection = _connect(**params)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        connection.close()


def restore_and_count(params, name, path):
    """Restore the dump into a new database `name` on the server `params`, in one transaction,
    and return its row counts."""
    _create_database(params, name)
    _run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
          f"--dbname={name}", path], "The dump does not restore", env=_libpq_env(params))
    connection = _connect(**dict(params, dbname=name))
    try:
        with connection.cursor() as cursor:
            return _counts(cursor)
    finally:
        connection.close()


def live_params():
    """The stack's server, reached as the oTree role, connected to its maintenance database."""
    return {"host": os.environ["PGHOST"], "user": os.environ["PGUSER"], "dbname": "postgres",
            "password": os.environ["PGPASSWORD"]}


def _clients_of_live(cursor, patience=10):
    """The clients still connected to the live database, after giving a closing connection a few
    seconds to go. Postgres's own workers (autovacuum) are not clients: the rename stops them."""
    deadline = time.monotonic() + patience
    while True:
        cursor.execute("SELECT coalesce(nullif(application_name, ''), 'a client') || ' from ' || "
                       "coalesce(host(client_addr), 'this container') FROM pg_stat_activity "
                       "WHERE datname = %s AND backend_type = 'client backend'", (LIVE,))
        clients = [row[0] for row in cursor.fetchall()]
        if not clients or time.monotonic() > deadline:
            return clients
        time.sleep(0.5)


def _replace_live(then):
    """Rename the live database to REPLACED (the one an earlier restore or resetdb kept goes), then
    run `then(cursor)` to put a new live database in place. The live database is kept, untouched,
    until the next such operation: a second way back beside the backup taken before."""
    connection = _connect(**live_params())
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            clients = _clients_of_live(cursor)
            if clients:
                raise BackupError(f"Something is still connected to the database ({', '.join(clients)}), so it was "
                                  "not replaced. Stop oTree first (invoke restore and invoke resetdb do this).")
            # WITH (FORCE): a session someone opened on the kept copy does not block the next restore.
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(REPLACED)))
            cursor.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(LIVE),
                                                                          sql.Identifier(REPLACED)))
            try:
                then(cursor)
            except psycopg2.Error as error:
                cursor.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(REPLACED),
                                                                              sql.Identifier(LIVE)))
                raise BackupError(f"The new database could not be put in place ({str(error).strip()}); the live "
                                  "database is as it was")
    finally:
        connection.close()


def swap_in_restored():
    """Put the restored database in place of the live one. The renames are instant, and the live
    database is only touched once the copy is complete and counted."""
    _replace_live(lambda cursor: cursor.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
        sql.Identifier(INCOMING), sql.Identifier(LIVE))))


def set_aside():
    """An empty live database in place of the current one, which is kept as REPLACED."""
    _replace_live(lambda cursor: cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(LIVE))))


def exists(name):
    connection = _connect(**live_params())
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cursor.fetchone() is not None
    finally:
        connection.close()


def live_counts():
    connection = _connect()
    try:
        with connection.cursor() as cursor:
            return _counts(cursor)
    finally:
        connection.close()
