#!/bin/sh
# 03-pgsodium-init.sh: first-boot setup of pgsodium's root key, only when
# ENABLE_PGSODIUM_INIT=true. The key (64 hex digits) comes from PGSODIUM_ROOT_KEY or is
# generated; it is kept in $PGDATA/pgsodium_root.key (0600, never in the image) and served
# by $PGDATA/pgsodium_getkey.sh, which pgsodium.getkey_script names. pgsodium itself must be
# in POSTGRES_SHARED_PRELOAD_LIBRARIES to use it.
set -eu

if [ "${ENABLE_PGSODIUM_INIT:-false}" != true ]; then
  echo "03-pgsodium-init: ENABLE_PGSODIUM_INIT is not true; skipping" >&2
  exit 0
fi
: "${PGDATA:?PGDATA must be set}"

key_file=$PGDATA/pgsodium_root.key
getkey=$PGDATA/pgsodium_getkey.sh
if [ ! -s "$key_file" ]; then
  umask 077
  if [ -n "${PGSODIUM_ROOT_KEY:-}" ]; then
    case "$PGSODIUM_ROOT_KEY" in
      *[!0-9a-f]*) echo "03-pgsodium-init: PGSODIUM_ROOT_KEY must be 64 lowercase hex digits" >&2; exit 1 ;;
    esac
    [ "${#PGSODIUM_ROOT_KEY}" -eq 64 ] || { echo "03-pgsodium-init: PGSODIUM_ROOT_KEY must be 64 lowercase hex digits" >&2; exit 1; }
    printf '%s\n' "$PGSODIUM_ROOT_KEY" > "$key_file"
  else
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$key_file"
    echo >> "$key_file"
  fi
fi
chmod 0600 "$key_file"
printf '#!/bin/sh\nexec cat %s\n' "$key_file" > "$getkey"
chmod 0700 "$getkey"

psql -X -q -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
  --set getkey="$getkey" <<'SQL'
ALTER SYSTEM SET pgsodium.getkey_script = :'getkey';
ALTER SYSTEM SET vault.getkey_script = :'getkey';
SQL
echo "03-pgsodium-init: root key in $key_file; pgsodium.getkey_script and vault.getkey_script set" >&2
