#!/bin/sh
# 03-pgbouncer-auth.sh: first-boot setup of PgBouncer's auth_query (primary stack), run by
# the base image's docker-entrypoint.sh while its temporary server listens on the unix
# socket (executed or sourced; both work).
#
#   PGBOUNCER_AUTH_PASSWORD  (or PGBOUNCER_AUTH_PASSWORD_FILE) required: the password of
#                            role pgbouncer_auth, the one PgBouncer's auth_user logs in as
#
# It creates (or, run again, updates) role pgbouncer_auth: LOGIN, CONNECTION LIMIT 10, no
# other attribute, SCRAM-SHA-256 password. In POSTGRES_DB, `postgres` and template1 (so
# databases created later inherit it) it creates schema `pgbouncer`, owned by the
# superuser, with
#
#   pgbouncer.pgbouncer_lookup(p_usename text) RETURNS TABLE(usename name, passwd text)
#
# a SECURITY DEFINER function (search_path pg_catalog, pg_temp) over pg_shadow that returns
# the SCRAM verifier of a role that can log in and is not a superuser, and nothing for
# anyone else. Only pgbouncer_auth may use the schema and execute the function (PUBLIC
# cannot); pgbouncer_auth itself cannot read pg_shadow. PgBouncer's
# `auth_query = SELECT * FROM pgbouncer.pgbouncer_lookup($1)` calls it.
#
# It connects as POSTGRES_USER to each database through libpq's PGHOST/PGPORT (the
# entrypoint's socket, or whatever a test points them at). The password reaches psql
# through the environment (\getenv), never inside SQL text or on a command line.
# (No `set -u`: a sourced script would leave it on in docker-entrypoint.sh.)
set -e

_pgb_log() { printf '03-pgbouncer-auth: %s\n' "$*" >&2; }
_pgb_die() { _pgb_log "error: $*"; exit 1; }

if [ -n "${PGBOUNCER_AUTH_PASSWORD_FILE:-}" ]; then
  [ -z "${PGBOUNCER_AUTH_PASSWORD:-}" ] || _pgb_die "both PGBOUNCER_AUTH_PASSWORD and PGBOUNCER_AUTH_PASSWORD_FILE are set; use one"
  [ -r "$PGBOUNCER_AUTH_PASSWORD_FILE" ] || _pgb_die "PGBOUNCER_AUTH_PASSWORD_FILE=$PGBOUNCER_AUTH_PASSWORD_FILE is not a readable file"
  PGBOUNCER_AUTH_PASSWORD=$(cat "$PGBOUNCER_AUTH_PASSWORD_FILE")
fi
[ -n "${PGBOUNCER_AUTH_PASSWORD:-}" ] ||
  _pgb_die "PGBOUNCER_AUTH_PASSWORD is not set: the primary stack's PgBouncer logs in as role pgbouncer_auth with it (set it in .env)"
_pgb_user=${POSTGRES_USER:-postgres}
_pgb_db=${POSTGRES_DB:-$_pgb_user}

# psql's \getenv reads the password from its environment (given to psql alone, so a
# password from a file does not end up in the server's environment when sourced).
_pgb_psql() {
  PGBOUNCER_AUTH_PASSWORD=$PGBOUNCER_AUTH_PASSWORD psql -X -q -v ON_ERROR_STOP=1 --no-password --no-psqlrc \
    --username "$_pgb_user" --dbname "$1" >/dev/null
}

# The role (cluster-wide), through POSTGRES_DB.
_pgb_psql "$_pgb_db" <<'SQL'
\getenv pw PGBOUNCER_AUTH_PASSWORD
SET password_encryption = 'scram-sha-256';
SELECT 'CREATE ROLE pgbouncer_auth'
  WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgbouncer_auth') \gexec
ALTER ROLE pgbouncer_auth WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT
  NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 10 PASSWORD :'pw';
\unset pw
SQL

# The lookup function, in every database PgBouncer runs auth_query in.
_pgb_done=' '
for _pgb_target in "$_pgb_db" postgres template1; do
  case "$_pgb_done" in *" $_pgb_target "*) continue ;; esac
  _pgb_done="$_pgb_done$_pgb_target "
  _pgb_psql "$_pgb_target" <<'SQL'
CREATE SCHEMA IF NOT EXISTS pgbouncer;
ALTER SCHEMA pgbouncer OWNER TO CURRENT_USER;
REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC;
GRANT USAGE ON SCHEMA pgbouncer TO pgbouncer_auth;
CREATE OR REPLACE FUNCTION pgbouncer.pgbouncer_lookup(p_usename text)
  RETURNS TABLE (usename name, passwd text)
  LANGUAGE sql STABLE STRICT SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
AS $$
  -- pg_shadow lists only roles that can log in; superusers never go through PgBouncer's
  -- auth_query, and an expired password is no password.
  SELECT s.usename, s.passwd
    FROM pg_catalog.pg_shadow s
   WHERE s.usename = p_usename
     AND NOT s.usesuper
     AND (s.valuntil IS NULL OR s.valuntil > pg_catalog.now())
$$;
ALTER FUNCTION pgbouncer.pgbouncer_lookup(text) OWNER TO CURRENT_USER;
REVOKE ALL ON FUNCTION pgbouncer.pgbouncer_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgbouncer.pgbouncer_lookup(text) TO pgbouncer_auth;
SQL
done
_pgb_log "role pgbouncer_auth (LOGIN, CONNECTION LIMIT 10, SCRAM); pgbouncer.pgbouncer_lookup(text) in${_pgb_done% }"
unset _pgb_user _pgb_db _pgb_done _pgb_target
