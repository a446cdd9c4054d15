#!/usr/bin/env bash
# azb's benchmarks (figures, not assertions). Needs the shared fixtures
# (scripts/test-fixtures.sh) and hyperfine. Prints:
#  1. no-op `azb build` and `azb plan` with 40 cached derivations (target: < 100 ms);
#  2. image layer assembly against `tar -c | zstd -T0` of the same artifact files;
#  3. blake3 object hashing against b3sum (installed with cargo if missing).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build --release --locked --quiet
cargo bench --bench hash --no-run --quiet 2>/dev/null || true
azb_bin=${CARGO_TARGET_DIR:-$repo/target}/release/azb
work=$(mktemp -d /tmp/azb-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid GIT_AUTHOR_DATE="1750000000 +0000"
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid GIT_COMMITTER_DATE="1750000000 +0000"

# A project of 40 SQL-only extensions, each with ~512 KiB of SQL (20 MiB in all).
mkdir -p "$work/project/recipes" "$work/project/stacks" "$work/up"
for i in $(seq -w 1 40); do
  name=bench_$i
  dir=$work/up/$name
  mkdir -p "$dir"
  printf 'EXTENSION = %s\nDATA = %s--1.0.sql\nPG_CONFIG ?= pg_config\nPGXS := $(shell $(PG_CONFIG) --pgxs)\ninclude $(PGXS)\n' "$name" "$name" > "$dir/Makefile"
  printf "comment = 'bench'\ndefault_version = '1.0'\n" > "$dir/$name.control"
  head -c 393216 /dev/urandom | base64 -w 100 | sed "s/.*/-- &/" > "$dir/$name--1.0.sql"
  git -C "$dir" -c init.defaultBranch=main init -q && git -C "$dir" add -A && git -C "$dir" commit -qm bench
  cat > "$work/project/recipes/$name.ron" <<RON
Recipe(name: "$name", kind: Extension, source: Git(url: "https://bench.invalid/$name", commit: "$(git -C "$dir" rev-parse HEAD)"), build: Pgxs())
RON
done
# A base with no layers, so assembly time is the extension layers alone.
umoci init --layout "$work/base"
umoci new --image "$work/base:empty"
umoci config --image "$work/base:empty" --os linux --architecture amd64 >/dev/null
cat > "$work/project/stacks/image.ron" <<RON
Image(name: "azb/bench", flavor: "bench", pg_major: 18, pg_version: "18.6", platforms: {
  "linux/amd64": (base: OciLayout(path: "$work/base", reference: Some("empty")),
                  toolchain: Host(prefix: "$repo/cache/toolchains/pg18-amd64", cc: "gcc", strip: "strip")),
})
RON
export AZB_SOURCE_MIRRORS="https://bench.invalid/=$work/up/"
azb=("$azb_bin" --project "$work/project" --cache-dir "$work/store" --quiet)
"${azb[@]}" build
echo "== 1. no-op build and plan, 40 cached derivations"
hyperfine --warmup 3 --runs 30 -N "${azb[*]} build" "${azb[*]} plan"

echo "== 2. layer assembly (40 layers, $(du -sh "$work/up" --exclude=.git | cut -f1) of sources) vs tar | zstd -T0"
mkdir -p "$work/files"
for object in "$work"/store/objects/*/*; do zstd -dcq "$object" | tar -x -C "$work/files"; done
hyperfine --warmup 2 --runs 10 \
  -n "azb assembly, cold layer cache" -p "rm -rf $work/oci $work/store/layers" "${azb[*]} build --output oci:$work/oci" \
  -n "azb assembly, warm layer cache" -p "rm -rf $work/oci" "${azb[*]} build --output oci:$work/oci" \
  -n "tar | zstd -T0" -p true "tar -c -C $work/files . | zstd -T0 -q > /dev/null"

echo "== 3. blake3: ObjectHash::of vs b3sum"
command -v b3sum >/dev/null || cargo install --quiet --locked b3sum
cargo bench --quiet --bench hash -- "$work/sample.bin"
hyperfine --warmup 2 --runs 10 -N "b3sum --no-mmap --num-threads 1 $work/sample.bin" "b3sum $work/sample.bin"
