#!/usr/bin/env bash
# One big layer: regmirror import (monolithic and chunked uploads) vs skopeo copy.
#
#   bash bench/big-layer.sh            # 1 GiB layer
#   SIZE_MIB=256 bash bench/big-layer.sh
#
# Generates (once) an OCI layout under $BENCH_OUT/big-layer with a single image
# whose only layer is SIZE_MIB MiB (bench/gen_big_layer.py streams it to disk),
# seeds a source registry with skopeo, then copies the image registry to
# registry with `regmirror import` (monolithic, then chunked: 8 MiB parts set
# with `chunk_size`, the default part size of the adaptive uploads) and with
# `skopeo copy`, each to its own fresh target registry, and prints wall time,
# peak RSS (GNU time) and the bytes each tool sent to its target (counted by
# bench/count_proxy.py, a TCP relay in front of each target: request lines,
# headers and bodies). Goal: regmirror's peak RSS well under 100 MiB.
# Registries listen on 127.0.0.1 only and are stopped on exit. The table is
# also written to $BENCH_OUT/big-layer.md.
#
# Environment: SIZE_MIB (default 1024), REGMIRROR_BIN (skip cargo build),
# BENCH_OUT (default bench/out: the layout, registry storage and the table;
# needs about 4x SIZE_MIB free), KEEP_WORKDIR=1 (keep registry storage and
# logs).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$BENCH_ROOT"

SIZE_MIB="${SIZE_MIB:-1024}"
OUT="$BENCH_OUT"
LAYOUT="$OUT/big-layer"
RSS_GOAL_MIB=100

section "Prerequisites"
bench_prerequisites
bench_init big

seed_big_layer "$LAYOUT" "$SIZE_MIB"
SRC="$SRC_ADDR/bench/big:1"

FAILED=0
declare -A SECS RSS RC SENT
# start_target NAME: a fresh registry behind a counting relay; sets DST_ADDR
# (the relay's host:port), COUNT_FILE and COUNT_PID.
start_target() {
    local port
    start_registry "$1"
    port="$(free_port)"
    COUNT_FILE="$BENCH_TMP/$1.sent"
    python3 bench/count_proxy.py "$port" "${REG_ADDR##*:}" "$COUNT_FILE" &
    COUNT_PID=$!
    BENCH_PIDS+=("$COUNT_PID")
    for _ in $(seq 1 50); do
        [ -s "$COUNT_FILE" ] && break
        sleep 0.1
    done
    DST_ADDR="127.0.0.1:$port"
    note "counting relay for $1: $DST_ADDR"
}

# copy_with TOOL DST CMD...: time CMD, count the bytes sent to the target,
# then check the target holds the image.
copy_with() {
    local tool="$1" dst="$2" rec="$BENCH_TMP/$1" got secs rss rc
    shift 2
    measure "$rec" "$@"
    read -r secs rss rc <"$rec"
    SECS[$tool]="$secs"
    RSS[$tool]="$rss"
    RC[$tool]="$rc"
    stop_registry "$COUNT_PID"
    SENT[$tool]="$(cat "$COUNT_FILE")"
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
        note "$tool: ${secs} s, peak RSS $((rss / 1024)) MiB, ${SENT[$tool]} bytes sent, target digest matches"
    fi
}

section "regmirror import (fresh target registry)"
start_target target-regmirror
copy_with regmirror "$REG_ADDR/bench/big:1" "$REGMIRROR" import "$SRC" "$DST_ADDR/bench/big:1"

section "regmirror import, chunked uploads in 8 MiB parts (fresh target registry)"
start_target target-chunked
CHUNKED_CONFIG="$BENCH_TMP/chunked.toml"
printf '[[registry]]\nhost = "%s"\nchunk_size = %d\n' "$DST_ADDR" $((8 * 1024 * 1024)) >"$CHUNKED_CONFIG"
copy_with regmirror-chunked "$REG_ADDR/bench/big:1" "$REGMIRROR" import --config "$CHUNKED_CONFIG" \
    "$SRC" "$DST_ADDR/bench/big:1"

section "skopeo copy (fresh target registry)"
start_target target-skopeo
copy_with skopeo "$REG_ADDR/bench/big:1" skopeo copy --preserve-digests --src-tls-verify=false \
    --dest-tls-verify=false "docker://$SRC" "docker://$DST_ADDR/bench/big:1"

section "Results"
{
    echo "# Copying one image with a $SIZE_MIB MiB layer (registry to registry)"
    echo
    echo "| tool | status | wall s | peak RSS MiB | bytes sent to the target |"
    echo "|---|---|---:|---:|---:|"
    for tool in regmirror regmirror-chunked skopeo; do
        status="ok"
        [ "${RC[$tool]}" = 0 ] || status="failed (${RC[$tool]})"
        printf '| %s | %s | %s | %s | %s |\n' "$tool" "$status" "${SECS[$tool]}" "$((RSS[$tool] / 1024))" "${SENT[$tool]}"
    done
    echo
    echo "Commands: \`regmirror import SRC DST\` (regmirror-chunked: with a \`[[registry]]\` \`chunk_size = 8388608\` for DST)," \
        "\`skopeo copy --preserve-digests docker://SRC docker://DST\`." \
        "Bytes sent: everything each tool sent to its target (request lines, headers, bodies), counted by a TCP relay (bench/count_proxy.py)." \
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
