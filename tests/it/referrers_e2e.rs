//! Signatures, SBOMs and attestations travel with a mirrored image, proven
//! through the `regmirror` binary and checked with tools that are not
//! regmirror (the harness's cosign verifier, skopeo, a plain reader).
//!
//! The image: a buildx-style two-platform index with an attestation
//! manifest per platform inside it, an SPDX SBOM referrer per platform
//! image, an in-toto provenance referrer of the index, and cosign
//! key-based signatures of the index and of every manifest it lists.
//! Routes: distribution → distribution (fallback tags on both sides),
//! distribution → ferro (tag scheme → API) and ferro → distribution
//! (API → tag scheme), by `sync` and by `import --referrers`; token and
//! htpasswd auth; a platform-filtered copy; signatures and attestations
//! appended upstream after a first run (cosign's `.sig`, `.att`, `.sbom`
//! tags move); whole-repository mirrors of tags sharing one index, copied
//! at once and repeated; artifact-type lists on a source that filters and
//! on one that does not; a doctored source fallback index; skopeo reading
//! the mirrored signatures; fakes for paged referrer lists, an ignored
//! `artifactType` filter and `sha256-<hex>` tags resolved as digests.

use crate::common;

use std::path::PathBuf;

use common::artifacts::{IN_TOTO_TYPE, SPDX, SignedImage, fallback_tag, sbom_for};
use common::cosign::{
    CosignKey, sig_tag, sign_digest, signature_layer, signature_manifest, verify_image,
    verify_signed,
};
use common::ferro::{AnyRegistry, FerroRegistry};
use common::referrers_fake::{FakeReferrers, FakeRegistry};
use common::referrers_verify::{At, mirror_problems, referrer_problems};
use common::{Pusher, RegistryOptions, Run, TestRegistry, regmirror};

/// `sync --config` of `config` in a fresh directory, JSON report parsed.
async fn sync(config: &str) -> (Run, serde_json::Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("mirror.toml");
    std::fs::write(&path, config).expect("writing the config");
    let run = regmirror(&[
        "sync",
        "--config",
        path.to_str().unwrap(),
        "--output",
        "json",
    ])
    .await;
    let doc = serde_json::from_str(&run.stdout).unwrap_or(serde_json::Value::Null);
    (run, doc)
}

/// [`sync`], failing the test unless it exits 0; the report.
async fn sync_ok(config: &str, what: &str) -> serde_json::Value {
    let (run, doc) = sync(config).await;
    assert_ok(&run, what);
    doc
}

/// Fails the test unless `img` is completely mirrored from `src` to `dst`
/// as `v1` (see [`mirror_problems`]).
async fn assert_mirrored(img: &SignedImage, src: At<'_>, dst: At<'_>, what: &str) {
    assert_none(
        mirror_problems(img, src, dst, "v1", &all_subjects(img)).await,
        what,
    );
}

fn assert_ok(run: &Run, what: &str) {
    assert_eq!(
        run.code, 0,
        "{what} exited {}\nstdout:\n{}\nstderr:\n{}",
        run.code, run.stdout, run.stderr
    );
}

fn assert_none(problems: Vec<String>, what: &str) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

/// One referrers-enabled mirror of `src/repo:tag` into `dst/repo`.
fn mirror_config(src: &str, src_repo: &str, tag: &str, dst: &str, dst_repo: &str) -> String {
    format!(
        "[[mirror]]\nsource = \"{src}/{src_repo}:{tag}\"\ntarget = \"{dst}/{dst_repo}\"\n\
         referrers = true\ncosign_tags = true\n"
    )
}

/// The index and every manifest it lists: what must carry its signatures
/// and referrers after a full copy.
fn all_subjects(img: &SignedImage) -> Vec<String> {
    assert!(
        !img.signed.is_empty(),
        "the image was pushed and signed first"
    );
    img.referrer_subjects()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_image_mirrors_distribution_to_distribution() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let mut img = SignedImage::build("e2e-d2d");
    img.push((&src).into(), "team/app", "v1").await.unwrap();

    sync_ok(
        &mirror_config(&src.host(), "team/app", "v1", &dst.host(), "mirror/app"),
        "sync distribution -> distribution",
    )
    .await;
    assert_mirrored(
        &img,
        At::new(&src, "team/app"),
        At::new(&dst, "mirror/app"),
        "distribution -> distribution",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_image_mirrors_to_a_registry_with_the_api_and_back() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let ferro = FerroRegistry::start().await;
    let back = TestRegistry::start(RegistryOptions::anonymous()).await;
    let mut img = SignedImage::build("e2e-api");
    img.push((&src).into(), "team/app", "v1").await.unwrap();

    // Tag scheme -> API, with `sync`.
    sync_ok(
        &mirror_config(&src.host(), "team/app", "v1", &ferro.host(), "mirror/app"),
        "sync distribution -> ferro",
    )
    .await;
    assert_mirrored(
        &img,
        At::new(&src, "team/app"),
        At::new(&ferro, "mirror/app"),
        "distribution -> ferro",
    )
    .await;

    // API -> tag scheme, with the one-shot `import --referrers`.
    let run = regmirror(&[
        "import",
        &format!("{}/mirror/app:v1", ferro.host()),
        &format!("{}/back/app:v1", back.host()),
        "--referrers",
    ])
    .await;
    assert_ok(&run, "import --referrers ferro -> distribution");
    assert_mirrored(
        &img,
        At::new(&ferro, "mirror/app"),
        At::new(&back, "back/app"),
        "ferro -> distribution",
    )
    .await;
    // And the round trip agrees with the original source.
    for d in &all_subjects(&img) {
        assert_none(
            referrer_problems(At::new(&src, "team/app"), At::new(&back, "back/app"), d).await,
            "source vs round trip",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_filtered_copy_keeps_the_referrers_of_kept_platforms() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dist = TestRegistry::start(RegistryOptions::anonymous()).await;
    let ferro = FerroRegistry::start().await;
    let mut img = SignedImage::build("e2e-filter");
    img.push((&src).into(), "team/app", "v1").await.unwrap();
    for dst in [AnyRegistry::Distribution(&dist), AnyRegistry::Ferro(&ferro)] {
        let config = format!(
            "{}platforms = [\"linux/amd64\"]\n",
            mirror_config(&src.host(), "team/app", "v1", &dst.host(), "filtered/app")
        );
        let report = sync_ok(
            &config,
            &format!("platform-filtered sync to {}", dst.kind()),
        )
        .await;
        let at_dst = At {
            reg: dst,
            repo: "filtered/app",
        };
        check_filtered_index(&img, at_dst).await;
        check_filtered_referrers(&img, At::new(&src, "team/app"), at_dst, &report).await;
    }
}

/// The filtered index on `dst` (tag `v1`) lists the amd64 image and its
/// buildx attestation, not arm64's, and its whole graph is in place.
async fn check_filtered_index(img: &SignedImage, dst: At<'_>) {
    let name = dst.reg.kind();
    let reader = dst.reg.pusher();
    let (_, bytes) = reader.get_manifest(dst.repo, "v1").await.unwrap();
    let digest = common::sha256_digest(&bytes);
    assert_ne!(
        digest,
        img.index.digest(),
        "{name}: a filtered index has a new digest"
    );
    let filtered: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let listed: Vec<&str> = filtered["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    let kept_att = img.buildx_attestation("linux/amd64").digest();
    let dropped_att = img.buildx_attestation("linux/arm64").digest();
    assert!(
        listed.contains(&img.child("linux/amd64").digest()),
        "{name}: {listed:?}"
    );
    assert!(
        listed.contains(&kept_att),
        "{name}: the buildx attestation of the kept platform stays in the index: {listed:?}"
    );
    assert!(
        !listed.contains(&img.child("linux/arm64").digest()),
        "{name}: {listed:?}"
    );
    assert!(!listed.contains(&dropped_att), "{name}: {listed:?}");
    assert_none(
        common::graph_problems(&reader, dst.repo, "v1", &digest).await,
        &format!("{name}: filtered graph"),
    );
}

/// What follows a filtered copy: the kept child's and its attestation's
/// signatures and referrers (the SBOM, and the SBOM's own referrer); what
/// stays behind: the dropped child's, and the source index's, which name a
/// digest the target does not have (the report counts them).
async fn check_filtered_referrers(
    img: &SignedImage,
    src: At<'_>,
    dst: At<'_>,
    report: &serde_json::Value,
) {
    let name = dst.reg.kind();
    let reader = dst.reg.pusher();
    let key = img.key.public();
    let kept = img.child("linux/amd64").digest();
    for d in [kept, img.buildx_attestation("linux/amd64").digest()] {
        verify_signed(&reader, dst.repo, d, &key, 1)
            .await
            .unwrap_or_else(|e| panic!("{name}: signature of kept {d}: {e:#}"));
        assert_none(
            referrer_problems(src, dst, d).await,
            &format!("{name}: referrers of kept {d}"),
        );
    }
    let sbom = img.sbom("linux/amd64").digest().to_string();
    let listed = dst.referrers(kept).await.unwrap();
    assert!(
        listed.of_type(SPDX).contains(&sbom),
        "{name}: the kept platform's SBOM"
    );
    assert_none(
        referrer_problems(src, dst, &sbom).await,
        &format!("{name}: referrers of the kept SBOM"),
    );
    for (what, d) in [
        ("the dropped platform", img.child("linux/arm64").digest()),
        (
            "the dropped platform's SBOM",
            img.sbom("linux/arm64").digest(),
        ),
        ("the index provenance", img.provenance.digest()),
    ] {
        let there = reader.manifest_exists(dst.repo, d).await.unwrap();
        assert!(!there, "{name}: {what} ({d}) was copied");
    }
    assert!(verify_image(&reader, dst.repo, "v1", &key).await.is_err());
    let left = report["images"][0]["referrers"]["left_behind"].as_u64();
    assert!(
        left.is_some_and(|n| n >= 1),
        "{name}: the report counts the index's referrers that cannot follow a filtered index: {report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_appended_upstream_are_copied_on_the_next_run() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let ferro = FerroRegistry::start().await;
    let mut img = SignedImage::build("e2e-resign");
    img.push((&src).into(), "team/app", "v1").await.unwrap();
    let configs = [
        mirror_config(&src.host(), "team/app", "v1", &dst.host(), "mirror/app"),
        mirror_config(&src.host(), "team/app", "v1", &ferro.host(), "mirror/app"),
    ];
    for c in &configs {
        let (run, _) = sync(c).await;
        assert_ok(&run, "first sync");
    }

    // A second signer appends to the same `.sig` tag of the index and of
    // one child; the image itself does not change.
    let second = CosignKey::from_seed("release team");
    let pusher = Pusher::for_registry(&src);
    let docker_ref = format!("{}/team/app", src.host());
    let amd = img.child("linux/amd64").digest().to_string();
    for d in [img.index.digest().to_string(), amd.clone()] {
        sign_digest(&pusher, "team/app", &docker_ref, &d, &second)
            .await
            .unwrap();
    }
    for c in &configs {
        let (run, _) = sync(c).await;
        assert_ok(&run, "second sync");
    }
    for (name, reg) in [
        ("distribution", AnyRegistry::Distribution(&dst)),
        ("ferro", AnyRegistry::Ferro(&ferro)),
    ] {
        let reader = reg.pusher();
        for d in [img.index.digest(), amd.as_str()] {
            let (_, want) = pusher.get_manifest("team/app", &sig_tag(d)).await.unwrap();
            let (_, got) = reader
                .get_manifest("mirror/app", &sig_tag(d))
                .await
                .unwrap();
            assert_eq!(got, want, "{name}: {} re-copied after it moved", sig_tag(d));
            for key in [img.key.public(), second.public()] {
                let v = verify_image(&reader, "mirror/app", d, &key).await.unwrap();
                assert_eq!(v.valid, 1, "{name}: {d}: {v:?}");
            }
        }
    }
}

/// A source whose referrers API pages its lists and ignores filters.
async fn paged_source(img: &SignedImage, extra_sboms: usize) -> FakeRegistry {
    let fake = FakeRegistry::start(FakeReferrers {
        page_size: Some(2),
        apply_filters: false,
        resolve_digest_tags: false,
    })
    .await;
    fake.add_node("team/app", &img.index.to_node(), Some("v1"));
    for r in img.referrers() {
        fake.add_image("team/app", &r, None);
    }
    let amd = img.child("linux/amd64").manifest.clone();
    for i in 0..extra_sboms {
        fake.add_image("team/app", &sbom_for(&amd, &format!("extra-{i}")), None);
    }
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_of_a_referrers_list_is_copied() {
    // Neither real registry pages referrer lists: the fake serves two per page.
    let img = SignedImage::build("e2e-paged");
    let fake = paged_source(&img, 4).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    sync_ok(
        &mirror_config(&fake.host(), "team/app", "v1", &dst.host(), "mirror/app"),
        "sync from a paging source",
    )
    .await;
    let amd = img.child("linux/amd64").digest().to_string();
    let listing = At::new(&dst, "mirror/app").referrers(&amd).await.unwrap();
    assert_eq!(listing.of_type(SPDX).len(), 5, "{listing:?}");
    let pages = fake.count("GET", &format!("/v2/team/app/referrers/{amd}"));
    assert!(
        pages >= 3,
        "five referrers at two per page take three GETs, saw {pages}"
    );
    let reader = Pusher::for_registry(&dst);
    assert_eq!(
        common::sha256_digest(&reader.get_manifest("mirror/app", "v1").await.unwrap().1),
        img.index.digest()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_type_filter_the_server_ignored_is_applied_by_the_client() {
    // ferro applies filters; a server that ignores them is only a fake.
    let img = SignedImage::build("e2e-types");
    let fake = paged_source(&img, 0).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let config = format!(
        "{}referrer_types = [\"{SPDX}\"]\n",
        mirror_config(&fake.host(), "team/app", "v1", &dst.host(), "mirror/app")
    );
    sync_ok(&config, "sync with referrer_types").await;
    let reader = Pusher::for_registry(&dst);
    for p in common::artifacts::PLATFORMS {
        let sbom = img.sbom(p).digest().to_string();
        assert!(
            reader.manifest_exists("mirror/app", &sbom).await.unwrap(),
            "{p} SBOM"
        );
    }
    assert!(
        !reader
            .manifest_exists("mirror/app", img.provenance.digest())
            .await
            .unwrap(),
        "an {IN_TOTO_TYPE} referrer passed a filter for {SPDX}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_resolving_digest_tags_as_digests_has_no_fallback_referrers() {
    // distribution answers 404 for a missing `sha256-<hex>` tag; registries
    // that resolve it as a digest exist only as a fake here.
    let img = SignedImage::build("e2e-resolving");
    let fake = FakeRegistry::start(FakeReferrers {
        page_size: None,
        apply_filters: false,
        resolve_digest_tags: true,
    })
    .await;
    fake.add_node("team/app", &img.index.to_node(), Some("v1"));
    // cosign signatures under their `.sig` tags, as `sign_recursive` makes them.
    let docker_ref = format!("{}/team/app", fake.host());
    let mut subjects = vec![img.index.digest().to_string()];
    subjects.extend(img.index.children.iter().map(|c| c.digest().to_string()));
    for d in &subjects {
        let sig = signature_manifest(vec![signature_layer(&img.key, &docker_ref, d)]);
        fake.add_image("team/app", &sig, Some(&sig_tag(d)));
    }
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let config = mirror_config(&fake.host(), "team/app", "v1", &dst.host(), "mirror/app");
    sync_ok(&config, "sync from a source that resolves sha256- tags").await;
    let reader = Pusher::for_registry(&dst);
    for d in &subjects {
        verify_signed(&reader, "mirror/app", d, &img.key.public(), 1)
            .await
            .unwrap_or_else(|e| panic!("signature of {d}: {e:#}"));
    }
    let mut tags = reader.tags("mirror/app").await.unwrap();
    for d in &subjects {
        assert!(
            !tags.contains(&fallback_tag(d)),
            "the subject itself was taken for its own fallback index: {tags:?}"
        );
    }
    let mut want: Vec<String> = subjects.iter().map(|d| sig_tag(d)).collect();
    want.push("v1".to_string());
    tags.sort();
    want.sort();
    assert_eq!(tags, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_without_referrers_fails_verification() {
    // The verifier is not fooled by a copy that left the signatures behind.
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let mut img = SignedImage::build("e2e-unsigned");
    img.push((&src).into(), "team/app", "v1").await.unwrap();
    let config = format!(
        "[[mirror]]\nsource = \"{}/team/app:v1\"\ntarget = \"{}/mirror/app\"\nreferrers = false\ncosign_tags = false\n",
        src.host(),
        dst.host()
    );
    sync_ok(&config, "sync without referrers").await;
    let problems = mirror_problems(
        &img,
        At::new(&src, "team/app"),
        At::new(&dst, "mirror/app"),
        "v1",
        &all_subjects(&img),
    )
    .await;
    assert!(
        problems.iter().any(|p| p.contains("signature of")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("referrers of")),
        "{problems:?}"
    );
}

/// `team/app` on a fresh distribution with the signed image under four tags.
async fn four_tag_source(seed: &str) -> (TestRegistry, SignedImage) {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let mut img = SignedImage::build(seed);
    img.push((&src).into(), "team/app", "v1").await.unwrap();
    let pusher = Pusher::for_registry(&src);
    for t in &FOUR_TAGS[1..] {
        pusher
            .push_manifest("team/app", t, &img.index.manifest)
            .await
            .unwrap();
    }
    (src, img)
}

const FOUR_TAGS: [&str; 4] = ["v1", "v2", "v3", "v4"];

/// A whole-repository mirror of `src/team/app` into `dst/mirror/app`.
fn whole_repo_config(src: &str, dst: &str, extra: &str) -> String {
    format!(
        "[[mirror]]\nsource = \"{src}/team/app\"\ntarget = \"{dst}/mirror/app\"\n\
         referrers = true\ncosign_tags = true\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_sharing_a_signed_index_sync_concurrently_without_losing_referrers() {
    // Four tags of one signed index are copied at once (the default
    // concurrency is 4) and all write the same subjects' referrers and
    // fallback indexes: repeated on fresh targets, since a race shows only
    // in some runs.
    let (src, img) = four_tag_source("e2e-race").await;
    let subjects = all_subjects(&img);
    for round in 0..4 {
        let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
        sync_ok(
            &whole_repo_config(&src.host(), &dst.host(), ""),
            &format!("round {round}: whole-repository sync"),
        )
        .await;
        let problems = mirror_problems(
            &img,
            At::new(&src, "team/app"),
            At::new(&dst, "mirror/app"),
            "v1",
            &subjects,
        )
        .await;
        assert_none(problems, &format!("round {round}"));
        let reader = Pusher::for_registry(&dst);
        for t in &FOUR_TAGS[1..] {
            let (_, bytes) = reader.get_manifest("mirror/app", t).await.unwrap();
            assert_eq!(
                common::sha256_digest(&bytes),
                img.index.digest(),
                "round {round}: {t}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_repository_mirror_to_a_registry_with_the_api_writes_no_fallback_tags() {
    // The source's listing holds its `sha256-<hex>` fallback tags; they are
    // referrer bookkeeping, not images: a target with the API gets none.
    let (src, img) = four_tag_source("e2e-repo-api").await;
    let ferro = FerroRegistry::start().await;
    sync_ok(
        &whole_repo_config(&src.host(), &ferro.host(), ""),
        "whole-repository sync to ferro",
    )
    .await;
    let tags = ferro.pusher().tags("mirror/app").await.unwrap();
    let bare: Vec<&String> = tags
        .iter()
        .filter(|t| t.starts_with("sha256-") && !t.contains('.'))
        .collect();
    assert!(
        bare.is_empty(),
        "the source's fallback tags were copied as such to a registry with the API: {bare:?}"
    );
    assert_mirrored(
        &img,
        At::new(&src, "team/app"),
        At::new(&ferro, "mirror/app"),
        "whole repository to ferro",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_repository_mirror_keeps_excluded_referrers_out_of_the_fallback_index() {
    // Copying the source's fallback index as such would bring the excluded
    // in-toto referrer along (the index lists it).
    let (src, img) = four_tag_source("e2e-repo-exclude").await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let extra = format!("exclude_referrer_types = [\"{IN_TOTO_TYPE}\"]\n");
    sync_ok(
        &whole_repo_config(&src.host(), &dst.host(), &extra),
        "whole-repository sync excluding in-toto referrers",
    )
    .await;
    let reader = Pusher::for_registry(&dst);
    assert!(
        !reader
            .manifest_exists("mirror/app", img.provenance.digest())
            .await
            .unwrap(),
        "an excluded {IN_TOTO_TYPE} referrer reached the target"
    );
    let listed = At::new(&dst, "mirror/app")
        .referrers(img.index.digest())
        .await
        .unwrap();
    assert!(listed.of_type(IN_TOTO_TYPE).is_empty(), "{listed:?}");
    for p in common::artifacts::PLATFORMS {
        let sbom = img.sbom(p).digest().to_string();
        let child = img.child(p).digest().to_string();
        let l = At::new(&dst, "mirror/app").referrers(&child).await.unwrap();
        assert_eq!(l.of_type(SPDX), vec![sbom], "{p}: {l:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_referrer_keeps_its_signature() {
    // `cosign sign` of an SBOM's digest puts a `.sig` tag beside the SBOM:
    // the SBOM is a copied digest, so its cosign tag travels too.
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let ferro = FerroRegistry::start().await;
    let mut img = SignedImage::build("e2e-signed-sbom");
    img.push((&src).into(), "team/app", "v1").await.unwrap();
    let sbom = img
        .sign_first_sbom((&src).into(), "team/app")
        .await
        .unwrap();
    for (name, reg) in [
        ("distribution", AnyRegistry::Distribution(&dst)),
        ("ferro", AnyRegistry::Ferro(&ferro)),
    ] {
        let config = mirror_config(&src.host(), "team/app", "v1", &reg.host(), "mirror/app");
        sync_ok(&config, &format!("sync to {name}")).await;
        verify_signed(&reg.pusher(), "mirror/app", &sbom, &img.key.public(), 1)
            .await
            .unwrap_or_else(|e| panic!("{name}: signature of the SBOM {sbom}: {e:#}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_finds_the_mirrored_signatures_as_sigstore_attachments() {
    // A second, independent reader of cosign's tag scheme: skopeo with
    // `use-sigstore-attachments` copies an image with its signatures. It
    // cannot verify them (Debian's build disables sigstore), so the copy it
    // makes is checked with the harness's verifier.
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let third = TestRegistry::start(RegistryOptions::anonymous()).await;
    let mut img = SignedImage::build("e2e-skopeo");
    img.push((&src).into(), "team/app", "v1").await.unwrap();
    let config = mirror_config(&src.host(), "team/app", "v1", &dst.host(), "mirror/app");
    sync_ok(&config, "sync").await;

    let dir = tempfile::tempdir().unwrap();
    let regd = dir.path().join("registries.d");
    std::fs::create_dir_all(&regd).unwrap();
    std::fs::write(
        regd.join("default.yaml"),
        "default-docker:\n  use-sigstore-attachments: true\n",
    )
    .unwrap();
    let amd = img.child("linux/amd64").digest().to_string();
    let out = tokio::process::Command::new("skopeo")
        .arg("--insecure-policy")
        .arg("--registries.d")
        .arg(&regd)
        .args([
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{}/mirror/app@{amd}", dst.host()))
        .arg(format!("docker://{}/copied/app:amd64", third.host()))
        .env("HOME", dir.path())
        .env_remove("REGISTRY_AUTH_FILE")
        .output()
        .await
        .expect("running skopeo; it is installed by scripts/test.sh");
    assert!(
        out.status.success(),
        "skopeo copy with sigstore attachments: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reader = Pusher::for_registry(&third);
    verify_signed(&reader, "copied/app", "amd64", &img.key.public(), 1)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_image_mirrors_between_authenticated_registries() {
    // Referrer reads (fallback tags, cosign tags) and writes go through the
    // same credentials and token scopes as the image: a token-auth source,
    // an htpasswd target.
    let issuer = common::TokenIssuer::start(common::TokenIssuerOptions::default()).await;
    let src = TestRegistry::start(RegistryOptions::token(&issuer)).await;
    let dst = TestRegistry::start(RegistryOptions::htpasswd("mirror", "s3cret")).await;
    let mut img = SignedImage::build("e2e-auth");
    img.push((&src).into(), "team/app", "v1").await.unwrap();
    let (user, pass) = issuer.credentials().unwrap();
    let config = format!(
        "[[registry]]\nhost = \"{}\"\nusername = \"{user}\"\npassword = \"{pass}\"\n\n\
         [[registry]]\nhost = \"{}\"\nusername = \"mirror\"\npassword = \"s3cret\"\n\n{}",
        src.host(),
        dst.host(),
        mirror_config(&src.host(), "team/app", "v1", &dst.host(), "mirror/app")
    );
    let report = sync_ok(&config, "sync between authenticated registries").await;
    assert!(
        !report.to_string().contains(&pass) && !report.to_string().contains("s3cret"),
        "a password reached the report"
    );
    assert_mirrored(
        &img,
        At::new(&src, "team/app"),
        At::new(&dst, "mirror/app"),
        "token -> htpasswd",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_lists_hold_on_a_source_that_filters_through_the_api() {
    // ferro applies `artifactType` and says so (`OCI-Filters-Applied`); the
    // referrers exist there only through the API (no fallback tags).
    let ferro = FerroRegistry::start().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let mut img = SignedImage::build("e2e-api-types");
    img.push((&ferro).into(), "team/app", "v1").await.unwrap();
    let config = format!(
        "{}referrer_types = [\"{SPDX}\"]\n",
        mirror_config(&ferro.host(), "team/app", "v1", &dst.host(), "mirror/app")
    );
    sync_ok(&config, "sync from ferro with referrer_types").await;
    let at = At::new(&dst, "mirror/app");
    for p in common::artifacts::PLATFORMS {
        let listed = at.referrers(img.child(p).digest()).await.unwrap();
        assert_eq!(
            listed.of_type(SPDX),
            vec![img.sbom(p).digest().to_string()],
            "{p}"
        );
    }
    let reader = Pusher::for_registry(&dst);
    for r in [&img.provenance, &img.sbom_attestation] {
        assert!(
            !reader
                .manifest_exists("mirror/app", r.digest())
                .await
                .unwrap(),
            "an {IN_TOTO_TYPE} referrer passed a filter for {SPDX}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_att_and_sbom_tags_travel_and_move() {
    use common::cosign::legacy_tag;
    use common::cosign_attach::{attach_sbom, attest_digest, verify_attestation};
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let ferro = FerroRegistry::start().await;
    let mut img = SignedImage::build("e2e-att");
    img.push((&src).into(), "team/app", "v1").await.unwrap();
    let pusher = Pusher::for_registry(&src);
    let docker_ref = format!("{}/team/app", src.host());
    let amd = img.child("linux/amd64").digest().to_string();
    let index = img.index.digest().to_string();
    for d in [&index, &amd] {
        attest_digest(&pusher, "team/app", &docker_ref, d, &img.key)
            .await
            .unwrap();
    }
    attach_sbom(&pusher, "team/app", &index).await.unwrap();
    let targets = [
        ("distribution", AnyRegistry::Distribution(&dst)),
        ("ferro", AnyRegistry::Ferro(&ferro)),
    ];
    for (_, reg) in targets {
        let config = mirror_config(&src.host(), "team/app", "v1", &reg.host(), "mirror/app");
        sync_ok(&config, "first sync").await;
    }
    // Every target holds the source's `.att`/`.sbom` bytes, and the index's
    // attestation verifies.
    for (name, reg) in targets {
        let reader = reg.pusher();
        for (d, suffix) in [(&index, "att"), (&amd, "att"), (&index, "sbom")] {
            let tag = legacy_tag(d, suffix);
            let (_, a) = pusher.get_manifest("team/app", &tag).await.unwrap();
            let (_, b) = reader
                .get_manifest("mirror/app", &tag)
                .await
                .unwrap_or_else(|e| panic!("{name}: {tag}: {e:#}"));
            assert_eq!(a, b, "{name}: {tag}");
        }
        let n = verify_attestation(&reader, "mirror/app", "v1", &img.key.public())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(n, 1, "{name}");
    }
    // A second attestation moves the index's `.att` tag.
    let second = CosignKey::from_seed("e2e-att second");
    attest_digest(&pusher, "team/app", &docker_ref, &index, &second)
        .await
        .unwrap();
    for (_, reg) in targets {
        let config = mirror_config(&src.host(), "team/app", "v1", &reg.host(), "mirror/app");
        sync_ok(&config, "second sync").await;
    }
    let reader = Pusher::for_registry(&dst);
    let e = verify_attestation(&reader, "mirror/app", "v1", &img.key.public())
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("does not verify"), "{e:#}");
    let (_, a) = pusher
        .get_manifest("team/app", &legacy_tag(&index, "att"))
        .await
        .unwrap();
    for (name, reg) in targets {
        let (_, b) = reg
            .pusher()
            .get_manifest("mirror/app", &legacy_tag(&index, "att"))
            .await
            .unwrap();
        assert_eq!(a, b, "{name}: the moved .att tag was copied again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_entries_are_checked_against_the_manifests_they_name() {
    // A source's fallback index is hostile input: an entry whose manifest
    // names another subject is not a referrer of this one, and an entry's
    // `artifactType` written as the empty-config type (as some clients do)
    // is taken from the manifest itself.
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let ferro = FerroRegistry::start().await;
    let mut img = SignedImage::build("e2e-hostile-index");
    img.push((&src).into(), "team/app", "v1").await.unwrap();
    let pusher = Pusher::for_registry(&src);
    let amd = img.child("linux/amd64").manifest.clone();
    let arm = img.child("linux/arm64").manifest.clone();

    // Listed under amd64, but its manifest's subject is arm64.
    let stray = sbom_for(&arm, "stray");
    for b in stray.pushable_blobs() {
        pusher.push_blob("team/app", b).await.unwrap();
    }
    pusher
        .push_manifest("team/app", stray.digest(), &stray.manifest)
        .await
        .unwrap();
    common::artifacts::add_to_fallback_index(
        &pusher,
        "team/app",
        &amd.digest,
        common::artifacts::referrer_descriptor(&stray),
    )
    .await
    .unwrap();
    // An SBOM of amd64 whose entry claims the empty-config type.
    let typed = sbom_for(&amd, "typed-by-manifest");
    for b in typed.pushable_blobs() {
        pusher.push_blob("team/app", b).await.unwrap();
    }
    pusher
        .push_manifest("team/app", typed.digest(), &typed.manifest)
        .await
        .unwrap();
    let mut entry = common::artifacts::referrer_descriptor(&typed);
    entry["artifactType"] = serde_json::json!(common::image::OCI_EMPTY);
    common::artifacts::add_to_fallback_index(&pusher, "team/app", &amd.digest, entry)
        .await
        .unwrap();

    let config = format!(
        "{}referrer_types = [\"{SPDX}\"]\n",
        mirror_config(&src.host(), "team/app", "v1", &ferro.host(), "mirror/app")
    );
    sync_ok(&config, "sync with a doctored fallback index").await;
    let listed = At::new(&ferro, "mirror/app")
        .referrers(&amd.digest)
        .await
        .unwrap();
    let mut want = vec![
        img.sbom("linux/amd64").digest().to_string(),
        typed.digest().to_string(),
    ];
    want.sort();
    let mut got = listed.of_type(SPDX);
    got.sort();
    assert_eq!(got, want, "{listed:?}");
    assert!(
        !ferro
            .pusher()
            .manifest_exists("mirror/app", stray.digest())
            .await
            .unwrap(),
        "an entry whose manifest names another subject was copied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_image_mirrors_between_registries_with_the_api() {
    // API -> API: the referrers are pushed by digest and the target indexes
    // them itself; no fallback tag appears on either side.
    let src = FerroRegistry::start().await;
    let dst = FerroRegistry::start().await;
    let mut img = SignedImage::build("e2e-api-api");
    let how = img.push((&src).into(), "team/app", "v1").await.unwrap();
    assert_eq!(how, common::artifacts::Recorded::Api);
    let config = mirror_config(&src.host(), "team/app", "v1", &dst.host(), "mirror/app");
    sync_ok(&config, "sync ferro -> ferro").await;
    assert_mirrored(
        &img,
        At::new(&src, "team/app"),
        At::new(&dst, "mirror/app"),
        "ferro -> ferro",
    )
    .await;
}

/// Polls `check` every 200 ms for at most `secs` seconds; panics with
/// `what` and the daemon log when it never holds.
async fn wait_until(
    what: &str,
    secs: u64,
    log: &std::path::Path,
    mut check: impl AsyncFnMut() -> bool,
) {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(secs) {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!(
        "timed out waiting for {what}; serve log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_picks_up_new_signatures_and_heals_a_target_that_lost_them() {
    // What a daemon remembers about referrers between runs must not keep
    // it from seeing a signature added upstream, or from rewriting
    // referrers a target lost.
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let mut dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let mut img = SignedImage::build("e2e-serve");
    img.push((&src).into(), "team/app", "v1").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n{}schedule = \"*/2 * * * * *\"\n",
            mirror_config(&src.host(), "team/app", "v1", &dst.host(), "mirror/app")
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .args(["--log-level", "regmirror=debug,info"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning regmirror serve");
    let key = img.key.public();
    let index = img.index.digest().to_string();
    wait_until("the first run's signatures", 30, &log, async || {
        verify_image(&Pusher::for_registry(&dst), "mirror/app", "v1", &key)
            .await
            .is_ok_and(|v| v.valid == 1)
    })
    .await;

    let second = CosignKey::from_seed("e2e-serve second");
    let docker_ref = format!("{}/team/app", src.host());
    sign_digest(
        &Pusher::for_registry(&src),
        "team/app",
        &docker_ref,
        &index,
        &second,
    )
    .await
    .unwrap();
    wait_until("the second signature on the target", 30, &log, async || {
        verify_image(
            &Pusher::for_registry(&dst),
            "mirror/app",
            "v1",
            &second.public(),
        )
        .await
        .is_ok_and(|v| v.valid == 1)
    })
    .await;

    dst.restart_wiped().await;
    wait_until("the image back with its referrers", 30, &log, async || {
        let pusher = Pusher::for_registry(&dst);
        pusher
            .manifest_exists("mirror/app", "v1")
            .await
            .unwrap_or(false)
            && verify_image(&pusher, "mirror/app", "v1", &key)
                .await
                .is_ok()
    })
    .await;
    // Give the run that restored the tag time to finish its referrers. The
    // index now carries two signatures, one per key: each key must find its
    // own one valid (the other key's counts as invalid under it), and every
    // other check of `mirror_problems` must pass.
    let index_signature = format!("signature of {index}:");
    wait_until("every referrer back", 30, &log, async || {
        let pusher = Pusher::for_registry(&dst);
        let both_keys = verify_image(&pusher, "mirror/app", "v1", &key)
            .await
            .is_ok_and(|v| v.valid == 1)
            && verify_image(&pusher, "mirror/app", "v1", &second.public())
                .await
                .is_ok_and(|v| v.valid == 1);
        let rest: Vec<String> = mirror_problems(
            &img,
            At::new(&src, "team/app"),
            At::new(&dst, "mirror/app"),
            "v1",
            &all_subjects(&img),
        )
        .await
        .into_iter()
        .filter(|p| !p.starts_with(&index_signature))
        .collect();
        both_keys && rest.is_empty()
    })
    .await;
    daemon.start_kill().unwrap();
    let _ = daemon.wait().await;
}
