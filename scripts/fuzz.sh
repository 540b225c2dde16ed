#!/usr/bin/env bash
# Run each fuzz target for a set time (default 60 s each). Not part of CI.
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain the
# sanitizer flags are enabled with RUSTC_BOOTSTRAP=1. A crash leaves its input
# under fuzz/artifacts/<target>/; turn it into a regression test in
# tests/it/fuzz_regressions.rs and keep the input under tests/fuzz-regressions/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(reference manifest config)
mkdir -p corpus
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  seeds="../tests/fuzz-seeds/$t"
  [ -d "$seeds" ] && cp -n "$seeds"/* "corpus/$t/" 2>/dev/null || true
  echo "== fuzzing $t for ${secs}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=65536
done
