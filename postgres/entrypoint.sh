#!/bin/sh
# Creates the cluster, the oTree role and database on first start; on every start sets the
# role's password from .env, so the env file stays the one place it is kept.
set -eu
: "${POSTGRES_DB:?}" "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}"

single_user() {  # run one SQL statement per line without opening a network port
  postgres --single -D "$PGDATA" postgres >/dev/null
}
sql_literal() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }

# One server per data volume. Postgres's own postmaster.pid check cannot see a server in another
# container, so two containers on one volume would both start and corrupt it. An flock on the
# data folder, taken on fd 9 which exec passes to postgres, is held while the server (or any of
# its processes) runs, and the kernel drops it when the container ends, even by SIGKILL or a
# host crash. The folder itself is locked since initdb wants it empty on first start.
exec 9<"$PGDATA"
reason=$(flock -n 9 2>&1) || {
  status=$?
  if [ "$status" -ne 1 ]; then  # the file system takes no locks (some network or FUSE file systems)
    if [ "${POSTGRES_ALLOW_UNLOCKED:-}" != 1 ]; then
      echo "postgres: refusing to start: $PGDATA cannot be locked (${reason:-flock exit $status}: its file system takes no locks), so nothing would stop a second Postgres container on this data volume from corrupting it; nothing was touched. Put Docker's volumes on a local file system, or, if you are sure only this container uses the volume, set POSTGRES_ALLOW_UNLOCKED=1 (invoke config --set POSTGRES_ALLOW_UNLOCKED=1)." >&2
      exit 1
    fi
    echo "postgres: WARNING: cannot lock $PGDATA (${reason:-flock exit $status}); starting unguarded as POSTGRES_ALLOW_UNLOCKED=1 says, so a second Postgres container on this data volume would not be stopped" >&2
  else
    holder=$(cat "$PGDATA/postmaster.container" 2>/dev/null || true)
    volume=$PGDATA  # docker ps accepts a mount path too, and then lists every such container
    while read -r _ _ _ root mount _; do  # a named volume's folder is .../volumes/NAME/_data
      case "$mount|$root" in "$PGDATA|"*/volumes/*/_data) volume=${root%/_data}; volume=${volume##*/volumes/} ;; esac
    done </proc/self/mountinfo
    echo "postgres: refusing to start: another Postgres container${holder:+ ($holder)} is already using this data volume; nothing was touched. Find it with 'docker ps --filter volume=$volume' and stop it first, or give this one its own volume." >&2
    exit 1
  fi
}
# We hold the lock, so no server uses this folder: a postmaster.pid here was left by a container
# that was killed (host crash, power loss), and Postgres would refuse to start over it.
rm -f "$PGDATA/postmaster.pid"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "postgres: creating a new database cluster in $PGDATA"
  initdb -D "$PGDATA" --username=postgres --auth-local=peer --auth-host=scram-sha-256 \
         --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  printf 'CREATE ROLE "%s" LOGIN;\nCREATE DATABASE "%s" OWNER "%s";\n' \
    "$POSTGRES_USER" "$POSTGRES_DB" "$POSTGRES_USER" | single_user
fi
# Tells a refused second container which container holds the lock (its hostname is its id).
uname -n > "$PGDATA/postmaster.container"
# CREATEDB: a restore builds the restored copy beside the live database before swapping them.
printf 'ALTER ROLE "%s" CREATEDB PASSWORD %s;\n' "$POSTGRES_USER" "$(sql_literal "$POSTGRES_PASSWORD")" | single_user

# Who may connect comes from the image (pg_hba.conf), for old and new data volumes alike. Only
# containers on the study's internal network reach the port.
exec postgres -D "$PGDATA" -c listen_addresses='*' -c hba_file=/etc/postgresql-stack/pg_hba.conf
