#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a while (default 30 s each; CI
# does this so a regression shows), after replaying the seed corpus and the
# kept crash inputs (fuzz/regressions/<target>/). Long runs for the numbers
# in docs/reliability.md:
#   bash scripts/fuzz.sh 1800            # 30 minutes each
#   RUNS=10000000 bash scripts/fuzz.sh   # 10 million executions each
# cargo-fuzz comes from crates.io; the stable toolchain builds the targets
# (RUSTC_BOOTSTRAP for libFuzzer's flags), without a sanitizer: the targets
# look for panics and broken invariants, and Rust code needs no ASan.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
if ! command -v cargo-fuzz >/dev/null; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
export RUSTC_BOOTSTRAP=1
echo "==> building fuzz targets"
cargo fuzz build -s none -O
for target in $(cargo fuzz list); do
  corpus="$PWD/target/fuzz-corpus/$target"
  mkdir -p "$corpus"
  seeds=()
  [ -d "fuzz/seeds/$target" ] && seeds+=("$PWD/fuzz/seeds/$target")
  [ -d "fuzz/regressions/$target" ] && seeds+=("$PWD/fuzz/regressions/$target")
  limit=(-max_total_time="$seconds")
  [ -n "${RUNS:-}" ] && limit=(-runs="$RUNS")
  echo "==> fuzz $target (${RUNS:+$RUNS runs}${RUNS:-$seconds s})"
  log="$PWD/target/fuzz-$target.log"
  rc=0
  cargo fuzz run -s none -O "$target" "$corpus" "${seeds[@]}" -- \
    "${limit[@]}" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || rc=$?
  grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|Done)" "$log" || true
  if [ "$rc" != 0 ]; then
    grep -E "panicked|ERROR|SUMMARY" -A 3 "$log" | head -20 >&2 || true
    echo "fuzz target $target failed (log $log): the crashing input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
