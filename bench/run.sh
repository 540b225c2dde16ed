#!/usr/bin/env bash
# Benchmark: mirror a multi-arch workload with regmirror and with skopeo.
#
#   bash bench/run.sh
#   REPOS=8 TAGS=4 PLATFORMS=3 BASE_KB=2048 DEPS_KB=1024 APP_KB=512 bash bench/run.sh
#
# Steps: generate the workload (bench/gen_workload.py, OCI layout under
# bench/out/workload, reused when the parameters are unchanged); start a source
# registry and seed it with skopeo; then for each tool start a fresh, empty
# target registry and run
#   copy   regmirror sync --config CONFIG            (every repository and tag)
#          skopeo sync --all --preserve-digests --src yaml --dest docker ...
#   no-op  the same command again (nothing changed upstream)
# measuring wall time and peak RSS (GNU time) and counting the requests each
# registry logs during the run. The table goes to stdout and to
# bench/out/results.md. All registries listen on 127.0.0.1 and are stopped on
# exit.
#
# Environment: REPOS, TAGS, PLATFORMS (1-3), BASE_KB, DEPS_KB, APP_KB (workload
# shape); REGMIRROR_BIN (use this binary instead of cargo build --release);
# SEED_JOBS (parallel skopeo copies when seeding, default 2); KEEP_WORKDIR=1
# (keep registry storage and logs under bench/out/).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$BENCH_ROOT"

REPOS="${REPOS:-8}"
TAGS="${TAGS:-4}"
PLATFORMS="${PLATFORMS:-3}"
BASE_KB="${BASE_KB:-2048}"
DEPS_KB="${DEPS_KB:-1024}"
APP_KB="${APP_KB:-512}"
SEED_JOBS="${SEED_JOBS:-2}"
OUT="$BENCH_ROOT/bench/out"
WORKLOAD="$OUT/workload"

section "Prerequisites"
bench_prerequisites
bench_init run

section "Workload"
python3 bench/gen_workload.py --out "$WORKLOAD" --repos "$REPOS" --tags "$TAGS" --platforms "$PLATFORMS" \
    --base-kb "$BASE_KB" --deps-kb "$DEPS_KB" --app-kb "$APP_KB"
# "repo tag" per line.
python3 - "$WORKLOAD/workload.json" >"$BENCH_TMP/refs" <<'EOF'
import json, sys
w = json.load(open(sys.argv[1]))
for r in w["repositories"]:
    for t in r["tags"]:
        print(r["name"].split("/", 1)[1], t)
EOF

section "Source registry, seeded with skopeo copy --all --preserve-digests"
start_registry source
SRC="$REG_ADDR"
SRC_LOG="$REG_LOG"
export WORKLOAD SRC
seed_start=$(date +%s)
# One retry per image: two parallel pushes of a shared base layer can collide.
# shellcheck disable=SC2016 # expanded by the inner bash, from the exported variables
xargs -P "$SEED_JOBS" -L 1 bash -c \
    'for attempt in 1 2; do
        skopeo copy --quiet --all --preserve-digests --dest-tls-verify=false \
            "oci:$WORKLOAD:$0-$1" "docker://$SRC/bench/$0:$1" && exit 0
        echo "seeding $SRC/bench/$0:$1 from oci:$WORKLOAD:$0-$1 failed (attempt $attempt of 2)" >&2
        sleep 1
    done
    exit 255' \
    <"$BENCH_TMP/refs" || fail "seeding the source registry failed (see the skopeo error above)"
note "seeded $(wc -l <"$BENCH_TMP/refs") images in $(($(date +%s) - seed_start)) s"

section "Configs"
# regmirror: one [[mirror]] per repository. skopeo: one YAML source file.
REGMIRROR_CONFIG="$BENCH_TMP/regmirror.toml"
SKOPEO_YAML="$BENCH_TMP/skopeo-sync.yml"
write_configs() { # TARGET_HOST
    python3 - "$WORKLOAD/workload.json" "$SRC" "$1" "$REGMIRROR_CONFIG" "$SKOPEO_YAML" <<'EOF'
import json, sys
w = json.load(open(sys.argv[1]))
src, dst, toml_path, yaml_path = sys.argv[2:6]
with open(toml_path, "w") as f:
    for r in w["repositories"]:
        tags = ", ".join(json.dumps(t) for t in r["tags"])
        f.write(f'[[mirror]]\nsource = "{src}/{r["name"]}"\ntarget = "{dst}/{r["name"]}"\ntags = [{tags}]\n\n')
with open(yaml_path, "w") as f:
    f.write(f"{src}:\n  tls-verify: false\n  images:\n")
    for r in w["repositories"]:
        f.write(f"    {r['name']}: [{', '.join(json.dumps(t) for t in r['tags'])}]\n")
EOF
}

PHASES="$BENCH_TMP/phases.tsv"
: >"$PHASES"
FAILED=0

# run_phase TOOL PHASE TARGET_LOG CMD...
run_phase() {
    local tool="$1" phase="$2" tlog="$3" s0 t0 rec
    shift 3
    rec="$BENCH_TMP/$tool-$phase"
    s0=$(log_pos "$SRC_LOG")
    t0=$(log_pos "$tlog")
    measure "$rec" "$@"
    sleep 0.2 # let the registries flush their last log lines
    read -r secs rss rc <"$rec"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$phase" "$secs" "$rss" "$rc" \
        "$SRC_LOG" "$s0" "$(log_pos "$SRC_LOG")" "$tlog" "$t0" "$(log_pos "$tlog")" >>"$PHASES"
    if [ "$rc" = 0 ]; then
        note "$tool $phase: ${secs} s, peak RSS $((rss / 1024)) MiB"
    else
        FAILED=1
        note "$tool $phase FAILED (exit $rc); last lines of its output ($rec.log):"
        tail -n 5 "$rec.log" | sed 's/^/        /'
    fi
}

# verify_target TOOL TARGET: every tag's index digest equals the source's.
verify_target() {
    local tool="$1" dst="$2" repo tag a b bad=0
    while read -r repo tag; do
        a=$(skopeo inspect --raw --tls-verify=false "docker://$SRC/bench/$repo:$tag" | sha256sum | cut -d' ' -f1) ||
            fail "cannot read bench/$repo:$tag from the source registry $SRC"
        b=$( (skopeo inspect --raw --tls-verify=false "docker://$dst/bench/$repo:$tag" 2>/dev/null || true) |
            sha256sum | cut -d' ' -f1)
        if [ "$a" != "$b" ]; then
            bad=$((bad + 1))
            if [ "$bad" -le 3 ]; then
                note "$tool: bench/$repo:$tag missing or different on $dst (source sha256:$a)"
            fi
        fi
    done <"$BENCH_TMP/refs"
    if [ "$bad" = 0 ]; then
        note "$tool: all $(wc -l <"$BENCH_TMP/refs") tags present on the target with the source's digest"
    else
        FAILED=1
        note "$tool: $bad tags missing or with another digest on the target"
    fi
}

section "regmirror (fresh target registry)"
start_registry target-regmirror
write_configs "$REG_ADDR"
cp "$REGMIRROR_CONFIG" "$OUT/regmirror.toml"
RM_DST="$REG_ADDR"
RM_LOG="$REG_LOG"
run_phase regmirror copy "$RM_LOG" "$REGMIRROR" sync --config "$REGMIRROR_CONFIG"
run_phase regmirror no-op "$RM_LOG" "$REGMIRROR" sync --config "$REGMIRROR_CONFIG"
verify_target regmirror "$RM_DST"

section "skopeo (fresh target registry)"
start_registry target-skopeo
write_configs "$REG_ADDR"
cp "$SKOPEO_YAML" "$OUT/skopeo-sync.yml"
SK_DST="$REG_ADDR"
SK_LOG="$REG_LOG"
SKOPEO_SYNC=(skopeo sync --all --preserve-digests --src yaml --dest docker --dest-tls-verify=false
    "$SKOPEO_YAML" "$SK_DST/bench")
run_phase skopeo copy "$SK_LOG" "${SKOPEO_SYNC[@]}"
run_phase skopeo no-op "$SK_LOG" "${SKOPEO_SYNC[@]}"
verify_target skopeo "$SK_DST"

section "Results"
python3 bench/report.py "$PHASES" "$WORKLOAD/workload.json" >"$OUT/results.md"
{
    echo
    echo "Versions: $("$REGMIRROR" --version), $(skopeo --version), $(docker-registry --version 2>&1 | head -n 1)."
    echo "Machine: $(nproc) CPUs, $(uname -sr). Command: REPOS=$REPOS TAGS=$TAGS PLATFORMS=$PLATFORMS BASE_KB=$BASE_KB DEPS_KB=$DEPS_KB APP_KB=$APP_KB bash bench/run.sh"
} >>"$OUT/results.md"
cat "$OUT/results.md"
note "written to bench/out/results.md"

[ "$FAILED" = 0 ] || fail "at least one run failed or left the target incomplete (details above)"
BENCH_OK=1
