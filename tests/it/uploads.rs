//! Uploads every registry accepts, with no registry settings in the config.
//!
//! These tests exist because distribution 2.8, the registry the suite runs,
//! accepts every upload shape (a monolithic `PUT` of any size,
//! `Transfer-Encoding: chunked`, a body-less `POST` without
//! `Content-Length`, parts of any size), so a copy into it proves nothing
//! about ACR, ECR, Artifact Registry or a registry behind nginx. Each test
//! puts a `RulesProxy` (`common::rules`) playing one registry's documented
//! rules in front of a real `docker-registry` and copies a multi-arch image
//! with a 48 MiB layer through it with `regmirror import` and `regmirror
//! sync`, then checks by digest that every manifest and blob arrived.
//!
//! The resume tests break a 64 MiB layer's transfer at 90% (the target's
//! upload, or the source's blob GET, separately) and count at the proxy
//! that the retry sends less than a fifth of the layer again. The memory
//! test measures the peak RSS of the binary while a large layer goes
//! through the 1 MiB nginx rules (128 MiB in the suite; 1 GiB with
//! `REGMIRROR_BIG_LAYER_TEST=1`).

use crate::common;

use std::time::Duration;

use common::rules::{ECR_MIN_PART, NGINX_MAX_BODY};
use common::{
    Cut, Format, ImageBuilder, Index, IndexBuilder, Pusher, RegistryOptions, Rules, RulesProxy,
    TestRegistry, push, regmirror, skopeo_raw_digest,
};

const MIB: usize = 1024 * 1024;
/// The large layer of the copy tests.
const LAYER: usize = 48 * MIB;
/// The layer whose transfer is broken in the resume tests.
const RESUME_LAYER: usize = 64 * MIB;
const REPO: &str = "team/app";
const TAG: &str = "v1";

/// A two-platform index whose amd64 image carries a `layer`-byte layer.
fn big_multi_arch(seed: &str, layer: usize) -> Index {
    let amd64 = ImageBuilder::new(Format::Oci)
        .platform("linux/amd64")
        .random_layer(&format!("{seed}/amd64/base"), layer)
        .random_layer(&format!("{seed}/amd64/app"), 4096)
        .build();
    let arm64 = ImageBuilder::new(Format::Oci)
        .platform("linux/arm64")
        .random_layer(&format!("{seed}/arm64/base"), 3 * MIB)
        .random_layer(&format!("{seed}/arm64/app"), 2048)
        .build();
    IndexBuilder::new(Format::Oci)
        .image(amd64)
        .image(arm64)
        .build()
}

/// A single-platform index with one `layer`-byte layer (and a tiny config),
/// so the bytes at the proxy are almost all that layer's.
fn one_layer_index(seed: &str, layer: usize) -> Index {
    let image = ImageBuilder::new(Format::Oci)
        .platform("linux/amd64")
        .random_layer(seed, layer)
        .build();
    IndexBuilder::new(Format::Oci).image(image).build()
}

#[derive(Clone, Copy, Debug)]
enum Command {
    Import,
    Sync,
}

/// Copies `REPO:TAG` from `src_host` to `dst_host` with `command` and no
/// registry settings; returns the run's exit code and stderr.
async fn copy(command: Command, src_host: &str, dst_host: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = match command {
        Command::Import => {
            let source = format!("{src_host}/{REPO}:{TAG}");
            let target = format!("{dst_host}/{REPO}:{TAG}");
            regmirror(&["import", &source, &target]).await
        }
        Command::Sync => {
            let config = dir.path().join("mirror.toml");
            let text = format!(
                "[[mirror]]\nsource = \"{src_host}/{REPO}\"\ntarget = \"{dst_host}/{REPO}\"\n\
                 tags = [\"{TAG}\"]\n"
            );
            std::fs::write(&config, text).expect("writing the sync config");
            regmirror(&["sync", "--config", config.to_str().unwrap()]).await
        }
    };
    (run.code, format!("{}\n{}", run.stdout, run.stderr))
}

/// Problems with `REPO:TAG` at `dst` compared with `index`: its digest (by
/// skopeo and by the harness reader) and every manifest and blob it reaches.
async fn problems(dst: &TestRegistry, index: &Index) -> Vec<String> {
    let mut out =
        common::verify::graph_problems(&Pusher::for_registry(dst), REPO, TAG, index.digest()).await;
    match skopeo_raw_digest(dst, &format!("{REPO}:{TAG}")).await {
        Ok(d) if d == index.digest() => {}
        Ok(d) => out.push(format!("skopeo sees {d}, expected {}", index.digest())),
        Err(e) => out.push(format!("skopeo inspect: {e:#}")),
    }
    out
}

/// Copies a multi-arch image with a 48 MiB layer through `rules` with
/// `command` and checks it arrived exactly.
async fn copy_through(rules: Rules, command: Command) {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let proxy = RulesProxy::start(&dst.base_url(), rules.clone()).await;
    if rules == Rules::Ecr {
        // As a user does with `aws ecr create-repository`.
        proxy.create_repository(REPO);
    }
    let index = big_multi_arch(&format!("{rules:?}/{command:?}"), LAYER);
    push(&src, REPO, TAG, index.to_node()).await.unwrap();

    let (code, output) = copy(command, &src.host(), &proxy.host()).await;
    assert_eq!(
        code,
        0,
        "{command:?} through {rules:?} rules failed:\n{output}\nrefusals: {:#?}",
        proxy.refusals()
    );
    let problems = problems(&dst, &index).await;
    assert!(
        problems.is_empty(),
        "{command:?} through {rules:?}: {problems:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn import_through_acr_rules() {
    copy_through(Rules::Acr, Command::Import).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_through_acr_rules() {
    copy_through(Rules::Acr, Command::Sync).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn import_through_ecr_rules() {
    copy_through(Rules::Ecr, Command::Import).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_through_ecr_rules() {
    copy_through(Rules::Ecr, Command::Sync).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn import_through_gar_rules() {
    copy_through(Rules::Gar, Command::Import).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_through_gar_rules() {
    copy_through(Rules::Gar, Command::Sync).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn import_through_nginx_rules() {
    copy_through(Rules::Nginx, Command::Import).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_through_nginx_rules() {
    copy_through(Rules::Nginx, Command::Sync).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn import_through_chunk_min_length_rules() {
    copy_through(Rules::ChunkMin(6 * MIB as u64), Command::Import).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_through_chunk_min_length_rules() {
    copy_through(Rules::ChunkMin(6 * MIB as u64), Command::Sync).await;
}

/// A refusal that cannot be worked around names the registry's own words
/// and the blob's size: ECR's `NAME_UNKNOWN` for a repository not created.
#[tokio::test(flavor = "multi_thread")]
async fn ecr_refusal_names_the_registry_text() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let proxy = RulesProxy::start(&dst.base_url(), Rules::Ecr).await;
    let index = one_layer_index("ecr/missing", MIB);
    push(&src, REPO, TAG, index.to_node()).await.unwrap();
    let (code, output) = copy(Command::Import, &src.host(), &proxy.host()).await;
    assert_ne!(code, 0, "{output}");
    assert!(
        output.contains("does not exist in the registry"),
        "the registry's own words are shown: {output}"
    );
}

/// Target side: the upload through the nginx rules (so a chunked one, in
/// 1 MiB parts) breaks at 90% of a 64 MiB layer; the copy finishes and the
/// bytes received again stay under a fifth of the layer.
async fn target_resume(command: Command) {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let proxy = RulesProxy::start(&dst.base_url(), Rules::Nginx).await;
    let index = one_layer_index(&format!("resume/target/{command:?}"), RESUME_LAYER);
    push(&src, REPO, TAG, index.to_node()).await.unwrap();
    let layer = RESUME_LAYER as u64;
    proxy.cut(Cut::Upload {
        after: layer / 10 * 9,
    });

    let (code, output) = copy(command, &src.host(), &proxy.host()).await;
    assert_eq!(code, 0, "{output}");
    assert!(proxy.cut_fired(), "the upload was not cut");
    assert!(problems(&dst, &index).await.is_empty());
    // Everything read from request bodies: the layer once, the few config
    // and manifest bytes, and what was sent again after the break.
    let again = proxy.bytes_received().saturating_sub(layer);
    assert!(
        again < layer / 5,
        "{again} bytes of a {layer}-byte layer were sent again (cut at 90%)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn import_resumes_a_broken_upload() {
    target_resume(Command::Import).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_resumes_a_broken_upload() {
    target_resume(Command::Sync).await;
}

/// Source side: the blob GET of a 64 MiB layer breaks at 90%; the copy
/// continues with a `Range` request, so the source sends less than a fifth
/// of the layer again.
async fn source_resume(command: Command) {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let proxy = RulesProxy::start(&src.base_url(), Rules::Plain).await;
    let index = one_layer_index(&format!("resume/source/{command:?}"), RESUME_LAYER);
    push(&src, REPO, TAG, index.to_node()).await.unwrap();
    let layer = RESUME_LAYER as u64;
    proxy.cut(Cut::BlobGet {
        after: layer / 10 * 9,
    });

    let (code, output) = copy(command, &proxy.host(), &dst.host()).await;
    assert_eq!(code, 0, "{output}");
    assert!(proxy.cut_fired(), "the blob GET was not cut");
    assert!(problems(&dst, &index).await.is_empty());
    let again = proxy.bytes_down().saturating_sub(layer + 64 * 1024);
    assert!(
        again < layer / 5,
        "{again} bytes of a {layer}-byte layer were sent again (cut at 90%)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn import_resumes_a_broken_blob_download() {
    source_resume(Command::Import).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_resumes_a_broken_blob_download() {
    source_resume(Command::Sync).await;
}

/// Peak resident memory (VmHWM) of process `pid` until it exits, polled.
async fn peak_rss(pid: u32, child: &mut tokio::process::Child) -> u64 {
    let path = format!("/proc/{pid}/status");
    let mut peak = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let kib = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak = peak.max(kib.unwrap_or(0) * 1024);
        }
        if let Ok(Some(_)) = child.try_wait() {
            return peak;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The documented bound (docs/registries.md, "Memory"): a process baseline
/// plus one part per concurrent upload; a large layer is never held whole.
const RSS_BOUND: u64 = 96 * MIB as u64;

/// Chunked uploads hold one part in memory: the peak RSS of `import` of a
/// large layer through the 1 MiB nginx rules stays within [`RSS_BOUND`].
#[tokio::test(flavor = "multi_thread")]
async fn chunked_upload_memory_stays_bounded() {
    let big = std::env::var("REGMIRROR_BIG_LAYER_TEST").is_ok_and(|v| v == "1");
    let layer = if big { 1024 * MIB } else { 128 * MIB };
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let proxy = RulesProxy::start(&dst.base_url(), Rules::Nginx).await;
    let index = one_layer_index("memory", layer);
    push(&src, REPO, TAG, index.to_node()).await.unwrap();

    let source = format!("{}/{REPO}:{TAG}", src.host());
    let target = format!("{}/{REPO}:{TAG}", proxy.host());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["import", &source, &target])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting regmirror");
    let pid = child.id().expect("child pid");
    let peak = peak_rss(pid, &mut child).await;
    let out = child.wait_with_output().await.expect("regmirror output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(problems(&dst, &index).await.is_empty());
    assert!(
        peak > 0 && peak < RSS_BOUND,
        "peak RSS {} MiB for a {} MiB layer in {} MiB parts (bound {} MiB)",
        peak / MIB as u64,
        layer / MIB,
        NGINX_MAX_BODY / MIB as u64,
        RSS_BOUND / MIB as u64
    );
}

/// The bound of [`RSS_BOUND`] for a 256 MiB layer that the test never
/// holds: `bench/gen_big_layer.py` streams the image to an OCI layout on
/// disk, skopeo pushes it to the source, and the peak RSS (VmHWM) of
/// `regmirror import` through the 1 MiB nginx rules stays under the bound.
/// The 1 GiB figure is in bench/ (`bench/big-layer.sh`).
#[tokio::test(flavor = "multi_thread")]
async fn chunked_upload_memory_of_a_streamed_256_mib_layer() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let generator = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/gen_big_layer.py");
    let out = std::process::Command::new("python3")
        .args([generator, "--out", layout.to_str().unwrap(), "--mib", "256"])
        .output()
        .expect("running python3 bench/gen_big_layer.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stamp = std::fs::read_to_string(layout.join("big-layer.json")).unwrap();
    let stamp: serde_json::Value = serde_json::from_str(&stamp).unwrap();
    let want = stamp["manifest"].as_str().unwrap().to_string();
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let proxy = RulesProxy::start(&dst.base_url(), Rules::Nginx).await;
    let source = format!("{}/{REPO}:{TAG}", src.host());
    let out = tokio::process::Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:big", layout.display()))
        .arg(format!("docker://{source}"))
        .output()
        .await
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(dir);

    let target = format!("{}/{REPO}:{TAG}", proxy.host());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["import", &source, &target])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting regmirror");
    let pid = child.id().expect("child pid");
    let peak = peak_rss(pid, &mut child).await;
    let out = child.wait_with_output().await.expect("regmirror output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = skopeo_raw_digest(&dst, &format!("{REPO}:{TAG}"))
        .await
        .unwrap();
    assert_eq!(got, want);
    assert!(
        proxy
            .requests()
            .iter()
            .filter(|(m, _)| m == "PATCH")
            .count()
            >= 256,
        "the layer did not go up in 1 MiB parts"
    );
    assert!(
        peak > 0 && peak < RSS_BOUND,
        "peak RSS {} MiB for a 256 MiB layer in 1 MiB parts (bound {} MiB)",
        peak / MIB as u64,
        RSS_BOUND / MIB as u64
    );
}

/// The parts an ECR-rules upload needs are at least 5 MiB: a copy of a
/// 12 MiB layer that went chunked left no part refused at completion.
#[tokio::test(flavor = "multi_thread")]
async fn ecr_parts_meet_the_minimum() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let proxy = RulesProxy::start(&dst.base_url(), Rules::Ecr).await;
    proxy.create_repository(REPO);
    let index = one_layer_index("ecr/parts", 12 * MIB + 17);
    push(&src, REPO, TAG, index.to_node()).await.unwrap();
    let (code, output) = copy(Command::Import, &src.host(), &proxy.host()).await;
    assert_eq!(code, 0, "{output}");
    assert!(
        proxy.refusals().iter().all(|r| r.status != 400),
        "parts under {ECR_MIN_PART} bytes: {:?}",
        proxy.refusals()
    );
    assert!(problems(&dst, &index).await.is_empty());
}

/// `auth check` and `check` show the upload profile a host gets.
#[tokio::test]
async fn check_and_auth_check_show_the_upload_profile() {
    let run = common::regmirror_isolated(&["auth", "check", "myreg.azurecr.io"], &[]).await;
    assert!(
        run.stdout
            .contains("uploads: Azure Container Registry (chunked uploads, bodies up to 16 MiB"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        "[[mirror]]\nsource = \"ghcr.io/team/app\"\n\
         target = \"123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app\"\ntags = [\"v1\"]\n\n\
         [[registry]]\nhost = \"ghcr.io\"\nchunk_size = 2097152\n",
    )
    .unwrap();
    let run = common::regmirror_isolated(
        &[
            "check",
            "--no-credentials",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("123456789012.dkr.ecr.eu-west-1.amazonaws.com: Amazon ECR (monolithic uploads, parts of at least 5 MiB"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "ghcr.io: GitHub Container Registry (chunked uploads, 2 MiB parts when chunked)"
        ),
        "{}",
        run.stdout
    );
}

/// A chunked upload (here forced by `chunk_size` of 2 MiB) into a registry
/// that announces `OCI-Chunk-Min-Length: 6 MiB` on the session sends parts
/// of at least 6 MiB: the registry refuses none at completion.
#[tokio::test(flavor = "multi_thread")]
async fn session_chunk_minimum_raises_the_part_size() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let proxy = RulesProxy::start(&dst.base_url(), Rules::ChunkMin(6 * MIB as u64)).await;
    let index = one_layer_index("chunk-min/override", 20 * MIB);
    push(&src, REPO, TAG, index.to_node()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regmirror.toml");
    let text = format!(
        "[[registry]]\nhost = \"{}\"\nchunk_size = {}\n",
        proxy.host(),
        2 * MIB
    );
    std::fs::write(&config, text).unwrap();
    let source = format!("{}/{REPO}:{TAG}", src.host());
    let target = format!("{}/{REPO}:{TAG}", proxy.host());
    let run = regmirror(&[
        "import",
        "--config",
        config.to_str().unwrap(),
        &source,
        &target,
    ])
    .await;
    assert_eq!(run.code, 0, "{}\n{:?}", run.stderr, proxy.refusals());
    assert!(proxy.refusals().is_empty(), "{:?}", proxy.refusals());
    assert!(problems(&dst, &index).await.is_empty());
}
