#!/usr/bin/env bash
# Scale benchmark: many tiny tags. Does the cost of a sync grow with what
# changed, not with the size of the mirror? regmirror beside skopeo, same run.
#
#   bash bench/scale.sh
#   SIZES="1000 10000" REPOS=200 SKOPEO=1 bash bench/scale.sh
#   SIZES=10000 REPOS=1000 LAYOUTS=many-repos NAME=scale-1000x10 bash bench/scale.sh
#
# For each size N in SIZES (tags in total) and each layout:
#   one-repo   one repository of N tags
#   many-repos REPOS repositories of N/REPOS tags each (a config of REPOS mirrors)
# a source registry is seeded by bench/gen_scale.py (tiny OCI manifests, one
# per tag, sharing one config and one layer per repository), then, each tool
# on its own empty target registry:
#   first      copy every tag          regmirror sync (one [[mirror]] per repository, every tag)
#                                      skopeo sync --all --preserve-digests --src yaml --dest docker
#                                      bench/plain-copier (the floor: GET -> PUT, no checks; first only)
#   no-op      the same again, nothing changed upstream (regmirror: with
#              immutable_tags matching every tag, so its run-state store
#              records each tag as it checks it with HEADs)
#   no-op-immutable  regmirror only: the same again, the store trusting the
#              recorded tags: a tag listing and the ping per repository
#   change-1%  after 1% of the tags moved to new manifests upstream
#              (regmirror: without immutable_tags, every tag checked)
# Each target is then checked with bench/registry_util.py verify (every tag's
# bytes equal the source's, every blob in place), and a sample of moved tags
# with skopeo inspect --raw. Requests are counted in each registry's log (one
# line per request), wall time and peak RSS come from GNU time.
# bench/scale_report.py writes bench/results/scale.md and scale.json: per
# phase, requests per tag on each side, seconds, peak RSS, and the growth of
# each from the smallest size to the largest.
#
# skopeo copies one image after the other, so its first copy of the largest
# sizes takes long: above SKOPEO_FIRST_MAX tags (default 1000) its first copy
# is not measured and its target starts as a copy of the storage regmirror's
# first copy wrote (verified identical to the source afterwards either way);
# its no-op and change-1% phases are measured at every size.
#
# Wall time moves with the machine's load; CPU seconds (user + system, from
# GNU time) much less, so both are recorded, with the load average at the
# start of each phase.
#
# Environment: SIZES (default "1000 10000"), REPOS (default 200), LAYOUTS
# (default "one-repo many-repos"), SKOPEO=0 (no skopeo), PLAIN=0 (no plain
# copier), SKOPEO_FIRST_MAX, REGMIRROR_BIN (use this binary instead of cargo
# build --release), RESULTS (default bench/results), NAME (file names of the
# results, default scale), KEEP_WORKDIR=1.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$BENCH_ROOT"

SIZES="${SIZES:-1000 10000}"
REPOS="${REPOS:-200}"
SKOPEO="${SKOPEO:-1}"
PLAIN="${PLAIN:-1}"
NAME="${NAME:-scale}"
SKOPEO_FIRST_MAX="${SKOPEO_FIRST_MAX:-1000}"
LAYOUTS="${LAYOUTS:-one-repo many-repos}"
RESULTS="${RESULTS:-$BENCH_ROOT/bench/results}"
for n in $SIZES; do
    if ! [[ "$n" =~ ^[1-9][0-9]*$ ]] || [ $((n % REPOS)) != 0 ]; then
        fail "SIZES: $n is not a whole multiple of REPOS=$REPOS"
    fi
done
COMMAND="SIZES=\"$SIZES\" REPOS=$REPOS LAYOUTS=\"$LAYOUTS\" SKOPEO=$SKOPEO PLAIN=$PLAIN SKOPEO_FIRST_MAX=$SKOPEO_FIRST_MAX NAME=$NAME bash bench/scale.sh"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

section "Prerequisites"
bench_prerequisites
bench_init scale
TOOLS=(regmirror)
[ "$SKOPEO" = 0 ] || TOOLS+=(skopeo)
if [ "$PLAIN" != 0 ]; then
    TOOLS+=(plain)
    PLAIN_TARGET="${CARGO_TARGET_DIR:-$BENCH_ROOT/bench/plain-copier/target}"
    note "building the plain copier (bench/plain-copier, cargo build --release --locked)"
    cargo build --release --locked --quiet --manifest-path bench/plain-copier/Cargo.toml \
        --target-dir "$PLAIN_TARGET" || fail "cargo build of bench/plain-copier failed (see above)"
    PLAIN_BIN="$PLAIN_TARGET/release/plain-copier"
fi
PHASES="$BENCH_TMP/phases.tsv"
: >"$PHASES"
FAILED=0

# write_configs SOURCE TARGET DIR REPOS TAGS_PER_REPO
write_configs() {
    python3 - "$@" <<'EOF'
import sys
src, dst, out, repos = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
names = [f"bench/r{i:03d}" for i in range(repos)]
with open(f"{out}/regmirror.toml", "w") as f:
    for n in names:
        f.write(f'[[mirror]]\nsource = "{src}/{n}"\ntarget = "{dst}/{n}"\n\n')
# Same directory, so the same run-state store (.regmirror-state beside it).
with open(f"{out}/regmirror-immutable.toml", "w") as f:
    for n in names:
        f.write(f'[[mirror]]\nsource = "{src}/{n}"\ntarget = "{dst}/{n}"\nimmutable_tags = \'t[0-9]+\'\n\n')
with open(f"{out}/skopeo-sync.yml", "w") as f:
    f.write(f"{src}:\n  tls-verify: false\n  images:\n")
    for n in names:
        f.write(f"    {n}: []\n")
EOF
}

# phase TOOL LAYOUT SIZE PHASE CMD...: time CMD and record its request windows.
phase() {
    local tool="$1" layout="$2" size="$3" name="$4" rec s0 t0 s1 t1 secs rss user sys rc=0 load
    shift 4
    rec="$BENCH_TMP/$tool-$layout-$size-$name"
    load="$(cut -d' ' -f1 /proc/loadavg)"
    s0=$(log_pos "$SRC_LOG")
    t0=$(log_pos "${DLOG[$tool]}")
    /usr/bin/time -f '%e %M %U %S' -o "$rec.time" "$@" >"$rec.log" 2>&1 || rc=$?
    sleep 0.3 # let the registries flush their last log lines
    read -r secs rss user sys < <(tail -n 1 "$rec.time")
    s1=$(log_pos "$SRC_LOG")
    t1=$(log_pos "${DLOG[$tool]}")
    if [ "$rc" != 0 ]; then
        FAILED=1
        note "$tool $layout $size $name FAILED (exit $rc); last lines of $rec.log:"
        tail -n 5 "$rec.log" | sed 's/^/        /'
    else
        note "$tool $layout $size $name: ${secs} s (CPU ${user} + ${sys} s, load $load), peak RSS $((rss / 1024)) MiB"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$layout" "$size" "$name" "$secs" \
        "$rss" "$rc" "$SRC_LOG" "$s0" "$s1" "${DLOG[$tool]}" "$t0" "$t1" \
        "$(python3 -c "print(round($user + $sys, 2))")" "$load" >>"$PHASES"
}

# check TOOL REPOS TAGS_PER_REPO: the target mirrors the source.
check() {
    local tool="$1" repos="$2" tpr="$3" args=() i repo tag a b
    for i in $(seq 0 $((repos - 1))); do args+=(--repo "$(printf 'bench/r%03d' "$i")"); done
    if python3 bench/registry_util.py verify --src "$SRC" --dst "${DST[$tool]}" "${args[@]}" >"$BENCH_TMP/verify" 2>&1; then
        note "$tool: $(cat "$BENCH_TMP/verify")"
    else
        FAILED=1
        note "$tool: the target does not mirror the source:"
        sed 's/^/        /' "$BENCH_TMP/verify"
    fi
    # An independent reader on a sample of moved tags (tag 0 of the first repositories moved).
    while read -r repo tag; do
        a=$(skopeo inspect --raw --tls-verify=false "docker://$SRC/$repo:$tag" | sha256sum | cut -d' ' -f1)
        b=$( (skopeo inspect --raw --tls-verify=false "docker://${DST[$tool]}/$repo:$tag" 2>/dev/null || true) |
            sha256sum | cut -d' ' -f1)
        [ "$a" = "$b" ] || { FAILED=1; note "$tool: skopeo reads $repo:$tag with another digest on the target"; }
    done < <(python3 bench/gen_scale.py refs --repos "$repos" --tags-per-repo "$tpr" | awk '$2 == "t00000"' | head -n 5)
}

declare -A DST=() DLOG=() DPID=()
for size in $SIZES; do
    for layout in $LAYOUTS; do
        if [ "$layout" = one-repo ]; then repos=1; else repos="$REPOS"; fi
        tpr=$((size / repos))
        section "$layout: $repos repositories x $tpr tags = $size tags"
        start_registry "source-$layout-$size"
        SRC="$REG_ADDR" SRC_LOG="$REG_LOG" SRC_PID="$REG_PID"
        python3 bench/gen_scale.py seed --registry "$SRC" --repos "$repos" --tags-per-repo "$tpr" ||
            fail "seeding $SRC failed"
        DST=() DLOG=() DPID=()
        for tool in "${TOOLS[@]}"; do
            start_registry "target-$tool-$layout-$size"
            DST[$tool]="$REG_ADDR" DLOG[$tool]="$REG_LOG" DPID[$tool]="$REG_PID"
            dir="$BENCH_TMP/target-$tool-$layout-$size"
            write_configs "$SRC" "$REG_ADDR" "$dir" "$repos"
        done
        # cmd_of TOOL [CONFIG]: the command of TOOL (regmirror: with CONFIG, default regmirror.toml).
        cmd_of() {
            local dir="$BENCH_TMP/target-$1-$layout-$size" i plain_repos=()
            case "$1" in
            regmirror) CMD=("$REGMIRROR" sync --config "$dir/${2:-regmirror.toml}") ;;
            skopeo) CMD=(skopeo sync --all --preserve-digests --src yaml --dest docker --dest-tls-verify=false
                "$dir/skopeo-sync.yml" "${DST[$1]}/bench") ;;
            plain)
                for i in $(seq 0 $((repos - 1))); do plain_repos+=(--repo "$(printf 'bench/r%03d' "$i")"); done
                CMD=("$PLAIN_BIN" --src "$SRC" --dst "${DST[$1]}" --jobs 8 "${plain_repos[@]}")
                ;;
            esac
        }
        for tool in "${TOOLS[@]}"; do
            cmd_of "$tool"
            if [ "$tool" = plain ]; then
                # It copies everything every time: only its first copy is a
                # figure, checked before the source changes.
                phase "$tool" "$layout" "$size" first "${CMD[@]}"
                check "$tool" "$repos" "$tpr"
                stop_registry "${DPID[$tool]}"
                continue
            fi
            if [ "$tool" = skopeo ] && [ "$size" -gt "$SKOPEO_FIRST_MAX" ]; then
                stop_registry "${DPID[$tool]}"
                rm -rf "$BENCH_TMP/target-$tool-$layout-$size/storage"
                start_registry "target-$tool-$layout-$size-copy" "${DST[$tool]##*:}" \
                    "$BENCH_TMP/target-regmirror-$layout-$size/storage"
                DLOG[$tool]="$REG_LOG" DPID[$tool]="$REG_PID"
                note "skopeo's target starts as a copy of regmirror's first copy ($size > SKOPEO_FIRST_MAX=$SKOPEO_FIRST_MAX)"
            else
                phase "$tool" "$layout" "$size" first "${CMD[@]}"
            fi
            if [ "$tool" = regmirror ]; then
                cmd_of "$tool" regmirror-immutable.toml
                phase "$tool" "$layout" "$size" no-op "${CMD[@]}"
                phase "$tool" "$layout" "$size" no-op-immutable "${CMD[@]}"
            else
                phase "$tool" "$layout" "$size" no-op "${CMD[@]}"
            fi
        done
        python3 bench/gen_scale.py change --registry "$SRC" --repos "$repos" --tags-per-repo "$tpr" --percent 1 ||
            fail "changing tags on $SRC failed"
        for tool in "${TOOLS[@]}"; do
            [ "$tool" != plain ] || continue
            cmd_of "$tool"
            phase "$tool" "$layout" "$size" change-1% "${CMD[@]}"
            check "$tool" "$repos" "$tpr"
            stop_registry "${DPID[$tool]}"
        done
        for tool in "${TOOLS[@]}"; do
            [ "${KEEP_WORKDIR:-0}" = 1 ] || rm -rf "$BENCH_TMP/target-$tool-$layout-$size"*/storage
        done
        stop_registry "$SRC_PID"
        [ "${KEEP_WORKDIR:-0}" = 1 ] || rm -rf "$BENCH_TMP/source-$layout-$size/storage"
    done
done

section "Results"
mkdir -p "$RESULTS"
python3 bench/scale_report.py --phases "$PHASES" --repos "$REPOS" \
    --versions "$("$REGMIRROR" --version), $(skopeo --version), $(docker-registry --version 2>&1 | head -n 1)" \
    --machine "$(nproc) CPUs, $(uname -sr), load average before the run: $LOAD_BEFORE" \
    --command "$COMMAND" --markdown "$RESULTS/$NAME.md" --json "$RESULTS/$NAME.json"
cat "$RESULTS/$NAME.md"
note "written to ${RESULTS#"$BENCH_ROOT"/}/$NAME.md and $NAME.json"
[ "$FAILED" = 0 ] || fail "at least one run failed or left its target different from the source (details above)"
BENCH_OK=1
