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
