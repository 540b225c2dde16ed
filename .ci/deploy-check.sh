#!/usr/bin/env bash
# Check the Kubernetes deployment files under deploy/kubernetes without a
# cluster:
#   1. render the base, the with-monitoring and sharded overlays and the
#      cronjob and indexed-job examples with `kubectl kustomize`; lint
#      (strict) and render every mode of the Helm chart deploy/helm/regmirror
#      with a real Helm 4 engine (helm-python-sdk, deploy/test/helm.py);
#   2. validate every rendered object (and the plain example manifests)
#      against the Kubernetes OpenAPI schemas (kubernetes-validate, strict),
#      plus cross-references inside each render (deploy/test/validate.py);
#   3. validate the Prometheus Operator objects (ServiceMonitor,
#      PrometheusRule) against the operator's generated schemas
#      (deploy/test/validate-crds.mjs);
#   4. `promtool check rules` and `promtool test rules` on the alerts;
#   5. `regmirror check` on the base's config.toml and the Helm renders'
#      configs, with --no-credentials and without any Secret (no credential
#      variable set, no secret file): what the pods start with;
#   6. the key fields of the renders (probes, ports, config mount, shard
#      wiring) against the daemon's constants: the ignored tests of
#      tests/it/deploy.rs, given the renders' directory;
#   7. intake: the chart README's values table against values.yaml and
#      values.schema.json (deploy/test/chart-readme.py), and every FROM of
#      deploy/Dockerfile pinned by a digest (REGMIRROR_RELEASE=1: the
#      digests must be set, not placeholders).
#
# Run from anywhere after `cargo build` (needs target/debug/regmirror):
#   bash .ci/deploy-check.sh
# Installs what it lacks (root, Debian 12): kubectl, python3-venv, node/npm,
# helm-python-sdk (PyPI),
# and caches the Python/npm packages and promtool under
# ${DEPLOY_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/regmirror-deploy-check}
# (first run about a minute, later runs a few seconds).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${DEPLOY_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/regmirror-deploy-check}"
BIN="${REGMIRROR_BIN:-$ROOT/target/debug/regmirror}"
K8S_DIR=deploy/kubernetes
# Pinned tool versions.
KUBERNETES_VALIDATE_VERSION=1.37.0
HELM_PYTHON_SDK_VERSION=0.2.2
PROM_OPERATOR_MODELS_VERSION=6.0.0
# Oldest and newest Kubernetes versions the manifests must be valid for.
K8S_VERSIONS=(1.29 1.37)

step() { printf '\n== %s\n' "$*"; }
die() { printf 'deploy-check: %s\n' "$*" >&2; exit 1; }

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || die "need $* but apt-get is missing: install them by hand"
  if [ "$APT_UPDATED" = 0 ]; then
    apt-get update -qq || die "apt-get update failed; cannot install $*"
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed"
}

[ -x "$BIN" ] || die "$BIN not found: build it first (cargo build), or set REGMIRROR_BIN"
mkdir -p "$CACHE"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

step "tools"
# kubectl with a kustomize that knows Components (kustomize >= 3.7, kubectl >= 1.21).
if ! command -v kubectl >/dev/null; then
  if apt-cache show kubectl >/dev/null 2>&1; then apt_install kubectl; else apt_install kubernetes-client; fi
fi
KUSTOMIZE_VERSION="$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\{0,1\}//p')"
case "$KUSTOMIZE_VERSION" in
  [4-9].*|3.[7-9]*|3.[1-9][0-9]*) ;;
  *) die "kubectl's kustomize is ${KUSTOMIZE_VERSION:-missing}; kustomize components need >= 3.7 (kubectl >= 1.21)" ;;
esac
echo "kubectl: $(kubectl version --client 2>/dev/null | head -n1), kustomize $KUSTOMIZE_VERSION"

# kubernetes-validate in a virtualenv (Debian's Python refuses system-wide pip).
VENV="$CACHE/venv"
if [ "$("$VENV/bin/pip" show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p')" != "$KUBERNETES_VALIDATE_VERSION" ]; then
  command -v python3 >/dev/null || apt_install python3
  rm -rf "$VENV"
  python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV"; }
  "$VENV/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    || die "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed"
fi
echo "kubernetes-validate: $("$VENV/bin/pip" show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p')"
# A Helm 4 engine (Helm's Go SDK in a wheel; renders and lints offline).
if [ "$("$VENV/bin/pip" show helm-python-sdk 2>/dev/null | sed -n 's/^Version: //p')" != "$HELM_PYTHON_SDK_VERSION" ]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check "helm-python-sdk==$HELM_PYTHON_SDK_VERSION" \
    || die "pip install helm-python-sdk==$HELM_PYTHON_SDK_VERSION failed"
fi
echo "helm-python-sdk: $HELM_PYTHON_SDK_VERSION ($("$VENV/bin/python" -c 'import helm_python as h; print("Helm SDK", h.helm_sdk_version())'))"

# Prometheus Operator schemas (npm).
NPM_DIR="$CACHE/npm"
MODELS="$NPM_DIR/node_modules/@kubernetes-models/prometheus-operator"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then apt_install nodejs npm; fi
if [ "$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$MODELS/package.json" 2>/dev/null)" != "$PROM_OPERATOR_MODELS_VERSION" ]; then
  mkdir -p "$NPM_DIR"
  [ -f "$NPM_DIR/package.json" ] || echo '{"private": true}' >"$NPM_DIR/package.json"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error \
    "@kubernetes-models/prometheus-operator@$PROM_OPERATOR_MODELS_VERSION" >/dev/null \
    || die "npm install @kubernetes-models/prometheus-operator@$PROM_OPERATOR_MODELS_VERSION failed"
fi
echo "node $(node --version), @kubernetes-models/prometheus-operator $PROM_OPERATOR_MODELS_VERSION"

# promtool, taken from Debian's prometheus package without installing it
# (installing would register and possibly start a Prometheus server).
PROMTOOL="$(command -v promtool || true)"
if [ -z "$PROMTOOL" ]; then
  PROMTOOL="$CACHE/prometheus/usr/bin/promtool"
  if [ ! -x "$PROMTOOL" ]; then
    DEB_DIR="$CACHE/deb"
    mkdir -p "$DEB_DIR"
    chmod 0777 "$DEB_DIR"  # apt downloads as user _apt
    if ! (cd "$DEB_DIR" && apt-get download -qq prometheus 2>/dev/null); then
      apt-get update -qq || die "apt-get update failed; cannot fetch promtool"
      (cd "$DEB_DIR" && apt-get download -qq prometheus) || die "apt-get download prometheus failed"
    fi
    dpkg-deb -x "$(ls "$DEB_DIR"/prometheus_*.deb | head -n1)" "$CACHE/prometheus"
    rm -rf "$DEB_DIR"
  fi
fi
"$PROMTOOL" --version 2>&1 | head -n1

step "render (kubectl kustomize)"
declare -a RENDERED=()
render() {
  local dir="$1" out="$WORK/$2.yaml"
  kubectl kustomize "$dir" >"$out" || die "kubectl kustomize $dir failed"
  echo "$dir: $(grep -c '^kind:' "$out") objects"
  RENDERED+=("$out")
}
render "$K8S_DIR/base" base
render "$K8S_DIR/overlays/with-monitoring" overlay-with-monitoring
render "$K8S_DIR/overlays/sharded" overlay-sharded
render "$K8S_DIR/overlays/with-network-policy" overlay-with-network-policy
render "$K8S_DIR/overlays/with-events" overlay-with-events
render "$K8S_DIR/examples/cronjob" example-cronjob
render "$K8S_DIR/examples/indexed-job" example-indexed-job
for c in aws azure gcp; do render "$K8S_DIR/examples/identity-$c" "example-identity-$c"; done
for f in "$K8S_DIR"/examples/*.yaml; do
  cp "$f" "$WORK/example-$(basename "$f")"
  RENDERED+=("$WORK/example-$(basename "$f")")
done

step "helm chart (lint --strict, render every mode)"
HELM_KUBE_ARGS=()
for v in "${K8S_VERSIONS[@]}"; do HELM_KUBE_ARGS+=(--kube-version "v$v.0"); done
HELM_LIST="$WORK/helm-renders.txt"
"$VENV/bin/python" deploy/test/helm.py --out "$WORK" "${HELM_KUBE_ARGS[@]}" deploy/helm/regmirror >"$HELM_LIST" \
  || die "the Helm chart failed to lint or render (see above)"
while IFS= read -r f; do RENDERED+=("$f"); done <"$HELM_LIST"
[ -s "$HELM_LIST" ] || die "deploy/test/helm.py rendered nothing"
# Every directory holding a kustomization must be covered above.
COVERED="$K8S_DIR/base $K8S_DIR/overlays/with-monitoring $K8S_DIR/overlays/sharded $K8S_DIR/overlays/with-network-policy $K8S_DIR/examples/cronjob $K8S_DIR/examples/indexed-job $K8S_DIR/components/monitoring $K8S_DIR/components/sharded $K8S_DIR/components/network-policy $K8S_DIR/overlays/with-events $K8S_DIR/components/events"
for c in aws azure gcp; do COVERED="$COVERED $K8S_DIR/examples/identity-$c $K8S_DIR/components/identity-$c"; done
while IFS= read -r k; do
  d="$(dirname "$k")"
  case " $COVERED " in *" $d "*) ;; *) die "$d has a kustomization that this script does not render: add it" ;; esac
done < <(find "$K8S_DIR" -name kustomization.yaml | sort)

step "validate against the Kubernetes schemas"
VERSION_ARGS=()
for v in "${K8S_VERSIONS[@]}"; do VERSION_ARGS+=(--k8s-version "$v"); done
"$VENV/bin/python" deploy/test/validate.py --out "$WORK" "${VERSION_ARGS[@]}" "${RENDERED[@]}"

step "validate Prometheus Operator objects"
node deploy/test/validate-crds.mjs "$NPM_DIR/node_modules" "$WORK/crds.json"

step "promtool"
RULE_FILES=("$WORK"/rules-*.yaml)
[ -e "${RULE_FILES[0]}" ] || die "no PrometheusRule found in the rendered overlay"
"$PROMTOOL" check rules "${RULE_FILES[@]}"
for r in "${RULE_FILES[@]}"; do
  t="$WORK/test-$(basename "$r")"
  mkdir -p "$t"
  cp "$r" "$t/rules.yaml"
  cp "$K8S_DIR/components/monitoring/tests/alerts.test.yaml" "$t/"
  "$PROMTOOL" test rules "$t/alerts.test.yaml"
done
# Alerts name metrics that the daemon exports: every one must be defined in
# the sources (a histogram's _bucket, _sum and _count series by its name).
MISSING=()
for m in $(grep -ohE '\bregmirror_[a-z0-9_]+' "${RULE_FILES[@]}" | sort -u); do
  base="${m%_bucket}"; base="${base%_sum}"; base="${base%_count}"
  grep -rqF "\"$m\"" src/ || grep -rqF "\"$base\"" src/ || MISSING+=("$m")
done
if [ "${#MISSING[@]}" -gt 0 ]; then
  die "alerts use metrics not defined in src/: ${MISSING[*]}"
fi

step "regmirror check"
"$BIN" check --no-credentials --config "$K8S_DIR/base/config.toml" \
  || die "regmirror check rejected $K8S_DIR/base/config.toml (exit $?)"
# The shipped configs start with no Secret: credentials are read as the pod
# would, with none of the variables set and none of the files present.
for c in "$K8S_DIR/base/config.toml" "$WORK/helm-deployment.config.toml"; do
  env -u DOCKERHUB_TOKEN -u DOCKER_CONFIG -u REGISTRY_AUTH_FILE HOME="$WORK/no-home" \
    "$BIN" check --config "$c" >/dev/null \
    || die "$c needs a credential that a cluster without Secrets lacks (regmirror check without --no-credentials failed): comment its credential lines out"
  echo "$c: starts without any Secret"
done
for c in "$WORK"/helm-*.config.toml; do
  "$BIN" check --config "$c" --shards --shard-count 3 >/dev/null \
    || die "regmirror check rejected the config rendered by the Helm chart ($(basename "$c"))"
  echo "$(basename "$c"): ok"
done

step "key fields of the renders (tests/it/deploy.rs, ignored tests)"
REGMIRROR_DEPLOY_RENDERS="$WORK" cargo test --locked --quiet --test it deploy:: -- --ignored \
  || die "the rendered manifests disagree with the daemon (tests/it/deploy.rs --ignored)"

step "intake: chart README, Dockerfile digests"
"$VENV/bin/python" deploy/test/chart-readme.py --check deploy/helm/regmirror \
  || die "the chart README disagrees with values.yaml (see above)"
DOCKERFILE=deploy/Dockerfile
PLACEHOLDER='^sha256:UNSET-pass-build-arg-[A-Z_]+$'
while read -r from; do
  [[ "$from" =~ ^FROM\ [^[:space:]]+@\$\{([A-Z_]+_DIGEST)\}(\ AS\ [a-z]+)?$ ]] \
    || die "$DOCKERFILE: \"$from\" is not pinned by a digest ARG (FROM \${IMAGE}@\${NAME_DIGEST})"
  arg="${BASH_REMATCH[1]}"
  value="$(sed -n "s/^ARG $arg=//p" "$DOCKERFILE")"
  if [[ "$value" =~ ^sha256:[0-9a-f]{64}$ ]]; then
    echo "$arg: $value"
  elif [[ "$value" =~ $PLACEHOLDER ]]; then
    [ "${REGMIRROR_RELEASE:-0}" = 1 ] \
      && die "$DOCKERFILE: $arg is still a placeholder; a release build needs the base image's digest (see the Dockerfile's header)"
    echo "$arg: not set in the Dockerfile (placeholder; builds must pass --build-arg $arg=sha256:...)"
  else
    die "$DOCKERFILE: ARG $arg=$value is neither a sha256 digest nor the placeholder"
  fi
done < <(grep '^FROM ' "$DOCKERFILE")

echo
echo "deploy-check: all checks passed"
