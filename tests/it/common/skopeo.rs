//! Independent checks with `skopeo` (1.9): raw manifest digests and
//! `copy --all --preserve-digests`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use super::registry::TestRegistry;

/// One end of a skopeo copy.
#[derive(Clone, Debug)]
pub enum SkopeoLoc {
    /// `docker://HOST/REFERENCE`, with optional credentials.
    Docker {
        host: String,
        reference: String,
        creds: Option<(String, String)>,
    },
    /// `oci:DIR:TAG`.
    OciLayout { dir: PathBuf, tag: String },
}

impl SkopeoLoc {
    /// `repo:tag` (or `repo@digest`) on `reg` with its credentials.
    pub fn registry(reg: &TestRegistry, reference: &str) -> SkopeoLoc {
        SkopeoLoc::Docker {
            host: reg.host(),
            reference: reference.to_string(),
            creds: reg.credentials(),
        }
    }

    pub fn oci(dir: impl Into<PathBuf>, tag: &str) -> SkopeoLoc {
        SkopeoLoc::OciLayout {
            dir: dir.into(),
            tag: tag.to_string(),
        }
    }

    fn transport(&self) -> String {
        match self {
            SkopeoLoc::Docker {
                host, reference, ..
            } => format!("docker://{host}/{reference}"),
            SkopeoLoc::OciLayout { dir, tag } => format!("oci:{}:{tag}", dir.display()),
        }
    }

    fn creds(&self) -> Option<String> {
        match self {
            SkopeoLoc::Docker {
                creds: Some((u, p)),
                ..
            } => Some(format!("{u}:{p}")),
            _ => None,
        }
    }
}

async fn run_skopeo(args: Vec<String>, what: &str) -> anyhow::Result<Vec<u8>> {
    let home = tempfile::tempdir().context("tempdir for skopeo's HOME")?;
    let out = tokio::process::Command::new("skopeo")
        .arg("--insecure-policy")
        .args(&args)
        .env("HOME", home.path())
        .env_remove("REGISTRY_AUTH_FILE")
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running skopeo to {what}; is skopeo installed?"))?;
    if !out.status.success() {
        // Arguments may contain credentials: report only the operation.
        bail!(
            "skopeo failed to {what} ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// `skopeo inspect --raw` of `reference` (`repo:tag` or `repo@digest`) on `reg`,
/// returned as `sha256:<hex>` of the exact bytes.
pub async fn skopeo_raw_digest(reg: &TestRegistry, reference: &str) -> anyhow::Result<String> {
    let raw = skopeo_raw_manifest(&SkopeoLoc::registry(reg, reference)).await?;
    Ok(super::sha256_digest(&raw))
}

/// `skopeo inspect --raw` bytes of `loc`.
pub async fn skopeo_raw_manifest(loc: &SkopeoLoc) -> anyhow::Result<Vec<u8>> {
    let mut args = vec!["inspect".to_string(), "--raw".to_string()];
    if matches!(loc, SkopeoLoc::Docker { .. }) {
        args.push("--tls-verify=false".to_string());
    }
    if let Some(c) = loc.creds() {
        args.push("--creds".to_string());
        args.push(c);
    }
    args.push(loc.transport());
    run_skopeo(args, &format!("inspect {}", loc.transport())).await
}

/// `skopeo copy --all --preserve-digests SRC DST`.
pub async fn skopeo_copy_all(src: &SkopeoLoc, dst: &SkopeoLoc) -> anyhow::Result<()> {
    let mut args = vec![
        "copy".to_string(),
        "--all".to_string(),
        "--preserve-digests".to_string(),
    ];
    if matches!(src, SkopeoLoc::Docker { .. }) {
        args.push("--src-tls-verify=false".to_string());
    }
    if let Some(c) = src.creds() {
        args.push("--src-creds".to_string());
        args.push(c);
    }
    if matches!(dst, SkopeoLoc::Docker { .. }) {
        args.push("--dest-tls-verify=false".to_string());
    }
    if let Some(c) = dst.creds() {
        args.push("--dest-creds".to_string());
        args.push(c);
    }
    args.push(src.transport());
    args.push(dst.transport());
    run_skopeo(
        args,
        &format!("copy {} to {}", src.transport(), dst.transport()),
    )
    .await
    .map(|_| ())
}
