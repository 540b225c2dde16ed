"""Validate rendered Kubernetes manifests of regmirror's deploy/ tree.

Usage: validate.py --out DIR [--k8s-version V ...] FILE...

Each FILE holds one or more YAML documents (kubectl kustomize output or a
plain manifest). Every object is checked:

- built-in kinds against the Kubernetes OpenAPI schemas shipped by the
  kubernetes-validate package, in strict mode (unknown fields are errors),
  for every --k8s-version given; a built-in kind without a schema is an error;
- monitoring.coreos.com kinds (Prometheus Operator CRDs, absent from those
  schemas) are written to DIR/crds.json for validate-crds.mjs, and each
  PrometheusRule's spec to DIR/rules-N.yaml for `promtool check rules`;
- references inside one file: ConfigMaps mounted or referenced by a workload
  exist in that file (kustomize's hash suffix must have been applied), the
  ServiceAccount exists, a ServiceMonitor selects a Service of the file and
  names one of its ports, a Service and a NetworkPolicy select a workload's
  pod labels;
- every pod template meets the `restricted` Pod Security Standard, and a
  Namespace enforces it;
- a Job or CronJob running `sync` ends on exit 5 (images deferred to keep a
  pull budget floor) without a retry (FailJob or FailIndex).

Exits 1 when any check fails, printing one line per failure.
"""

import argparse
import json
import os
import sys

import yaml
from kubernetes_validate import utils as kv

CRD_GROUP = "monitoring.coreos.com/"
WORKLOAD_KINDS = ("Deployment", "Job", "CronJob", "StatefulSet", "DaemonSet")


def pod_spec(obj):
    """The pod template spec of a workload, or None."""
    spec = obj.get("spec") or {}
    if obj["kind"] == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    template = spec.get("template") or {}
    return template.get("spec"), (template.get("metadata") or {}).get("labels") or {}


def configmap_refs(pspec):
    """Names of ConfigMaps a pod spec needs (volumes and env), with optional flags."""
    refs = []
    for vol in pspec.get("volumes") or []:
        cm = vol.get("configMap")
        if cm:
            refs.append((cm["name"], bool(cm.get("optional"))))
    for c in (pspec.get("containers") or []) + (pspec.get("initContainers") or []):
        for env in c.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
            if ref:
                refs.append((ref["name"], bool(ref.get("optional"))))
        for src in c.get("envFrom") or []:
            ref = src.get("configMapRef")
            if ref:
                refs.append((ref["name"], bool(ref.get("optional"))))
    return refs


PSA_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret", "name",
}


def check_restricted(name, pspec, fail):
    """The `restricted` Pod Security Standard (Kubernetes 1.29), as PSA checks it."""
    psc = pspec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pspec.get(key):
            fail(f"{name}: {key} breaks the restricted Pod Security Standard")
    for vol in pspec.get("volumes") or []:
        other = set(vol) - PSA_VOLUMES
        if other:
            fail(f"{name}: volume {vol.get('name')!r} of type {sorted(other)} is not allowed by the restricted standard")
    containers = (pspec.get("containers") or []) + (pspec.get("initContainers") or [])
    for c in containers:
        sc = c.get("securityContext") or {}
        what = f"{name} container {c.get('name')!r}"
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(f"{what}: securityContext.allowPrivilegeEscalation must be false (restricted)")
        if sc.get("privileged"):
            fail(f"{what}: privileged (restricted)")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            fail(f"{what}: capabilities.drop must contain ALL (restricted)")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            fail(f"{what}: capabilities.add {caps.get('add')} (restricted)")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            fail(f"{what}: runAsNonRoot must be true on the pod or the container (restricted)")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            fail(f"{what}: runAsUser 0 (restricted)")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            fail(f"{what}: seccompProfile RuntimeDefault or Localhost on the pod or container (restricted)")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                fail(f"{what}: hostPort (restricted)")


def check_exit_5(name, obj, pspec, fail):
    """A Job running `sync` ends on exit 5 without a retry."""
    spec = obj.get("spec") or {}
    if obj["kind"] == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    syncs = [
        c["name"]
        for c in pspec.get("containers") or []
        if (c.get("args") or c.get("command") or [None])[0] == "sync"
    ]
    if not syncs:
        return
    for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
        codes = rule.get("onExitCodes") or {}
        if (
            codes.get("operator") == "In"
            and 5 in (codes.get("values") or [])
            and codes.get("containerName") in (None, *syncs)
            and rule.get("action") in ("FailJob", "FailIndex")
        ):
            return
    fail(
        f"{name}: runs `sync` but its podFailurePolicy has no FailJob/FailIndex rule for exit 5 "
        "(images deferred to keep a pull budget floor): it would be retried"
    )


def check_references(path, objs, fail):
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    configmaps = {o["metadata"]["name"] for o in by_kind.get("ConfigMap", [])}
    accounts = {o["metadata"]["name"] for o in by_kind.get("ServiceAccount", [])}
    pod_labels = []
    for kind in WORKLOAD_KINDS:
        for o in by_kind.get(kind, []):
            pspec, labels = pod_spec(o)
            name = f"{kind}/{o['metadata']['name']}"
            if pspec is None:
                fail(f"{path}: {name} has no pod template")
                continue
            pod_labels.append(labels)
            check_restricted(f"{path}: {name}", pspec, fail)
            if kind in ("Job", "CronJob"):
                check_exit_5(f"{path}: {name}", o, pspec, fail)
            for cm, optional in configmap_refs(pspec):
                if cm not in configmaps and not optional:
                    fail(
                        f"{path}: {name} needs ConfigMap {cm!r}, which this render does "
                        f"not contain (have: {sorted(configmaps)}); a plain manifest "
                        "cannot use a kustomize-generated (hash-suffixed) ConfigMap"
                    )
            sa = pspec.get("serviceAccountName")
            if sa and by_kind.get("ServiceAccount") is not None and sa not in accounts:
                fail(f"{path}: {name} runs as ServiceAccount {sa!r}, not in this render")
    services = by_kind.get("Service", [])
    for svc in services:
        selector = (svc.get("spec") or {}).get("selector") or {}
        if pod_labels and not any(
            all(labels.get(k) == v for k, v in selector.items()) for labels in pod_labels
        ):
            fail(
                f"{path}: Service/{svc['metadata']['name']} selector {selector} matches "
                "no workload's pod labels"
            )
    for ns in by_kind.get("Namespace", []):
        labels = ns["metadata"].get("labels") or {}
        if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            fail(f"{path}: Namespace/{ns['metadata']['name']} does not enforce the restricted Pod Security Standard")
    for np in by_kind.get("NetworkPolicy", []):
        match = ((np.get("spec") or {}).get("podSelector") or {}).get("matchLabels") or {}
        if pod_labels and not any(
            all(labels.get(k) == v for k, v in match.items()) for labels in pod_labels
        ):
            fail(f"{path}: NetworkPolicy/{np['metadata']['name']} podSelector {match} matches no workload's pod labels")
    for sm in by_kind.get("ServiceMonitor", []):
        name = f"ServiceMonitor/{sm['metadata']['name']}"
        match = ((sm.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selected = [
            s
            for s in services
            if all((s["metadata"].get("labels") or {}).get(k) == v for k, v in match.items())
        ]
        if not selected:
            fail(f"{path}: {name} matchLabels {match} selects no Service of this render")
            continue
        port_names = {p.get("name") for s in selected for p in s["spec"].get("ports", [])}
        for ep in sm["spec"].get("endpoints") or []:
            if ep.get("port") not in port_names:
                fail(
                    f"{path}: {name} scrapes port {ep.get('port')!r}; the selected "
                    f"Service has ports {sorted(p for p in port_names if p)}"
                )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for CRD objects and rule files")
    ap.add_argument("--k8s-version", action="append", default=[])
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    versions = args.k8s_version or [kv.latest_version()]
    failures = []

    def fail(msg):
        failures.append(msg)
        print(f"FAIL {msg}")

    crds = []
    rules = 0
    checked = 0
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            try:
                objs = [d for d in yaml.safe_load_all(f) if d]
            except yaml.YAMLError as e:
                fail(f"{path}: not valid YAML: {e}")
                continue
        if not objs:
            fail(f"{path}: no Kubernetes object in the file")
            continue
        for obj in objs:
            if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
                fail(f"{path}: a document is not a Kubernetes object (no kind/apiVersion)")
                continue
            name = f"{obj['kind']}/{(obj.get('metadata') or {}).get('name', '?')}"
            checked += 1
            if obj["apiVersion"].startswith(CRD_GROUP):
                crds.append({"file": path, "object": obj})
                if obj["kind"] == "PrometheusRule":
                    rules += 1
                    out = os.path.join(args.out, f"rules-{rules}.yaml")
                    with open(out, "w", encoding="utf-8") as rf:
                        yaml.safe_dump(obj.get("spec") or {}, rf, sort_keys=False)
                    print(f"ok   {path}: {name} spec written to {out} for promtool")
                continue
            for version in versions:
                try:
                    kv.validate(obj, version, strict=True)
                except kv.ValidationError as e:
                    where = ".".join(str(p) for p in e.path) or "(top level)"
                    fail(f"{path}: {name} is invalid for Kubernetes {version}: {where}: {e.message}")
                except kv.SchemaNotFoundError as e:
                    fail(f"{path}: {name}: {e.message}")
                except (kv.InvalidSchemaError, kv.VersionNotSupportedError) as e:
                    fail(f"{path}: {name}: cannot validate: {getattr(e, 'message', e)}")
            print(f"ok   {path}: {name} (Kubernetes {', '.join(versions)}, strict)")
        check_references(path, [o for o in objs if isinstance(o, dict) and "kind" in o], fail)

    with open(os.path.join(args.out, "crds.json"), "w", encoding="utf-8") as f:
        json.dump(crds, f)
    print(f"{checked} objects checked, {len(crds)} Prometheus Operator objects left to validate-crds.mjs")
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
