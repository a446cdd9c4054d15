#!/bin/sh
# entrypoint.sh: the PgBouncer container's entrypoint (primary stack). Renders
# pgbouncer.ini from pgbouncer.ini.template and the environment, writes the auth user's
# password files, then execs pgbouncer in the foreground (extra arguments go to pgbouncer).
#
#   PGBOUNCER_AUTH_PASSWORD      (or PGBOUNCER_AUTH_PASSWORD_FILE) required: the password of
#                                the auth user (03-pgbouncer-auth.sh set it on the server)
#   PGBOUNCER_AUTH_USER          default pgbouncer_auth
#   POSTGRES_HOST, POSTGRES_PORT the server, default postgres and 5432
#   POSTGRES_DB                  the database the health check uses, default postgres
#   PGBOUNCER_LISTEN_ADDR        default * ; PGBOUNCER_PORT default 6432
#   PGBOUNCER_UNIX_SOCKET_DIR    default /tmp ; empty: no unix socket
#   PGBOUNCER_MAX_CLIENT_CONN (500), PGBOUNCER_DEFAULT_POOL_SIZE (20),
#   PGBOUNCER_MIN_POOL_SIZE (0), PGBOUNCER_RESERVE_POOL_SIZE (5),
#   PGBOUNCER_MAX_DB_CONNECTIONS (0 = unlimited)
#   PGBOUNCER_TEMPLATE           default pgbouncer.ini.template next to this script
#   PGBOUNCER_CONFIG_DIR         where the rendered files go, default /etc/pgbouncer:
#   PGBOUNCER_CONFIG             the ini, default $PGBOUNCER_CONFIG_DIR/pgbouncer.ini
#   PGBOUNCER_AUTH_FILE          default $PGBOUNCER_CONFIG_DIR/userlist.txt
#   PGPASSFILE                   default $HOME/.pgpass
#   PGBOUNCER_BIN                default pgbouncer
#   PGBOUNCER_RUN_AS             when started as root: the user pgbouncer switches to
#                                (pgbouncer refuses to run as root), default postgres
#
# The password goes to two files, both mode 0600:
#   - $PGPASSFILE (.pgpass): `host:port:*:user:password` for the server and
#     `*:PGBOUNCER_PORT:*:user:password` for PgBouncer itself, each field with `\` and `:`
#     escaped by a backslash and nothing else escaped, as libpq's password file wants.
#     libpq clients (healthcheck.sh, psql) read it.
#   - the auth_file: one line, `"user" "password"`, `"` doubled. PgBouncer 1.18 does not
#     use libpq and never reads .pgpass: without this line it logs in to the server as the
#     auth user with no password and every auth_query fails. No other user is in it.
set -eu

log() { printf 'pgbouncer-entrypoint: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ -n "${PGBOUNCER_AUTH_PASSWORD_FILE:-}" ]; then
  [ -z "${PGBOUNCER_AUTH_PASSWORD:-}" ] || die "both PGBOUNCER_AUTH_PASSWORD and PGBOUNCER_AUTH_PASSWORD_FILE are set; use one"
  [ -r "$PGBOUNCER_AUTH_PASSWORD_FILE" ] || die "PGBOUNCER_AUTH_PASSWORD_FILE=$PGBOUNCER_AUTH_PASSWORD_FILE is not a readable file"
  PGBOUNCER_AUTH_PASSWORD=$(cat "$PGBOUNCER_AUTH_PASSWORD_FILE")
fi
[ -n "${PGBOUNCER_AUTH_PASSWORD:-}" ] ||
  die "PGBOUNCER_AUTH_PASSWORD is not set: the password of role pgbouncer_auth (03-pgbouncer-auth.sh), which auth_query logs in as"
case "$PGBOUNCER_AUTH_PASSWORD" in
  *'
'*) die "PGBOUNCER_AUTH_PASSWORD contains a newline, which neither .pgpass nor the auth_file can hold" ;;
esac

here=$(dirname "$0")
POSTGRES_HOST=${POSTGRES_HOST:-postgres}
POSTGRES_PORT=${POSTGRES_PORT:-5432}
POSTGRES_DB=${POSTGRES_DB:-postgres}
PGBOUNCER_AUTH_USER=${PGBOUNCER_AUTH_USER:-pgbouncer_auth}
PGBOUNCER_LISTEN_ADDR=${PGBOUNCER_LISTEN_ADDR:-*}
PGBOUNCER_PORT=${PGBOUNCER_PORT:-6432}
PGBOUNCER_UNIX_SOCKET_DIR=${PGBOUNCER_UNIX_SOCKET_DIR-/tmp}
PGBOUNCER_MAX_CLIENT_CONN=${PGBOUNCER_MAX_CLIENT_CONN:-500}
PGBOUNCER_DEFAULT_POOL_SIZE=${PGBOUNCER_DEFAULT_POOL_SIZE:-20}
PGBOUNCER_MIN_POOL_SIZE=${PGBOUNCER_MIN_POOL_SIZE:-0}
PGBOUNCER_RESERVE_POOL_SIZE=${PGBOUNCER_RESERVE_POOL_SIZE:-5}
PGBOUNCER_MAX_DB_CONNECTIONS=${PGBOUNCER_MAX_DB_CONNECTIONS:-0}
PGBOUNCER_TEMPLATE=${PGBOUNCER_TEMPLATE:-$here/pgbouncer.ini.template}
PGBOUNCER_CONFIG_DIR=${PGBOUNCER_CONFIG_DIR:-/etc/pgbouncer}
PGBOUNCER_CONFIG=${PGBOUNCER_CONFIG:-$PGBOUNCER_CONFIG_DIR/pgbouncer.ini}
PGBOUNCER_AUTH_FILE=${PGBOUNCER_AUTH_FILE:-$PGBOUNCER_CONFIG_DIR/userlist.txt}
PGBOUNCER_BIN=${PGBOUNCER_BIN:-pgbouncer}
PGBOUNCER_RUN_AS=${PGBOUNCER_RUN_AS:-postgres}
if [ -z "${PGPASSFILE:-}" ]; then
  [ -n "${HOME:-}" ] || die "neither PGPASSFILE nor HOME is set: nowhere to write .pgpass"
  PGPASSFILE=$HOME/.pgpass
fi

# Values go into pgbouncer.ini unquoted: allow only what needs no quoting there.
number() {
  case "$2" in
    '' | *[!0-9]*) die "$1 must be a whole number, got '$2'" ;;
  esac
}
plain() {
  case "$2" in
    '' | *[!A-Za-z0-9_.:-]*) die "$1 must be letters, digits, '.', '_', '-' or ':', got '$2'" ;;
  esac
}
path() {
  case "$2" in
    *[!A-Za-z0-9_./-]*) die "$1 must be a path of letters, digits, '.', '_', '-' and '/', got '$2'" ;;
  esac
}
plain POSTGRES_HOST "$POSTGRES_HOST"
number POSTGRES_PORT "$POSTGRES_PORT"
plain PGBOUNCER_AUTH_USER "$PGBOUNCER_AUTH_USER"
number PGBOUNCER_PORT "$PGBOUNCER_PORT"
[ "$PGBOUNCER_LISTEN_ADDR" = '*' ] || plain PGBOUNCER_LISTEN_ADDR "$PGBOUNCER_LISTEN_ADDR"
path PGBOUNCER_UNIX_SOCKET_DIR "$PGBOUNCER_UNIX_SOCKET_DIR"
number PGBOUNCER_MAX_CLIENT_CONN "$PGBOUNCER_MAX_CLIENT_CONN"
number PGBOUNCER_DEFAULT_POOL_SIZE "$PGBOUNCER_DEFAULT_POOL_SIZE"
number PGBOUNCER_MIN_POOL_SIZE "$PGBOUNCER_MIN_POOL_SIZE"
number PGBOUNCER_RESERVE_POOL_SIZE "$PGBOUNCER_RESERVE_POOL_SIZE"
number PGBOUNCER_MAX_DB_CONNECTIONS "$PGBOUNCER_MAX_DB_CONNECTIONS"
path PGBOUNCER_AUTH_FILE "$PGBOUNCER_AUTH_FILE"
[ -r "$PGBOUNCER_TEMPLATE" ] || die "PGBOUNCER_TEMPLATE=$PGBOUNCER_TEMPLATE is not a readable file"

umask 077
mkdir -p "$PGBOUNCER_CONFIG_DIR" "$(dirname "$PGBOUNCER_CONFIG")" \
  "$(dirname "$PGBOUNCER_AUTH_FILE")" "$(dirname "$PGPASSFILE")"

# The ini: @NAME@ -> $NAME (values checked above, so none holds a sed metacharacter).
sed -e "s|@POSTGRES_HOST@|$POSTGRES_HOST|g" \
  -e "s|@POSTGRES_PORT@|$POSTGRES_PORT|g" \
  -e "s|@PGBOUNCER_AUTH_USER@|$PGBOUNCER_AUTH_USER|g" \
  -e "s|@PGBOUNCER_AUTH_FILE@|$PGBOUNCER_AUTH_FILE|g" \
  -e "s|@PGBOUNCER_LISTEN_ADDR@|$PGBOUNCER_LISTEN_ADDR|g" \
  -e "s|@PGBOUNCER_PORT@|$PGBOUNCER_PORT|g" \
  -e "s|@PGBOUNCER_UNIX_SOCKET_DIR@|$PGBOUNCER_UNIX_SOCKET_DIR|g" \
  -e "s|@PGBOUNCER_MAX_CLIENT_CONN@|$PGBOUNCER_MAX_CLIENT_CONN|g" \
  -e "s|@PGBOUNCER_DEFAULT_POOL_SIZE@|$PGBOUNCER_DEFAULT_POOL_SIZE|g" \
  -e "s|@PGBOUNCER_MIN_POOL_SIZE@|$PGBOUNCER_MIN_POOL_SIZE|g" \
  -e "s|@PGBOUNCER_RESERVE_POOL_SIZE@|$PGBOUNCER_RESERVE_POOL_SIZE|g" \
  -e "s|@PGBOUNCER_MAX_DB_CONNECTIONS@|$PGBOUNCER_MAX_DB_CONNECTIONS|g" \
  "$PGBOUNCER_TEMPLATE" >"$PGBOUNCER_CONFIG.tmp"
if grep -n '@[A-Z_]*@' "$PGBOUNCER_CONFIG.tmp" >&2; then
  rm -f "$PGBOUNCER_CONFIG.tmp"
  die "$PGBOUNCER_TEMPLATE has placeholders this entrypoint does not know (above)"
fi
mv "$PGBOUNCER_CONFIG.tmp" "$PGBOUNCER_CONFIG"

# A .pgpass field: `\` -> `\\`, `:` -> `\:`, nothing else.
pgpass_field() {
  printf '%s\n' "$1" | sed -e 's/\\/\\\\/g' -e 's/:/\\:/g'
}
user_field=$(pgpass_field "$PGBOUNCER_AUTH_USER")
password_field=$(pgpass_field "$PGBOUNCER_AUTH_PASSWORD")
{
  printf '%s:%s:*:%s:%s\n' "$(pgpass_field "$POSTGRES_HOST")" "$POSTGRES_PORT" \
    "$user_field" "$password_field"
  printf '*:%s:*:%s:%s\n' "$PGBOUNCER_PORT" "$user_field" "$password_field"
} >"$PGPASSFILE.tmp"
chmod 0600 "$PGPASSFILE.tmp"
mv "$PGPASSFILE.tmp" "$PGPASSFILE"

# The auth_file: the auth user alone, `"` doubled.
auth_quoted=$(printf '%s\n' "$PGBOUNCER_AUTH_PASSWORD" | sed -e 's/"/""/g')
printf '"%s" "%s"\n' "$PGBOUNCER_AUTH_USER" "$auth_quoted" >"$PGBOUNCER_AUTH_FILE.tmp"
chmod 0600 "$PGBOUNCER_AUTH_FILE.tmp"
mv "$PGBOUNCER_AUTH_FILE.tmp" "$PGBOUNCER_AUTH_FILE"

log "listening on $PGBOUNCER_LISTEN_ADDR:$PGBOUNCER_PORT (transaction pooling), server $POSTGRES_HOST:$POSTGRES_PORT, auth_user $PGBOUNCER_AUTH_USER"
if [ "$(id -u)" = 0 ]; then
  # pgbouncer refuses root; it reads its files before switching to PGBOUNCER_RUN_AS.
  chown "$PGBOUNCER_RUN_AS" "$PGBOUNCER_CONFIG" "$PGBOUNCER_AUTH_FILE"
  exec "$PGBOUNCER_BIN" -u "$PGBOUNCER_RUN_AS" "$@" "$PGBOUNCER_CONFIG"
fi
exec "$PGBOUNCER_BIN" "$@" "$PGBOUNCER_CONFIG"
