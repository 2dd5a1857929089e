#!/usr/bin/env bash
# `make fuzz`: runs every libFuzzer target for SECONDS each (default 60),
# starting from the checked-in seeds plus what earlier runs found (kept in
# BIN/../fuzz-corpus, outside the source tree). Crashes land in that folder
# as crash-* files and make this script fail.
set -euo pipefail
BIN=${1:?usage: run-all.sh BIN_DIR [SECONDS]}
SECONDS_EACH=${2:-60}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(cd "$BIN/.." && pwd)/fuzz-corpus
status=0
for target in "$BIN"/fuzz_*; do
  name=$(basename "$target")
  mkdir -p "$OUT/$name"
  dict=()
  [ -f "$HERE/$name.dict" ] && dict=(-dict="$HERE/$name.dict")
  echo "== $name: ${SECONDS_EACH}s"
  if ! "$target" -max_total_time="$SECONDS_EACH" -max_len=8192 -print_final_stats=1 \
       -artifact_prefix="$OUT/$name/" "${dict[@]}" "$OUT/$name" "$HERE/corpus/$name"; then
    echo "!! $name found a crash; see $OUT/$name/crash-*"
    status=1
  fi
done
exit $status
