#!/usr/bin/env bash
# Memory use when copying one big layer: regmirror import vs skopeo copy.
#
#   bash bench/big-layer.sh            # 1 GiB layer
#   SIZE_MIB=256 bash bench/big-layer.sh
#
# Generates (once) an OCI layout under bench/out/big-layer with a single image
# whose only layer is SIZE_MIB MiB (bench/gen_big_layer.py streams it to disk),
# seeds a source registry with skopeo, then copies the image registry to
# registry with `regmirror import` (monolithic, then chunked: 8 MiB parts set
# with `chunk_size`, the default part size of the adaptive uploads) and with
# `skopeo copy`, each to its own fresh target registry, and prints wall time
# and peak RSS (GNU time) for each. Bytes sent are not measured here (the
# upload tests count them at a proxy: tests/it/uploads.rs).
# Goal: regmirror's peak RSS well under 100 MiB. Registries listen on
# 127.0.0.1 only and are stopped on exit. The table is also written to
# bench/out/big-layer.md.
#
# Environment: SIZE_MIB (default 1024), REGMIRROR_BIN (skip cargo build),
# KEEP_WORKDIR=1 (keep registry storage and logs under bench/out/).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$BENCH_ROOT"

SIZE_MIB="${SIZE_MIB:-1024}"
OUT="$BENCH_ROOT/bench/out"
LAYOUT="$OUT/big-layer"
RSS_GOAL_MIB=100

section "Prerequisites"
bench_prerequisites
bench_init big

section "Image with a $SIZE_MIB MiB layer"
python3 bench/gen_big_layer.py --out "$LAYOUT" --mib "$SIZE_MIB"
WANT="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifest"])' "$LAYOUT/big-layer.json")"

section "Source registry, seeded with skopeo"
start_registry source
SRC="$REG_ADDR/bench/big:1"
skopeo copy --quiet --preserve-digests --dest-tls-verify=false "oci:$LAYOUT:big" "docker://$SRC" ||
    fail "seeding $SRC from oci:$LAYOUT:big failed (see the skopeo error above)"
note "seeded $SRC ($WANT)"

FAILED=0
declare -A SECS RSS RC
# copy_with TOOL CMD...: time CMD, then check the target holds the image.
copy_with() {
    local tool="$1" dst="$2" rec="$BENCH_TMP/$1" got secs rss rc
    shift 2
    measure "$rec" "$@"
    read -r secs rss rc <"$rec"
    SECS[$tool]="$secs"
    RSS[$tool]="$rss"
    RC[$tool]="$rc"
    got="$( (skopeo inspect --raw --tls-verify=false "docker://$dst" 2>/dev/null || true) | sha256sum | cut -d' ' -f1)"
    if [ "$rc" != 0 ]; then
        FAILED=1
        note "$tool FAILED (exit $rc); last lines of its output ($rec.log):"
        tail -n 5 "$rec.log" | sed 's/^/        /'
    elif [ "sha256:$got" != "$WANT" ]; then
        FAILED=1
        RC[$tool]="digest mismatch"
        note "$tool: the target holds sha256:$got, expected $WANT"
    else
        note "$tool: ${secs} s, peak RSS $((rss / 1024)) MiB, target digest matches"
    fi
}

section "regmirror import (fresh target registry)"
start_registry target-regmirror
copy_with regmirror "$REG_ADDR/bench/big:1" "$REGMIRROR" import "$SRC" "$REG_ADDR/bench/big:1"

section "regmirror import, chunked uploads in 8 MiB parts (fresh target registry)"
start_registry target-chunked
CHUNKED_CONFIG="$BENCH_TMP/chunked.toml"
printf '[[registry]]\nhost = "%s"\nchunk_size = %d\n' "$REG_ADDR" $((8 * 1024 * 1024)) >"$CHUNKED_CONFIG"
copy_with regmirror-chunked "$REG_ADDR/bench/big:1" "$REGMIRROR" import --config "$CHUNKED_CONFIG" \
    "$SRC" "$REG_ADDR/bench/big:1"

section "skopeo copy (fresh target registry)"
start_registry target-skopeo
copy_with skopeo "$REG_ADDR/bench/big:1" skopeo copy --preserve-digests --src-tls-verify=false \
    --dest-tls-verify=false "docker://$SRC" "docker://$REG_ADDR/bench/big:1"

section "Results"
{
    echo "# Peak memory copying one image with a $SIZE_MIB MiB layer (registry to registry)"
    echo
    echo "| tool | status | wall s | peak RSS MiB |"
    echo "|---|---|---:|---:|"
    for tool in regmirror regmirror-chunked skopeo; do
        status="ok"
        [ "${RC[$tool]}" = 0 ] || status="failed (${RC[$tool]})"
        printf '| %s | %s | %s | %s |\n' "$tool" "$status" "${SECS[$tool]}" "$((RSS[$tool] / 1024))"
    done
    echo
    echo "Commands: \`regmirror import SRC DST\` (regmirror-chunked: with a \`[[registry]]\` \`chunk_size = 8388608\` for DST)," \
        "\`skopeo copy --preserve-digests docker://SRC docker://DST\`." \
        "Goal: regmirror below $RSS_GOAL_MIB MiB."
    echo "Versions: $("$REGMIRROR" --version), $(skopeo --version); $(nproc) CPUs."
} | tee "$OUT/big-layer.md"

[ "$FAILED" = 0 ] || fail "a copy failed or left a different image on its target (details above)"
for tool in regmirror regmirror-chunked; do
    if [ "$((RSS[$tool] / 1024))" -ge "$RSS_GOAL_MIB" ]; then
        fail "$tool's peak RSS $((RSS[$tool] / 1024)) MiB is not below the $RSS_GOAL_MIB MiB goal"
    fi
done
BENCH_OK=1
