//! `regmirror import` as a user runs it: the binary against real registries.

use crate::common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{
    FaultPlan, Format, ImageSet, Node, RegistryOptions, Run, TestProxy, TestRegistry, push,
    regmirror, skopeo_raw_digest,
};
use futures_util::StreamExt as _;
use serde_json::Value;
use sha2::Digest as _;

/// The one image of an `import --output json` report (docs/report.md).
fn json(run: &Run) -> Value {
    let doc: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            run.stdout, run.stderr
        )
    });
    assert_eq!(doc["schema_version"], 1, "{doc}");
    assert_eq!(doc["command"], "import", "{doc}");
    doc["images"][0].clone()
}

#[tokio::test]
async fn target_as_registry_only_keeps_the_repository_path() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let index = ImageSet::multi_arch("cli", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    push(&src, "library/app", "v1", index.to_node())
        .await
        .unwrap();

    let source = format!("{}/library/app:v1", src.host());
    let run = regmirror(&["import", &source, &dst.host(), "--output", "json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = json(&run);
    assert_eq!(v["target"], format!("{}/library/app:v1", dst.host()));
    assert_eq!(v["result"], "copied");
    assert_eq!(v["source_digest"], index.digest());
    assert_eq!(v["target_digest"], index.digest());
    assert_eq!(v["digest_changed"], false);
    assert_eq!(
        v["blobs_copied"].as_u64().unwrap() as usize,
        index.blobs().len()
    );
    assert!(v["duration_seconds"].is_number());
    assert_eq!(
        skopeo_raw_digest(&dst, "library/app:v1").await.unwrap(),
        index.digest()
    );
    for m in index.manifests_in_push_order() {
        assert_eq!(
            skopeo_raw_digest(&dst, &format!("library/app@{}", m.digest))
                .await
                .unwrap(),
            m.digest
        );
    }

    // Text output of a second run: up to date.
    let run = regmirror(&["import", &source, &dst.host()]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("up to date"), "{}", run.stdout);
}

#[tokio::test]
async fn conflict_exits_4_without_force_and_force_overwrites() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let new = ImageSet::multi_arch("new", &["linux/amd64"], false, Format::Docker);
    let old = ImageSet::image("old", "linux/amd64", Format::Docker);
    push(&src, "app", "v1", new.to_node()).await.unwrap();
    push(&dst, "app", "v1", Node::Image(old.clone()))
        .await
        .unwrap();
    let source = format!("{}/app:v1", src.host());
    let target = format!("{}/app:v1", dst.host());

    let run = regmirror(&["import", &source, &target]).await;
    assert_eq!(
        run.code, 4,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(
        run.stderr.contains("--force") && run.stderr.contains(old.digest()),
        "{}",
        run.stderr
    );
    assert_eq!(
        skopeo_raw_digest(&dst, "app:v1").await.unwrap(),
        old.digest(),
        "left alone"
    );

    let run = regmirror(&["import", &source, &target, "--force", "--output", "json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = json(&run);
    assert_eq!(v["result"], "copied");
    assert_eq!(v["previous_digest"], old.digest());
    assert_eq!(
        skopeo_raw_digest(&dst, "app:v1").await.unwrap(),
        new.digest()
    );
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_writes_nothing() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let index = ImageSet::multi_arch("dry", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    push(&src, "dry", "v1", index.to_node()).await.unwrap();
    // One image already there, in another repository of the target: mounts planned.
    let amd = index.image_for("linux/amd64").unwrap().clone();
    push(&dst, "other", "x", Node::Image(amd.clone()))
        .await
        .unwrap();
    let proxy = TestProxy::start(&dst.base_url(), FaultPlan::none()).await;
    let source = format!("{}/dry:v1", src.host());
    let target = format!("{}/dry:v1", proxy.host());

    let run = regmirror(&["import", &source, &target, "--dry-run", "--output", "json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = json(&run);
    assert_eq!(v["result"], "would-copy");
    assert_eq!(v["target_digest"], index.digest());
    let blobs = index.blobs();
    let count = |k: &str| v[k].as_u64().unwrap();
    assert_eq!(
        (count("blobs_copied") + count("blobs_present") + count("blobs_mounted")) as usize,
        blobs.len()
    );
    let to_copy = v["blobs_copied"].as_u64().unwrap();
    assert_eq!(
        to_copy as usize,
        blobs.len(),
        "a fresh copier knows no other repository: {v}"
    );
    let bytes: u64 = blobs.iter().map(|b| b.size() as u64).sum();
    assert_eq!(v["bytes_copied"].as_u64().unwrap(), bytes);
    assert_eq!(v["manifests_pushed"].as_u64().unwrap(), 5);
    for method in ["PUT", "POST", "PATCH", "DELETE"] {
        assert_eq!(
            proxy.count(method, "/"),
            0,
            "{method} during a dry run: {:?}",
            proxy.requests()
        );
    }
    assert!(
        proxy.count("HEAD", "/v2/dry/blobs/") > 0,
        "the plan asks the target"
    );

    let run = regmirror(&["import", &source, &target, "--dry-run"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("Plan:") && run.stdout.contains("to copy"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&amd.layers[0].digest), "{}", run.stdout);
    assert_eq!(proxy.count("PUT", "/") + proxy.count("POST", "/"), 0);
    assert!(
        common::Pusher::for_registry(&dst)
            .tags("dry")
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn platform_flags_filter_and_report_the_new_digest() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let index = ImageSet::multi_arch(
        "plat",
        &["linux/amd64", "linux/arm64", "linux/arm/v7"],
        true,
        Format::Oci,
    );
    push(&src, "plat", "v1", index.to_node()).await.unwrap();
    let source = format!("{}/plat:v1", src.host());
    let run = regmirror(&[
        "import",
        &source,
        &format!("{}/filtered", dst.host()),
        "--platform",
        "linux/amd64,linux/arm/v7",
        "--output",
        "json",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = json(&run);
    assert_eq!(v["digest_changed"], true);
    assert_eq!(v["target"], format!("{}/filtered:v1", dst.host()));
    assert_ne!(v["target_digest"], index.digest());
    assert_eq!(
        v["platforms_kept"],
        serde_json::json!(["linux/amd64", "linux/arm/v7"])
    );
    let got = skopeo_raw_digest(&dst, "filtered:v1").await.unwrap();
    assert_eq!(got, v["target_digest"].as_str().unwrap());

    let run = regmirror(&[
        "import",
        &source,
        &format!("{}/none", dst.host()),
        "--platform",
        "windows/arm64",
    ])
    .await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("no platform matches") && run.stderr.contains("linux/arm64"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn bad_arguments_exit_2_before_touching_a_registry() {
    for args in [
        &[
            "import",
            "127.0.0.1:1/a:v1",
            "127.0.0.1:1/b",
            "--platform",
            "linux",
        ][..],
        &["import", "127.0.0.1:1/A:v1", "127.0.0.1:1/b"],
        &[
            "import",
            "127.0.0.1:1/a:v1",
            "127.0.0.1:1/b@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ],
        &[
            "import",
            "127.0.0.1:1/a:v1",
            "127.0.0.1:1/b",
            "--blob-concurrency",
            "0",
        ],
    ] {
        let run = regmirror(args).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    // A registry that is not there: a clear failure, exit 1.
    let run = regmirror(&["import", "127.0.0.1:1/a:v1", "127.0.0.1:1/b"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("127.0.0.1:1/a"), "{}", run.stderr);
}

/// Peak RSS (VmHWM) of the binary while it copies a large layer stays well
/// under 100 MiB: blobs stream, they are never buffered. The layer is
/// 256 MiB by default; set REGMIRROR_TEST_BIG_LAYER_MIB=1024 for 1 GiB.
#[tokio::test]
async fn large_layer_copies_with_bounded_memory() {
    let mib: u64 = std::env::var("REGMIRROR_TEST_BIG_LAYER_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let size = mib * 1024 * 1024;
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let layer_digest = upload_generated_blob(&src, "big", size).await;

    let config = common::Blob::new(
        common::image::OCI_CONFIG,
        Bytes::from_static(
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        ),
    );
    let pusher = common::Pusher::for_registry(&src);
    pusher.push_blob("big", &config).await.unwrap();
    let manifest = common::Manifest::from_json(
        common::image::OCI_MANIFEST,
        &serde_json::json!({
            "schemaVersion": 2,
            "mediaType": common::image::OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [{"mediaType": common::image::OCI_LAYER, "digest": layer_digest, "size": size}],
        }),
    );
    pusher.push_manifest("big", "v1", &manifest).await.unwrap();

    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args([
            "import",
            &format!("{}/big:v1", src.host()),
            &dst.host(),
            "--output",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let peak = Arc::new(Mutex::new(0u64));
    let watcher = {
        let peak = peak.clone();
        tokio::spawn(async move {
            while let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                if let Some(kb) = s
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    let mut p = peak.lock().unwrap();
                    *p = (*p).max(kb * 1024);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let out = child.wait_with_output().await.unwrap();
    watcher.abort();
    let peak = *peak.lock().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = &doc["images"][0];
    assert_eq!(
        v["bytes_copied"].as_u64().unwrap(),
        size + config.size() as u64
    );
    assert_eq!(v["target_digest"], manifest.digest);
    assert!(peak > 0, "RSS was sampled");
    assert!(
        peak < 100 * 1024 * 1024,
        "peak RSS {} MiB while copying a {mib} MiB layer",
        peak / (1024 * 1024)
    );
    eprintln!(
        "peak RSS {:.1} MiB for a {mib} MiB layer",
        peak as f64 / (1024.0 * 1024.0)
    );
    assert_eq!(
        skopeo_raw_digest(&dst, "big:v1").await.unwrap(),
        manifest.digest
    );
    assert!(
        common::Pusher::for_registry(&dst)
            .blob_exists("big", &layer_digest)
            .await
            .unwrap()
    );
}

/// Streams `size` generated bytes into `repo` (POST, PATCH, PUT) hashing
/// them on the way, so the test itself never holds the blob; returns its digest.
async fn upload_generated_blob(reg: &TestRegistry, repo: &str, size: u64) -> String {
    const CHUNK: u64 = 1024 * 1024;
    let base = Bytes::from(common::image::pseudo_random_bytes(
        "big-layer",
        CHUNK as usize,
    ));
    let hasher = Arc::new(Mutex::new(sha2::Sha256::new()));
    let h = hasher.clone();
    let chunks = size.div_ceil(CHUNK);
    let body = futures_util::stream::iter(0..chunks).map(move |i| {
        let mut chunk = base.to_vec();
        chunk[..8].copy_from_slice(&i.to_le_bytes());
        chunk.truncate((size - i * CHUNK).min(CHUNK) as usize);
        h.lock().unwrap().update(&chunk);
        Ok::<_, std::io::Error>(Bytes::from(chunk))
    });
    // Not the harness client: its 60 s timeout is too short for 1 GiB in a debug build.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1800))
        .build()
        .unwrap();
    let base_url = reg.base_url();
    let resp = http
        .post(format!("{base_url}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let absolute = |loc: &str| {
        if loc.starts_with("http") {
            loc.to_string()
        } else {
            format!("{base_url}{loc}")
        }
    };
    let loc = absolute(resp.headers()["location"].to_str().unwrap());
    let resp = http
        .patch(&loc)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202, "{:?}", resp.text().await);
    let loc = absolute(resp.headers()["location"].to_str().unwrap());
    let digest = format!(
        "sha256:{}",
        hex::encode(hasher.lock().unwrap().clone().finalize())
    );
    let sep = if loc.contains('?') { '&' } else { '?' };
    let resp = http
        .put(format!("{loc}{sep}digest={digest}"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text().await);
    digest
}

/// On a terminal the copy shows progress bars (indicatif); run under
/// `script` to get a pseudo-terminal. Skipped when `script` is missing.
#[tokio::test]
async fn progress_bars_on_a_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    }
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let index = ImageSet::multi_arch("tty", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    push(&src, "tty", "v1", index.to_node()).await.unwrap();
    let cmd = format!(
        "{} import {}/tty:v1 {}",
        env!("CARGO_BIN_EXE_regmirror"),
        src.host(),
        dst.host()
    );
    let out = tokio::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Copied") && text.contains("blobs: 6 copied"),
        "{text}"
    );
    assert_eq!(
        skopeo_raw_digest(&dst, "tty:v1").await.unwrap(),
        index.digest()
    );
}
