#!/bin/sh
# entrypoint.sh: the exporter container's entrypoint (primary stack). Runs
# postgres_exporter with the arguments given. postgres_exporter 0.11 (Debian 12) builds a
# connection string from the parts, then refuses it as malformed and exits when the
# password holds a quote, a backslash or white space (seen with the real image: it escapes
# twice and splits on spaces); this says so plainly instead. With --check it only checks
# (the stack's one-shot exporter-check service, so `up` stops before anything starts).
set -eu
case "${DATA_SOURCE_PASS:-}" in
  *"'"* | *\\* | *' '* | *'	'*)
    echo "exporter-entrypoint: error: the password (POSTGRES_PASSWORD) contains a quote, a backslash or white space, which postgres_exporter 0.11 cannot use; choose one without them" >&2
    exit 78
    ;;
esac
if [ "${1:-}" = --check ]; then
  echo "exporter-entrypoint: the configuration is valid"
  exit 0
fi
exec /usr/bin/prometheus-postgres-exporter "$@"
