#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60) and prints one line
# per target: executions, corpus size, findings. Installs cargo-fuzz when missing.
#   bash scripts/fuzz.sh          # 60 s per target
#   bash scripts/fuzz.sh 300      # 5 min per target
#   TARGETS="jwt config" bash scripts/fuzz.sh 30
# cargo-fuzz needs nightly-only flags (-Z sanitizer); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them, so no nightly install is needed. New corpus entries go to
# fuzz/corpus/<target> (git-ignored), crashes to fuzz/artifacts/<target>; the committed
# seeds are in fuzz/seeds/<target>. Exit status 1 when any target found something.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
per_target="${1:-60}"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
TARGETS="${TARGETS:-$(cargo fuzz list)}"
cargo fuzz build 2>&1 | grep -E '^error|Finished' || true
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
found=0
printf '%-15s %8s %14s %10s %8s  %s\n' target seconds executions exec/s corpus findings
for target in $TARGETS; do
  mkdir -p "corpus/$target" "artifacts/$target" "seeds/$target"
  before=$(find "artifacts/$target" -type f | wc -l)
  # -timeout: an input taking 10 s counts as a finding (a hang), as does a crash, an
  # assertion or a leak; libFuzzer stops at the first one and says which.
  start=$(date +%s)
  cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$per_target" -timeout=10 -print_final_stats=1 \
    > "$logs/$target" 2>&1 || true
  took=$(($(date +%s) - start))
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$logs/$target" | tail -1)
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$logs/$target" | tail -1)
  corpus=$(find "corpus/$target" -type f | wc -l)
  after=$(find "artifacts/$target" -type f | wc -l)
  new=$((after - before))
  if [ "$new" -gt 0 ] || grep -qE 'ERROR: (libFuzzer|AddressSanitizer)|panicked at' "$logs/$target"; then
    found=1
    what=$(grep -m1 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$logs/$target" || echo "?")
    printf '%-15s %8s %14s %10s %8s  %s new: %s\n' "$target" "$took" "${execs:-?}" "${rate:-?}" "$corpus" "$new" "$what"
    grep -m1 -A3 'panicked at' "$logs/$target" | sed 's/^/    /' || true
    find "artifacts/$target" -type f -newer "$logs" | sed 's/^/    artifact: fuzz\//'
  elif [ -z "$execs" ]; then
    found=1
    printf '%-15s %8s %14s %10s %8s  %s\n' "$target" "$took" "?" "?" "$corpus" "did not run:"
    tail -5 "$logs/$target" | sed 's/^/    /'
  else
    printf '%-15s %8s %14s %10s %8s  %s\n' "$target" "$took" "$execs" "$rate" "$corpus" 0
  fi
done
exit "$found"
