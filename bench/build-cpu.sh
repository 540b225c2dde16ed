#!/usr/bin/env bash
# CPU seconds of each crate's compilation in a clean release build, to tell
# what a dependency costs in build time independently of the machine's load:
# every rustc run goes through this script (as RUSTC_WRAPPER) under GNU time,
# and the user + system seconds are summed per crate.
#
#   bash bench/build-cpu.sh            # writes $OUT (default: a temp dir)/cpu.log and prints a summary
#
# The build uses its own target directory, so it always starts clean.
set -euo pipefail
if [ "${1:-}" = "--wrap" ]; then
    shift
    rustc="$1"; shift
    name=""; prev=""
    for a in "$@"; do
        if [ "$prev" = "--crate-name" ]; then name="$a"; fi
        prev="$a"
    done
    if [ -z "$name" ] || [ "$name" = "___" ]; then exec "$rustc" "$@"; fi
    exec /usr/bin/time -f "$name %U %S %e" -a -o "$BUILD_CPU_LOG" "$rustc" "$@"
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$(mktemp -d)}"
export BUILD_CPU_LOG="$OUT/cpu.log"
: > "$BUILD_CPU_LOG"
wrapper="$OUT/wrap.sh"
printf '#!/bin/sh\nexec bash %q --wrap "$@"\n' "$root/bench/build-cpu.sh" > "$wrapper"
chmod +x "$wrapper"
(cd "$root" && RUSTC_WRAPPER="$wrapper" CARGO_TARGET_DIR="$OUT/target" cargo build --release)
python3 - "$BUILD_CPU_LOG" <<'PY'
import sys
from collections import defaultdict
cpu = defaultdict(float)
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) == 4:
        cpu[f[0]] += float(f[1]) + float(f[2])
total = sum(cpu.values())
aws = sum(v for k, v in cpu.items() if k.startswith("aws_") and not k.startswith("aws_lc")) \
    + cpu.get("regex_lite", 0) + cpu.get("xmlparser", 0)
print(f"crates: {len(cpu)}, rustc CPU seconds: {total:.1f}")
print(f"AWS SDK crates (aws_* but aws_lc_*, regex_lite, xmlparser): {aws:.1f} s ({100 * aws / total:.1f} %)")
for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])[:25]:
    print(f"  {k:32} {v:8.1f}")
PY
