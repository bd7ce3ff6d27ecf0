"""Indexes on the foreign keys oTree declares without one (Postgres, unlike MySQL, never makes them).

On every page oTree finds the participant's player with `participant_id = ? AND round_number = ?`,
and only round_number has an index: in a one-round app that index matches every player of
every session, so the lookup reads them all. Measured with pgbench on the stack's Postgres (a
player table like the example's, one client, average per query): 0.20 ms at 800 players, 0.34 ms
at 5,000 and 1.20 ms at 20,000 without the index; 0.13 to 0.15 ms at every size with it. The
same holds for a group's players (`group_id`), a subsession's groups, and the cascades when a
session is deleted.

An index changes no query's result, only how Postgres finds the rows; where oTree reads
several rows it orders them itself (ORDER BY id, id_in_group, round_number). Run by the
server's start (bin/otree), after oTree has created its tables and before it serves: the one
process on its database, so nothing waits on the build. Any failure is logged and the server
starts without the missing indexes."""
import hashlib
import logging

log = logging.getLogger("otree.stack")

# Single-column foreign keys of the current schema whose column leads no index.
UNINDEXED = """
SELECT t.relname, a.attname
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
WHERE c.contype = 'f' AND cardinality(c.conkey) = 1
  AND c.connamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
  AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])
ORDER BY 1, 2
"""
# A table being altered elsewhere (a schema change by hand) would hold the build: give up instead.
LOCK_TIMEOUT = "5s"
POSTGRES_NAME_LIMIT = 63


def index_name(table, column):
    """otree_stack_<table>_<column>, shortened with a hash where Postgres would cut it (63 bytes),
    so that two long names never become one."""
    name = f"otree_stack_{table}_{column}"
    if len(name.encode()) <= POSTGRES_NAME_LIMIT:
        return name
    digest = hashlib.sha1(f"{table}.{column}".encode()).hexdigest()[:10]
    return f"{name.encode()[:POSTGRES_NAME_LIMIT - 11].decode(errors='ignore')}_{digest}"


def quote(identifier):
    return '"' + identifier.replace('"', '""') + '"'


def create(engine):
    """Create the missing indexes in one transaction; return the "table.column" names indexed."""
    if engine.dialect.name != "postgresql":
        return []
    try:
        with engine.begin() as connection:
            connection.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            missing = [tuple(row) for row in connection.execute(UNINDEXED)]
            for table, column in missing:
                connection.execute(f"CREATE INDEX {quote(index_name(table, column))} "
                                   f"ON {quote(table)} ({quote(column)})")
    except Exception as error:  # a speed-up only: the server must start regardless
        # Postgres's own message (SQLAlchemy's adds the statement and a link over several lines).
        reason = (str(getattr(error, "orig", None) or error).strip().splitlines() or [""])[0]
        log.warning(f"Foreign-key indexes not created ({type(error).__name__}: {reason}). "
                    "oTree works without them, only slower on large tables; they are tried again at "
                    "the next start.")
        return []
    if missing:
        keys = "foreign key" if len(missing) == 1 else "foreign keys"
        log.info(f"Indexed {len(missing)} {keys} oTree leaves without an index: "
                 + ", ".join(f"{table}.{column}" for table, column in missing))
    return [f"{table}.{column}" for table, column in missing]
