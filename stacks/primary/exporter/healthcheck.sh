#!/bin/bash
# healthcheck.sh: the exporter container's health check (primary stack). Asks
# postgres_exporter for /metrics over HTTP with bash's /dev/tcp (the image has no curl or
# wget) and is healthy when the answer is `200` and says the database is up (pg_up 1).
#
#   EXPORTER_HEALTHCHECK_PORT  default 9187
#   EXPORTER_HEALTHCHECK_TIMEOUT  seconds, default 4 (below the compose file's 10 s)
set -eu
port=${EXPORTER_HEALTHCHECK_PORT:-9187}
limit=${EXPORTER_HEALTHCHECK_TIMEOUT:-4}
exec 3<>"/dev/tcp/127.0.0.1/$port" || {
  echo "healthcheck: nothing listens on 127.0.0.1:$port" >&2
  exit 1
}
printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
answer=$(timeout "$limit" cat <&3) || {
  echo "healthcheck: no whole answer from the exporter within $limit s" >&2
  exit 1
}
case "${answer%%$'\r'*}" in
  'HTTP/1.'?' 200'*) ;;
  *)
    echo "healthcheck: the exporter answered ${answer%%$'\r'*}" >&2
    exit 1
    ;;
esac
if ! grep -q '^pg_up 1' <<<"$answer"; then
  echo "healthcheck: the exporter cannot reach PostgreSQL (pg_up is not 1)" >&2
  exit 1
fi
