#!/bin/sh
# Entrypoint of azb's base image (/usr/local/bin/docker-entrypoint.sh), following the
# contract of the usual PostgreSQL container images:
#   docker-entrypoint.sh postgres [ARGS]   (or only -flags, which mean `postgres -flags`)
#     as root: makes $PGDATA and /var/run/postgresql, gives them to `postgres` (uid 999)
#     and runs itself again as that user (setpriv);
#     on the first start (no $PGDATA/PG_VERSION): needs POSTGRES_PASSWORD, or
#     POSTGRES_HOST_AUTH_METHOD=trust; runs initdb as POSTGRES_USER (default postgres) with
#     POSTGRES_INITDB_ARGS (and POSTGRES_INITDB_WALDIR), starts a temporary server with the
#     same ARGS as the real one (so shared_preload_libraries and every other -c setting hold
#     while the init scripts run) but on the unix socket only, creates POSTGRES_DB
#     (default: the user's name), runs /docker-entrypoint-initdb.d/*
#     in sorted order (*.sh executed if executable, else sourced; *.sql and *.sql.gz through
#     psql with ON_ERROR_STOP), stops it and allows password (scram-sha-256) logins from
#     any host;
#     then execs postgres with the arguments, listening on all addresses unless the
#     arguments set listen_addresses themselves.
#   postgres --version, --help, -C NAME, --describe-config: run at once (no cluster needed).
#   docker-entrypoint.sh ANY OTHER COMMAND  runs it unchanged.
# POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB and POSTGRES_INITDB_ARGS may instead be
# given as files through the same names with a _FILE suffix (e.g. Docker secrets).
set -eu

PGDATA=${PGDATA:-/var/lib/postgresql/18/docker}
export PGDATA
socket_dir=/var/run/postgresql
pg_uid=999

log() { printf 'docker-entrypoint: %s\n' "$*" >&2; }
# shell_quote ARG: ARG as one single-quoted shell word (pg_ctl -o goes through sh -c).
shell_quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
die() { log "error: $*"; exit 1; }

# file_env VAR: sets VAR from the file named by VAR_FILE when that is given.
file_env() {
  eval "_fe_val=\${$1:-} _fe_file=\${$1_FILE:-}"
  if [ -n "$_fe_file" ]; then
    [ -z "$_fe_val" ] || die "both $1 and $1_FILE are set; use one"
    [ -r "$_fe_file" ] || die "$1_FILE=$_fe_file is not a readable file"
    _fe_val=$(cat "$_fe_file")
    eval "$1=\$_fe_val"
    # shellcheck disable=SC2163 # exports the variable named by $1
    export "$1"
  fi
  unset "$1_FILE" _fe_val _fe_file
}

case "${1:-}" in
  -*) set -- postgres "$@" ;;
  '') set -- postgres ;;
esac
if [ "$1" != postgres ]; then
  exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" "$socket_dir"
  chown postgres:postgres /var/lib/postgresql "$socket_dir"
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  chmod 700 "$PGDATA"
  chmod 2775 "$socket_dir"
  if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
    mkdir -p "$POSTGRES_INITDB_WALDIR"
    find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 700 "$POSTGRES_INITDB_WALDIR"
  fi
  HOME=/var/lib/postgresql
  export HOME
  exec setpriv --reuid="$pg_uid" --regid="$pg_uid" --init-groups "$0" "$@"
fi

# As the server's user from here on.

# Options that only print something (--version, --help, -C NAME, ...) need no cluster.
for arg in "$@"; do
  case "$arg" in
    -V | --version | '-?' | --help | --describe-config | -C | -C*) shift; exec postgres "$@" ;;
  esac
done

mkdir -p "$PGDATA" 2>/dev/null || true
chmod 700 "$PGDATA" 2>/dev/null || true

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER
  file_env POSTGRES_DB
  file_env POSTGRES_INITDB_ARGS
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  # Init scripts read these, as with the usual images.
  POSTGRES_USER=$user POSTGRES_DB=$db
  export POSTGRES_USER POSTGRES_DB

  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    cat >&2 <<'EOF'
docker-entrypoint: error: the database is not initialised and no superuser password is set.
  Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a non-empty password, or
  POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without a password
  (not recommended).
EOF
    exit 1
  fi
  [ "$auth" != trust ] || log "warning: POSTGRES_HOST_AUTH_METHOD=trust: any host may connect as any user without a password"

  pwfile=
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  fi
  log "initialising $PGDATA (superuser $user)"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words
  initdb --username="$user" ${pwfile:+--pwfile="$pwfile"} --no-instructions \
    --auth-local=trust --auth-host="$auth" \
    ${POSTGRES_INITDB_WALDIR:+--waldir="$POSTGRES_INITDB_WALDIR"} \
    ${POSTGRES_INITDB_ARGS:-} >&2
  [ -z "$pwfile" ] || rm -f "$pwfile"
  # Sockets where Debian's clients look and where these binaries' clients look by default.
  printf "\nunix_socket_directories = '%s, /tmp'\n" "$socket_dir" >>"$PGDATA/postgresql.conf"

  # A temporary server with the real server's arguments (after `postgres`), reachable only
  # through the unix socket: listen_addresses and the port come last, so they win.
  PGHOST=$socket_dir PGPORT=${PGPORT:-5432} PGUSER=$user
  export PGHOST PGPORT PGUSER
  temp_options=
  first=true
  for arg in "$@"; do
    if [ "$first" = true ]; then first=false; continue; fi
    temp_options="$temp_options $(shell_quote "$arg")"
  done
  pg_ctl -D "$PGDATA" -w -t 60 -l "$PGDATA/init-server.log" \
    -o "$temp_options -c listen_addresses='' -p $PGPORT" start >/dev/null ||
    { cat "$PGDATA/init-server.log" >&2; die "the temporary server did not start"; }
  rm -f "$PGDATA/init-server.log"
  run_psql() { psql -X -q -v ON_ERROR_STOP=1 --no-password --no-psqlrc "$@"; }

  if [ "$db" != postgres ]; then
    log "creating database $db"
    printf 'CREATE DATABASE :"db";\n' | run_psql --dbname=postgres --set=db="$db" >/dev/null
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case "$f" in
      *.sh)
        if [ -x "$f" ]; then
          log "running $f"
          "$f"
        else
          log "sourcing $f"
          # shellcheck disable=SC1090
          . "$f"
        fi
        ;;
      *.sql)
        log "running $f"
        run_psql --dbname="$db" -f "$f" >/dev/null
        ;;
      *.sql.gz)
        log "running $f"
        gzip -dc "$f" | run_psql --dbname="$db" >/dev/null
        ;;
      *) log "ignoring $f" ;;
    esac
  done

  pg_ctl -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
  unset PGHOST PGPORT PGUSER
  printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
  log "initialisation complete; starting the server"
fi

# postgres listens on every address unless the arguments say otherwise.
shift
for arg in "$@"; do
  case "$arg" in
    *listen_addresses* | -h) exec postgres "$@" ;;
  esac
done
exec postgres -c listen_addresses='*' "$@"
