//! The Kubernetes manifests under `deploy/` agree with the daemon: probe
//! paths, metrics port, config path and shutdown grace, read from the same
//! constants and config file the binary uses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_norway::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn base_dir() -> PathBuf {
    deploy_dir().join("kubernetes").join("base")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The single YAML document of `path`.
fn yaml(path: &Path) -> Value {
    serde_norway::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// Follow `keys` (map keys, or list indices written as numbers) into `v`.
fn at<'a>(v: &'a Value, what: &str, keys: &[&str]) -> &'a Value {
    let mut cur = v;
    for k in keys {
        let next = match k.parse::<usize>() {
            Ok(i) => cur.get(i),
            Err(_) => cur.get(*k),
        };
        cur = next.unwrap_or_else(|| panic!("{what}: no `{}`", keys.join(".")));
    }
    cur
}

fn str_at<'a>(v: &'a Value, what: &str, keys: &[&str]) -> &'a str {
    at(v, what, keys)
        .as_str()
        .unwrap_or_else(|| panic!("{what}: `{}` is not a string", keys.join(".")))
}

fn list_at<'a>(v: &'a Value, what: &str, keys: &[&str]) -> &'a Vec<Value> {
    at(v, what, keys)
        .as_sequence()
        .unwrap_or_else(|| panic!("{what}: `{}` is not a list", keys.join(".")))
}

fn strings(v: &[Value], what: &str) -> Vec<String> {
    v.iter()
        .map(|a| {
            a.as_str()
                .unwrap_or_else(|| panic!("{what}: {a:?} is not a string"))
                .to_string()
        })
        .collect()
}

fn deployment() -> Value {
    yaml(&base_dir().join("deployment.yaml"))
}

fn pod_spec(deploy: &Value) -> &Value {
    at(deploy, "deployment.yaml", &["spec", "template", "spec"])
}

fn container<'a>(pod: &'a Value, what: &str) -> &'a Value {
    let containers = list_at(pod, what, &["containers"]);
    assert_eq!(containers.len(), 1, "{what}: expected one container");
    &containers[0]
}

/// The base config.toml as plain TOML.
fn base_config() -> toml::Table {
    let path = base_dir().join("config.toml");
    read(&path)
        .parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("{} is not valid TOML: {e}", path.display()))
}

/// The port a probe or Service names, resolved through the container's
/// named ports.
fn resolve_port(c: &Value, port: &Value, what: &str) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port
        .as_str()
        .unwrap_or_else(|| panic!("{what}: port {port:?} is neither a number nor a name"));
    list_at(c, what, &["ports"])
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|p| p.get("containerPort"))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{what}: no container port named {name:?}"))
}

/// `[server] listen` of the base config, or the daemon's default.
fn listen_port() -> u16 {
    let config = base_config();
    let listen = config
        .get("server")
        .and_then(|s| s.get("listen"))
        .and_then(|l| l.as_str())
        .unwrap_or(regmirror::serve::DEFAULT_LISTEN);
    listen
        .parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("config.toml: [server] listen {listen:?}: {e}"))
        .port()
}

#[test]
fn probes_use_the_daemon_health_paths_on_the_metrics_port() {
    let d = deployment();
    let c = container(pod_spec(&d), "deployment.yaml");
    let what = "deployment.yaml container";
    assert_eq!(
        str_at(c, what, &["livenessProbe", "httpGet", "path"]),
        regmirror::serve::HEALTH_PATH
    );
    assert_eq!(
        str_at(c, what, &["readinessProbe", "httpGet", "path"]),
        regmirror::serve::READY_PATH
    );

    let default_port = regmirror::serve::DEFAULT_LISTEN
        .parse::<SocketAddr>()
        .expect("DEFAULT_LISTEN is a socket address")
        .port();
    let metrics = list_at(c, what, &["ports"])
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some("metrics"))
        .expect("deployment.yaml: the container has a port named `metrics`");
    let container_port = at(metrics, what, &["containerPort"]).as_u64();
    assert_eq!(container_port, Some(u64::from(default_port)));
    // The shipped config must not move the daemon off that port.
    assert_eq!(u64::from(listen_port()), u64::from(default_port));

    for probe in ["livenessProbe", "readinessProbe"] {
        let port = resolve_port(c, at(c, what, &[probe, "httpGet", "port"]), what);
        assert_eq!(port, u64::from(default_port), "{probe} port");
    }
}

#[test]
fn service_and_service_monitor_reach_the_metrics_endpoint() {
    let d = deployment();
    let c = container(pod_spec(&d), "deployment.yaml");
    let svc = yaml(&base_dir().join("service.yaml"));
    let ports = list_at(&svc, "service.yaml", &["spec", "ports"]);
    let metrics = ports
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some("metrics"))
        .expect("service.yaml: a port named `metrics`");
    let target = resolve_port(
        c,
        at(metrics, "service.yaml", &["targetPort"]),
        "service.yaml",
    );
    assert_eq!(target, u64::from(listen_port()));

    let sm_path = deploy_dir().join("kubernetes/components/monitoring/servicemonitor.yaml");
    let sm = yaml(&sm_path);
    let endpoints = list_at(&sm, "servicemonitor.yaml", &["spec", "endpoints"]);
    assert!(!endpoints.is_empty(), "servicemonitor.yaml: no endpoint");
    for ep in endpoints {
        assert_eq!(str_at(ep, "servicemonitor.yaml", &["port"]), "metrics");
        assert_eq!(
            str_at(ep, "servicemonitor.yaml", &["path"]),
            regmirror::serve::METRICS_PATH
        );
    }
}

/// Where the generated config ConfigMap is mounted, with the file name the
/// generator gives the config: `(mount path, config file name)`.
fn config_mount(pod: &Value, what: &str) -> (String, String) {
    let kustomization = yaml(&base_dir().join("kustomization.yaml"));
    let generators = list_at(
        &kustomization,
        "kustomization.yaml",
        &["configMapGenerator"],
    );
    assert_eq!(
        generators.len(),
        1,
        "kustomization.yaml: one configMapGenerator"
    );
    let cm_name = str_at(&generators[0], "kustomization.yaml", &["name"]);
    let files = strings(
        list_at(&generators[0], "kustomization.yaml", &["files"]),
        "kustomization.yaml",
    );
    assert_eq!(
        files,
        ["config.toml"],
        "kustomization.yaml: the generator ships config.toml"
    );

    let volume = list_at(pod, what, &["volumes"])
        .iter()
        .find(|v| {
            v.get("configMap")
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
                == Some(cm_name)
        })
        .unwrap_or_else(|| panic!("{what}: no volume of ConfigMap {cm_name}"));
    let volume_name = str_at(volume, what, &["name"]);
    let c = container(pod, what);
    let mount = list_at(c, what, &["volumeMounts"])
        .iter()
        .find(|m| m.get("name").and_then(Value::as_str) == Some(volume_name))
        .unwrap_or_else(|| panic!("{what}: volume {volume_name} is not mounted"));
    assert!(
        mount.get("subPath").is_none(),
        "{what}: a subPath mount would never see config updates"
    );
    (
        str_at(mount, what, &["mountPath"]).to_string(),
        files[0].clone(),
    )
}

/// The value following `--config` in `args`.
fn config_arg(args: &[String], what: &str) -> String {
    let i = args
        .iter()
        .position(|a| a == "--config")
        .unwrap_or_else(|| panic!("{what}: args {args:?} have no --config"));
    args.get(i + 1)
        .unwrap_or_else(|| panic!("{what}: --config without a value"))
        .clone()
}

#[test]
fn deployment_serves_the_mounted_config() {
    let d = deployment();
    let pod = pod_spec(&d);
    let c = container(pod, "deployment.yaml");
    let args = strings(
        list_at(c, "deployment.yaml", &["args"]),
        "deployment.yaml args",
    );
    assert_eq!(args.first().map(String::as_str), Some("serve"));
    let (mount, file) = config_mount(pod, "deployment.yaml");
    assert_eq!(
        config_arg(&args, "deployment.yaml"),
        format!("{}/{file}", mount.trim_end_matches('/'))
    );
    assert_eq!(
        at(&d, "deployment.yaml", &["spec", "replicas"]).as_u64(),
        Some(1)
    );
    assert_eq!(
        str_at(&d, "deployment.yaml", &["spec", "strategy", "type"]),
        "Recreate"
    );
}

#[test]
fn cronjob_example_syncs_the_mounted_config() {
    let path = deploy_dir().join("kubernetes/examples/cronjob/cronjob.yaml");
    let cj = yaml(&path);
    let pod = at(
        &cj,
        "cronjob.yaml",
        &["spec", "jobTemplate", "spec", "template", "spec"],
    );
    let c = container(pod, "cronjob.yaml");
    let args = strings(list_at(c, "cronjob.yaml", &["args"]), "cronjob.yaml args");
    assert_eq!(args.first().map(String::as_str), Some("sync"));
    let (mount, file) = config_mount(pod, "cronjob.yaml");
    assert_eq!(
        config_arg(&args, "cronjob.yaml"),
        format!("{}/{file}", mount.trim_end_matches('/'))
    );
    assert_eq!(
        str_at(&cj, "cronjob.yaml", &["spec", "concurrencyPolicy"]),
        "Forbid"
    );
}

#[test]
fn termination_grace_covers_the_shutdown_drain() {
    let config = base_config();
    let grace = match config
        .get("server")
        .and_then(|s| s.get("shutdown_grace_seconds"))
    {
        None => 120,
        Some(v) => v
            .as_integer()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or_else(|| {
                panic!("config.toml: shutdown_grace_seconds {v} is not a count of seconds")
            }),
    };
    let d = deployment();
    let termination = at(
        pod_spec(&d),
        "deployment.yaml",
        &["terminationGracePeriodSeconds"],
    )
    .as_u64()
    .expect("deployment.yaml: terminationGracePeriodSeconds is a number");
    assert!(
        termination > grace,
        "terminationGracePeriodSeconds {termination} must exceed shutdown_grace_seconds {grace}"
    );
}

#[test]
fn shipped_config_loads() {
    let path = base_dir().join("config.toml");
    if let Err(e) = regmirror::sync::config::Config::load(&path) {
        panic!("{} does not load: {e}", path.display());
    }
}

#[test]
fn pods_run_as_the_image_user_with_a_locked_down_context() {
    let dockerfile = read(&deploy_dir().join("Dockerfile"));
    let final_stage = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, last)| last)
        .expect("Dockerfile: a final FROM stage");
    let user = final_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("Dockerfile: the final stage sets USER")
        .trim();
    let uid: u64 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("Dockerfile: USER {user:?} is not numeric"));

    let d = deployment();
    let pod = pod_spec(&d);
    let what = "deployment.yaml";
    assert_eq!(
        at(pod, what, &["securityContext", "runAsUser"]).as_u64(),
        Some(uid)
    );
    assert_eq!(
        at(pod, what, &["securityContext", "runAsNonRoot"]).as_bool(),
        Some(true)
    );
    assert_eq!(
        at(pod, what, &["automountServiceAccountToken"]).as_bool(),
        Some(false)
    );
    let sc = at(container(pod, what), what, &["securityContext"]);
    assert_eq!(
        at(sc, what, &["readOnlyRootFilesystem"]).as_bool(),
        Some(true)
    );
    assert_eq!(
        at(sc, what, &["allowPrivilegeEscalation"]).as_bool(),
        Some(false)
    );
    assert_eq!(
        strings(list_at(sc, what, &["capabilities", "drop"]), what),
        ["ALL"]
    );
    assert_eq!(
        str_at(sc, what, &["seccompProfile", "type"]),
        "RuntimeDefault"
    );
    // The root filesystem is read-only: /tmp must be a writable volume.
    let c = container(pod, what);
    assert!(
        list_at(c, what, &["volumeMounts"])
            .iter()
            .any(|m| m.get("mountPath").and_then(Value::as_str) == Some("/tmp")),
        "{what}: /tmp is not mounted"
    );
}

// ---------------------------------------------------------------------------
// Sharding: the StatefulSet component, the Indexed Job example, the Helm chart.

fn env_list(c: &Value) -> &[Value] {
    c.get("env")
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The literal `value` of env var `name`, if set that way.
fn env_value<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
    env_list(c)
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|e| e.get("value"))
        .and_then(Value::as_str)
}

/// The downward-API field path env var `name` comes from, if any.
fn env_field<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
    env_list(c)
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|e| e.get("valueFrom"))
        .and_then(|v| v.get("fieldRef"))
        .and_then(|f| f.get("fieldPath"))
        .and_then(Value::as_str)
}

/// Checks a sharded workload's wiring: the count equals `replicas`, and the
/// index each pod derives (through the library's own resolution) is its
/// ordinal, with and without the pod-index label.
fn assert_shard_wiring(c: &Value, replicas: u64, pod_name_prefix: &str, what: &str) {
    use regmirror::sync::shard::{self, ShardConfig, ShardFlags};
    let count = env_value(c, shard::ENV_COUNT)
        .unwrap_or_else(|| panic!("{what}: no {} value", shard::ENV_COUNT));
    assert_eq!(
        count.parse::<u64>().ok(),
        Some(replicas),
        "{what}: {} must equal the replicas",
        shard::ENV_COUNT
    );
    assert_eq!(
        env_field(c, shard::ENV_POD_INDEX),
        Some("metadata.labels['apps.kubernetes.io/pod-index']"),
        "{what}: {} comes from the pod-index label",
        shard::ENV_POD_INDEX
    );
    assert_eq!(
        env_field(c, shard::ENV_POD_NAME),
        Some("metadata.name"),
        "{what}: POD_NAME"
    );
    for ordinal in 0..replicas {
        let pod = format!("{pod_name_prefix}-{ordinal}");
        for label in [Some(ordinal.to_string()), None] {
            let env = |k: &str| match k {
                k if k == shard::ENV_COUNT => Some(count.to_string()),
                k if k == shard::ENV_POD_INDEX => Some(label.clone().unwrap_or_default()),
                k if k == shard::ENV_POD_NAME || k == shard::ENV_HOSTNAME => Some(pod.clone()),
                _ => None,
            };
            let r = shard::resolve(&ShardFlags::default(), &ShardConfig::default(), &env)
                .unwrap_or_else(|e| panic!("{what}: pod {pod}: {e}"));
            assert_eq!(
                u64::from(r.shard.index),
                ordinal,
                "{what}: pod {pod} (label {label:?})"
            );
            assert_eq!(u64::from(r.shard.count), replicas, "{what}");
        }
    }
}

fn sharded_dir() -> PathBuf {
    deploy_dir().join("kubernetes/components/sharded")
}

#[test]
fn statefulset_component_shards_by_pod_ordinal() {
    let path = sharded_dir().join("statefulset.yaml");
    let what = "statefulset.yaml";
    let sts = yaml(&path);
    let spec = at(&sts, what, &["spec"]);
    assert_eq!(str_at(spec, what, &["podManagementPolicy"]), "Parallel");
    let replicas = at(spec, what, &["replicas"])
        .as_u64()
        .expect("replicas is a number");
    assert!(
        replicas > 1,
        "{what}: a sharded StatefulSet has several replicas"
    );
    let pod = at(spec, what, &["template", "spec"]);
    let c = container(pod, what);
    assert_shard_wiring(c, replicas, str_at(&sts, what, &["metadata", "name"]), what);

    // The same daemon as the base's Deployment: args, probes, ports,
    // security contexts, mounts, grace period.
    let d = deployment();
    let dpod = pod_spec(&d);
    let dc = container(dpod, "deployment.yaml");
    for key in [
        "args",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "securityContext",
        "volumeMounts",
        "resources",
    ] {
        assert_eq!(
            c.get(key),
            dc.get(key),
            "{what}: container {key} differs from deployment.yaml"
        );
    }
    for key in [
        "securityContext",
        "volumes",
        "terminationGracePeriodSeconds",
        "serviceAccountName",
        "automountServiceAccountToken",
    ] {
        assert_eq!(
            pod.get(key),
            dpod.get(key),
            "{what}: pod {key} differs from deployment.yaml"
        );
    }
    // Spread over nodes.
    let term = at(
        pod,
        what,
        &[
            "affinity",
            "podAntiAffinity",
            "preferredDuringSchedulingIgnoredDuringExecution",
            "0",
            "podAffinityTerm",
        ],
    );
    assert_eq!(
        str_at(term, what, &["topologyKey"]),
        "kubernetes.io/hostname"
    );

    // Headless governing Service and a PodDisruptionBudget over the same pods.
    let labels = at(spec, what, &["template", "metadata", "labels"]);
    let selects = |sel: &Value| {
        sel.as_mapping()
            .expect("a selector is a map")
            .iter()
            .all(|(k, v)| labels.get(k.as_str().unwrap()) == Some(v))
    };
    let svc = yaml(&sharded_dir().join("service-headless.yaml"));
    assert_eq!(
        str_at(&svc, "service-headless.yaml", &["metadata", "name"]),
        str_at(spec, what, &["serviceName"])
    );
    assert_eq!(
        str_at(&svc, "service-headless.yaml", &["spec", "clusterIP"]),
        "None"
    );
    assert!(selects(at(
        &svc,
        "service-headless.yaml",
        &["spec", "selector"]
    )));
    // Not scraped twice: the ServiceMonitor does not select the headless Service.
    let sm = yaml(&deploy_dir().join("kubernetes/components/monitoring/servicemonitor.yaml"));
    let sm_sel = at(
        &sm,
        "servicemonitor.yaml",
        &["spec", "selector", "matchLabels"],
    );
    let svc_labels = at(&svc, "service-headless.yaml", &["metadata", "labels"]);
    assert!(
        sm_sel
            .as_mapping()
            .unwrap()
            .iter()
            .any(|(k, v)| svc_labels.get(k.as_str().unwrap()) != Some(v)),
        "the ServiceMonitor would scrape the headless Service too"
    );
    let pdb = yaml(&sharded_dir().join("poddisruptionbudget.yaml"));
    assert_eq!(
        at(
            &pdb,
            "poddisruptionbudget.yaml",
            &["spec", "maxUnavailable"]
        )
        .as_u64(),
        Some(1)
    );
    assert!(selects(at(
        &pdb,
        "poddisruptionbudget.yaml",
        &["spec", "selector", "matchLabels"]
    )));
}

#[test]
fn indexed_job_example_splits_sync_by_completion_index() {
    use regmirror::sync::shard::{self, ShardConfig, ShardFlags};
    let path = deploy_dir().join("kubernetes/examples/indexed-job/job.yaml");
    let what = "indexed-job/job.yaml";
    let job = yaml(&path);
    let spec = at(&job, what, &["spec"]);
    assert_eq!(str_at(spec, what, &["completionMode"]), "Indexed");
    assert_eq!(str_at(spec, what, &["podReplacementPolicy"]), "Failed");
    let completions = at(spec, what, &["completions"]).as_u64().unwrap();
    assert_eq!(at(spec, what, &["parallelism"]).as_u64(), Some(completions));
    let pod = at(spec, what, &["template", "spec"]);
    let c = container(pod, what);
    let args = strings(list_at(c, what, &["args"]), what);
    assert_eq!(args.first().map(String::as_str), Some("sync"));
    let (mount, file) = config_mount(pod, what);
    assert_eq!(
        config_arg(&args, what),
        format!("{}/{file}", mount.trim_end_matches('/'))
    );
    let count = env_value(c, shard::ENV_COUNT).expect("REGMIRROR_SHARD_COUNT is set");
    assert_eq!(
        count.parse::<u64>().ok(),
        Some(completions),
        "{what}: count must equal completions"
    );
    // What each pod resolves: Kubernetes sets JOB_COMPLETION_INDEX and a
    // host name JOBNAME-INDEX.
    let name = str_at(&job, what, &["metadata", "name"]);
    for i in 0..completions {
        let host = format!("{name}-{i}");
        let env = |k: &str| match k {
            k if k == shard::ENV_COUNT => Some(count.to_string()),
            k if k == shard::ENV_JOB_INDEX => Some(i.to_string()),
            k if k == shard::ENV_HOSTNAME => Some(host.clone()),
            _ => None,
        };
        let r = shard::resolve(&ShardFlags::default(), &ShardConfig::default(), &env).unwrap();
        assert_eq!(u64::from(r.shard.index), i);
    }
}

#[test]
fn helm_chart_alerts_equal_the_kustomize_alerts() {
    let kustomize =
        yaml(&deploy_dir().join("kubernetes/components/monitoring/prometheusrule.yaml"));
    let chart = yaml(&deploy_dir().join("helm/regmirror/files/prometheus-rules.yaml"));
    assert_eq!(
        at(&kustomize, "prometheusrule.yaml", &["spec"]),
        &chart,
        "the Helm chart's rules drifted from the kustomize component's"
    );
}

#[test]
fn alerts_name_the_shard_metrics_the_daemon_exports() {
    regmirror::metrics::init();
    regmirror::metrics::set_shard(3, 1, &[4, 3, 5]);
    let text = regmirror::metrics::render();
    assert!(
        text.contains("regmirror_shard_info{count=\"3\",index=\"1\"} 1"),
        "{text}"
    );
    for (s, n) in [(0, 4), (1, 3), (2, 5)] {
        assert!(
            text.contains(&format!("regmirror_shard_mirrors{{shard=\"{s}\"}} {n}")),
            "{text}"
        );
    }
    let rules = read(&deploy_dir().join("kubernetes/components/monitoring/prometheusrule.yaml"));
    assert!(rules.contains("regmirror_shard_info") && rules.contains("regmirror_shard_mirrors"));
}

/// Every YAML document of the files in the renders' directory whose name
/// ends in `.yaml` and starts with one of `prefixes`: (file name, object).
fn rendered(dir: &Path, prefixes: &[&str]) -> Vec<(String, Value)> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") && prefixes.iter().any(|p| n.starts_with(p)))
        .collect();
    names.sort();
    for name in names {
        let text = read(&dir.join(&name));
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            if !v.is_null() {
                out.push((name.clone(), v));
            }
        }
    }
    out
}

/// The renders of `.ci/deploy-check.sh` (kustomize and Helm), checked for
/// the fields the daemon depends on. Run by that script:
/// `REGMIRROR_DEPLOY_RENDERS=DIR cargo test --test it deploy:: -- --ignored`.
#[test]
#[ignore = "needs the renders of .ci/deploy-check.sh (REGMIRROR_DEPLOY_RENDERS)"]
fn rendered_workloads_agree_with_the_daemon() {
    let dir =
        PathBuf::from(std::env::var("REGMIRROR_DEPLOY_RENDERS").expect(
            "REGMIRROR_DEPLOY_RENDERS names the directory .ci/deploy-check.sh rendered into",
        ));
    let objs = rendered(&dir, &["helm-", "overlay-", "base", "example-"]);
    let port = regmirror::serve::DEFAULT_LISTEN
        .parse::<SocketAddr>()
        .unwrap()
        .port();
    let mut seen: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (file, o) in &objs {
        let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default();
        let name = o
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        let what = format!("{file}: {kind}/{name}");
        let pod_keys: &[&str] = match kind {
            "Deployment" | "StatefulSet" | "Job" => &["spec", "template", "spec"],
            "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
            _ => continue,
        };
        seen.entry(file.clone()).or_default().push(kind.to_string());
        let pod = at(o, &what, pod_keys);
        let c = container(pod, &what);
        let args = strings(list_at(c, &what, &["args"]), &what);
        let command = args.first().cloned().unwrap_or_default();
        assert!(
            at(pod, &what, &["automountServiceAccountToken"]).as_bool() == Some(false),
            "{what}"
        );
        assert_eq!(
            at(c, &what, &["securityContext", "readOnlyRootFilesystem"]).as_bool(),
            Some(true),
            "{what}"
        );
        if command == "import" {
            continue;
        }
        // The config the args name is the mounted ConfigMap's file.
        let config = config_arg(&args, &what);
        let mounts = list_at(c, &what, &["volumeMounts"]);
        let volumes = list_at(pod, &what, &["volumes"]);
        let found = volumes
            .iter()
            .filter(|v| v.get("configMap").is_some())
            .any(|v| {
                let vname = v.get("name").and_then(Value::as_str);
                let file = v
                    .get("configMap")
                    .and_then(|cm| cm.get("items"))
                    .and_then(Value::as_sequence)
                    .and_then(|items| items.first())
                    .and_then(|i| i.get("path"))
                    .and_then(Value::as_str)
                    .unwrap_or("config.toml");
                mounts.iter().any(|m| {
                    m.get("name").and_then(Value::as_str) == vname
                        && m.get("subPath").is_none()
                        && m.get("mountPath").and_then(Value::as_str).is_some_and(|p| {
                            format!("{}/{file}", p.trim_end_matches('/')) == config
                        })
                })
            });
        assert!(
            found,
            "{what}: --config {config} is not the mounted config ConfigMap"
        );
        if file.contains("existing-config") {
            // A ConfigMap the chart does not own changes without a rollout.
            assert!(
                args.iter().any(|a| a == "--watch-config"),
                "{what}: args {args:?}"
            );
        }
        if command == "serve" {
            assert_eq!(
                str_at(c, &what, &["livenessProbe", "httpGet", "path"]),
                regmirror::serve::HEALTH_PATH,
                "{what}"
            );
            assert_eq!(
                str_at(c, &what, &["readinessProbe", "httpGet", "path"]),
                regmirror::serve::READY_PATH,
                "{what}"
            );
            for probe in ["livenessProbe", "readinessProbe"] {
                assert_eq!(
                    resolve_port(c, at(c, &what, &[probe, "httpGet", "port"]), &what),
                    u64::from(port),
                    "{what} {probe}"
                );
            }
            let grace = at(pod, &what, &["terminationGracePeriodSeconds"])
                .as_u64()
                .unwrap_or(30);
            assert!(
                grace > regmirror::sync::config::DEFAULT_SHUTDOWN_GRACE.as_secs(),
                "{what}: grace {grace}"
            );
        } else {
            assert_eq!(command, "sync", "{what}: args {args:?}");
        }
        match kind {
            "StatefulSet" => {
                let replicas = at(o, &what, &["spec", "replicas"]).as_u64().unwrap();
                assert_eq!(
                    str_at(o, &what, &["spec", "podManagementPolicy"]),
                    "Parallel"
                );
                assert_shard_wiring(c, replicas, name, &what);
            }
            "Job"
                if o.get("spec")
                    .and_then(|s| s.get("completionMode"))
                    .and_then(Value::as_str)
                    == Some("Indexed") =>
            {
                let completions = at(o, &what, &["spec", "completions"]).as_u64().unwrap();
                let count = env_value(c, regmirror::sync::shard::ENV_COUNT)
                    .and_then(|v| v.parse::<u64>().ok());
                assert_eq!(
                    count,
                    Some(completions),
                    "{what}: the shard count must equal completions"
                );
            }
            "Deployment" => {
                assert_eq!(
                    at(o, &what, &["spec", "replicas"]).as_u64(),
                    Some(1),
                    "{what}"
                );
                assert_eq!(
                    str_at(o, &what, &["spec", "strategy", "type"]),
                    "Recreate",
                    "{what}"
                );
                let count = env_value(c, regmirror::sync::shard::ENV_COUNT);
                assert!(
                    count.is_none_or(|n| n == "1"),
                    "{what}: a Deployment is not sharded"
                );
            }
            _ => {}
        }
    }
    // Every Helm mode and the sharded overlay were rendered and seen.
    let kinds = |f: &str| seen.get(f).cloned().unwrap_or_default();
    assert_eq!(kinds("helm-deployment.yaml"), ["Deployment"], "{seen:?}");
    assert_eq!(kinds("helm-statefulset.yaml"), ["StatefulSet"], "{seen:?}");
    assert_eq!(
        kinds("helm-statefulset-existing-config.yaml"),
        ["StatefulSet"],
        "{seen:?}"
    );
    assert_eq!(kinds("helm-cronjob.yaml"), ["CronJob"], "{seen:?}");
    assert_eq!(kinds("overlay-sharded.yaml"), ["StatefulSet"], "{seen:?}");
    assert_eq!(kinds("example-indexed-job.yaml"), ["Job"], "{seen:?}");
}

/// The annotations of the ServiceAccount and the pod template labels of the
/// workload in the render `file` (its objects in `objs`).
fn identity_wiring(objs: &[(String, Value)], file: &str) -> (Value, Value) {
    let of = |kinds: &[&str]| {
        objs.iter()
            .find(|(f, o)| {
                f == file
                    && kinds.contains(&o.get("kind").and_then(Value::as_str).unwrap_or_default())
            })
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| panic!("{file}: no {kinds:?}"))
    };
    let sa = of(&["ServiceAccount"]);
    let workload = of(&["Deployment", "StatefulSet"]);
    let annotations = sa["metadata"]["annotations"].clone();
    let labels = workload["spec"]["template"]["metadata"]["labels"].clone();
    (annotations, labels)
}

/// Each cloud's workload identity, as its identity webhook or metadata
/// server reads it: IRSA's role ARN annotation, Azure's client-id annotation
/// plus the `azure.workload.identity/use` pod label, GKE's service account
/// annotation; from the kustomize components and from the chart's values.
/// Run by `.ci/deploy-check.sh` with the renders.
#[test]
#[ignore = "needs the renders of .ci/deploy-check.sh (REGMIRROR_DEPLOY_RENDERS)"]
fn rendered_identities_carry_each_clouds_annotations() {
    let dir =
        PathBuf::from(std::env::var("REGMIRROR_DEPLOY_RENDERS").expect(
            "REGMIRROR_DEPLOY_RENDERS names the directory .ci/deploy-check.sh rendered into",
        ));
    let objs = rendered(&dir, &["helm-", "example-identity-"]);
    let key = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let (a, l) = identity_wiring(&objs, "example-identity-aws.yaml");
    assert!(key(&a, "eks.amazonaws.com/role-arn").is_some_and(|r| r.starts_with("arn:aws:iam::")));
    assert_eq!(key(&l, "azure.workload.identity/use"), None);
    let (a, l) = identity_wiring(&objs, "example-identity-azure.yaml");
    assert!(key(&a, "azure.workload.identity/client-id").is_some());
    assert_eq!(
        key(&l, "azure.workload.identity/use").as_deref(),
        Some("true")
    );
    let (a, _) = identity_wiring(&objs, "example-identity-gcp.yaml");
    assert!(key(&a, "iam.gke.io/gcp-service-account").is_some_and(|s| s.contains('@')));
    let (a, l) = identity_wiring(&objs, "helm-deployment-identity.yaml");
    for k in [
        "eks.amazonaws.com/role-arn",
        "azure.workload.identity/client-id",
        "azure.workload.identity/tenant-id",
        "iam.gke.io/gcp-service-account",
        "example.com/owner",
    ] {
        assert!(
            key(&a, k).is_some(),
            "helm-deployment-identity.yaml: no {k} in {a:?}"
        );
    }
    assert_eq!(
        key(&l, "azure.workload.identity/use").as_deref(),
        Some("true")
    );
    // Without identity values, neither annotations nor the label.
    let (a, l) = identity_wiring(&objs, "helm-deployment.yaml");
    assert!(a.is_null(), "helm-deployment.yaml: {a:?}");
    assert_eq!(key(&l, "azure.workload.identity/use"), None);
}

// ---------------------------------------------------------------------------
// Starting without Secrets, and the chart's values schema.

fn chart_dir() -> PathBuf {
    deploy_dir().join("helm").join("regmirror")
}

/// The chart's default values, as JSON.
fn chart_values() -> serde_json::Value {
    let path = chart_dir().join("values.yaml");
    serde_norway::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// `regmirror check` reads the credentials a config names as `serve` does at
/// start: with no credential variable set and no home directory, the shipped
/// configs (the kustomize base's and the chart's default) must pass, so that
/// the pods start on a cluster where no Secret was created.
#[test]
fn shipped_configs_start_without_secrets() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let chart_config = dir.path().join("chart-config.toml");
    let toml = chart_values()["config"]["toml"]
        .as_str()
        .expect("values.yaml: config.toml is a string")
        .to_string();
    std::fs::write(&chart_config, toml).expect("write the chart's config");
    for config in [base_dir().join("config.toml"), chart_config] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
            .args(["check", "--config"])
            .arg(&config)
            .env_clear()
            .env("HOME", dir.path().join("no-home"))
            .output()
            .expect("run regmirror check");
        assert!(
            out.status.success(),
            "{} needs a credential that a cluster without Secrets lacks (exit {:?}): {}",
            config.display(),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The schema errors for the chart's default values with `overrides` merged
/// in, as Helm merges user values over the defaults before validating.
fn schema_errors(overrides: serde_json::Value) -> Vec<String> {
    fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
        match (base, over) {
            (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
                for (k, v) in o {
                    merge(b.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (b, o) => *b = o,
        }
    }
    let path = chart_dir().join("values.schema.json");
    let schema: serde_json::Value = serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let mut values = chart_values();
    merge(&mut values, overrides);
    validator
        .iter_errors(&values)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[test]
fn chart_schema_accepts_the_defaults_and_refuses_misspelled_values() {
    assert_eq!(schema_errors(serde_json::json!({})), Vec::<String>::new());
    let identity = serde_json::json!({"identity": {
        "aws": {"roleArn": "arn:aws:iam::111122223333:role/regmirror"},
        "azure": {"clientId": "11111111-2222-3333-4444-555555555555"},
        "gcp": {"serviceAccount": "regmirror@example-project.iam.gserviceaccount.com"},
    }, "serviceAccount": {"annotations": {"a": "b"}}});
    assert_eq!(schema_errors(identity), Vec::<String>::new());
    for typo in [
        serde_json::json!({"serviceMonitor": {"enable": true}}),
        serde_json::json!({"mdoe": "statefulset"}),
        serde_json::json!({"replicas": 3}),
        serde_json::json!({"securityContext": {"readOnlyRootFileSystem": true}}),
        serde_json::json!({"networkPolicy": {"enable": true}}),
        serde_json::json!({"identity": {"azure": {"clientID": "x"}}}),
        serde_json::json!({"identity": {"aws": {"roleArn": "regmirror"}}}),
        serde_json::json!({"identity": {"gke": {}}}),
    ] {
        assert!(
            !schema_errors(typo.clone()).is_empty(),
            "values.schema.json accepts {typo}"
        );
    }
}
