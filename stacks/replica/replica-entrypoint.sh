#!/bin/sh
# replica-entrypoint.sh: entrypoint of a streaming replica. On the first start (no cluster
# in $PGDATA) it clones the primary with
#   pg_basebackup -h $PRIMARY_HOST -p $PRIMARY_PORT -U $REPLICATION_USER -D $PGDATA
#                 -X stream -S $REPLICATION_SLOT -R
# (-R writes standby.signal and primary_conninfo, which names the password file), then
# hands over to the image's entrypoint with its arguments unchanged. Later starts only
# hand over.
#
#   PRIMARY_HOST          the primary's host name or address (required on the first start)
#   PRIMARY_PORT          its port, default 5432
#   REPLICATION_USER      default replicator
#   REPLICATION_PASSWORD  (or REPLICATION_PASSWORD_FILE) required on the first start
#   REPLICATION_SLOT      the primary's physical slot, default replica_1
#   PGDATA                default /var/lib/postgresql/18/docker
#   REPLICA_PGPASSFILE    the password file it writes (0600; `:` and `\` escaped) and the
#                         walreceiver keeps using, default /var/lib/postgresql/replication.pgpass
#   REPLICA_ATTEMPTS      pg_basebackup attempts while the primary is not reachable, default 30
#   REPLICA_RETRY_DELAY   seconds between attempts, default 2
#   REPLICA_NEXT          the program to hand over to, default azb-entrypoint.sh
#   PG_BASEBACKUP         the pg_basebackup to run, default pg_basebackup (from PATH)
# Any command other than `postgres` (or -flags) runs untouched through REPLICA_NEXT.
set -eu

PGDATA=${PGDATA:-/var/lib/postgresql/18/docker}
export PGDATA
next=${REPLICA_NEXT:-azb-entrypoint.sh}
basebackup=${PG_BASEBACKUP:-pg_basebackup}
passfile=${REPLICA_PGPASSFILE:-/var/lib/postgresql/replication.pgpass}
attempts=${REPLICA_ATTEMPTS:-30}
delay=${REPLICA_RETRY_DELAY:-2}

log() { printf 'replica-entrypoint: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
is_number() { case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }
# A .pgpass field: `\` and `:` are the only characters escaped (with `\`).
pgpass_field() { printf '%s' "$1" | sed 's/[\\:]/\\&/g'; }

# Only a server start clones; `docker compose run replica psql ...` runs psql.
case "${1:-postgres}" in
  postgres | -*) ;;
  *) exec "$next" "$@" ;;
esac

# Started as root (the image's default), the server's user must own $PGDATA and its
# parent: pg_basebackup, run as root, would make /var/lib/postgresql/18 root's with mode
# 0700, and the server could not reach its own data through it (seen in the replica stack).
own_data_dir() {
  if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$(dirname "$PGDATA")" "$PGDATA"
  fi
}

if [ -s "$PGDATA/PG_VERSION" ]; then
  own_data_dir
  log "$PGDATA holds a cluster; starting it"
  exec "$next" "$@"
fi
if [ -d "$PGDATA" ] && [ -n "$(ls -A "$PGDATA")" ]; then
  die "$PGDATA is not empty but holds no cluster (no PG_VERSION); empty it to clone the primary"
fi

if [ -n "${REPLICATION_PASSWORD_FILE:-}" ]; then
  [ -z "${REPLICATION_PASSWORD:-}" ] || die "both REPLICATION_PASSWORD and REPLICATION_PASSWORD_FILE are set; use one"
  [ -r "$REPLICATION_PASSWORD_FILE" ] || die "REPLICATION_PASSWORD_FILE=$REPLICATION_PASSWORD_FILE is not a readable file"
  REPLICATION_PASSWORD=$(cat "$REPLICATION_PASSWORD_FILE")
fi
[ -n "${PRIMARY_HOST:-}" ] || die "PRIMARY_HOST is not set (the primary to clone)"
[ -n "${REPLICATION_PASSWORD:-}" ] || die "REPLICATION_PASSWORD is not set (the replication role's password)"
case "$REPLICATION_PASSWORD" in
  *'
'*) die "REPLICATION_PASSWORD must be one line (a password file cannot hold a newline)" ;;
esac
port=${PRIMARY_PORT:-5432}
user=${REPLICATION_USER:-replicator}
slot=${REPLICATION_SLOT:-replica_1}
is_number "$port" || die "PRIMARY_PORT must be a port number, got '$port'"
if ! is_number "$attempts" || [ "$attempts" -lt 1 ]; then
  die "REPLICA_ATTEMPTS must be 1 or more, got '$attempts'"
fi
is_number "$delay" || die "REPLICA_RETRY_DELAY must be a whole number of seconds, got '$delay'"

# The password file: written before pg_basebackup, kept for the walreceiver (-R records
# its path in primary_conninfo, not the password).
mkdir -p "$(dirname "$passfile")"
old_umask=$(umask)
umask 077
printf '%s:%s:*:%s:%s\n' "$(pgpass_field "$PRIMARY_HOST")" "$port" \
  "$(pgpass_field "$user")" "$(pgpass_field "$REPLICATION_PASSWORD")" >"$passfile.tmp"
chmod 0600 "$passfile.tmp"
mv -f "$passfile.tmp" "$passfile"
umask "$old_umask"
# The server (and its walreceiver) runs as postgres; docker-entrypoint.sh hands $PGDATA
# over to it, this file lies outside.
if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
  chown postgres:postgres "$passfile"
fi

own_data_dir
log "cloning $user@$PRIMARY_HOST:$port (slot $slot) into $PGDATA"
n=1
until PGPASSFILE=$passfile "$basebackup" -h "$PRIMARY_HOST" -p "$port" -U "$user" \
  -D "$PGDATA" -X stream -S "$slot" -R --checkpoint=fast --no-password; do
  [ "$n" -lt "$attempts" ] || die "pg_basebackup failed; giving up after $attempts attempt(s)"
  log "pg_basebackup failed (attempt $n of $attempts); retrying in ${delay}s"
  n=$((n + 1))
  sleep "$delay"
done
log "clone complete; starting the replica"
exec "$next" "$@"
