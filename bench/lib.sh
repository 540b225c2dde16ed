# shellcheck shell=bash
# Shared helpers of the bench scripts (sourced, not run).
#
# Registries are CNCF distribution (docker-registry) on 127.0.0.1 only, each
# with its storage and JSON log under $BENCH_TMP/NAME; every one started here
# is stopped by the EXIT trap.

BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Where workloads, registry storage and results go (BENCH_OUT overrides it).
BENCH_OUT="${BENCH_OUT:-$BENCH_ROOT/bench/out}"
case "$BENCH_OUT" in /*) ;; *) BENCH_OUT="$PWD/$BENCH_OUT" ;; esac
BENCH_TMP=""
BENCH_PIDS=()
BENCH_OK=0

note() { printf '    %s\n' "$*"; }
section() { printf '\n==> %s\n' "$*"; }
fail() {
    printf 'benchmark failed: %s\n' "$*" >&2
    exit 1
}

bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$BENCH_TMP" ] && [ -d "$BENCH_TMP" ]; then
        if [ "$BENCH_OK" = 1 ] && [ "${KEEP_WORKDIR:-0}" != 1 ]; then
            rm -rf "$BENCH_TMP"
        else
            printf 'registry logs and storage kept in %s\n' "$BENCH_TMP" >&2
        fi
    fi
}

# bench_init NAME: temporary directory (under $BENCH_OUT, so it shares the
# disk of the workload) and the cleanup trap.
bench_init() {
    mkdir -p "$BENCH_OUT"
    BENCH_TMP="$(mktemp -d "$BENCH_OUT/$1.XXXXXX")"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# Install what is missing: docker-registry, skopeo, GNU time; build regmirror
# unless REGMIRROR_BIN names a binary. Sets REGMIRROR.
bench_prerequisites() {
    local missing=()
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    command -v skopeo >/dev/null || missing+=(skopeo)
    [ -x /usr/bin/time ] || missing+=(time)
    command -v python3 >/dev/null || missing+=(python3)
    if [ "${#missing[@]}" -gt 0 ]; then
        [ "$(id -u)" = 0 ] || fail "missing ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}"
        note "installing ${missing[*]} with apt-get"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; then
            apt-get update
            DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" ||
                fail "apt-get could not install ${missing[*]}; check the apt sources"
        fi
    fi
    if [ -n "${REGMIRROR_BIN:-}" ]; then
        REGMIRROR="$REGMIRROR_BIN"
        [ -x "$REGMIRROR" ] || fail "REGMIRROR_BIN=$REGMIRROR is not an executable file"
    else
        command -v cargo >/dev/null || fail "cargo not found; install Rust or set REGMIRROR_BIN to a regmirror binary"
        (cd "$BENCH_ROOT" && cargo build --release --quiet) || fail "cargo build --release failed"
        REGMIRROR="$BENCH_ROOT/target/release/regmirror"
    fi
    note "$("$REGMIRROR" --version), $(skopeo --version), $(docker-registry --version 2>&1 | head -n 1)"
}

# A free TCP port on 127.0.0.1 (the kernel picks it).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_registry NAME [PORT [SNAPSHOT [EXTRA]]]: run a registry in
# $BENCH_TMP/NAME, on PORT (default: a free one), whose storage starts as a
# copy of the directory SNAPSHOT (default: empty), with the YAML EXTRA (e.g. a
# `notifications:` section) appended to its config; sets REG_ADDR
# (host:port), REG_LOG and REG_PID. Waits until GET /v2/ answers 200.
# shellcheck disable=SC2034 # REG_ADDR, REG_LOG and REG_PID are read by the sourcing scripts
start_registry() {
    local name="$1" dir="$BENCH_TMP/$1" port="${2:-}" snapshot="${3:-}" extra="${4:-}" pid
    [ -n "$port" ] || port="$(free_port)"
    [ ! -e "$dir" ] || fail "registry directory $dir already exists"
    mkdir -p "$dir"
    if [ -n "$snapshot" ]; then
        cp -a "$snapshot" "$dir/storage" || fail "copying registry storage $snapshot to $dir/storage failed"
    else
        mkdir -p "$dir/storage"
    fi
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: json
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
    [ -z "$extra" ] || printf '%s\n' "$extra" >>"$dir/config.yml"
    docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
    pid=$!
    BENCH_PIDS+=("$pid")
    for _ in $(seq 1 100); do
        if python3 - "$port" <<'EOF' 2>/dev/null; then
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/", timeout=1) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
            REG_ADDR="127.0.0.1:$port"
            REG_LOG="$dir/registry.log"
            REG_PID="$pid"
            note "registry $name: http://$REG_ADDR"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$dir/registry.log" >&2; fail "registry $name (127.0.0.1:$port) exited at start; log above"; }
        sleep 0.1
    done
    fail "registry $name on 127.0.0.1:$port did not answer GET /v2/ within 10 s; see $dir/registry.log"
}

# seed_big_layer LAYOUT SIZE_MIB: generate (once) the OCI layout LAYOUT of one
# image whose only layer is SIZE_MIB MiB (bench/gen_big_layer.py), start the
# registry "source" and copy the image into it as bench/big:1 with skopeo;
# sets WANT (the image's manifest digest) and SRC_ADDR (the source's host:port).
# shellcheck disable=SC2034 # WANT and SRC_ADDR are read by the sourcing scripts
seed_big_layer() {
    local layout="$1" mib="$2"
    section "Image with a $mib MiB layer"
    python3 "$BENCH_ROOT/bench/gen_big_layer.py" --out "$layout" --mib "$mib"
    WANT="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifest"])' "$layout/big-layer.json")"
    section "Source registry, seeded with skopeo"
    start_registry source
    SRC_ADDR="$REG_ADDR"
    skopeo copy --quiet --preserve-digests --dest-tls-verify=false "oci:$layout:big" "docker://$SRC_ADDR/bench/big:1" ||
        fail "seeding $SRC_ADDR/bench/big:1 from oci:$layout:big failed (see the skopeo error above)"
    note "seeded $SRC_ADDR/bench/big:1 ($WANT)"
}

# stop_registry PID: stop a registry started by start_registry (the EXIT trap
# stops the others).
stop_registry() {
    local pid="$1" i
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for i in "${!BENCH_PIDS[@]}"; do
        [ "${BENCH_PIDS[$i]}" != "$pid" ] || unset 'BENCH_PIDS[i]'
    done
}

# Lines in a registry log so far (a position for count windows).
log_pos() { wc -l <"$1" | tr -d ' '; }

# measure OUT_FILE CMD...: run CMD under GNU time; OUT_FILE gets
# "seconds max_rss_kib exit_status". CMD's output goes to OUT_FILE.log.
measure() {
    local out="$1" rc=0
    shift
    /usr/bin/time -f '%e %M' -o "$out.time" "$@" >"$out.log" 2>&1 || rc=$?
    printf '%s %s\n' "$(tail -n 1 "$out.time")" "$rc" >"$out"
    return 0
}
