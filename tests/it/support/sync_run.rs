//! Running `regmirror sync` from a config written to a temp dir, for the
//! prune and backup tests: the JSON report, tag listings and digests read
//! with independent clients.

use std::path::{Path, PathBuf};

use crate::common::{Node, Pusher, TestRegistry};

/// A config file in its own temp dir.
pub struct ConfigFile {
    dir: tempfile::TempDir,
}

impl ConfigFile {
    pub fn new() -> ConfigFile {
        ConfigFile {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// (Re)write the config and return its path.
    pub fn write(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("mirror.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }
}

/// `regmirror sync --config PATH --output json EXTRA...`: exit code, the
/// report, stderr.
pub async fn sync_json(config: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec![
        "sync",
        "--config",
        config.to_str().unwrap(),
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(&args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("running regmirror");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("sync output is not JSON ({e}): {stdout}\nstderr: {stderr}"));
    let problems = schema_problems(&json);
    assert!(problems.is_empty(), "{problems:#?}\n{json:#}");
    (out.status.code().expect("exit code"), json, stderr)
}

/// Where `report` breaks docs/report.schema.json.
pub fn schema_problems(report: &serde_json::Value) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    validator
        .iter_errors(report)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// The sorted tags of `repo`, listed by the independent test client.
pub async fn tags(reg: &TestRegistry, repo: &str) -> Vec<String> {
    let mut t = Pusher::for_registry(reg).tags(repo).await.unwrap();
    t.sort();
    t
}

/// Push a node under several tags of `repo`.
pub async fn push_tags(reg: &TestRegistry, repo: &str, tags: &[&str], node: &Node) {
    for t in tags {
        crate::common::push(reg, repo, t, node.clone())
            .await
            .unwrap();
    }
}
