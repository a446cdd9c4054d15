#!/usr/bin/env bash
# azb against the seed's Dockerfile way, on the same sources and the same builder image
# (figures, not assertions; takes minutes). Needs the shared fixtures
# (scripts/test-fixtures.sh), Docker with BuildKit, skopeo, qemu-user binfmt, and the
# Debian package index (`azb lock update`).
#
# Both sides build the 8 fixture extensions azb_hello, azb_dep (needs azb_hello's
# header), azb_sql and azb_bulk1..5 (a few thousand lines of C each) from local git
# upstreams (scripts/demo-upstreams.sh) and put them on the test base image.
#
#   azb   azb build --platform amd64 --output oci:DIR             (and docker-archive:FILE)
#         azb recipe bump azb_bulk1 SHA, then the same build      (one source file changed)
#         azb build --platform arm64 --output oci:DIR             (cross, in the amd64 builder;
#                                                                  and with emulate_arm64)
#   peer  DOCKER_BUILDKIT=1 docker build [--no-cache] --build-arg BUILDER=azb-builder:ID \
#           --build-arg BASE=IMAGE -t TAG CTX
#         then skopeo copy docker-daemon:TAG oci:DIR, or docker save -o FILE TAG
#         (this engine's BuildKit has no oci/docker exporter; the output says which ran)
#         arm64: the same with --platform linux/arm64, FROM the emulated arm64 builder
#
# The peer's Dockerfile is the seed's: ONE build stage FROM the very builder image azb
# made (azb-builder:<first 32 hex of its identity>, as image_tag in src/build/builder.rs
# names it; found here with `azb plan --json`), COPY of every extension's source, one RUN
# that runs make and make install for all of them (so any change rebuilds every one),
# then a final stage FROM the base image (skopeo-copied into Docker) with COPY --from=build
# of the installed files. arm64 has no cross toolchain in that Dockerfile, so the peer
# builds it under QEMU in the arm64 builder azb makes for recipes with emulate_arm64: true:
# a second project whose recipes set it is built once (azb_sql only) to make that image,
# which the peer uses under a linux/arm64 label (azb's import leaves it labelled amd64).
#
# Untimed setup: the builder images (made once per machine and kept, like the store's
# shared fixtures: about 1.5 min each, 6 to 13 min for the emulated arm64 one), the
# lock, the base images loaded into Docker. Timed: azb from an empty store (cold: fetch
# from the local mirrors, build, assemble) or a warm one; the peer with --no-cache (cold)
# or its warm layer cache, each including writing the image out (over the previous run's
# output, as the same command run again would). Each change is a new commit in
# azb_bulk1's upstream (one .c file edited), bumped in the recipe for azb and copied into
# the build context for the peer.
#
# Removed at the end: the temporary directory, the images built or tagged here and the
# BuildKit cache records made during the run.
# Usage: benches/peer.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build --release --locked --quiet
azb=${CARGO_TARGET_DIR:-$repo/target}/release/azb
toolchains=${AZB_TOOLCHAINS_DIR:-$repo/cache/toolchains}
bases=${AZB_BASE_IMAGES_DIR:-$repo/cache/base}
names=(azb_hello azb_dep azb_sql azb_bulk1 azb_bulk2 azb_bulk3 azb_bulk4 azb_bulk5)
changed=azb_bulk1 changed_file=primes.c
declare -A smoke=(
  [azb_hello]="SELECT azb_hello_add(2, 3)"
  [azb_dep]="SELECT azb_dep_scaled(2)"
  [azb_sql]="SELECT azb_sql_answer()"
  [azb_bulk1]="SELECT azb_bulk1_factorize(600851475143)"
  [azb_bulk2]="SELECT azb_bulk2_levenshtein('kitten', 'sitting')"
  [azb_bulk3]="SELECT azb_bulk3_xxh64_hex('abc'::text)"
  [azb_bulk4]="SELECT azb_bulk4_eval('2 ^ 10 + sqrt(16)')"
  [azb_bulk5]="SELECT azb_bulk5_median(ARRAY[5, 3, 1, 4, 2])"
)

# BuildKit without buildx: Docker clients before 23 have it built in (Debian 12's Docker package
# at /usr/bin/docker); newer ones need the buildx plugin. Nothing is pulled either way.
buildkit_client() {
  if docker buildx version >/dev/null 2>&1; then
    echo docker
    return
  fi
  local client version
  for client in /usr/bin/docker /usr/local/bin/docker; do
    version=$("$client" version --format '{{.Client.Version}}' 2>/dev/null) || continue
    if [ "${version%%.*}" -lt 23 ]; then
      echo "$client"
      return
    fi
  done
  echo "peer.sh: no Docker client with BuildKit (install docker-buildx, or use Debian 12's own Docker client package)" >&2
  return 1
}
client=$(buildkit_client)
# The build cache records' ids (df marks the ones in use with a trailing *).
build_cache_ids() { "$client" system df -v --format '{{range .BuildCache}}{{.ID}} {{end}}' | tr -d '*'; }

work=$(mktemp -d /tmp/azb-bench-peer.XXXXXX)
prefix=azb-peer-$$
cache_before=" $(build_cache_ids) "
built=()
cleanup() {
  docker image rm --force "$prefix/base:amd64" "$prefix/base:arm64" "$prefix/builder:arm64" \
    "${built[@]}" >/dev/null 2>&1 || true
  # The build cache records made here (one id a call: the engine takes one filter value).
  # A record goes once its children are gone and no build holds it: passes until none is
  # left, or after three passes that free nothing.
  local id new left=-1 stuck=0
  while [ "$stuck" -lt 3 ]; do
    new=()
    for id in $(build_cache_ids 2>/dev/null); do
      [[ $cache_before == *" $id "* ]] || new+=("$id")
    done
    [ ${#new[@]} -gt 0 ] || break
    if [ ${#new[@]} = "$left" ]; then
      stuck=$((stuck + 1))
      sleep 2
    fi
    left=${#new[@]}
    for id in "${new[@]}"; do
      "$client" builder prune --all --force --filter "id=$id" >/dev/null 2>&1 || true
    done
  done
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.3f}')"; }
add() { python3 -c "print(f'{$1 + $2:.3f}')"; }
# Seconds for people: two decimals below 10 s.
secs() { python3 -c "v = $1; print(f'{v:.2f}s' if v < 10 else f'{v:.1f}s')"; }
log() { echo "peer.sh: $*" >&2; }
# Runs a command with its output in a log, shown only when it fails.
quiet() { "$@" >"$work/step.log" 2>&1 || { cat "$work/step.log" >&2; return 1; }; }

# Upstreams and the two azb projects: builder containers, and the same with emulate_arm64.
scripts/demo-upstreams.sh "$work/up" "${names[@]}" >"$work/pins"
export AZB_SOURCE_MIRRORS="https://example.invalid/azb-demo/=$work/up/"
write_recipe() { # PROJECT NAME COMMIT EMULATE
  local depends='[]'
  [ "$2" = azb_dep ] && depends='["azb_hello"]'
  cat >"$1/recipes/$2.ron" <<EOF
Recipe(
    name: "$2",
    version: "1.0",
    kind: Extension,
    category: "bench",
    description: "Fixture extension $2.",
    source: Git(
        url: "https://example.invalid/azb-demo/$2",
        commit: "$3",
        tag: Some("v1.0"),
    ),
    build: Pgxs(flags: []),
    depends: $depends,
    emulate_arm64: $4,
    runtime: (create: true),
    smoke: Some("${smoke[$2]}"),
)
EOF
}
write_image() { # FILE RECIPES
  cat >"$1" <<EOF
Image(
    name: "$prefix/postgres",
    flavor: "bench",
    pg_major: 18,
    pg_version: "18.6",
    platforms: {
        "linux/amd64": (
            base: OciLayout(path: "$bases/pg18-amd64", reference: Some("pg18")),
            toolchain: Docker(prefix: Some("$toolchains/pg18-amd64")),
        ),
        "linux/arm64": (
            base: OciLayout(path: "$bases/pg18-arm64", reference: Some("pg18")),
            toolchain: Docker(prefix: Some("$toolchains/pg18-arm64")),
        ),
    },
    recipes: $2,
)
EOF
}
for project in azb emulated; do
  mkdir -p "$work/$project/recipes" "$work/$project/stacks"
  emulate=false
  [ "$project" = emulated ] && emulate=true
  while read -r name commit; do write_recipe "$work/$project" "$name" "$commit" "$emulate"; done <"$work/pins"
  write_image "$work/$project/stacks/image.ron" All
  write_image "$work/$project/stacks/warmup.ron" 'Only(["azb_sql"])'
  log "azb lock update ($project)"
  quiet "$azb" --project "$work/$project" --cache-dir "$work/store-$project-warmup" lock update
done

# The builder images, made now if this machine lacks them (azb_sql alone needs them).
log "builder images: amd64 and arm64 cross (made once per machine if missing)"
quiet "$azb" -q --project "$work/azb" --image "$work/azb/stacks/warmup.ron" \
  --cache-dir "$work/store-azb-warmup" build --platform all
log "builder image: emulated arm64 (made once per machine if missing: 6 to 13 min)"
quiet "$azb" -q --project "$work/emulated" --image "$work/emulated/stacks/warmup.ron" \
  --cache-dir "$work/store-emulated-warmup" build --platform arm64
builder_tag() { # PROJECT PLATFORM
  "$azb" --project "$1" --cache-dir "$work/store-plan" plan --json --platform "$2" |
    python3 -c 'import json, sys; b = json.load(sys.stdin)["derivations"][0]["builder"]; print("azb-builder:" + b.split(":")[1][:32])'
}
builder_amd64=$(builder_tag "$work/azb" amd64)
emulated=$(builder_tag "$work/emulated" arm64)
docker image inspect "$builder_amd64" "$emulated" >/dev/null
# azb imports the emulated builder without --platform, so Docker labels it linux/amd64
# although its files are arm64 (azb runs it through binfmt all the same); BuildKit, asked
# for linux/arm64, would look for it in a registry. The peer gets the same layers under
# an arm64 label.
builder_arm64=$prefix/builder:arm64
# docker save IMAGE | relabel_arm64 TAG | docker load: the same layers, the config (and so
# the image id) saying linux/arm64.
relabel_arm64() {
  python3 -c '
import hashlib, io, json, sys, tarfile
source = tarfile.open(fileobj=sys.stdin.buffer, mode="r|")
target = tarfile.open(fileobj=sys.stdout.buffer, mode="w|")
configs = {}
for member in source:
    data = source.extractfile(member) if member.isfile() else None
    if member.name == "repositories":
        continue
    if member.name == "manifest.json":
        manifest = json.load(data)
        for image in manifest:
            image["Config"], image["RepoTags"] = configs[image["Config"]], [sys.argv[1]]
        raw = json.dumps(manifest).encode()
    elif "/" not in member.name and member.name.endswith(".json"):
        config = json.load(data)
        config["architecture"], config["variant"] = "arm64", "v8"
        raw = json.dumps(config).encode()
        configs[member.name] = member.name = hashlib.sha256(raw).hexdigest() + ".json"
    else:
        target.addfile(member, data)
        continue
    member.size = len(raw)
    target.addfile(member, io.BytesIO(raw))
target.close()
' "$1"
}
docker save "$emulated" | relabel_arm64 "$builder_arm64" | docker load -q >/dev/null
log "peer builders: $builder_amd64 (amd64), $emulated as $builder_arm64 (emulated arm64)"
for arch in amd64 arm64; do
  quiet skopeo copy "oci:$bases/pg18-$arch:pg18" "docker-daemon:$prefix/base:$arch"
done

# The peer's build context: every source at its pinned commit, and the seed's Dockerfile.
export_source() { # NAME COMMIT
  rm -rf "$work/ctx/src/$1"
  mkdir -p "$work/ctx/src/$1"
  git -C "$work/up/$1" archive "$2" | tar -x -C "$work/ctx/src/$1"
}
while read -r name commit; do export_source "$name" "$commit"; done <"$work/pins"
cat >"$work/ctx/Dockerfile" <<EOF
# The seed's way: one build stage, every source copied in, one RUN that builds them all.
ARG BUILDER
ARG BASE
FROM \${BUILDER} AS build
USER root
$(for name in "${names[@]}"; do echo "COPY src/$name /src/$name"; done)
RUN set -e; pgxs='USE_PGXS=1 PG_CONFIG=/usr/lib/postgresql/18/bin/pg_config with_llvm=no'; \\
    for ext in ${names[*]}; do \\
      make -C /src/\$ext -j"\$(nproc)" \$pgxs; \\
      make -C /src/\$ext \$pgxs install; \\
      make -C /src/\$ext \$pgxs install DESTDIR=/out; \\
    done
FROM \${BASE}
COPY --from=build /out/usr/lib/postgresql/18/lib/ /usr/lib/postgresql/18/lib/
COPY --from=build /out/usr/lib/postgresql/18/share/extension/ /usr/share/postgresql/18/extension/
EOF

# One change: a new commit in the upstream that edits one .c file, then azb's recipe bump
# and the peer's context follow it.
change=0
change_one_file() {
  change=$((change + 1))
  local dir="$work/up/$changed" commit
  # The run's own name in the change, so no cache of an earlier run (BuildKit's records
  # outlive a run whose cleanup could not prune them) already holds the result.
  printf '/* peer.sh %s change %d */\n' "$prefix" "$change" >>"$dir/$changed_file"
  GIT_AUTHOR_NAME=azb GIT_AUTHOR_EMAIL=demo@example.invalid GIT_AUTHOR_DATE="$((1750000000 + change)) +0000" \
    GIT_COMMITTER_NAME=azb GIT_COMMITTER_EMAIL=demo@example.invalid GIT_COMMITTER_DATE="$((1750000000 + change)) +0000" \
    git -C "$dir" -c commit.gpgSign=false commit -q -am "$changed: change $change"
  commit=$(git -C "$dir" rev-parse HEAD)
  for project in azb emulated; do
    quiet "$azb" --project "$work/$project" --cache-dir "$work/store" recipe bump "$changed" "$commit"
  done
  export_source "$changed" "$commit"
}

declare -A took detail
# azb_run KEY PLATFORM OUTPUT [PROJECT]
azb_run() {
  local start
  start=$(now)
  "$azb" -q --project "$work/${4:-azb}" --cache-dir "$work/store" build --platform "$2" \
    --output "$3" >/dev/null
  took[$1.azb]=$(since "$start")
}
# peer_run KEY PLATFORM OUTPUT [docker build options...]
peer_run() {
  local key=$1 platform=$2 output=$3 start build write builder
  shift 3
  builder=$builder_amd64
  [ "$platform" = arm64 ] && builder=$builder_arm64
  start=$(now)
  built+=("$(DOCKER_BUILDKIT=1 "$client" build -q "$@" --platform "linux/$platform" \
    --build-arg "BUILDER=$builder" --build-arg "BASE=$prefix/base:$platform" \
    -t "$prefix/postgres:$platform" "$work/ctx")")
  build=$(since "$start")
  start=$(now)
  case $output in
    oci:*) quiet skopeo copy "docker-daemon:$prefix/postgres:$platform" "$output:latest" ;;
    docker-archive:*) docker save -o "${output#*:}" "$prefix/postgres:$platform" ;;
  esac
  write=$(since "$start")
  took[$key.peer]=$(add "$build" "$write")
  detail[$key]="build $(secs "$build") + image out $(secs "$write")"
}

for kind in oci docker-archive; do
  out="$kind:$work/out/azb-$kind"
  peer_out="$kind:$work/out/peer-$kind"
  [ "$kind" = docker-archive ] && out+=.tar peer_out+=.tar
  mkdir -p "$work/out"
  log "amd64, $kind: cold"
  rm -rf "$work/store"
  azb_run "cold.$kind" amd64 "$out"
  peer_run "cold.$kind" amd64 "$peer_out" --no-cache
  log "amd64, $kind: no-op"
  azb_run "noop.$kind" amd64 "$out"
  peer_run "noop.$kind" amd64 "$peer_out"
  log "amd64, $kind: one source file of $changed changed"
  change_one_file
  azb_run "change.$kind" amd64 "$out"
  peer_run "change.$kind" amd64 "$peer_out"
done

log "arm64, oci: cold (azb cross-compiles; the peer runs under QEMU)"
rm -rf "$work/store"
azb_run arm64 arm64 "oci:$work/out/azb-arm64"
peer_run arm64 arm64 "oci:$work/out/peer-arm64" --no-cache
log "arm64, oci: cold, azb under QEMU too (every recipe with emulate_arm64: true)"
rm -rf "$work/store"
azb_run arm64-emulated arm64 "oci:$work/out/azb-arm64-emulated" emulated
took[arm64-emulated.peer]=${took[arm64.peer]}
detail[arm64-emulated]="the same Dockerfile run as above"

row() { # LABEL KEY
  printf '%-48s | %16s | %8s | %6s\n' "$1" "$(secs "${took[$2.peer]}")" "$(secs "${took[$2.azb]}")" \
    "$(python3 -c "print(f'{${took[$2.peer]} / ${took[$2.azb]}:.1f}x')")"
}
echo
echo "${#names[@]} extensions (${names[*]}), $(nproc) CPUs; Dockerfile stage: $client build (BuildKit)"
printf '%-48s | %16s | %8s | %6s\n' case "Dockerfile stage" azb ratio
printf '%s-|-%s-|-%s-|-%s\n' "$(printf -- '-%.0s' {1..48})" "$(printf -- '-%.0s' {1..16})" \
  "$(printf -- '-%.0s' {1..8})" "$(printf -- '-%.0s' {1..6})"
row "cold, image out (amd64, oci)" cold.oci
row "cold, image out (amd64, docker-archive)" cold.docker-archive
row "no-op, image out (amd64, oci)" noop.oci
row "no-op, image out (amd64, docker-archive)" noop.docker-archive
row "one source file changed (amd64, oci)" change.oci
row "one source file changed (amd64, docker-archive)" change.docker-archive
row "arm64 cold, oci: azb cross vs QEMU" arm64
row "arm64 cold, oci: azb under QEMU too" arm64-emulated
echo
echo "ratio: Dockerfile stage / azb. The Dockerfile stage writes its image with skopeo copy"
echo "docker-daemon:TAG oci:DIR (oci) or docker save (docker-archive): no oci/docker exporter here."
for key in cold.oci cold.docker-archive noop.oci noop.docker-archive change.oci change.docker-archive \
  arm64 arm64-emulated; do
  printf '  %-22s %s\n' "$key" "${detail[$key]}"
done
