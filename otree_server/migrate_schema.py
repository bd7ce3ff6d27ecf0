"""Compare the project's models with the live database; with --apply, add what is new.

oTree's own start only runs metadata.create_all: it creates missing tables but never adds a
column, so a field added mid-study makes every page of that app fail with "column does not
exist". This one-off script (`docker compose run`, before a new server starts) finds new tables
and columns, and columns whose type no longer matches or that the models dropped. It never
drops or alters a column: stack/migrate.py decides from its report what is safe.

Prints one JSON object on stdout; everything else (oTree's messages, errors) goes to stderr."""
import argparse
import contextlib
import json
import sys
import time

# An ALTER waits for every open transaction on its table, and every later query waits behind
# it: give up quickly rather than stall the running server's participants, and try again.
LOCK_TIMEOUT = "5s"
ATTEMPTS = 3
PAUSE_SECONDS = 5
LOCK_NOT_AVAILABLE = "55P03"

LIVE_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
"""


def load_models():
    """oTree's setup() (settings, every app's models, init_orm) without its create_all: a dry run
    or a refused change must leave the database as it was, and applying is one transaction below."""
    import sqlalchemy

    create_all = sqlalchemy.MetaData.create_all
    sqlalchemy.MetaData.create_all = lambda *args, **kwargs: None
    try:
        import otree.main

        otree.main.setup()
    finally:
        sqlalchemy.MetaData.create_all = create_all
    from otree.database import AnyModel, engine

    return AnyModel.metadata, engine


def postgres_types(conn, compiled):
    """{compiled type: Postgres's own name for it}, e.g. FLOAT -> double precision, so that types
    compare the way Postgres stores them. A temporary table is the one exact way to ask."""
    names = sorted(compiled)
    columns = ", ".join(f"c{number} {name}" for number, name in enumerate(names))
    conn.execute(f"CREATE TEMPORARY TABLE otree_stack_types ({columns}) ON COMMIT DROP")
    rows = conn.execute("SELECT attnum, format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = 'otree_stack_types'::regclass AND attnum > 0 ORDER BY attnum")
    spelled = dict(zip(names, (row[1] for row in rows)))
    conn.execute("DROP TABLE otree_stack_types")
    return spelled


def compare(conn, metadata, quote):
    live = {}
    for table, column, type_, not_null, has_default in conn.execute(LIVE_COLUMNS):
        live.setdefault(table, {})[column] = dict(type=type_, not_null=not_null, has_default=has_default)
    plan = dict(otree_tables=any(table.name in live for table in metadata.sorted_tables),
                new_tables=[], new_columns=[], removed_columns=[], changed_columns=[], removed_tables=[])
    if not plan["otree_tables"]:
        return plan  # a new database: the server's own create_all makes every table

    def count(table, column=None):
        return conn.execute(f"SELECT count({quote(column) if column else '*'}) FROM {quote(table)}").scalar()

    dialect = conn.dialect
    types = postgres_types(conn, {column.type.compile(dialect=dialect)
                                  for table in metadata.sorted_tables for column in table.columns})
    for table in metadata.sorted_tables:
        if table.name not in live:
            plan["new_tables"].append(dict(table=table.name))
            continue
        existing = live[table.name]
        for column in table.columns:
            wanted = types[column.type.compile(dialect=dialect)]
            if column.name not in existing:
                plan["new_columns"].append(dict(table=table.name, column=column.name, type=wanted,
                                                rows=count(table.name)))
            elif existing[column.name]["type"] != wanted:
                plan["changed_columns"].append(dict(table=table.name, column=column.name,
                                                    database=existing[column.name]["type"], models=wanted))
        for name, found in existing.items():
            if name not in table.columns:
                plan["removed_columns"].append(dict(table=table.name, column=name, **found,
                                                    values=count(table.name, name)))
    plan["removed_tables"] = [dict(table=name, rows=count(name)) for name in sorted(live)
                              if name not in metadata.tables]
    return plan


def add_new(conn, metadata, plan, quote):
    """New tables whole (with their indexes and keys, as oTree would create them), new columns
    nullable: old rows get NULL, which is what oTree shows for a field never set."""
    from sqlalchemy.schema import AddConstraint, CreateIndex, ForeignKeyConstraint, UniqueConstraint

    new_tables = [metadata.tables[entry["table"]] for entry in plan["new_tables"]]
    if new_tables:
        metadata.create_all(conn, tables=new_tables, checkfirst=False)
    added = {}
    for entry in plan["new_columns"]:
        table = metadata.tables[entry["table"]]
        column = table.columns[entry["column"]]
        conn.execute(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} "
                     f"{column.type.compile(dialect=conn.dialect)}")
        added.setdefault(table.name, set()).add(column.name)
    for name, columns in added.items():
        table = metadata.tables[name]
        # Keys and indexes on a new column, e.g. an ExtraModel's new link to a Player.
        for constraint in table.constraints:
            keys = isinstance(constraint, (ForeignKeyConstraint, UniqueConstraint))
            if keys and columns & set(constraint.columns.keys()):
                conn.execute(AddConstraint(constraint))
        for index in table.indexes:
            if columns & {column.name for column in index.columns}:
                conn.execute(CreateIndex(index))


def run(apply):
    from sqlalchemy.exc import OperationalError

    metadata, engine = load_models()
    quote = engine.dialect.identifier_preparer.quote
    for attempt in range(1, ATTEMPTS + 1):
        with contextlib.closing(engine.connect()) as conn:
            transaction = conn.begin()
            try:
                conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                plan = compare(conn, metadata, quote)
                if apply:
                    add_new(conn, metadata, plan, quote)
                    transaction.commit()
                else:
                    transaction.rollback()
                return plan
            except OperationalError as error:
                transaction.rollback()
                if getattr(error.orig, "pgcode", None) != LOCK_NOT_AVAILABLE:
                    raise
        if attempt < ATTEMPTS:
            print(f"A table was busy for {LOCK_TIMEOUT} (a running request); nothing was changed. "
                  f"Trying again in {PAUSE_SECONDS} s.", file=sys.stderr)
            time.sleep(PAUSE_SECONDS)
    sys.exit(f"A table stayed busy through {ATTEMPTS} attempts (a long request of the running server, or "
             "another connection to the database); nothing was changed. Try again in a moment.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apply", action="store_true", help="add the new tables and columns, in one transaction")
    apply = parser.parse_args().apply
    output = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        plan = run(apply)
    print(json.dumps(plan), file=output)


if __name__ == "__main__":
    main()
