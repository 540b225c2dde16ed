//! The requests of a first `regmirror sync` at the target: tags sharing
//! their blobs cost the target one manifest HEAD (the up-to-date check,
//! whose answer the copy reuses) and one manifest PUT each, plus one HEAD
//! per distinct blob and the blobs' uploads. The run's memory of blobs
//! present is dropped for a repository whose manifest PUT says a blob is
//! gone, and the copy is made again.
//!
//! Counted at a counting proxy in front of a real registry.

use crate::common;

use std::time::{Duration, Instant};

use common::{
    Blob, Fault, FaultPlan, FaultRule, Format, Manifest, Pusher, RegistryOptions, TestProxy,
    TestRegistry, Trigger,
};
use regex::Regex;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// `tags` tiny images in `repo` of `src`, one manifest per tag, all sharing
/// one config and one layer. Returns the shared blobs and each tag's digest.
async fn shared_blob_tags(
    src: &TestRegistry,
    repo: &str,
    tags: &[String],
) -> (Blob, Blob, Vec<String>) {
    let pusher = Pusher::for_registry(src);
    let config = Blob::new(
        "application/vnd.oci.image.config.v1+json",
        r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let layer = Blob::layer(Format::Oci, "first-sync shared layer", 2048);
    pusher.push_blob(repo, &config).await.unwrap();
    pusher.push_blob(repo, &layer).await.unwrap();
    let mut digests = Vec::new();
    for tag in tags {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
            "annotations": {"org.example.tag": tag},
        });
        let m = Manifest::from_json(OCI_MANIFEST, &body);
        pusher.push_manifest(repo, tag, &m).await.unwrap();
        digests.push(m.digest.clone());
    }
    (config, layer, digests)
}

/// Run `regmirror sync` on `config`; its exit code, stdout and stderr.
async fn sync(config: &std::path::Path) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["sync", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .output()
        .await
        .expect("running regmirror");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The digest `repo:tag` has at `reg`, if any.
async fn digest_at(reg: &TestRegistry, repo: &str, tag: &str) -> Option<String> {
    Pusher::for_registry(reg)
        .get_manifest(repo, tag)
        .await
        .ok()
        .map(|(_, bytes)| common::sha256_digest(&bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_of_20_tags_sharing_blobs_asks_once_per_blob_and_once_per_tag() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let proxy = TestProxy::start(&dst.base_url(), FaultPlan::none()).await;
    let tags: Vec<String> = (0..20).map(|i| format!("v{i:02}")).collect();
    let (config, layer, digests) = shared_blob_tags(&src, "team/app", &tags).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mirror.toml");
    std::fs::write(
        &path,
        format!(
            "[defaults]\nconcurrency = 4\n\n[[mirror]]\nsource = \"{}/team/app\"\n\
             target = \"{}/mirror/app\"\n",
            src.host(),
            proxy.host()
        ),
    )
    .unwrap();

    let (code, stdout, stderr) = sync(&path).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("20 copied"), "{stdout}");
    for (tag, digest) in tags.iter().zip(&digests) {
        assert_eq!(
            digest_at(&dst, "mirror/app", tag).await.as_deref(),
            Some(digest.as_str()),
            "mirror/app:{tag}"
        );
    }
    let requests = proxy.requests();
    let blob_heads = proxy.count_matching("HEAD", "/v2/mirror/app/blobs/sha256:");
    let manifest_heads = proxy.count_matching("HEAD", "/v2/mirror/app/manifests/");
    let manifest_puts = proxy.count_matching("PUT", "/v2/mirror/app/manifests/");
    eprintln!(
        "first sync of 20 tags: {} target requests, {blob_heads} blob HEADs, \
         {manifest_heads} manifest HEADs, {manifest_puts} manifest PUTs",
        requests.len()
    );
    // Two distinct blobs: at most one HEAD each, whatever the concurrency.
    assert!(blob_heads <= 2, "{blob_heads} blob HEADs: {requests:?}");
    for blob in [&config, &layer] {
        assert!(
            proxy.count_matching("HEAD", &format!("/blobs/{}$", blob.digest)) <= 1,
            "{requests:?}"
        );
    }
    // One manifest HEAD per tag (the up-to-date check; the copy reuses its
    // answer) and one PUT per tag.
    assert_eq!(manifest_heads, 20, "{requests:?}");
    assert_eq!(manifest_puts, 20, "{requests:?}");
    // Each blob is uploaded once (an upload starts with a POST).
    assert_eq!(
        proxy.count_matching("POST", "/v2/mirror/app/blobs/uploads/"),
        2,
        "{requests:?}"
    );
}

/// Deleting a blob from the target while the run believes it present: the
/// next tag's manifest PUT is refused (`MANIFEST_BLOB_UNKNOWN`), and the
/// copy is planned again with that repository's memory cleared, so the blob
/// is sent again and the tag lands. The proxy holds the second tag's
/// up-to-date check until the first tag is in place and the layer deleted;
/// a real registry cannot be paused at that point otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_deleted_during_the_run_is_sent_again() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous().with_delete()).await;
    let hold = FaultRule {
        method: Some("HEAD".into()),
        path: Regex::new("^/v2/mirror/app/manifests/b$").unwrap(),
        trigger: Trigger::Nth(1),
        fault: Fault::Stall(Duration::from_secs(20)),
    };
    let plan = FaultPlan {
        seed: 1,
        rules: vec![hold],
    };
    let proxy = TestProxy::start(&dst.base_url(), plan).await;
    let tags = vec!["a".to_string(), "b".to_string()];
    let (_, layer, digests) = shared_blob_tags(&src, "team/app", &tags).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mirror.toml");
    std::fs::write(
        &path,
        format!(
            "[defaults]\nconcurrency = 2\n\n[[mirror]]\nsource = \"{}/team/app\"\n\
             target = \"{}/mirror/app\"\ntags = [\"a\", \"b\"]\n",
            src.host(),
            proxy.host()
        ),
    )
    .unwrap();
    let run = tokio::spawn(async move { sync(&path).await });

    // Once tag a is in place, delete the layer from the target repository.
    let deadline = Instant::now() + Duration::from_secs(15);
    while digest_at(&dst, "mirror/app", "a").await.is_none() {
        assert!(Instant::now() < deadline, "tag a never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("{}/v2/mirror/app/blobs/{}", dst.base_url(), layer.digest);
    let deleted = dst.http_client().delete(&url).send().await.unwrap();
    assert_eq!(deleted.status().as_u16(), 202, "DELETE {url}");
    let pusher = Pusher::for_registry(&dst);
    assert!(
        !pusher
            .blob_exists("mirror/app", &layer.digest)
            .await
            .unwrap()
    );

    let (code, stdout, stderr) = run.await.unwrap();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("2 copied"), "{stdout}");
    assert_eq!(
        digest_at(&dst, "mirror/app", "b").await.as_deref(),
        Some(digests[1].as_str())
    );
    assert!(
        pusher
            .blob_exists("mirror/app", &layer.digest)
            .await
            .unwrap()
    );
    assert_eq!(
        pusher.get_blob("mirror/app", &layer.digest).await.unwrap(),
        layer.data
    );
    let requests = proxy.requests();
    // Tag b's manifest was refused once (a few quick tries for a link being
    // rewritten, then the retry with the memory cleared, which succeeds).
    assert!(
        proxy.count_matching("PUT", "/v2/mirror/app/manifests/b$") >= 2,
        "{requests:?}"
    );
    // The retry asked for the layer again and sent it again: three uploads
    // in all (config and layer, then the layer once more).
    assert!(
        proxy.count_matching("HEAD", &format!("/blobs/{}$", layer.digest)) >= 2,
        "{requests:?}"
    );
    assert_eq!(
        proxy.count_matching("POST", "/v2/mirror/app/blobs/uploads/"),
        3,
        "{requests:?}"
    );
    assert!(
        stderr.contains("planning again"),
        "the retry is logged: {stderr}"
    );
}
