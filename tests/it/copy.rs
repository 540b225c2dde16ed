//! The copy engine against real registries (distribution 2.8): multi-arch
//! indexes with attestations, nested indexes, artifacts, mounts, dedupe,
//! faults, corrupt sources, platform filtering and foreign layers. Every
//! result is also checked with skopeo (`inspect --raw` digest).

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::{
    Fault, FaultPlan, Format, ImageBuilder, ImageSet, IndexBuilder, Node, RegistryOptions,
    TestProxy, TestRegistry, TokenIssuer, TokenIssuerOptions, push, skopeo_raw_digest,
};
use regmirror::copy::{
    ANNOTATION_SOURCE_DIGEST, BlobAction, Copier, CopyError, CopyOptions, Outcome, PlanAction,
};
use regmirror::registry::{
    Client, ClientOptions, Digest, Reference, RegistryConfig, RetryPolicy, Secret,
};

/// A source and a target registry, each behind a counting proxy.
struct Env {
    src: TestRegistry,
    dst: TestRegistry,
    src_proxy: TestProxy,
    dst_proxy: TestProxy,
}

impl Env {
    async fn new() -> Env {
        Env::with(RegistryOptions::anonymous(), RegistryOptions::anonymous()).await
    }

    async fn with(src: RegistryOptions, dst: RegistryOptions) -> Env {
        let src = TestRegistry::start(src).await;
        let dst = TestRegistry::start(dst).await;
        let src_proxy = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
        let dst_proxy = TestProxy::start(&dst.base_url(), FaultPlan::none()).await;
        Env {
            src,
            dst,
            src_proxy,
            dst_proxy,
        }
    }

    fn client(&self) -> Client {
        let mut registries = Vec::new();
        for (proxy, reg) in [(&self.src_proxy, &self.src), (&self.dst_proxy, &self.dst)] {
            if let Some((user, pass)) = reg.credentials() {
                registries.push(RegistryConfig {
                    host: proxy.host(),
                    username: Some(user),
                    password: Some(Secret::new(pass)),
                    ..Default::default()
                });
            }
        }
        Client::new(ClientOptions {
            registries,
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(200),
                max_elapsed: Duration::from_secs(20),
            },
            ..Default::default()
        })
        .expect("client for loopback registries")
    }

    fn copier(&self) -> Copier {
        Copier::new(self.client())
    }

    fn src_ref(&self, s: &str) -> Reference {
        Reference::parse(&format!("{}/{s}", self.src_proxy.host())).unwrap()
    }

    fn dst_ref(&self, s: &str) -> Reference {
        Reference::parse(&format!("{}/{s}", self.dst_proxy.host())).unwrap()
    }

    /// Source blob GETs of `digest`.
    fn src_blob_gets(&self, digest: &str) -> usize {
        self.src_proxy
            .count_matching("GET", &format!("/blobs/{digest}$"))
    }

    /// Blob uploads committed at the target (PUT on an upload URL).
    fn dst_blob_puts(&self) -> usize {
        self.dst_proxy.count_matching("PUT", "/blobs/uploads/")
    }
}

/// Every manifest of `node` is in `repo` of `reg` under its own digest
/// (checked with skopeo), and `repo:tag` has the node's digest.
async fn assert_copied(reg: &TestRegistry, repo: &str, tag: &str, node: &Node) {
    for m in node.manifests_in_push_order() {
        let got = skopeo_raw_digest(reg, &format!("{repo}@{}", m.digest))
            .await
            .unwrap();
        assert_eq!(got, m.digest, "{repo}@{} via skopeo", m.digest);
    }
    let top = skopeo_raw_digest(reg, &format!("{repo}:{tag}"))
        .await
        .unwrap();
    assert_eq!(top, node.digest(), "{repo}:{tag} via skopeo");
}

async fn head_digest(client: &Client, r: &Reference) -> Option<Digest> {
    client
        .head_manifest(r)
        .await
        .unwrap()
        .and_then(|h| h.digest)
}

fn digest(s: &str) -> Digest {
    s.parse().unwrap()
}

#[tokio::test]
async fn oci_index_with_attestations_is_copied_byte_identical_then_up_to_date() {
    let env = Env::new().await;
    let index = ImageSet::multi_arch(
        "app",
        &["linux/amd64", "linux/arm64", "linux/arm/v7"],
        true,
        Format::Oci,
    );
    push(&env.src, "team/app", "v1", index.to_node())
        .await
        .unwrap();
    let copier = env.copier();
    let (src, dst) = (env.src_ref("team/app:v1"), env.dst_ref("mirror/app:v1"));

    let report = copier
        .copy(&src, &dst, &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Copied);
    assert_eq!(report.source_digest, digest(index.digest()));
    assert_eq!(report.target_digest, digest(index.digest()));
    assert!(!report.digest_changed());
    assert_eq!(
        report.manifests_copied, 7,
        "3 images + 3 attestations + the index"
    );
    let blobs = index.blobs();
    assert_eq!(report.blobs_copied as usize, blobs.len());
    assert_eq!(
        report.bytes_copied,
        blobs.iter().map(|b| b.size() as u64).sum::<u64>()
    );
    assert_eq!(
        head_digest(copier.client(), &dst).await,
        Some(digest(index.digest()))
    );
    assert_copied(&env.dst, "mirror/app", "v1", &index.to_node()).await;
    for b in &blobs {
        assert_eq!(
            env.src_blob_gets(&b.digest),
            1,
            "blob {} fetched once",
            b.digest
        );
    }

    // A second run sees the digest at the target and writes nothing.
    env.dst_proxy.reset();
    env.src_proxy.reset();
    let again = copier
        .copy(&src, &dst, &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(again.outcome, Outcome::UpToDate);
    assert_eq!(env.dst_proxy.count("PUT", "/"), 0);
    assert_eq!(env.dst_proxy.count("POST", "/"), 0);
    assert_eq!(env.src_proxy.count("GET", "/v2/team/app/blobs/"), 0);
}

#[tokio::test]
async fn docker_manifest_list_with_attestation_keeps_its_digest() {
    let env = Env::new().await;
    let list = ImageSet::multi_arch(
        "dock",
        &["linux/amd64", "linux/arm64"],
        true,
        Format::Docker,
    );
    push(&env.src, "dock", "1.0", list.to_node()).await.unwrap();
    let copier = env.copier();
    let report = copier
        .copy(
            &env.src_ref("dock:1.0"),
            &env.dst_ref("dock:1.0"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Copied);
    assert_eq!(report.target_digest, digest(list.digest()));
    let (media_type, bytes) = common::Pusher::for_registry(&env.dst)
        .get_manifest("dock", "1.0")
        .await
        .unwrap();
    assert_eq!(media_type, common::image::DOCKER_LIST);
    assert_eq!(bytes, list.manifest.bytes, "exact bytes");
    assert_copied(&env.dst, "dock", "1.0", &list.to_node()).await;
}

#[tokio::test]
async fn nested_index_and_artifact_with_subject() {
    let env = Env::new().await;
    let inner = ImageSet::multi_arch("inner", &["linux/amd64", "linux/s390x"], false, Format::Oci);
    let outer_img = ImageSet::image("outer", "linux/ppc64le", Format::Oci);
    let sig = common::Blob::random("application/vnd.example.signature", "sig", 300);
    let artifact = common::image::artifact_for(
        &outer_img.manifest,
        "application/vnd.example.signature",
        sig,
    );
    let outer = IndexBuilder::new(Format::Oci)
        .image(outer_img.clone())
        .nested(inner.clone())
        .image(artifact.clone())
        .build();
    push(&env.src, "nest", "v1", outer.to_node()).await.unwrap();
    let copier = env.copier();
    let report = copier
        .copy(
            &env.src_ref("nest:v1"),
            &env.dst_ref("nest:v1"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.target_digest, digest(outer.digest()));
    assert_eq!(
        report.manifests_copied, 6,
        "outer, inner index, 2 inner images, image, artifact"
    );
    assert_copied(&env.dst, "nest", "v1", &outer.to_node()).await;

    // The artifact alone, by tag: its subject is left as it is (not copied).
    push(&env.src, "sigs", "sig", Node::Image(artifact.clone()))
        .await
        .unwrap();
    let r = copier
        .copy(
            &env.src_ref("sigs:sig"),
            &env.dst_ref("sigs:sig"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.target_digest, digest(artifact.digest()));
    assert_eq!(r.manifests_copied, 1);
    let got = skopeo_raw_digest(&env.dst, "sigs:sig").await.unwrap();
    assert_eq!(got, artifact.digest());
    let subject_at_target = copier
        .client()
        .head_manifest(&env.dst_ref(&format!("sigs@{}", outer_img.digest())))
        .await
        .unwrap();
    assert!(
        subject_at_target.is_none(),
        "the subject is another image and is not copied"
    );
}

#[tokio::test]
async fn second_repository_mounts_instead_of_fetching() {
    let env = Env::new().await;
    let index = ImageSet::multi_arch("mnt", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    push(&env.src, "mnt", "v1", index.to_node()).await.unwrap();
    let copier = env.copier();
    copier
        .copy(
            &env.src_ref("mnt:v1"),
            &env.dst_ref("one/mnt:v1"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    env.src_proxy.reset();
    env.dst_proxy.reset();
    let r = copier
        .copy(
            &env.src_ref("mnt:v1"),
            &env.dst_ref("two/mnt:v1"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    let blobs = index.blobs();
    assert_eq!(r.blobs_mounted as usize, blobs.len(), "{r:?}");
    assert_eq!((r.blobs_copied, r.bytes_copied), (0, 0));
    for b in &blobs {
        assert_eq!(
            env.src_blob_gets(&b.digest),
            0,
            "mounted blob {} must not be fetched",
            b.digest
        );
    }
    assert_eq!(env.dst_blob_puts(), 0, "no upload was committed");
    assert_eq!(
        env.dst_proxy.count("POST", "/v2/two/mnt/blobs/uploads/"),
        blobs.len()
    );
    assert_copied(&env.dst, "two/mnt", "v1", &index.to_node()).await;

    // Same registry as source and target: a fresh copier mounts from the
    // source repository, and the registry log shows no blob GET.
    let fresh = env.copier();
    env.dst_proxy.reset();
    let r = fresh
        .copy(
            &env.dst_ref("two/mnt:v1"),
            &env.dst_ref("three/mnt:v1"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.blobs_mounted as usize, blobs.len());
    assert_eq!(env.dst_proxy.count_matching("GET", "/blobs/sha256:"), 0);
    assert_copied(&env.dst, "three/mnt", "v1", &index.to_node()).await;
}

#[tokio::test]
async fn blob_shared_by_concurrent_images_is_transferred_once() {
    let env = Env::new().await;
    // Same platforms: the base layer of each platform is shared by both images.
    let a = ImageSet::multi_arch("a", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    let b = ImageSet::multi_arch("b", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    push(&env.src, "shared/a", "v1", a.to_node()).await.unwrap();
    push(&env.src, "shared/b", "v1", b.to_node()).await.unwrap();
    env.src_proxy.reset();
    let copier = env.copier();
    let opts = CopyOptions::default();
    let (sa, da, sb, db) = (
        env.src_ref("shared/a:v1"),
        env.dst_ref("shared/all:a"),
        env.src_ref("shared/b:v1"),
        env.dst_ref("shared/all:b"),
    );
    let (ra, rb) = tokio::join!(copier.copy(&sa, &da, &opts), copier.copy(&sb, &db, &opts));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let mut distinct: HashMap<String, usize> = HashMap::new();
    for blob in a.blobs().into_iter().chain(b.blobs()) {
        *distinct.entry(blob.digest.clone()).or_default() += 1;
    }
    let shared: Vec<&String> = distinct
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(d, _)| d)
        .collect();
    assert_eq!(shared.len(), 2, "one shared base layer per platform");
    let gets: usize = env.src_proxy.count_matching("GET", "/blobs/sha256:");
    assert_eq!(
        gets,
        distinct.len(),
        "every distinct blob fetched exactly once"
    );
    assert_eq!(
        env.dst_blob_puts(),
        distinct.len(),
        "every distinct blob uploaded exactly once"
    );
    assert_eq!((ra.blobs_copied + rb.blobs_copied) as usize, distinct.len());
    assert_eq!((ra.blobs_skipped + rb.blobs_skipped) as usize, shared.len());
    assert_copied(&env.dst, "shared/all", "a", &a.to_node()).await;
    assert_copied(&env.dst, "shared/all", "b", &b.to_node()).await;
}

#[tokio::test]
async fn interrupted_copy_leaves_no_tag_and_rerun_completes() {
    let env = Env::new().await;
    let index = ImageSet::multi_arch("cut", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    push(&env.src, "cut", "v1", index.to_node()).await.unwrap();
    let victim = index.image_for("linux/arm64").unwrap().layers[1]
        .digest
        .clone();
    env.src_proxy.set_plan(FaultPlan::none().always(
        "GET",
        &format!("/blobs/{victim}$"),
        Fault::DropMidBody,
    ));
    let copier = env.copier();
    let (src, dst) = (env.src_ref("cut:v1"), env.dst_ref("cut:v1"));
    let opts = CopyOptions {
        blob_concurrency: 1,
        ..CopyOptions::default()
    };
    let err = copier.copy(&src, &dst, &opts).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CopyError::Blob { .. }), "{msg}");
    assert!(
        msg.contains(&victim) && msg.contains("target tag was not changed"),
        "{msg}"
    );
    assert_eq!(
        env.src_blob_gets(&victim),
        3,
        "the whole transfer is restarted, 3 attempts"
    );
    assert_eq!(
        head_digest(copier.client(), &dst).await,
        None,
        "no tag after a failure"
    );

    // The network heals; a new run skips what is there and completes.
    env.src_proxy.set_plan(FaultPlan::none());
    let r = env.copier().copy(&src, &dst, &opts).await.unwrap();
    assert_eq!(r.outcome, Outcome::Copied);
    assert!(r.blobs_copied >= 1, "{r:?}");
    assert!(
        r.blobs_skipped >= 1,
        "blobs copied by the first run are skipped: {r:?}"
    );
    assert_eq!(
        (r.blobs_copied + r.blobs_skipped) as usize,
        index.blobs().len()
    );
    assert_copied(&env.dst, "cut", "v1", &index.to_node()).await;
}

#[tokio::test]
async fn transient_mid_body_failure_restarts_the_blob_within_one_run() {
    let env = Env::new().await;
    let img = ImageBuilder::new(Format::Docker)
        .platform("linux/amd64")
        .random_layer("transient/big", 512 * 1024)
        .build();
    push(&env.src, "flaky", "v1", Node::Image(img.clone()))
        .await
        .unwrap();
    let layer = img.layers[0].digest.clone();
    env.src_proxy.set_plan(FaultPlan::none().first(
        "GET",
        &format!("/blobs/{layer}$"),
        1,
        Fault::DropMidBody,
    ));
    let r = env
        .copier()
        .copy(
            &env.src_ref("flaky:v1"),
            &env.dst_ref("flaky:v1"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::Copied);
    assert_eq!(env.src_proxy.injected().len(), 1);
    assert_eq!(
        env.src_blob_gets(&layer),
        2,
        "one failed GET, one fresh GET"
    );
    assert_copied(&env.dst, "flaky", "v1", &Node::Image(img)).await;
}

#[tokio::test]
async fn corrupt_source_blob_never_reaches_the_target() {
    let env = Env::new().await;
    let index = ImageSet::multi_arch("bad", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    push(&env.src, "bad", "v1", index.to_node()).await.unwrap();
    let victim = index.image_for("linux/amd64").unwrap().layers[1]
        .digest
        .clone();
    env.src_proxy.set_plan(FaultPlan::none().always(
        "GET",
        &format!("/blobs/{victim}$"),
        Fault::CorruptBody,
    ));
    let copier = env.copier();
    let dst = env.dst_ref("bad:v1");
    let err = copier
        .copy(&env.src_ref("bad:v1"), &dst, &CopyOptions::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&victim), "{msg}");
    assert!(
        msg.contains("does not match") || msg.contains("digest"),
        "{msg}"
    );
    assert_eq!(
        env.src_blob_gets(&victim),
        1,
        "a digest mismatch is not retried"
    );
    // HEAD the target tag: 404.
    assert!(copier.client().head_manifest(&dst).await.unwrap().is_none());
    assert!(
        !common::Pusher::for_registry(&env.dst)
            .manifest_exists("bad", "v1")
            .await
            .unwrap()
    );
    // The corrupt bytes were never committed.
    let blob = copier
        .client()
        .head_blob(&dst.repository_only(), &digest(&victim))
        .await
        .unwrap();
    assert!(blob.is_none());
}

#[tokio::test]
async fn platform_filter_writes_a_new_index_with_matching_attestations() {
    let env = Env::new().await;
    let index = ImageSet::multi_arch(
        "multi",
        &["linux/amd64", "linux/arm64", "linux/arm/v7"],
        true,
        Format::Oci,
    );
    push(&env.src, "multi", "v1", index.to_node())
        .await
        .unwrap();
    let copier = env.copier();
    let opts = CopyOptions {
        platforms: vec![
            "linux/amd64".parse().unwrap(),
            "linux/arm/v7".parse().unwrap(),
        ],
        ..CopyOptions::default()
    };
    let dst = env.dst_ref("multi:v1");
    let r = copier
        .copy(&env.src_ref("multi:v1"), &dst, &opts)
        .await
        .unwrap();
    assert!(r.digest_changed());
    assert_eq!(r.source_digest, digest(index.digest()));
    assert_eq!(r.platforms_kept, vec!["linux/amd64", "linux/arm/v7"]);
    assert_eq!(
        skopeo_raw_digest(&env.dst, "multi:v1").await.unwrap(),
        r.target_digest.to_string()
    );

    let got = copier.client().get_manifest(&dst).await.unwrap();
    assert_eq!(got.digest, r.target_digest);
    let v: serde_json::Value = serde_json::from_slice(&got.bytes).unwrap();
    assert_eq!(v["annotations"][ANNOTATION_SOURCE_DIGEST], index.digest());
    let listed: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    let amd = index.image_for("linux/amd64").unwrap();
    let armv7 = index.image_for("linux/arm/v7").unwrap();
    let arm64 = index.image_for("linux/arm64").unwrap();
    let att_of = |img: &common::Image| {
        index
            .attestations()
            .into_iter()
            .find(|a| a.entry_annotations.iter().any(|(_, v)| v == img.digest()))
            .unwrap()
            .digest()
            .to_string()
    };
    assert_eq!(
        listed,
        vec![
            amd.digest(),
            armv7.digest(),
            att_of(amd).as_str(),
            att_of(armv7).as_str()
        ]
    );
    for kept in [
        amd.digest().to_string(),
        armv7.digest().to_string(),
        att_of(amd),
        att_of(armv7),
    ] {
        assert_eq!(
            skopeo_raw_digest(&env.dst, &format!("multi@{kept}"))
                .await
                .unwrap(),
            kept
        );
    }
    for dropped in [arm64.digest().to_string(), att_of(arm64)] {
        let at = env.dst_ref(&format!("multi@{dropped}"));
        assert!(
            copier.client().head_manifest(&at).await.unwrap().is_none(),
            "{dropped} dropped"
        );
    }

    // Re-run: the filtered digest is at the target, nothing to do.
    let again = copier
        .copy(&env.src_ref("multi:v1"), &dst, &opts)
        .await
        .unwrap();
    assert_eq!(again.outcome, Outcome::UpToDate);
    assert_eq!(again.target_digest, r.target_digest);

    // No platform matches: an error naming what exists.
    let none = CopyOptions {
        platforms: vec!["windows/amd64".parse().unwrap()],
        ..CopyOptions::default()
    };
    let err = copier
        .copy(&env.src_ref("multi:v1"), &env.dst_ref("multi:win"), &none)
        .await
        .unwrap_err();
    assert!(matches!(err, CopyError::NoMatchingPlatform { .. }), "{err}");
    assert!(err.to_string().contains("linux/arm64"), "{err}");
    assert!(
        copier
            .client()
            .head_manifest(&env.dst_ref("multi:win"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn platform_filter_on_a_single_platform_image() {
    let env = Env::new().await;
    let img = ImageSet::image("single", "linux/arm/v7", Format::Docker);
    push(&env.src, "single", "v1", Node::Image(img.clone()))
        .await
        .unwrap();
    let copier = env.copier();
    let yes = CopyOptions {
        platforms: vec!["linux/arm/v7".parse().unwrap()],
        ..CopyOptions::default()
    };
    let r = copier
        .copy(&env.src_ref("single:v1"), &env.dst_ref("single:v1"), &yes)
        .await
        .unwrap();
    assert_eq!(r.target_digest, digest(img.digest()));
    assert!(!r.digest_changed());
    let no = CopyOptions {
        platforms: vec!["linux/amd64".parse().unwrap()],
        ..CopyOptions::default()
    };
    let err = copier
        .copy(&env.src_ref("single:v1"), &env.dst_ref("single:v2"), &no)
        .await
        .unwrap_err();
    assert!(matches!(err, CopyError::PlatformMismatch { .. }), "{err}");
    assert!(err.to_string().contains("linux/arm/v7"), "{err}");
}

#[tokio::test]
async fn foreign_layers_are_not_copied_unless_asked() {
    let env = Env::with(
        RegistryOptions::anonymous().with_foreign_layers(),
        RegistryOptions::anonymous().with_foreign_layers(),
    )
    .await;
    let img = ImageBuilder::new(Format::Docker)
        .platform("windows/amd64")
        .foreign_layer("win/base", 4096, "https://example.invalid/layer.tar.gz")
        .random_layer("win/app", 1024)
        .build();
    push(&env.src, "win", "v1", Node::Image(img.clone()))
        .await
        .unwrap();
    let copier = env.copier();
    let plan = copier
        .plan(
            &env.src_ref("win:v1"),
            &env.dst_ref("win:v1"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    let foreign = &img.layers[0].digest;
    let step = plan
        .blobs
        .iter()
        .find(|b| b.digest.to_string() == *foreign)
        .unwrap();
    assert_eq!(step.action, BlobAction::Foreign);
    let r = copier
        .execute(&plan, &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(r.foreign_layers_skipped, 1);
    assert_eq!(r.blobs_copied, 2, "config and the distributable layer");
    assert_eq!(env.src_blob_gets(foreign), 0);
    assert_eq!(r.target_digest, digest(img.digest()));
    assert_copied(&env.dst, "win", "v1", &Node::Image(img)).await;
}

#[tokio::test]
async fn tag_conflict_needs_force() {
    let env = Env::new().await;
    let old = ImageSet::image("old", "linux/amd64", Format::Oci);
    let new = ImageSet::image("new", "linux/amd64", Format::Oci);
    push(&env.src, "c", "v1", Node::Image(new.clone()))
        .await
        .unwrap();
    push(&env.dst, "c", "v1", Node::Image(old.clone()))
        .await
        .unwrap();
    let copier = env.copier();
    let (src, dst) = (env.src_ref("c:v1"), env.dst_ref("c:v1"));
    let plan = copier
        .plan(&src, &dst, &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(
        plan.action,
        PlanAction::Conflict {
            current: digest(old.digest())
        }
    );
    env.dst_proxy.reset();
    let r = copier
        .copy(&src, &dst, &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::TagConflict);
    assert_eq!(r.previous_digest, Some(digest(old.digest())));
    assert_eq!(
        env.dst_proxy.count("PUT", "/"),
        0,
        "nothing written on a conflict"
    );
    assert_eq!(
        skopeo_raw_digest(&env.dst, "c:v1").await.unwrap(),
        old.digest()
    );

    let forced = CopyOptions {
        force: true,
        ..CopyOptions::default()
    };
    let r = copier.copy(&src, &dst, &forced).await.unwrap();
    assert_eq!(r.outcome, Outcome::Copied);
    assert_eq!(r.previous_digest, Some(digest(old.digest())));
    assert_copied(&env.dst, "c", "v1", &Node::Image(new)).await;
}

#[tokio::test]
async fn digest_only_source_to_tagless_target_pushes_by_digest() {
    let env = Env::new().await;
    let index = ImageSet::multi_arch("bydigest", &["linux/amd64"], true, Format::Oci);
    push(&env.src, "bd", "v1", index.to_node()).await.unwrap();
    let copier = env.copier();
    let src = env.src_ref(&format!("bd@{}", index.digest()));
    let r = copier
        .copy(&src, &env.dst_ref("bd"), &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::Copied);
    assert_eq!(
        skopeo_raw_digest(&env.dst, &format!("bd@{}", index.digest()))
            .await
            .unwrap(),
        index.digest()
    );
    let tags = common::Pusher::for_registry(&env.dst)
        .tags("bd")
        .await
        .unwrap();
    assert!(tags.is_empty(), "no tag created: {tags:?}");
    let again = copier
        .copy(&src, &env.dst_ref("bd"), &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(again.outcome, Outcome::UpToDate);
}

#[tokio::test]
async fn htpasswd_source_to_token_target_with_mounts() {
    let issuer = TokenIssuer::start(TokenIssuerOptions::default()).await;
    let env = Env::with(
        RegistryOptions::htpasswd("alice", "s3cret-pw"),
        RegistryOptions::token(&issuer),
    )
    .await;
    let index = ImageSet::multi_arch("auth", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    push(&env.src, "private/app", "v1", index.to_node())
        .await
        .unwrap();
    let copier = env.copier();
    let r = copier
        .copy(
            &env.src_ref("private/app:v1"),
            &env.dst_ref("a/app:v1"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.target_digest, digest(index.digest()));
    assert_copied(&env.dst, "a/app", "v1", &index.to_node()).await;
    env.src_proxy.reset();
    let r = copier
        .copy(
            &env.src_ref("private/app:v1"),
            &env.dst_ref("b/app:v1"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.blobs_mounted as usize, index.blobs().len(), "{r:?}");
    assert_eq!(env.src_proxy.count_matching("GET", "/blobs/sha256:"), 0);
    assert_copied(&env.dst, "b/app", "v1", &index.to_node()).await;
}

#[tokio::test]
async fn concurrent_copies_into_two_repositories_fetch_a_shared_blob_once() {
    let env = Env::new().await;
    let a = ImageSet::multi_arch("ra", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    let b = ImageSet::multi_arch("rb", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    push(&env.src, "x/a", "v1", a.to_node()).await.unwrap();
    push(&env.src, "x/b", "v1", b.to_node()).await.unwrap();
    env.src_proxy.reset();
    let copier = env.copier();
    let opts = CopyOptions::default();
    let (sa, da, sb, db) = (
        env.src_ref("x/a:v1"),
        env.dst_ref("repo-a/app:v1"),
        env.src_ref("x/b:v1"),
        env.dst_ref("repo-b/app:v1"),
    );
    let (ra, rb) = tokio::join!(copier.copy(&sa, &da, &opts), copier.copy(&sb, &db, &opts));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let mut distinct: HashMap<String, usize> = HashMap::new();
    for blob in a.blobs().into_iter().chain(b.blobs()) {
        *distinct.entry(blob.digest.clone()).or_default() += 1;
    }
    let shared = distinct.values().filter(|n| **n > 1).count();
    assert_eq!(shared, 2);
    for d in distinct.keys() {
        assert_eq!(env.src_blob_gets(d), 1, "blob {d} fetched once");
    }
    assert_eq!(
        (ra.blobs_mounted + rb.blobs_mounted) as usize,
        shared,
        "{ra:?} {rb:?}"
    );
    assert_eq!(env.dst_blob_puts(), distinct.len());
    assert_copied(&env.dst, "repo-a/app", "v1", &a.to_node()).await;
    assert_copied(&env.dst, "repo-b/app", "v1", &b.to_node()).await;
}
