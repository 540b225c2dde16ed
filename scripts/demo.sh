#!/usr/bin/env bash
# regmirror demo: mirror the bundled multi-arch image between two local
# registries and show that the digests match on both sides.
#
#   bash scripts/demo.sh
#
# What it does, on a Debian machine without internet (package mirrors only):
#   1. installs docker-registry and skopeo with apt-get when they are missing;
#   2. builds regmirror (cargo build --release);
#   3. starts two registries on free loopback ports ("upstream" and "mirror"),
#      storage in a temporary directory, both stopped on exit;
#   4. seeds upstream from the OCI layout fixtures/demo (tag 1.0) with
#      regmirror import oci:fixtures/demo:1.0 (skopeo only checks the result);
#   5. regmirror import upstream -> mirror, then regmirror inspect on the mirror;
#   6. compares the index digest: fixture, upstream (skopeo), mirror (regmirror
#      and skopeo);
#   7. runs regmirror sync with a generated config: the mirror is up to date,
#      so it must copy nothing and the mirror registry must receive no write.
#
# Environment:
#   REGMIRROR_BIN   use this regmirror binary instead of building one
#   UPSTREAM_PORT   preferred upstream port (default 5001; another free port if taken)
#   MIRROR_PORT     preferred mirror port (default 5002; another free port if taken)
#   KEEP_WORKDIR=1  keep the temporary directory (registry logs and storage)
#   RUST_LOG        regmirror's log filter (default here: warn, so the command
#                   summaries stand out; use info to see every blob)
set -euo pipefail
export RUST_LOG="${RUST_LOG:-warn}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TAG="1.0"
WORKDIR=""
PIDS=()
SUCCESS=0

section() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
    printf 'demo failed: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$WORKDIR" ] && [ -d "$WORKDIR" ]; then
        if [ "$SUCCESS" = 1 ] && [ "${KEEP_WORKDIR:-0}" != 1 ]; then
            rm -rf "$WORKDIR"
        else
            printf 'registry logs and storage kept in %s\n' "$WORKDIR" >&2
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# True when something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A free loopback port: $1 when free, else the first free one from 5100 on.
pick_port() {
    local want="$1" p
    shift
    if ! port_in_use "$want" && ! [[ " $* " == *" $want "* ]]; then
        echo "$want"
        return
    fi
    for p in $(seq 5100 5999); do
        if ! port_in_use "$p" && ! [[ " $* " == *" $p "* ]]; then
            echo "$p"
            return
        fi
    done
    die "no free TCP port on 127.0.0.1 between 5100 and 5999"
}

# HTTP status of GET http://127.0.0.1:$1/v2/ (empty when nothing answers).
v2_status() {
    local line=""
    {
        exec 3<>"/dev/tcp/127.0.0.1/$1" &&
            printf 'GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$1" >&3 &&
            read -r -t 2 line <&3 &&
            exec 3>&-
    } 2>/dev/null || true
    echo "$line" | awk '{print $2}'
}

# start_registry NAME PORT: run docker-registry on 127.0.0.1:PORT, storage and
# log under $WORKDIR/NAME; waits until /v2/ answers.
start_registry() {
    local name="$1" port="$2" dir="$WORKDIR/$1"
    mkdir -p "$dir/storage"
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
    docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 1 100); do
        if [ "$(v2_status "$port")" = 200 ]; then
            info "$name registry: http://127.0.0.1:$port (log: $dir/registry.log)"
            return
        fi
        if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then
            cat "$dir/registry.log" >&2
            die "the $name registry (docker-registry on 127.0.0.1:$port) exited at start; its log is above"
        fi
        sleep 0.1
    done
    die "the $name registry on 127.0.0.1:$port did not answer GET /v2/ within 10 s; see $dir/registry.log"
}

# Requests in a registry log (JSON lines, one "response completed" line per
# request), by method: "HEAD=n GET=n ..." for lines after line $2.
request_counts() {
    local log="$1" skip="${2:-0}" m out=""
    for m in HEAD GET PUT POST PATCH DELETE; do
        out+="$m=$(tail -n +"$((skip + 1))" "$log" | grep '"msg":"response completed' |
            grep -c "\"http.request.method\":\"$m\"" || true) "
    done
    echo "${out% }"
}

# Writes (PUT/POST/PATCH/DELETE) in a registry log after line $2.
write_count() {
    tail -n +"$(($2 + 1))" "$1" | grep '"msg":"response completed' |
        grep -cE '"http.request.method":"(PUT|POST|PATCH|DELETE)"' || true
}

run() {
    printf '    $ %s\n' "$*"
    "$@"
}

###############################################################################
section "1/7 Prerequisites"
missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "${missing[*]} not installed; run as root or: sudo apt-get install -y ${missing[*]}"
    info "installing ${missing[*]} with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" ||
            die "apt-get could not install ${missing[*]}; check the apt sources"
    fi
fi
info "docker-registry: $(command -v docker-registry)"
info "skopeo: $(skopeo --version)"
[ -f fixtures/demo/index.json ] || die "fixtures/demo/index.json is missing; regenerate it with: python3 fixtures/make_demo.py"
if command -v python3 >/dev/null; then
    python3 fixtures/make_demo.py --check >/dev/null ||
        die "fixtures/demo differs from what fixtures/make_demo.py generates; run: python3 fixtures/make_demo.py --check"
    info "fixtures/demo matches fixtures/make_demo.py"
fi
FIXTURE_DIGEST="$(grep -o '"digest":"sha256:[0-9a-f]\{64\}"' fixtures/demo/index.json | head -n 1 | cut -d'"' -f4)"
[ -n "$FIXTURE_DIGEST" ] || die "no index digest found in fixtures/demo/index.json"
info "fixture index digest: $FIXTURE_DIGEST"

###############################################################################
section "2/7 Build regmirror"
if [ -n "${REGMIRROR_BIN:-}" ]; then
    REGMIRROR="$REGMIRROR_BIN"
    [ -x "$REGMIRROR" ] || die "REGMIRROR_BIN=$REGMIRROR is not an executable file"
else
    command -v cargo >/dev/null || die "cargo not found; install Rust (https://rustup.rs) or set REGMIRROR_BIN"
    run cargo build --release
    REGMIRROR="$ROOT/target/release/regmirror"
fi
info "$("$REGMIRROR" --version)"

###############################################################################
section "3/7 Start two registries (upstream and mirror) on loopback"
WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/regmirror-demo.XXXXXX")"
UP_PORT="$(pick_port "${UPSTREAM_PORT:-5001}")"
MIRROR_PORT="$(pick_port "${MIRROR_PORT:-5002}" "$UP_PORT")"
UP="127.0.0.1:$UP_PORT"
MIRROR="127.0.0.1:$MIRROR_PORT"
start_registry upstream "$UP_PORT"
start_registry mirror "$MIRROR_PORT"
UP_LOG="$WORKDIR/upstream/registry.log"
MIRROR_LOG="$WORKDIR/mirror/registry.log"

SRC="$UP/library/demo:$TAG"
DST="$MIRROR/mirror/demo:$TAG"

###############################################################################
section "4/7 Seed upstream from the bundled OCI layout (regmirror import oci:...)"
run "$REGMIRROR" import "oci:fixtures/demo:$TAG" "$SRC"
UP_DIGEST="$(skopeo inspect --raw --tls-verify=false "docker://$SRC" | sha256sum | cut -d' ' -f1)"
info "upstream $SRC -> sha256:$UP_DIGEST"
[ "sha256:$UP_DIGEST" = "$FIXTURE_DIGEST" ] || die "upstream digest sha256:$UP_DIGEST differs from the fixture's $FIXTURE_DIGEST"

###############################################################################
section "5/7 regmirror import (every platform, digests preserved)"
mirror_before="$(wc -l <"$MIRROR_LOG")"
run "$REGMIRROR" import "$SRC" "$DST"
info "mirror registry requests: $(request_counts "$MIRROR_LOG" "$mirror_before")"
run "$REGMIRROR" inspect "$DST"

###############################################################################
section "6/7 Digests on both sides"
MIRROR_DIGEST_RM="$("$REGMIRROR" inspect --raw "$DST" | sha256sum | cut -d' ' -f1)"
MIRROR_DIGEST_SK="$(skopeo inspect --raw --tls-verify=false "docker://$DST" | sha256sum | cut -d' ' -f1)"
printf '    %-44s %s\n' "fixture (fixtures/demo/index.json)" "$FIXTURE_DIGEST"
printf '    %-44s %s\n' "upstream, skopeo inspect --raw" "sha256:$UP_DIGEST"
printf '    %-44s %s\n' "mirror, regmirror inspect --raw" "sha256:$MIRROR_DIGEST_RM"
printf '    %-44s %s\n' "mirror, skopeo inspect --raw" "sha256:$MIRROR_DIGEST_SK"
[ "$MIRROR_DIGEST_RM" = "$UP_DIGEST" ] && [ "$MIRROR_DIGEST_SK" = "$UP_DIGEST" ] ||
    die "the mirror's index digest differs from upstream's"
# Every child manifest too: skopeo copy --all reads them from the mirror by digest.
for child in $(skopeo inspect --raw --tls-verify=false "docker://$DST" |
    grep -o '"digest":"sha256:[0-9a-f]\{64\}"' | cut -d'"' -f4); do
    got="$(skopeo inspect --raw --tls-verify=false "docker://$MIRROR/mirror/demo@$child" | sha256sum | cut -d' ' -f1)"
    [ "sha256:$got" = "$child" ] || die "child manifest $child on the mirror hashes to sha256:$got"
done
info "OK: same index digest everywhere; every child manifest present on the mirror under its digest"

###############################################################################
section "7/7 regmirror sync: nothing changed, so nothing is copied"
CONFIG="$WORKDIR/regmirror.toml"
cat >"$CONFIG" <<EOF
[[mirror]]
source = "$UP/library/demo"
target = "$MIRROR/mirror/demo"
tags = ["$TAG"]
EOF
info "config $CONFIG:"
sed 's/^/      /' "$CONFIG"
up_before="$(wc -l <"$UP_LOG")"
mirror_before="$(wc -l <"$MIRROR_LOG")"
run "$REGMIRROR" sync --config "$CONFIG" --output json
info "upstream requests: $(request_counts "$UP_LOG" "$up_before")"
info "mirror requests:   $(request_counts "$MIRROR_LOG" "$mirror_before")"
writes="$(write_count "$MIRROR_LOG" "$mirror_before")"
[ "$writes" = 0 ] || die "the no-op sync sent $writes write requests to the mirror registry"
info "OK: the mirror registry received no write"

SUCCESS=1
section "Demo complete"
