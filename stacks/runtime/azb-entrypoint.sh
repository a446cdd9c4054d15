#!/bin/sh
# azb-entrypoint.sh: the image's entrypoint. It sizes PostgreSQL to the container it runs
# in, then hands over to the base image's docker-entrypoint.sh (first-boot init, init
# scripts, POSTGRES_PASSWORD/USER/DB) with every computed setting as a `-c` flag, so the
# settings win over configuration files. Arguments after `postgres` come last and win.
#
#   memory    POSTGRES_MEMORY (MB), else cgroup v2 memory.max, else cgroup v1
#             memory.limit_in_bytes, else /proc/meminfo (with a warning)
#   CPUs      POSTGRES_CPUS, else the cgroup v2 cpu.max quota (or v1 cfs quota), else nproc
#   workload  POSTGRES_WORKLOAD_TYPE: web (default), oltp, dw, mixed
#   storage   POSTGRES_STORAGE_TYPE: ssd (default), hdd, san
#   preload   POSTGRES_SHARED_PRELOAD_LIBRARIES, else the image's list (generated from its
#             recipes: /etc/postgresql/preload-libraries), else auto_explain, pg_cron,
#             pg_stat_statements, pgaudit; of the default list, only the libraries
#             installed; pgsodium only with a getkey script (it stops the server without)
#   database  cron.database_name (pg_cron) and pg_net.database_name (pg_net), when those are
#             preloaded: POSTGRES_DB, else POSTGRES_USER, else postgres, so CREATE EXTENSION
#             pg_cron works in the init scripts' database and the workers serve it
#   network   listen on 127.0.0.1 unless POSTGRES_BIND_IP
#   checksums on (PostgreSQL 18's initdb default) unless DISABLE_DATA_CHECKSUMS=true
#
# docker-entrypoint.sh gives its temporary first-boot server (the one running the init
# scripts) the same arguments as the real one, so both get every setting here.
#
# `azb-entrypoint.sh --print` prints the settings as name=value lines and exits; it is what
# `azb autoconfig` runs. AZB_SYSROOT points /sys and /proc elsewhere (tests), AZB_PG_LIBDIR
# the module directory (empty: no image, keep the preload list as it is), AZB_PRELOAD_FILE
# the image's preload list (empty: none), AZB_NEXT the program to hand over to.
set -eu

sysroot=${AZB_SYSROOT:-}
libdir=${AZB_PG_LIBDIR-/usr/lib/postgresql/18/lib}
preload_file=${AZB_PRELOAD_FILE-/etc/postgresql/preload-libraries}
next=${AZB_NEXT:-docker-entrypoint.sh}

warn() { printf 'azb-entrypoint: warning: %s\n' "$*" >&2; }
fail() { printf 'azb-entrypoint: %s\n' "$*" >&2; exit 1; }
is_number() { case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }

# Memory in MB.
detect_memory() {
  if [ -n "${POSTGRES_MEMORY:-}" ]; then
    is_number "$POSTGRES_MEMORY" || fail "POSTGRES_MEMORY must be a whole number of megabytes, got '$POSTGRES_MEMORY'"
    [ "$POSTGRES_MEMORY" -ge 512 ] || fail "POSTGRES_MEMORY must be at least 512 (MB), got $POSTGRES_MEMORY"
    [ "$POSTGRES_MEMORY" -le 1048576 ] || fail "POSTGRES_MEMORY must be at most 1048576 (1 TB, in MB), got $POSTGRES_MEMORY"
    echo "$POSTGRES_MEMORY"
    return
  fi
  limit=""
  if [ -r "$sysroot/sys/fs/cgroup/memory.max" ]; then
    limit=$(cat "$sysroot/sys/fs/cgroup/memory.max")
  elif [ -r "$sysroot/sys/fs/cgroup/memory/memory.limit_in_bytes" ]; then
    limit=$(cat "$sysroot/sys/fs/cgroup/memory/memory.limit_in_bytes")
  fi
  # "max", or cgroup v1's "no limit" (a page-rounded 2^63), mean no limit.
  if is_number "$limit" && [ "${#limit}" -lt 19 ]; then
    mb=$((limit / 1048576))
    if [ "$mb" -lt 512 ]; then
      warn "the container's memory limit is ${mb}MB; sizing for the 512MB minimum"
      mb=512
    fi
    echo "$mb"
    return
  fi
  kb=$(awk '/^MemTotal:/ { print $2 }' "$sysroot/proc/meminfo" 2>/dev/null || true)
  is_number "$kb" || fail "cannot tell the memory size: set POSTGRES_MEMORY (MB)"
  warn "no memory limit found (POSTGRES_MEMORY or cgroup); sizing for all of the host's $((kb / 1024))MB"
  mb=$((kb / 1024))
  [ "$mb" -ge 512 ] || mb=512
  echo "$mb"
}

# CPU count (whole CPUs, at least 1).
detect_cpus() {
  if [ -n "${POSTGRES_CPUS:-}" ]; then
    is_number "$POSTGRES_CPUS" && [ "$POSTGRES_CPUS" -ge 1 ] || fail "POSTGRES_CPUS must be a whole number of CPUs (1 or more), got '$POSTGRES_CPUS'"
    echo "$POSTGRES_CPUS"
    return
  fi
  quota="" period=""
  if [ -r "$sysroot/sys/fs/cgroup/cpu.max" ]; then
    read -r quota period < "$sysroot/sys/fs/cgroup/cpu.max" || true
  elif [ -r "$sysroot/sys/fs/cgroup/cpu/cpu.cfs_quota_us" ]; then
    quota=$(cat "$sysroot/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    period=$(cat "$sysroot/sys/fs/cgroup/cpu/cpu.cfs_period_us" 2>/dev/null || echo 100000)
  fi
  if is_number "$quota" && is_number "$period" && [ "$quota" -gt 0 ] && [ "$period" -gt 0 ]; then
    # Round up: a quota of 1.5 CPUs gets the settings of 2.
    echo $(((quota + period - 1) / period))
    return
  fi
  if [ -n "$quota" ] && [ "$quota" != max ] && [ "$quota" != -1 ]; then
    warn "ignoring the unreadable CPU quota '$quota $period'"
  fi
  n=$(nproc 2>/dev/null || echo 1)
  is_number "$n" && [ "$n" -ge 1 ] || n=1
  echo "$n"
}

# The default preload list, comma-separated: the image's file (one library per line, `#`
# comments), else DESIGN.md's four.
default_preload() {
  if [ -n "$preload_file" ] && [ -r "$preload_file" ]; then
    awk '{ sub(/#.*/, ""); gsub(/[ \t]/, "") } $0 != "" { printf "%s%s", sep, $0; sep = "," }
      END { print "" }' "$preload_file"
  else
    echo auto_explain,pg_cron,pg_stat_statements,pgaudit
  fi
}

# Whether pgsodium and supabase_vault (which reads the same key when preloaded) can start
# preloaded: each stops the server when its getkey script is missing. 03-pgsodium-init.sh (ENABLE_PGSODIUM_INIT=true) makes $PGDATA/pgsodium_getkey.sh;
# pgsodium's own default is share/extension/pgsodium_getkey.
pgsodium_has_key() {
  [ -x "${PGDATA:-/var/lib/postgresql/18/docker}/pgsodium_getkey.sh" ] ||
    [ -x "${libdir%/*}/share/extension/pgsodium_getkey" ]
}

# VAR's value, else the contents of the file VAR_FILE names (Docker secrets), else empty.
env_or_file() {
  eval "_value=\${$1:-} _file=\${$1_FILE:-}"
  if [ -z "$_value" ] && [ -n "$_file" ] && [ -r "$_file" ]; then
    _value=$(cat "$_file")
  fi
  printf '%s' "$_value"
}

# The preload list to use (comma-separated), with a warning for each library left out.
preload_libraries() {
  if [ -n "${POSTGRES_SHARED_PRELOAD_LIBRARIES+set}" ]; then
    list=$POSTGRES_SHARED_PRELOAD_LIBRARIES
    explicit=true
  else
    list=$(default_preload)
    explicit=false
  fi
  # Without an image (`azb autoconfig`), the list is what it says.
  if [ -z "$libdir" ]; then
    echo "$list"
    return
  fi
  kept=""
  set -f
  for lib in $(echo "$list" | tr ',' ' '); do
    if [ "$explicit" = false ] && [ -d "$libdir" ] && [ ! -e "$libdir/$lib.so" ]; then
      warn "preload library $lib is not installed; leaving it out"
    elif { [ "$lib" = pgsodium ] || [ "$lib" = supabase_vault ]; } && ! pgsodium_has_key; then
      warn "leaving $lib out of shared_preload_libraries: it has no getkey script yet (ENABLE_PGSODIUM_INIT=true makes one on the first start; $lib is preloaded from the next)"
    else
      kept=${kept:+$kept,}$lib
    fi
  done
  set +f
  echo "$kept"
}

# Settings the preloaded libraries in $1 (comma-separated) need, as name=value lines: the
# database their background worker serves is the one the init scripts create them in
# (pg_cron's CREATE EXTENSION fails anywhere else).
library_settings() {
  user=$(env_or_file POSTGRES_USER)
  database=$(env_or_file POSTGRES_DB)
  database=${database:-${user:-postgres}}
  set -f
  for lib in $(echo "$1" | tr ',' ' '); do
    case "$lib" in
      pg_cron) echo "cron.database_name=$database" ;;
      pg_net) echo "pg_net.database_name=$database" ;;
    esac
  done
  set +f
}

min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }
max() { if [ "$1" -gt "$2" ]; then echo "$1"; else echo "$2"; fi; }

# Prints every setting as name=value, in a fixed order.
compute() {
  ram=$(detect_memory)
  cpus=$(detect_cpus)

  workload=${POSTGRES_WORKLOAD_TYPE:-web}
  case "$workload" in
    web) base=200 ;;
    oltp) base=300 ;;
    mixed) base=120 ;;
    dw) base=100 ;;
    *) warn "unknown POSTGRES_WORKLOAD_TYPE '$workload' (web, oltp, dw, mixed); using web"
       workload=web base=200 ;;
  esac
  storage=${POSTGRES_STORAGE_TYPE:-ssd}
  case "$storage" in
    ssd) random_page_cost=1.1 io_concurrency=200 ;;
    hdd) random_page_cost=4.0 io_concurrency=2 ;;
    san) random_page_cost=1.1 io_concurrency=1 ;;
    *) warn "unknown POSTGRES_STORAGE_TYPE '$storage' (ssd, hdd, san); using ssd"
       storage=ssd random_page_cost=1.1 io_concurrency=200 ;;
  esac

  if [ "$ram" -le 8192 ]; then
    shared_buffers=$((ram * 25 / 100))
  elif [ "$ram" -le 32768 ]; then
    shared_buffers=$((ram * 20 / 100))
  else
    shared_buffers=$((ram * 15 / 100))
  fi
  shared_buffers=$(min "$shared_buffers" 32768)
  effective_cache=$((ram * 75 / 100))
  maintenance=$(min "$(max 32 $((ram / 32)))" 2048)
  if [ "$ram" -lt 2048 ]; then tier=80; elif [ "$ram" -lt 4096 ]; then tier=120; else tier=200; fi
  connections=$(max 20 $((tier * base / 200)))
  work_mem=$(min "$(max 1 $(((ram - shared_buffers) / (3 * connections))))" 32)
  statistics=100
  if [ "$workload" = dw ]; then
    statistics=500
    maintenance=$(min $((maintenance * 2)) 2048)
  fi

  if [ "$cpus" -le 4 ]; then workers=$((cpus + 1)); else workers=$((cpus * 3 / 2)); fi
  workers=$(min "$(max 8 "$workers")" 64)
  if [ "$cpus" -ge 4 ]; then per_gather=$(max 1 $((cpus / 2))); else per_gather=1; fi
  parallel_maintenance=$(max 1 "$(min 4 $((cpus / 2)))")
  # DESIGN.md caps io_workers at 64, but PostgreSQL 18 accepts 1 to 32.
  io_workers=$(min "$(max 1 $((cpus / 4)))" 32)

  preload=$(preload_libraries)

  cat <<SETTINGS
shared_buffers=${shared_buffers}MB
effective_cache_size=${effective_cache}MB
maintenance_work_mem=${maintenance}MB
work_mem=${work_mem}MB
max_connections=${connections}
default_statistics_target=${statistics}
random_page_cost=${random_page_cost}
effective_io_concurrency=${io_concurrency}
max_worker_processes=${workers}
max_parallel_workers=${cpus}
max_parallel_workers_per_gather=${per_gather}
max_parallel_maintenance_workers=${parallel_maintenance}
io_workers=${io_workers}
io_method=worker
wal_compression=lz4
checkpoint_completion_target=0.9
idle_replication_slot_timeout=48h
pgaudit.log_statement_once=on
listen_addresses=${POSTGRES_BIND_IP:-127.0.0.1}
shared_preload_libraries=${preload}
SETTINGS
  library_settings "$preload"
}

if [ "${1:-}" = --print ]; then
  compute
  exit 0
fi

# The stacks' one-shot config-check service: the settings this environment gives, or why it
# gives none, before the server's own container is created (a bad value then stops
# `docker-compose up` with this message instead of a server that restarts forever).
if [ "${1:-}" = --check ]; then
  if ! settings=$( (compute) ); then
    exit 78
  fi
  printf '%s\nazb-entrypoint: the configuration is valid\n' "$settings"
  exit 0
fi

case "${1:-postgres}" in
  -*) set -- postgres "$@" ;;
esac
if [ "${1:-}" != postgres ]; then
  exec "$@"
fi
shift

if [ "${DISABLE_DATA_CHECKSUMS:-false}" = true ]; then
  POSTGRES_INITDB_ARGS="${POSTGRES_INITDB_ARGS:-} --no-data-checksums"
  export POSTGRES_INITDB_ARGS
fi

settings=$(compute)
# Rebuild the argument list: -c name=value per setting (one per line), then the caller's.
callers_count=$#
set -f
old_ifs=$IFS
IFS='
'
for setting in $settings; do
  set -- "$@" -c "$setting"
done
IFS=$old_ifs
set +f
# Rotate the caller's arguments to the end, so they come after (and override) ours.
i=0
while [ "$i" -lt "$callers_count" ]; do
  first=$1
  shift
  set -- "$@" "$first"
  i=$((i + 1))
done
exec "$next" postgres "$@"
