#!/usr/bin/env bash
# Benchmark: mirror a multi-arch workload with regmirror, with skopeo and with
# a plain parallel copier (the floor: bench/plain-copier, built here with
# cargo), counting every request each registry serves.
#
#   bash bench/run.sh
#   REPS=3 REPOS=8 TAGS=4 PLATFORMS=3 BASE_KB=2048 DEPS_KB=1024 APP_KB=512 bash bench/run.sh
#
# Workload (bench/gen_workload.py, OCI layout under bench/out/workload, reused
# while its parameters are unchanged): REPOS repositories, each with version
# tags v1..vTAGS and `latest` pointing at the newest (the same index as
# vTAGS); every tag an OCI index of PLATFORMS images plus one attestation each.
# The "update" publishes v(TAGS+1) in every repository and moves `latest` to
# it. The source registry is seeded once with skopeo (before and after the
# update, kept as two storage snapshots); each repetition starts from copies.
#
# Each of REPS repetitions, every tool on its own fresh target registry:
#   full         copy every tag of every repository into the empty target
#                  regmirror sync --config CONFIG      (one [[mirror]] per repository, every tag)
#                  skopeo sync --all --preserve-digests --src yaml --dest docker (every tag)
#                  bench/plain-copier                  (the floor: stream GET -> PUT, mounts, no checks)
#   no-op        the same again, nothing changed upstream (regmirror and skopeo)
#   incremental  after the update (regmirror and skopeo, on the same targets)
# Every run is then checked with bench/registry_util.py verify (every tag's
# bytes equal the source's, every child manifest and blob in place), and the
# first repetition's targets also with `skopeo inspect --raw` per tag. Wall
# time and peak RSS come from GNU time; requests are counted in each
# registry's log (distribution logs one line per request). regmirror and the
# plain copier alternate which runs first. bench/report.py writes medians,
# ratios and the counts against the least possible to bench/results/run.md
# and bench/results/run.json (with the command that reproduces them).
#
# Environment: REPS (repetitions, default 5), SKOPEO_REPS (repetitions that
# also run skopeo, default 2: it is the slow one), REPOS, TAGS, PLATFORMS
# (1-3), BASE_KB, DEPS_KB, APP_KB (workload shape), JOBS (the plain copier's
# requests in flight, default 16 = regmirror's 4 images x 4 blobs),
# CONCURRENCY and BLOB_CONCURRENCY (written to regmirror's [defaults] when
# set), REGMIRROR_BIN (use this binary instead of cargo build --release),
# SEED_JOBS (parallel skopeo copies when seeding, default 2), RESULTS (output
# directory, default bench/results), KEEP_WORKDIR=1 (keep registry storage
# and logs under bench/out/).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$BENCH_ROOT"

REPS="${REPS:-5}"
SKOPEO_REPS="${SKOPEO_REPS:-2}"
REPOS="${REPOS:-8}"
TAGS="${TAGS:-4}"
PLATFORMS="${PLATFORMS:-3}"
BASE_KB="${BASE_KB:-2048}"
DEPS_KB="${DEPS_KB:-1024}"
APP_KB="${APP_KB:-512}"
JOBS="${JOBS:-16}"
SEED_JOBS="${SEED_JOBS:-2}"
ALIAS=latest
OUT="$BENCH_ROOT/bench/out"
RESULTS="${RESULTS:-$BENCH_ROOT/bench/results}"
WORKLOAD="$OUT/workload"
for v in REPS REPOS TAGS JOBS SEED_JOBS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || fail "$v=${!v}: expected a whole number of at least 1"
done
[[ "$SKOPEO_REPS" =~ ^[0-9]+$ ]] || fail "SKOPEO_REPS=$SKOPEO_REPS: expected a whole number"
COMMAND="REPS=$REPS SKOPEO_REPS=$SKOPEO_REPS REPOS=$REPOS TAGS=$TAGS PLATFORMS=$PLATFORMS BASE_KB=$BASE_KB"
COMMAND+=" DEPS_KB=$DEPS_KB APP_KB=$APP_KB JOBS=$JOBS"
[ -z "${CONCURRENCY:-}" ] || COMMAND+=" CONCURRENCY=$CONCURRENCY"
[ -z "${BLOB_CONCURRENCY:-}" ] || COMMAND+=" BLOB_CONCURRENCY=$BLOB_CONCURRENCY"
COMMAND+=" bash bench/run.sh"

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

section "Prerequisites"
bench_prerequisites
bench_init run
note "building the plain copier (bench/plain-copier, cargo build --release --locked)"
cargo build --release --locked --quiet --manifest-path bench/plain-copier/Cargo.toml ||
    fail "cargo build of bench/plain-copier failed (see above)"
PLAIN="$BENCH_ROOT/bench/plain-copier/target/release/plain-copier"

section "Workload"
python3 bench/gen_workload.py --out "$WORKLOAD" --repos "$REPOS" --tags "$TAGS" --platforms "$PLATFORMS" \
    --base-kb "$BASE_KB" --deps-kb "$DEPS_KB" --app-kb "$APP_KB" --update-tags 1 --alias "$ALIAS"
# "repo tag" per line: the version tags before the update, those the update
# adds, every tag after it (for skopeo inspect), and the repositories.
python3 - "$WORKLOAD/workload.json" "$BENCH_TMP" <<'EOF'
import json, sys
w = json.load(open(sys.argv[1]))
out = sys.argv[2]
with open(f"{out}/refs-initial", "w") as a, open(f"{out}/refs-update", "w") as b, \
        open(f"{out}/refs-all", "w") as c, open(f"{out}/repos", "w") as d:
    for r in w["repositories"]:
        short = r["name"].split("/", 1)[1]
        d.write(r["name"] + "\n")
        for t in r["tags"]:
            a.write(f"{short} {t}\n")
        for t in r["update_tags"]:
            b.write(f"{short} {t}\n")
        for t in r["tags"] + r["update_tags"] + [r["alias"]]:
            c.write(f"{short} {t}\n")
EOF
mapfile -t REPO_NAMES <"$BENCH_TMP/repos"

section "Source registry, seeded with skopeo copy --all --preserve-digests"
# seed_refs FILE: push every "repo tag" of FILE from the layout to the seed registry.
seed_refs() {
    # One retry per image: two parallel pushes of a shared base layer can collide.
    # shellcheck disable=SC2016 # expanded by the inner bash, from the exported variables
    xargs -P "$SEED_JOBS" -L 1 bash -c \
        'for attempt in 1 2; do
            skopeo copy --quiet --all --preserve-digests --dest-tls-verify=false \
                "oci:$WORKLOAD:$0-$1" "docker://$SEED/bench/$0:$1" && exit 0
            echo "seeding $SEED/bench/$0:$1 from oci:$WORKLOAD:$0-$1 failed (attempt $attempt of 2)" >&2
            sleep 1
        done
        exit 255' \
        <"$1" || fail "seeding the source registry failed (see the skopeo error above)"
}
# move_alias WHICH: point $ALIAS at alias_WHICH (initial or update) in every repository.
move_alias() {
    python3 - "$WORKLOAD/workload.json" "$1" <<'EOF' | while read -r repo to; do
import json, sys
for r in json.load(open(sys.argv[1]))["repositories"]:
    print(r["name"], r["alias_" + sys.argv[2]])
EOF
        python3 bench/registry_util.py tag --registry "$SEED" --repo "$repo" --from "$to" --to "$ALIAS" ||
            fail "moving $SEED/$repo:$ALIAS to $to failed"
    done
}
start_registry seed
SEED="$REG_ADDR"
SEED_PID="$REG_PID"
export WORKLOAD SEED
seed_start=$(date +%s)
seed_refs "$BENCH_TMP/refs-initial"
move_alias initial
cp -a "$BENCH_TMP/seed/storage" "$BENCH_TMP/source-initial"
seed_refs "$BENCH_TMP/refs-update"
move_alias update
cp -a "$BENCH_TMP/seed/storage" "$BENCH_TMP/source-update"
stop_registry "$SEED_PID"
rm -rf "$BENCH_TMP/seed/storage"
note "seeded $(wc -l <"$BENCH_TMP/refs-initial") + $(wc -l <"$BENCH_TMP/refs-update") images and" \
    "moved $ALIAS in $(($(date +%s) - seed_start)) s"

# write_configs SOURCE_HOST TARGET_HOST DIR: DIR/regmirror.toml (one [[mirror]]
# per repository, every tag) and DIR/skopeo-sync.yml (every tag: an empty list).
write_configs() {
    python3 - "$WORKLOAD/workload.json" "$1" "$2" "$3" "${CONCURRENCY:-}" "${BLOB_CONCURRENCY:-}" <<'EOF'
import json, sys
w = json.load(open(sys.argv[1]))
src, dst, out, images, blobs = sys.argv[2:7]
with open(f"{out}/regmirror.toml", "w") as f:
    if images or blobs:
        f.write("[defaults]\n")
        if images:
            f.write(f"concurrency = {int(images)}\n")
        if blobs:
            f.write(f"blob_concurrency = {int(blobs)}\n")
        f.write("\n")
    for r in w["repositories"]:
        f.write(f'[[mirror]]\nsource = "{src}/{r["name"]}"\ntarget = "{dst}/{r["name"]}"\n\n')
with open(f"{out}/skopeo-sync.yml", "w") as f:
    f.write(f"{src}:\n  tls-verify: false\n  images:\n")
    for r in w["repositories"]:
        f.write(f"    {r['name']}: []\n")
EOF
}

PHASES="$BENCH_TMP/phases.tsv"
: >"$PHASES"
FAILED=0

# run_phase TOOL PHASE REP SOURCE_LOG TARGET TARGET_LOG CMD...: time CMD,
# record its request windows in both logs, then verify the target.
run_phase() {
    local tool="$1" phase="$2" rep="$3" slog="$4" dst="$5" tlog="$6" s0 t0 rec verdict=ok load
    shift 6
    rec="$BENCH_TMP/$tool-$phase-$rep"
    load="$(cut -d' ' -f1 /proc/loadavg)"
    s0=$(log_pos "$slog")
    t0=$(log_pos "$tlog")
    measure "$rec" "$@"
    sleep 0.2 # let the registries flush their last log lines
    read -r secs rss rc <"$rec"
    local s1 t1 inner=-
    s1=$(log_pos "$slog")
    t1=$(log_pos "$tlog")
    if [ "$tool" = plain ] && [ "$rc" = 0 ]; then
        # The copier's own clock, from its first request to its last answer (no process start-up).
        inner="$(tail -n 1 "$rec.log" | python3 -c 'import json, sys; print(json.load(sys.stdin)["seconds"])')" ||
            inner=-
    fi
    if [ "$rc" != 0 ]; then
        # The exit status and the tool's last line (regmirror's names the failure), one line, no tabs.
        verdict="exit $rc: $(grep -v '^[[:space:]]*$' "$rec.log" | tail -n 1 | tr '\t' ' ' | sed 's/^ *//' |
            awk '{ print (length($0) > 300 ? "..." substr($0, length($0) - 296) : $0) }')"
        note "$tool $phase (repetition $rep) FAILED (exit $rc); last lines of its output ($rec.log):"
        tail -n 5 "$rec.log" | sed 's/^/        /'
    elif ! python3 bench/registry_util.py verify --src "$SRC" --dst "$dst" "${REPO_ARGS[@]}" >"$rec.verify" 2>&1; then
        verdict="target differs"
        note "$tool $phase (repetition $rep): the target does not mirror the source:"
        sed 's/^/        /' "$rec.verify"
    else
        note "$tool $phase (repetition $rep): ${secs} s, peak RSS $((rss / 1024)) MiB; $(cat "$rec.verify")"
    fi
    [ "$verdict" = ok ] || FAILED=1
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$phase" "$rep" "$secs" "$rss" \
        "$rc" "$verdict" "$load" "$inner" "$slog" "$s0" "$s1" "$tlog" "$t0" "$t1" >>"$PHASES"
}

# skopeo_check TOOL TARGET: every tag's manifest digest on the target, as
# skopeo reads it, equals the source's (an independent reader).
skopeo_check() {
    local tool="$1" dst="$2" repo tag a b bad=0
    while read -r repo tag; do
        a=$(skopeo inspect --raw --tls-verify=false "docker://$SRC/bench/$repo:$tag" | sha256sum | cut -d' ' -f1) ||
            fail "cannot read bench/$repo:$tag from the source registry $SRC"
        b=$( (skopeo inspect --raw --tls-verify=false "docker://$dst/bench/$repo:$tag" 2>/dev/null || true) |
            sha256sum | cut -d' ' -f1)
        if [ "$a" != "$b" ]; then
            bad=$((bad + 1))
            [ "$bad" -gt 3 ] || note "$tool: bench/$repo:$tag missing or different on $dst (source sha256:$a)"
        fi
    done <"$BENCH_TMP/refs-all"
    if [ "$bad" = 0 ]; then
        note "$tool: skopeo reads all $(wc -l <"$BENCH_TMP/refs-all") tags on the target with the source's digest"
    else
        FAILED=1
        note "$tool: skopeo finds $bad tags missing or with another digest on the target"
    fi
}

REPO_ARGS=()
for r in "${REPO_NAMES[@]}"; do REPO_ARGS+=(--repo "$r"); done
declare -A DST=() DLOG=() DPID=()

for rep in $(seq 1 "$REPS"); do
    section "Repetition $rep of $REPS"
    start_registry "source-$rep" "" "$BENCH_TMP/source-initial"
    SRC="$REG_ADDR"
    SRC_LOG="$REG_LOG"
    SRC_PID="$REG_PID"
    tools=(regmirror plain)
    [ $((rep % 2)) = 1 ] || tools=(plain regmirror)
    [ "$rep" -gt "$SKOPEO_REPS" ] || tools+=(skopeo)
    DST=() DLOG=() DPID=()
    for tool in "${tools[@]}"; do
        start_registry "target-$tool-$rep"
        DST[$tool]="$REG_ADDR"
        DLOG[$tool]="$REG_LOG"
        DPID[$tool]="$REG_PID"
        dir="$BENCH_TMP/target-$tool-$rep"
        write_configs "$SRC" "$REG_ADDR" "$dir"
        case "$tool" in
        regmirror) cmd=("$REGMIRROR" sync --config "$dir/regmirror.toml") ;;
        skopeo)
            cmd=(skopeo sync --all --preserve-digests --src yaml --dest docker --dest-tls-verify=false
                "$dir/skopeo-sync.yml" "$REG_ADDR/bench")
            ;;
        plain) cmd=("$PLAIN" --src "$SRC" --dst "$REG_ADDR" --jobs "$JOBS" "${REPO_ARGS[@]}") ;;
        esac
        printf '%s\n' "${cmd[@]}" >"$dir/command"
        run_phase "$tool" full "$rep" "$SRC_LOG" "$REG_ADDR" "$REG_LOG" "${cmd[@]}"
        if [ "$tool" != plain ]; then
            run_phase "$tool" no-op "$rep" "$SRC_LOG" "$REG_ADDR" "$REG_LOG" "${cmd[@]}"
        fi
    done

    # The update: the same source address now serves v(TAGS+1) and the moved alias.
    stop_registry "$SRC_PID"
    rm -rf "$BENCH_TMP/source-$rep/storage"
    start_registry "source-$rep-update" "${SRC##*:}" "$BENCH_TMP/source-update"
    SRC_LOG="$REG_LOG"
    SRC_PID="$REG_PID"
    for tool in "${tools[@]}"; do
        [ "$tool" != plain ] || continue
        mapfile -t cmd <"$BENCH_TMP/target-$tool-$rep/command"
        run_phase "$tool" incremental "$rep" "$SRC_LOG" "${DST[$tool]}" "${DLOG[$tool]}" "${cmd[@]}"
        [ "$rep" != 1 ] || skopeo_check "$tool" "${DST[$tool]}"
    done
    for tool in "${tools[@]}"; do
        stop_registry "${DPID[$tool]}"
        [ "${KEEP_WORKDIR:-0}" = 1 ] || rm -rf "$BENCH_TMP/target-$tool-$rep/storage"
    done
    stop_registry "$SRC_PID"
    [ "${KEEP_WORKDIR:-0}" = 1 ] || rm -rf "$BENCH_TMP/source-$rep-update/storage"
done

section "Results"
mkdir -p "$RESULTS"
python3 bench/report.py --phases "$PHASES" --workload "$WORKLOAD/workload.json" \
    --versions "$("$REGMIRROR" --version), $(skopeo --version), $(docker-registry --version 2>&1 | head -n 1)" \
    --machine "$(nproc) CPUs, $(uname -sr), load average before the run: $LOAD_BEFORE" \
    --command "$COMMAND" --markdown "$RESULTS/run.md" --json "$RESULTS/run.json"
cat "$RESULTS/run.md"
note "written to ${RESULTS#"$BENCH_ROOT"/}/run.md and run.json"

[ "$FAILED" = 0 ] || fail "at least one run failed or left its target different from the source (details above)"
BENCH_OK=1
