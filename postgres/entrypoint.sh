#!/bin/sh
# Creates the cluster, the oTree role and database on first start; on every start sets the
# role's password from .env, so the env file stays the one place it is kept.
set -eu
: "${POSTGRES_DB:?}" "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}"

single_user() {  # run one SQL statement per line without opening a network port
  postgres --single -D "$PGDATA" postgres >/dev/null
}
sql_literal() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }

# This script is PID 1 and nothing else uses the volume, so a lock file here was left by a
# container that was killed (host crash, power loss). Postgres would refuse to start over it.
rm -f "$PGDATA/postmaster.pid"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "postgres: creating a new database cluster in $PGDATA"
  initdb -D "$PGDATA" --username=postgres --auth-local=peer --auth-host=scram-sha-256 \
         --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  # Only containers on the stack's internal network can reach this port.
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  printf 'CREATE ROLE "%s" LOGIN;\nCREATE DATABASE "%s" OWNER "%s";\n' \
    "$POSTGRES_USER" "$POSTGRES_DB" "$POSTGRES_USER" | single_user
fi
# CREATEDB: a restore builds the restored copy beside the live database before swapping them.
printf 'ALTER ROLE "%s" CREATEDB PASSWORD %s;\n' "$POSTGRES_USER" "$(sql_literal "$POSTGRES_PASSWORD")" | single_user

exec postgres -D "$PGDATA" -c listen_addresses='*'
