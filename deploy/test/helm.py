"""Render and lint the regmirror Helm chart with a real Helm engine.

Usage: helm.py --out DIR [--kube-version V ...] CHART_DIR

Uses the helm-python-sdk package (Helm 4's Go SDK, offline). For every case
below (each chart mode, plus variants of the optional features):
- `helm lint --strict` with the case's values, for every --kube-version: a
  warning or error fails;
- render (`helm template` with release name and namespace "regmirror") to
  DIR/helm-CASE.yaml, for validate.py (Kubernetes schemas, references),
  validate-crds.mjs, promtool and tests/it/deploy.rs (key fields);
- the rendered config.toml of the case to DIR/helm-CASE.config.toml, for
  `regmirror check`.
Prints the rendered file paths, one per line, on stdout; exits 1 on failure.
"""

import argparse
import os
import sys

import yaml
import helm_python as helm

MONITORING = {
    "serviceMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True},
    "grafanaDashboard": {"enabled": True},
}

CASES = {
    # One replica, monitoring and the NetworkPolicy on, a larger /tmp.
    "deployment": {
        "mode": "deployment",
        **MONITORING,
        "networkPolicy": {"enabled": True, "registryPorts": [443, 80, 5000]},
        "tmp": {"sizeLimit": "2Gi"},
    },
    # Sharded, with credentials, a CA bundle and an extra env var.
    "statefulset": {
        "mode": "statefulset",
        "shards": 4,
        **MONITORING,
        "credentials": {
            "existingSecret": "regmirror-credentials",
            "dockerConfigSecret": "regmirror-docker-config",
        },
        "notify": {"existingSecret": "regmirror-notify"},
        "env": [
            {
                "name": "DOCKERHUB_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {
                        "name": "regmirror-credentials",
                        "key": "dockerhub-token",
                        "optional": True,
                    }
                },
            }
        ],
        "extraVolumes": [{"name": "registry-ca", "configMap": {"name": "registry-ca"}}],
        "extraVolumeMounts": [
            {"name": "registry-ca", "mountPath": "/etc/regmirror/ca", "readOnly": True}
        ],
    },
    # Sharded, config from an existing ConfigMap (appended to the render as
    # the user would have created it), no monitoring.
    "statefulset-existing-config": {
        "mode": "statefulset",
        "shards": 2,
        "config": {"existingConfigMap": "my-mirrors", "configKey": "mirrors.toml"},
        "podDisruptionBudget": {"enabled": False},
    },
    # One replica with the three clouds' workload identities on the
    # ServiceAccount (and the Azure label on the pods), next to the user's
    # own annotation.
    "deployment-identity": {
        "mode": "deployment",
        "serviceAccount": {"annotations": {"example.com/owner": "platform"}},
        "identity": {
            "aws": {"roleArn": "arn:aws:iam::111122223333:role/regmirror"},
            "azure": {
                "clientId": "11111111-2222-3333-4444-555555555555",
                "tenantId": "66666666-7777-8888-9999-000000000000",
            },
            "gcp": {"serviceAccount": "regmirror@example-project.iam.gserviceaccount.com"},
        },
    },
    "cronjob": {
        "mode": "cronjob",
        "credentials": {"existingSecret": "regmirror-credentials"},
        "notify": {"existingSecret": "regmirror-notify"},
        "networkPolicy": {"enabled": True},
    },
}


# Values the chart must refuse (values.schema.json): lint reports an error
# and rendering fails. Misspelled keys are refused at every level.
REFUSED = {
    "unknown mode": {"mode": "daemonset"},
    "no shards": {"mode": "statefulset", "shards": 0},
    "too many shards": {"mode": "statefulset", "shards": 1025},
    "misspelled serviceMonitor.enabled": {"serviceMonitor": {"enable": True}},
    "misspelled mode": {"mdoe": "statefulset"},
    "replicas instead of shards": {"replicas": 3},
    "misspelled networkPolicy.enabled": {"networkPolicy": {"enable": True}},
    "misspelled securityContext field": {"securityContext": {"readOnlyRootFileSystem": True}},
    "misspelled config key": {"config": {"existingConfigmap": "x"}},
    "misspelled cronjob key": {"cronjob": {"scheduel": "0 * * * *"}},
    "bad /tmp size type": {"tmp": {"sizeLimit": True}},
    "misspelled identity key": {"identity": {"azure": {"clientID": "x"}}},
    "role name instead of role ARN": {"identity": {"aws": {"roleArn": "regmirror"}}},
}


def configmap(name, key, data):
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "regmirror"},
        "data": {key: data},
    }


# Objects a case's values refer to that the user creates, appended to its
# render so that the reference checks see them.
PROVIDED = {
    "statefulset": [configmap("registry-ca", "ca.crt", "-----BEGIN CERTIFICATE-----\n")],
    "statefulset-existing-config": [
        configmap(
            "my-mirrors",
            "mirrors.toml",
            '[[mirror]]\nsource = "docker.io/library/alpine"\ntarget = "registry.example.com/alpine"\n',
        )
    ],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--kube-version", action="append", default=[])
    ap.add_argument("chart")
    args = ap.parse_args()
    failures = []

    def fail(msg):
        failures.append(msg)
        print(f"FAIL {msg}", file=sys.stderr)

    print(f"helm SDK {helm.helm_sdk_version()}", file=sys.stderr)
    for case, values in CASES.items():
        for kv in args.kube_version or [None]:
            report = helm.lint(args.chart, values, strict=True, kube_version=kv)
            for m in report.get("messages") or []:
                line = f"helm lint ({case}, Kubernetes {kv}): [{m['severity']}] {m['path']}: {m['error']}"
                if m["severity"] >= 2:
                    fail(line)
                else:
                    print(f"note {line}", file=sys.stderr)
            for e in report.get("errors") or []:
                fail(f"helm lint ({case}, Kubernetes {kv}): {e}")
        with helm.Chart.load(args.chart) as chart:
            try:
                chart.validate_schema(values)
                manifests = chart.render(values, name="regmirror", namespace="regmirror")
            except helm.HelmError as e:  # noqa: PERF203
                fail(f"helm render ({case}): {e}")
                continue
        docs = []
        for path in sorted(manifests):
            if path.endswith("NOTES.txt") or not manifests[path].strip():
                continue
            for d in yaml.safe_load_all(manifests[path]):
                if d:
                    docs.append(d)
        docs.extend(PROVIDED.get(case, []))
        cfg = values.get("config") or {}
        cm_name = cfg.get("existingConfigMap") or "regmirror-config"
        key = cfg.get("configKey") or "config.toml"
        config = [
            d["data"][key]
            for d in docs
            if d.get("kind") == "ConfigMap"
            and d["metadata"]["name"] == cm_name
            and key in (d.get("data") or {})
        ]
        if len(config) != 1:
            fail(f"helm render ({case}): expected one ConfigMap {cm_name} with key {key}, found {len(config)}")
        else:
            with open(os.path.join(args.out, f"helm-{case}.config.toml"), "w", encoding="utf-8") as f:
                f.write(config[0])
        out = os.path.join(args.out, f"helm-{case}.yaml")
        with open(out, "w", encoding="utf-8") as f:
            yaml.safe_dump_all(docs, f, sort_keys=False)
        print(f"helm {case}: {len(docs)} objects", file=sys.stderr)
        print(out)
    for what, values in REFUSED.items():
        report = helm.lint(args.chart, values, strict=True)
        if not any(m["severity"] >= 3 for m in report.get("messages") or []):
            fail(f"helm lint accepted values with {what}: {values}")
        with helm.Chart.load(args.chart) as chart:
            try:
                chart.validate_schema(values)
                chart.render(values, name="regmirror", namespace="regmirror")
            except helm.HelmError:
                print(f"refused as expected: {what}", file=sys.stderr)
            else:
                fail(f"helm render accepted values with {what}: {values}")
    # A new inline config rolls the pods (checksum annotation).
    sums = []
    for toml in ('[[mirror]]\nsource = "a.io/x"\ntarget = "b.io/x"\n', '[[mirror]]\nsource = "a.io/y"\ntarget = "b.io/y"\n'):
        with helm.Chart.load(args.chart) as chart:
            text = chart.render({"config": {"toml": toml}}, name="regmirror", namespace="regmirror")
        dep = next(d for d in yaml.safe_load_all(text["regmirror/templates/deployment.yaml"]) if d)
        sums.append((dep["spec"]["template"]["metadata"].get("annotations") or {}).get("checksum/config"))
    if None in sums or sums[0] == sums[1]:
        fail(f"a config change does not change the pod template's checksum/config annotation: {sums}")
    # With watchConfig, `serve` reloads the inline config: no checksum, no rollout.
    with helm.Chart.load(args.chart) as chart:
        text = chart.render({"watchConfig": True}, name="regmirror", namespace="regmirror")
    dep = next(d for d in yaml.safe_load_all(text["regmirror/templates/deployment.yaml"]) if d)
    annotations = dep["spec"]["template"]["metadata"].get("annotations") or {}
    if "checksum/config" in annotations:
        fail("watchConfig renders a checksum/config annotation: a config change would roll the pods")
    if "--watch-config" not in dep["spec"]["template"]["spec"]["containers"][0]["args"]:
        fail("watchConfig does not pass --watch-config")
    if failures:
        print(f"{len(failures)} failure(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
