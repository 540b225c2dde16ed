#!/usr/bin/env bash
# Install what the tests need (Debian: containerd, docker-registry, podman,
# skopeo, umoci, prometheus and prometheus-pushgateway for the dashboard
# and Job metrics tests, kubectl for the
# deployment checks) and run the whole test suite.
# Run as root on a fresh machine, or as any user once the packages are
# installed.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v containerd >/dev/null || need+=(containerd)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v podman >/dev/null || need+=(podman)
command -v skopeo >/dev/null || need+=(skopeo)
command -v umoci >/dev/null || need+=(umoci)
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-pushgateway >/dev/null || need+=(prometheus-pushgateway)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need[*]} (run as root, or install them first)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# moto plays the AWS APIs (STS, ECR) on loopback for the ECR identity tests.
if ! command -v moto_server >/dev/null; then
  python3 -m pip install -q 'moto[server]' || {
    echo "missing moto_server: pip install 'moto[server]'" >&2
    exit 1
  }
fi
# sigstore-python cross-checks the test Sigstore's keyless signatures
# (tests/it/policy_xcheck.rs); Debian 12's pip needs PIP_BREAK_SYSTEM_PACKAGES
# to install outside a virtual environment.
if ! command -v sigstore >/dev/null; then
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q 'sigstore==4.5.1' || {
    echo "missing sigstore: pip install 'sigstore==4.5.1'" >&2
    exit 1
  }
fi

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo build --locked --all-targets
cargo test --locked --all-targets -- --test-threads=4
if [ -f .ci/deploy-check.sh ]; then
  bash .ci/deploy-check.sh
fi
# The bundled demo image is what fixtures/make_demo.py generates, and the demo
# runs end to end (with the debug binary just built).
python3 fixtures/make_demo.py --check
REGMIRROR_BIN=target/debug/regmirror bash scripts/demo.sh
