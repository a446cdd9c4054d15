#!/usr/bin/env bash
# Makes the example project's "upstream" git repositories: one per extension under
# tests/fixtures/extensions, committed with a fixed author, date and message, so their
# commit ids are the same on every machine (tests/fixtures/demo/recipes pin them).
# NAMEs pick other fixture extensions (default: the demo's azb_hello azb_dep azb_sql).
# Usage: scripts/demo-upstreams.sh OUT_DIR [NAME...]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: demo-upstreams.sh OUT_DIR [NAME...]}
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(azb_hello azb_dep azb_sql)
mkdir -p "$out"
export GIT_AUTHOR_NAME=azb GIT_AUTHOR_EMAIL=demo@example.invalid GIT_AUTHOR_DATE="1750000000 +0000"
export GIT_COMMITTER_NAME=azb GIT_COMMITTER_EMAIL=demo@example.invalid GIT_COMMITTER_DATE="1750000000 +0000"
for name in "${names[@]}"; do
  dir="$out/$name"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -R "$repo/tests/fixtures/extensions/$name/." "$dir/"
  chmod -R u=rwX,go=rX "$dir"
  git -C "$dir" -c init.defaultBranch=main init -q
  git -C "$dir" -c core.autocrlf=false -c core.fileMode=true add -A
  git -C "$dir" -c commit.gpgSign=false commit -q -m "$name 1.0"
  git -C "$dir" -c tag.gpgSign=false tag v1.0
  printf '%s %s\n' "$name" "$(git -C "$dir" rev-parse HEAD)"
done
