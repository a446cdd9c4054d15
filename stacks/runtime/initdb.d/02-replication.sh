#!/bin/sh
# 02-replication.sh: first-boot setup of a streaming replication primary, run by the base
# image's docker-entrypoint.sh while its temporary server listens on the unix socket.
#
#   REPLICATION_PASSWORD  (or REPLICATION_PASSWORD_FILE) the replication role's password;
#                         unset: print a notice and set up nothing (single-node images)
#   REPLICATION_USER      the role, default replicator (REPLICATION LOGIN, SCRAM password)
#   REPLICATION_SLOT      a physical replication slot, default replica_1
#
# It also appends `host replication <user> all scram-sha-256` to $PGDATA/pg_hba.conf (no
# trust over the network) and reloads. It connects as POSTGRES_USER to POSTGRES_DB through
# libpq's PGHOST/PGPORT (the entrypoint's socket, or whatever a test points them at). The
# password travels in a psql variable, never inside the SQL text, and is stored as a
# SCRAM-SHA-256 verifier. Running it again changes nothing but the password.
set -eu

log() { printf '02-replication: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ -n "${REPLICATION_PASSWORD_FILE:-}" ]; then
  [ -z "${REPLICATION_PASSWORD:-}" ] || die "both REPLICATION_PASSWORD and REPLICATION_PASSWORD_FILE are set; use one"
  [ -r "$REPLICATION_PASSWORD_FILE" ] || die "REPLICATION_PASSWORD_FILE=$REPLICATION_PASSWORD_FILE is not a readable file"
  REPLICATION_PASSWORD=$(cat "$REPLICATION_PASSWORD_FILE")
fi
if [ -z "${REPLICATION_PASSWORD:-}" ]; then
  log "REPLICATION_PASSWORD is not set; no replication role, slot or pg_hba.conf line (single node)"
  exit 0
fi
: "${PGDATA:?PGDATA must be set}"

user=${REPLICATION_USER:-replicator}
slot=${REPLICATION_SLOT:-replica_1}
# Plain names only: they go into pg_hba.conf and slot names allow no more.
case "$user" in
  '' | [!A-Za-z_]* | *[!A-Za-z0-9_]*) die "REPLICATION_USER must be letters, digits and _ (not starting with a digit), got '$user'" ;;
esac
case "$slot" in
  '' | *[!a-z0-9_]*) die "REPLICATION_SLOT must be lowercase letters, digits and _, got '$slot'" ;;
esac
[ "${#user}" -le 63 ] || die "REPLICATION_USER is longer than 63 characters"
[ "${#slot}" -le 63 ] || die "REPLICATION_SLOT is longer than 63 characters"

hba=$PGDATA/pg_hba.conf
line="host replication \"$user\" all scram-sha-256"
if ! grep -qxF "$line" "$hba" 2>/dev/null; then
  printf '\n# streaming replication (02-replication.sh)\n%s\n' "$line" >>"$hba"
fi

psql -X -q -v ON_ERROR_STOP=1 --no-password --no-psqlrc \
  --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
  --set user="$user" --set password="$REPLICATION_PASSWORD" --set slot="$slot" <<'SQL' >/dev/null
SET password_encryption = 'scram-sha-256';
SELECT format('CREATE ROLE %I', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
ALTER ROLE :"user" WITH REPLICATION LOGIN PASSWORD :'password';
SELECT pg_create_physical_replication_slot(:'slot')
  WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = :'slot');
SELECT pg_reload_conf();
SQL
log "role $user (REPLICATION LOGIN, SCRAM), physical slot $slot, pg_hba.conf: $line"
