#!/usr/bin/env bash
# Replication lag of event-driven mirroring on loopback: a docker-registry
# whose notifications point at `regmirror serve` ([events], a distribution
# source), a mirror whose schedule is never due, ROUNDS pushes of a small
# image, each timed from push done to tag at the target.
# Writes bench/results/events-lag.md. REGMIRROR_BIN picks the binary
# (default: a release build).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
ROUNDS="${ROUNDS:-20}"

bench_init events-lag
bench_prerequisites
section "registries"
events_port="$(free_port)"
secret="Bearer $(python3 -c 'import secrets; print(secrets.token_hex(16))')"
start_registry target
dst="$REG_ADDR"
start_registry source "" "" "notifications:
  endpoints:
    - name: regmirror
      url: http://127.0.0.1:$events_port/events/upstream
      headers:
        Authorization: [\"$secret\"]
      timeout: 2s
      threshold: 3
      backoff: 1s
      ignoredmediatypes:
        - application/octet-stream"
src="$REG_ADDR"
note "source http://$src notifies http://127.0.0.1:$events_port/events/upstream"

section "serve"
printf '%s\n' "$secret" >"$BENCH_TMP/notify-secret"
cat >"$BENCH_TMP/mirror.toml" <<EOC
[server]
listen = "127.0.0.1:$(free_port)"

[events]
listen = "127.0.0.1:$events_port"

[[events.source]]
name = "upstream"
kind = "distribution"
registry = "$src"
secret_file = "notify-secret"

[[mirror]]
name = "lag"
source = "$src/bench/lag"
target = "$dst/mirror/bench/lag"
schedule = "0 0 0 1 1 *"
EOC
"$REGMIRROR" serve --config "$BENCH_TMP/mirror.toml" >"$BENCH_TMP/serve.log" 2>&1 &
BENCH_PIDS+=("$!")
sleep 2

section "$ROUNDS pushes"
lags="$(python3 "$BENCH_ROOT/bench/events_lag.py" --src "$src" --dst "$dst" --repo bench/lag \
    --target-repo mirror/bench/lag --rounds "$ROUNDS")"
mkdir -p "$BENCH_ROOT/bench/results"
python3 - "$lags" "$REGMIRROR" "$ROUNDS" >"$BENCH_ROOT/bench/results/events-lag.md" <<'EOP'
import json, statistics, sys, os, platform
lags = sorted(json.loads(sys.argv[1]))
q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))]
print("# Event-driven replication lag (loopback)\n")
print("`bash bench/events-lag.sh`: a docker-registry (CNCF distribution) whose `notifications` point at")
print("`regmirror serve` (`[events]`, a `distribution` source), one mirror whose schedule is never due;")
print(f"{sys.argv[3]} pushes of a fresh small image (1 KiB layer), each timed from the manifest PUT's answer")
print("to the tag answering HEAD at the target (polled every 10 ms). The receiver waits 300 ms to")
print("coalesce a burst before it runs the mirror.\n")
build = "release" if "/release/" in sys.argv[2] else ("debug" if "/debug/" in sys.argv[2] else "given")
print(f"Binary: {build} build; host: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} when it ended.\n")
print("| Statistic | Seconds |\n|---|---|")
for name, v in [("min", lags[0]), ("median", statistics.median(lags)), ("p90", q(0.9)), ("max", lags[-1])]:
    print(f"| {name} | {v:.3f} |")
EOP
cat "$BENCH_ROOT/bench/results/events-lag.md"
if grep -qF "${secret#Bearer }" "$BENCH_TMP/serve.log"; then fail "the shared secret reached serve's log"; fi
BENCH_OK=1
