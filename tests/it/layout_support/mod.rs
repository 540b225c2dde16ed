//! Helpers of the layout tests: skopeo and umoci on layouts and archives,
//! and an independent walk of a layout's graph.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use sha2::Digest as _;

/// Run skopeo (`--insecure-policy`, a private HOME); stdout, or an error
/// with stderr.
pub async fn skopeo(args: &[&str]) -> Result<Vec<u8>, String> {
    let home = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .env("HOME", home.path())
        .kill_on_drop(true)
        .output()
        .await
        .expect("skopeo must be installed (CI installs it)");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `sha256:<hex>` of the exact bytes.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// `skopeo inspect --raw TRANSPORT` as a digest.
pub async fn skopeo_raw_digest(transport: &str) -> String {
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", transport])
        .await
        .unwrap_or_else(|e| panic!("skopeo inspect --raw {transport}: {e}"));
    sha256(&raw)
}

/// `umoci ls --layout DIR`: the tags umoci sees.
pub async fn umoci_ls(dir: &Path) -> Vec<String> {
    let out = tokio::process::Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(dir)
        .output()
        .await
        .expect("umoci must be installed (CI installs it)");
    assert!(
        out.status.success(),
        "umoci ls --layout {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Run umoci with `args`; panics with its stderr on failure.
pub async fn umoci(args: &[&str]) {
    let out = tokio::process::Command::new("umoci")
        .args(args)
        .output()
        .await
        .expect("umoci must be installed (CI installs it)");
    assert!(
        out.status.success(),
        "umoci {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn blob(dir: &Path, digest: &str) -> Option<Vec<u8>> {
    let (alg, hex) = digest.split_once(':')?;
    std::fs::read(dir.join("blobs").join(alg).join(hex)).ok()
}

/// Walk every entry of `index.json` and everything it references; panics
/// when a blob is missing or does not match its digest. Returns the
/// ref.names and the number of blobs reached.
pub fn check_layout_complete(dir: &Path) -> (Vec<String>, usize) {
    let layout: Value =
        serde_json::from_slice(&std::fs::read(dir.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut names = Vec::new();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<Value> = index["manifests"].as_array().unwrap().clone();
    for e in &todo {
        if let Some(n) = e["annotations"]["org.opencontainers.image.ref.name"].as_str() {
            names.push(n.to_string());
        }
    }
    while let Some(d) = todo.pop() {
        let digest = d["digest"].as_str().unwrap().to_string();
        if d["urls"].is_array() || !seen.insert(digest.clone()) {
            continue;
        }
        let bytes = blob(dir, &digest)
            .unwrap_or_else(|| panic!("{}: blob {digest} is missing", dir.display()));
        assert_eq!(sha256(&bytes), digest, "blob {digest} is corrupt");
        let mt = d["mediaType"].as_str().unwrap_or("");
        if mt.contains("manifest") || mt.contains("index") {
            let m: Value = serde_json::from_slice(&bytes).unwrap();
            for key in ["manifests", "layers"] {
                if let Some(a) = m[key].as_array() {
                    todo.extend(a.iter().cloned());
                }
            }
            if m["config"].is_object() {
                todo.push(m["config"].clone());
            }
        }
    }
    (names, seen.len())
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

/// The member names of a tar, in order.
pub fn tar_members(path: &Path) -> Vec<String> {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}
