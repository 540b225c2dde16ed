//! Referrers (signatures, SBOMs, attestations) copied by the engine between
//! real registries: distribution 2.8 on both sides (no referrers API, so the
//! fallback tag scheme). Every referrer here is pushed to the source by the
//! independent test pusher, with a source fallback index it writes itself;
//! results are read back with the same independent reader.

use crate::common;

use std::time::Duration;

use common::image::artifact_for;
use common::{
    Blob, FaultPlan, Format, Image, ImageBuilder, ImageSet, Manifest, Pusher, RegistryOptions,
    TestProxy, TestRegistry, push, skopeo_raw_digest,
};
use regmirror::copy::{Copier, CopyOptions, Outcome, ReferrerOptions};
use regmirror::registry::{Client, ClientOptions, Reference, RetryPolicy};
use serde_json::{Value, json};

const SBOM: &str = "application/spdx+json";
const SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// Anonymous source and target registries, each behind a counting proxy.
struct Env {
    src: TestRegistry,
    dst: TestRegistry,
    src_proxy: TestProxy,
    dst_proxy: TestProxy,
}

impl Env {
    async fn new() -> Env {
        let src = TestRegistry::start(RegistryOptions::anonymous()).await;
        let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
        let src_proxy = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
        let dst_proxy = TestProxy::start(&dst.base_url(), FaultPlan::none()).await;
        Env {
            src,
            dst,
            src_proxy,
            dst_proxy,
        }
    }

    fn copier(&self) -> Copier {
        Copier::new(
            Client::new(ClientOptions {
                retry: RetryPolicy {
                    max_attempts: 3,
                    initial_backoff: Duration::from_millis(20),
                    max_backoff: Duration::from_millis(200),
                    max_elapsed: Duration::from_secs(20),
                },
                ..Default::default()
            })
            .unwrap(),
        )
    }

    fn src_ref(&self, s: &str) -> Reference {
        Reference::parse(&format!("{}/{s}", self.src_proxy.host())).unwrap()
    }

    fn dst_ref(&self, s: &str) -> Reference {
        Reference::parse(&format!("{}/{s}", self.dst_proxy.host())).unwrap()
    }
}

fn options(referrers: ReferrerOptions) -> CopyOptions {
    CopyOptions {
        referrers,
        ..CopyOptions::default()
    }
}

fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// A referrer of `subject`: an artifact of `artifact_type` with a payload.
fn referrer(subject: &Manifest, artifact_type: &str, seed: &str) -> Image {
    artifact_for(
        subject,
        artifact_type,
        Blob::new(
            artifact_type,
            format!("{{\"payload\":{seed:?}}}").into_bytes(),
        ),
    )
}

/// The entries of `repo`'s fallback index of `subject` (empty when none).
async fn fallback_entries(p: &Pusher, repo: &str, subject: &str) -> Vec<Value> {
    match p.get_manifest(repo, &fallback_tag(subject)).await {
        Ok((_, bytes)) => {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            v["manifests"].as_array().cloned().unwrap_or_default()
        }
        Err(_) => Vec::new(),
    }
}

/// Push `art` by digest to `repo` and list it (as `listed_subject` says,
/// normally its own subject) in the fallback index the way a pusher that
/// follows the spec does. The source index carries an annotation of its own,
/// so its bytes can never equal what regmirror writes.
async fn attach(reg: &TestRegistry, repo: &str, listed_subject: &str, art: &Image) {
    let p = Pusher::for_registry(reg);
    p.push_node(repo, &art.into(), None).await.unwrap();
    let mut entries = fallback_entries(&p, repo, listed_subject).await;
    let artifact_type = art.manifest.json()["artifactType"].clone();
    entries.push(json!({
        "mediaType": art.manifest.media_type,
        "digest": art.manifest.digest,
        "size": art.manifest.size(),
        "artifactType": artifact_type,
    }));
    let index = Manifest::from_json(
        common::image::OCI_INDEX,
        &json!({
            "schemaVersion": 2,
            "mediaType": common::image::OCI_INDEX,
            "manifests": entries,
            "annotations": {"written.by": "test pusher"},
        }),
    );
    p.push_manifest(repo, &fallback_tag(listed_subject), &index)
        .await
        .unwrap();
}

/// A cosign-style signature image pushed under `sha256-<hex>.sig`.
async fn cosign_tag(reg: &TestRegistry, repo: &str, subject: &str, seed: &str) -> Image {
    let sig = ImageBuilder::new(Format::Oci)
        .random_layer(seed, 200)
        .build();
    push(reg, repo, &format!("{}.sig", fallback_tag(subject)), &sig)
        .await
        .unwrap();
    sig
}

fn digests(entries: &[Value]) -> Vec<String> {
    let mut d: Vec<String> = entries
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .collect();
    d.sort();
    d
}

/// A signed two-platform index: an SBOM of the index with a signature of
/// that SBOM (depth 2), an SBOM per child, a cosign `.sig` tag of the index,
/// and, listed in the first child's fallback index, an artifact whose
/// manifest names the *other* child (a lying index entry).
struct Signed {
    index: common::Index,
    index_sbom: Image,
    sbom_sig: Image,
    child_sboms: Vec<Image>,
    liar: Image,
    cosign: Image,
}

async fn signed_image(reg: &TestRegistry, repo: &str, tag: &str) -> Signed {
    let index = ImageSet::multi_arch(repo, &["linux/amd64", "linux/arm64"], false, Format::Oci);
    push(reg, repo, tag, &index).await.unwrap();
    let index_sbom = referrer(&index.manifest, SBOM, &format!("{repo}/index"));
    attach(reg, repo, index.digest(), &index_sbom).await;
    let sbom_sig = referrer(&index_sbom.manifest, SIG, &format!("{repo}/sbom-sig"));
    attach(reg, repo, index_sbom.digest(), &sbom_sig).await;
    let children = index.images();
    let mut child_sboms = Vec::new();
    for (n, child) in children.iter().enumerate() {
        let s = referrer(&child.manifest, SBOM, &format!("{repo}/child{n}"));
        attach(reg, repo, child.digest(), &s).await;
        child_sboms.push(s);
    }
    let liar = referrer(&children[1].manifest, SIG, &format!("{repo}/liar"));
    attach(reg, repo, children[0].digest(), &liar).await;
    let cosign = cosign_tag(reg, repo, index.digest(), &format!("{repo}/cosign")).await;
    Signed {
        index,
        index_sbom,
        sbom_sig,
        child_sboms,
        liar,
        cosign,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_to_fallback_copies_referrers_recursively_before_the_tag() {
    let env = Env::new().await;
    let s = signed_image(&env.src, "app", "v1").await;
    let copier = env.copier();
    let report = copier
        .copy(
            &env.src_ref("app:v1"),
            &env.dst_ref("app:v1"),
            &options(ReferrerOptions::all()),
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Copied);
    let r = &report.referrers;
    // index SBOM, its signature, two child SBOMs; the liar is not one.
    assert_eq!((r.found, r.copied, r.skipped), (4, 4, 0), "{r:?}");
    assert_eq!(r.fallback_updates, 4, "{r:?}");
    assert_eq!(r.cosign_tags_copied, 1, "{r:?}");

    let dst = Pusher::for_registry(&env.dst);
    let src = Pusher::for_registry(&env.src);
    // Each referrer is in the target by digest, byte for byte (skopeo).
    for art in [
        &s.index_sbom,
        &s.sbom_sig,
        &s.child_sboms[0],
        &s.child_sboms[1],
    ] {
        let got = skopeo_raw_digest(&env.dst, &format!("app@{}", art.digest()))
            .await
            .unwrap();
        assert_eq!(got, art.digest());
    }
    assert!(!dst.manifest_exists("app", s.liar.digest()).await.unwrap());
    // The target's fallback indexes list exactly the real referrers, with
    // descriptors computed from the manifests, in regmirror's own bytes.
    for (subject, art) in [
        (s.index.digest(), &s.index_sbom),
        (s.index_sbom.digest(), &s.sbom_sig),
        (s.index.images()[0].digest(), &s.child_sboms[0]),
        (s.index.images()[1].digest(), &s.child_sboms[1]),
    ] {
        let entries = fallback_entries(&dst, "app", subject).await;
        assert_eq!(digests(&entries), vec![art.digest().to_string()]);
        let e = &entries[0];
        assert_eq!(e["size"].as_u64(), Some(art.manifest.size() as u64));
        assert_eq!(e["mediaType"], art.manifest.media_type.as_str());
        assert_eq!(
            e["artifactType"],
            art.manifest.json()["artifactType"],
            "{e}"
        );
        let (_, theirs) = src
            .get_manifest("app", &fallback_tag(subject))
            .await
            .unwrap();
        let (_, ours) = dst
            .get_manifest("app", &fallback_tag(subject))
            .await
            .unwrap();
        assert_ne!(
            theirs, ours,
            "the source's fallback index bytes are never copied"
        );
    }
    // cosign's tag, same digest.
    let sig_tag = format!("app:{}.sig", fallback_tag(s.index.digest()));
    assert_eq!(
        skopeo_raw_digest(&env.dst, &sig_tag).await.unwrap(),
        s.cosign.digest()
    );
    assert_eq!(
        skopeo_raw_digest(&env.dst, "app:v1").await.unwrap(),
        s.index.digest()
    );

    // The tag is written last: after every referrer and fallback index.
    let puts: Vec<String> = env
        .dst_proxy
        .requests()
        .into_iter()
        .filter(|(m, p)| m == "PUT" && p.contains("/manifests/"))
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        puts.last().map(String::as_str),
        Some("/v2/app/manifests/v1"),
        "{puts:#?}"
    );
    assert_eq!(
        puts.iter().filter(|p| p.ends_with("/manifests/v1")).count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_op_run_costs_no_writes_and_little_reading() {
    let env = Env::new().await;
    let s = signed_image(&env.src, "app", "v1").await;
    let opts = options(ReferrerOptions::all());
    let (from, to) = (env.src_ref("app:v1"), env.dst_ref("app:v1"));
    env.copier().copy(&from, &to, &opts).await.unwrap();

    env.src_proxy.reset();
    env.dst_proxy.reset();
    let again = env.copier().copy(&from, &to, &opts).await.unwrap();
    assert_eq!(again.outcome, Outcome::UpToDate);
    let r = &again.referrers;
    assert_eq!((r.found, r.copied, r.skipped), (4, 0, 4), "{r:?}");
    assert_eq!((r.fallback_updates, r.cosign_tags_copied), (0, 0), "{r:?}");
    let writes = env
        .dst_proxy
        .requests()
        .into_iter()
        .filter(|(m, _)| m != "GET" && m != "HEAD")
        .count();
    assert_eq!(writes, 0, "{:#?}", env.dst_proxy.requests());
    // Source: one referrers-API probe for the repository, one tag list, and
    // per subject that has referrers a HEAD + GET of its fallback index; no
    // referrer manifest is fetched again (the target lists them).
    let src = env.src_proxy.requests();
    assert!(
        env.src_proxy.count("GET", "/v2/app/referrers/") <= 1,
        "{src:#?}"
    );
    assert_eq!(
        env.src_proxy.count("GET", "/v2/app/tags/list"),
        1,
        "{src:#?}"
    );
    for art in [
        &s.index_sbom,
        &s.sbom_sig,
        &s.child_sboms[0],
        &s.child_sboms[1],
    ] {
        let path = format!("/v2/app/manifests/{}", art.digest());
        assert_eq!(env.src_proxy.count("GET", &path), 0, "{src:#?}");
    }
    // Each fallback index once, the root (import reads it), and the lying
    // entry, which is never copied and so is checked again each run.
    let subjects_with_referrers = 4;
    let manifest_gets = env.src_proxy.count("GET", "/v2/app/manifests/");
    assert_eq!(
        env.src_proxy
            .count("GET", &format!("/v2/app/manifests/{}", s.liar.digest())),
        1
    );
    assert!(
        manifest_gets <= subjects_with_referrers + 2,
        "{manifest_gets} manifest GETs: {src:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_lists_and_switches_choose_what_follows() {
    let env = Env::new().await;
    let s = signed_image(&env.src, "app", "v1").await;
    let dst = Pusher::for_registry(&env.dst);

    // Only SBOMs: the signature of the index SBOM stays behind.
    let sboms = ReferrerOptions {
        types: vec![SBOM.into()],
        cosign_tags: false,
        ..ReferrerOptions::all()
    };
    let r = env
        .copier()
        .copy(
            &env.src_ref("app:v1"),
            &env.dst_ref("sboms:v1"),
            &options(sboms),
        )
        .await
        .unwrap()
        .referrers;
    // Filtered: the SBOM's signature and the lying entry (a signature too).
    assert_eq!(
        (r.copied, r.filtered, r.cosign_tags_copied),
        (3, 2, 0),
        "{r:?}"
    );
    assert!(
        !dst.manifest_exists("sboms", s.sbom_sig.digest())
            .await
            .unwrap()
    );
    assert!(
        dst.manifest_exists("sboms", s.index_sbom.digest())
            .await
            .unwrap()
    );
    let sig_tag = format!("{}.sig", fallback_tag(s.index.digest()));
    assert!(!dst.manifest_exists("sboms", &sig_tag).await.unwrap());

    // Exclude SBOMs: nothing but the cosign tag.
    let no_sboms = ReferrerOptions {
        exclude_types: vec![SBOM.into()],
        ..ReferrerOptions::all()
    };
    let r = env
        .copier()
        .copy(
            &env.src_ref("app:v1"),
            &env.dst_ref("nosbom:v1"),
            &options(no_sboms),
        )
        .await
        .unwrap()
        .referrers;
    assert_eq!((r.copied, r.cosign_tags_copied), (0, 1), "{r:?}");
    assert!(dst.manifest_exists("nosbom", &sig_tag).await.unwrap());

    // Off (the engine's default): the image graph only.
    let r = env
        .copier()
        .copy(
            &env.src_ref("app:v1"),
            &env.dst_ref("bare:v1"),
            &CopyOptions::default(),
        )
        .await
        .unwrap()
        .referrers;
    assert_eq!(r, Default::default());
    assert!(dst.tags("bare").await.unwrap() == vec!["v1".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_cosign_tag_is_copied_again() {
    let env = Env::new().await;
    let s = signed_image(&env.src, "app", "v1").await;
    let opts = options(ReferrerOptions::all());
    let (from, to) = (env.src_ref("app:v1"), env.dst_ref("app:v1"));
    env.copier().copy(&from, &to, &opts).await.unwrap();
    // cosign appends a signature: the tag moves to a new manifest.
    let moved = cosign_tag(&env.src, "app", s.index.digest(), "app/cosign-2").await;
    let r = env
        .copier()
        .copy(&from, &to, &opts)
        .await
        .unwrap()
        .referrers;
    assert_eq!(r.cosign_tags_copied, 1, "{r:?}");
    let sig_tag = format!("app:{}.sig", fallback_tag(s.index.digest()));
    assert_eq!(
        skopeo_raw_digest(&env.dst, &sig_tag).await.unwrap(),
        moved.digest()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_filter_keeps_referrers_of_kept_children_only() {
    let env = Env::new().await;
    let s = signed_image(&env.src, "app", "v1").await;
    let opts = CopyOptions {
        platforms: vec!["linux/arm64".parse().unwrap()],
        ..options(ReferrerOptions::all())
    };
    let report = env
        .copier()
        .copy(&env.src_ref("app:v1"), &env.dst_ref("arm:v1"), &opts)
        .await
        .unwrap();
    assert!(report.digest_changed());
    let r = &report.referrers;
    assert_eq!(r.left_behind, 1, "the index SBOM cannot follow: {r:?}");
    assert_eq!(r.copied, 1, "{r:?}");
    let dst = Pusher::for_registry(&env.dst);
    let arm = s.index.image_for("linux/arm64").unwrap();
    let amd = s.index.image_for("linux/amd64").unwrap();
    let arm_sbom = s
        .child_sboms
        .iter()
        .find(|a| a.manifest.json()["subject"]["digest"] == arm.digest())
        .unwrap();
    assert_eq!(
        digests(&fallback_entries(&dst, "arm", arm.digest()).await),
        vec![arm_sbom.digest().to_string()]
    );
    assert!(fallback_entries(&dst, "arm", amd.digest()).await.is_empty());
    assert!(
        !dst.manifest_exists("arm", s.index_sbom.digest())
            .await
            .unwrap()
    );
}

/// Two source repositories hold the same image, each with its own
/// signature; both are mirrored into one target repository at once, by two
/// runs in flight in this process (two mirrors of `serve`). The target's one
/// fallback index of that image must end up listing both signatures: the
/// writers take turns. Repeated, because a race shows only sometimes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runs_merge_into_one_fallback_index() {
    let env = Env::new().await;
    let image = ImageSet::image("shared", "linux/amd64", Format::Oci);
    let mut sigs = Vec::new();
    for repo in ["one", "two"] {
        push(&env.src, repo, "v1", &image).await.unwrap();
        let sig = referrer(&image.manifest, SIG, repo);
        attach(&env.src, repo, image.digest(), &sig).await;
        sigs.push(sig.digest().to_string());
    }
    sigs.sort();
    let dst = Pusher::for_registry(&env.dst);
    let opts = options(ReferrerOptions::all());
    for round in 0..8 {
        let target = env.dst_ref(&format!("race{round}:v1"));
        let (a, b) = (env.copier(), env.copier());
        let (one, two) = (env.src_ref("one:v1"), env.src_ref("two:v1"));
        let (ra, rb) = tokio::join!(a.copy(&one, &target, &opts), b.copy(&two, &target, &opts));
        ra.unwrap();
        rb.unwrap();
        let entries = fallback_entries(&dst, &format!("race{round}"), image.digest()).await;
        assert_eq!(digests(&entries), sigs, "round {round}");
    }
}

/// The same race across processes, where no lock is shared: each
/// `regmirror import` reads the index back (twice, after a pause) and merges
/// again when another writer replaced it. Without conditional writes a
/// writer that reads before and writes after the other's last read-back can
/// still drop an entry (seen only under heavy load); the next run then
/// merges it back, which is what makes a daemon converge. So: every run
/// succeeds, and after one more run every round lists both signatures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_processes_merge_into_one_fallback_index() {
    let env = Env::new().await;
    let image = ImageSet::image("shared", "linux/amd64", Format::Oci);
    let mut sigs = Vec::new();
    for repo in ["one", "two"] {
        push(&env.src, repo, "v1", &image).await.unwrap();
        let sig = referrer(&image.manifest, SIG, repo);
        attach(&env.src, repo, image.digest(), &sig).await;
        sigs.push(sig.digest().to_string());
    }
    sigs.sort();
    let dst = Pusher::for_registry(&env.dst);
    let one = format!("{}/one:v1", env.src.host());
    let two = format!("{}/two:v1", env.src.host());
    let mut healed = 0;
    for round in 0..6 {
        let target = format!("{}/prace{round}:v1", env.dst.host());
        let (args_a, args_b) = (["import", &one, &target], ["import", &two, &target]);
        let (ra, rb) = tokio::join!(common::regmirror(&args_a), common::regmirror(&args_b));
        assert_eq!(ra.code, 0, "{}", ra.stderr);
        assert_eq!(rb.code, 0, "{}", rb.stderr);
        let repo = format!("prace{round}");
        let first = digests(&fallback_entries(&dst, &repo, image.digest()).await);
        assert!(
            first.iter().all(|d| sigs.contains(d)) && !first.is_empty(),
            "round {round}: {first:?}"
        );
        if first != sigs {
            healed += 1;
        }
        for from in [&one, &two] {
            let again = common::regmirror(&["import", from, &target]).await;
            assert_eq!(again.code, 0, "{}", again.stderr);
        }
        let then = digests(&fallback_entries(&dst, &repo, image.digest()).await);
        assert_eq!(
            then, sigs,
            "round {round}: the next run merges what was lost"
        );
    }
    eprintln!("rounds that needed the next run: {healed} of 6");
}

/// Artifacts listed inside an index (no platform) whose `subject` is a
/// kept platform stay in the filtered index; those of a dropped platform go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_filter_keeps_index_artifacts_of_kept_children() {
    let env = Env::new().await;
    let amd = ImageSet::image("inside", "linux/amd64", Format::Oci);
    let arm = ImageSet::image("inside", "linux/arm64", Format::Oci);
    let amd_sbom = referrer(&amd.manifest, SBOM, "inside/amd");
    let arm_sbom = referrer(&arm.manifest, SBOM, "inside/arm");
    let index = common::IndexBuilder::new(Format::Oci)
        .image(amd.clone())
        .image(arm.clone())
        .image(amd_sbom.clone())
        .image(arm_sbom.clone())
        .build();
    push(&env.src, "inside", "v1", &index).await.unwrap();
    let opts = CopyOptions {
        platforms: vec!["linux/arm64".parse().unwrap()],
        ..options(ReferrerOptions::all())
    };
    let report = env
        .copier()
        .copy(&env.src_ref("inside:v1"), &env.dst_ref("inside:arm"), &opts)
        .await
        .unwrap();
    assert_eq!(report.platforms_kept, vec!["linux/arm64".to_string()]);
    let (_, bytes) = Pusher::for_registry(&env.dst)
        .get_manifest("inside", "arm")
        .await
        .unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let listed: Vec<&str> = doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![arm.digest(), arm_sbom.digest()], "{doc:#}");
    assert_eq!(
        skopeo_raw_digest(&env.dst, &format!("inside@{}", arm_sbom.digest()))
            .await
            .unwrap(),
        arm_sbom.digest()
    );

    // Referrers off: the engine keeps its platform-only filter.
    let plain = CopyOptions {
        platforms: vec!["linux/arm64".parse().unwrap()],
        ..CopyOptions::default()
    };
    env.copier()
        .copy(
            &env.src_ref("inside:v1"),
            &env.dst_ref("inside:plain"),
            &plain,
        )
        .await
        .unwrap();
    let (_, bytes) = Pusher::for_registry(&env.dst)
        .get_manifest("inside", "plain")
        .await
        .unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["manifests"].as_array().unwrap().len(), 1, "{doc:#}");
}

/// The switches as users write them: `import --no-referrers` and
/// `--referrer-type`, and a mirror's `referrers = false` next to one that
/// inherits `[defaults]` (`exclude_referrer_types` there), through the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_flags_and_config_keys_choose_what_follows() {
    let env = Env::new().await;
    let s = signed_image(&env.src, "app", "v1").await;
    let dst = Pusher::for_registry(&env.dst);
    let (src_host, dst_host) = (env.src.host(), env.dst.host());
    let from = format!("{src_host}/app:v1");

    let run = common::regmirror(&[
        "import",
        "--no-referrers",
        &from,
        &format!("{dst_host}/bare"),
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(dst.tags("bare").await.unwrap(), vec!["v1".to_string()]);

    let run = common::regmirror(&[
        "import",
        "--referrer-type",
        SIG,
        "--output",
        "json",
        &from,
        &format!("{dst_host}/sigs"),
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    // Only signatures: the SBOMs (and so the signature of an SBOM) stay behind.
    assert_eq!(report["images"][0]["referrers"]["copied"], 0, "{report:#}");
    assert_eq!(
        report["images"][0]["referrers"]["cosign_tags_copied"], 1,
        "{report:#}"
    );
    assert!(
        !dst.manifest_exists("sigs", s.index_sbom.digest())
            .await
            .unwrap()
    );

    // The default, in text: the summary counts them.
    let run = common::regmirror(&["import", &from, &format!("{dst_host}/text")]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(
            "referrers: 4 found, 4 copied, 0 already there, 0 filtered out; 4 fallback indexes \
             written, 1 cosign tags copied"
        ),
        "{}",
        run.stdout
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.toml");
    std::fs::write(
        &path,
        format!(
            "[defaults]\nexclude_referrer_types = [\"{SIG}\"]\n\n\
             [[mirror]]\nsource = \"{src_host}/app:v1\"\ntarget = \"{dst_host}/inherit\"\n\n\
             [[mirror]]\nsource = \"{src_host}/app:v1\"\ntarget = \"{dst_host}/off\"\nreferrers = false\n"
        ),
    )
    .unwrap();
    let run = common::regmirror(&["sync", "--config", path.to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        dst.manifest_exists("inherit", s.index_sbom.digest())
            .await
            .unwrap()
    );
    assert!(
        !dst.manifest_exists("inherit", s.sbom_sig.digest())
            .await
            .unwrap()
    );
    assert_eq!(dst.tags("off").await.unwrap(), vec!["v1".to_string()]);

    // A type that is not a media type is a config error naming the key.
    std::fs::write(&path, "[defaults]\nreferrer_types = [\"sbom\"]\n").unwrap();
    let run = common::regmirror(&["check", "--config", path.to_str().unwrap()]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("defaults.referrer_types")
            && run.stderr.contains("not an artifact type"),
        "{}",
        run.stderr
    );
}

/// Both directions between the fallback scheme and the referrers API, at
/// the engine: distribution 2.8 → ferro-oci-server (API, `OCI-Subject`):
/// no fallback index written and no `sha256-` tag created, the API lists
/// the referrers; then ferro → a fresh distribution: the fallback indexes
/// are written from the API's listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversion_between_fallback_tags_and_the_api() {
    let env = Env::new().await;
    let s = signed_image(&env.src, "app", "v1").await;
    let ferro = common::ferro::FerroRegistry::start().await;
    let copier = env.copier();
    let to_api = Reference::parse(&format!("{}/app:v1", ferro.host())).unwrap();
    let opts = options(ReferrerOptions::all());
    let from = env.src_ref("app:v1");
    let r = Box::pin(copier.copy(&from, &to_api, &opts))
        .await
        .unwrap()
        .referrers;
    assert_eq!((r.found, r.copied, r.fallback_updates), (4, 4, 0), "{r:?}");
    let tags = ferro.pusher().tags("app").await.unwrap();
    assert!(
        !tags
            .iter()
            .any(|t| t.starts_with("sha256-") && !t.contains('.')),
        "no fallback tag on a registry with the API: {tags:?}"
    );
    let client = Client::new(ClientOptions::default()).unwrap();
    let repo = to_api.repository_only();
    let listed = match client
        .referrers_api(&repo, &s.index.digest().parse().unwrap(), None)
        .await
        .unwrap()
    {
        regmirror::registry::referrers::ApiAnswer::Listed { descriptors, .. } => descriptors,
        other => panic!("ferro has the API: {other:?}"),
    };
    assert_eq!(
        listed
            .iter()
            .map(|d| d.digest.to_string())
            .collect::<Vec<_>>(),
        vec![s.index_sbom.digest().to_string()]
    );

    // And back, into a registry without the API.
    let back = TestRegistry::start(RegistryOptions::anonymous()).await;
    let to_tags = Reference::parse(&format!("{}/app:v1", back.host())).unwrap();
    let back_copier = env.copier();
    let r = Box::pin(back_copier.copy(&to_api, &to_tags, &opts))
        .await
        .unwrap()
        .referrers;
    assert_eq!((r.found, r.copied, r.fallback_updates), (4, 4, 4), "{r:?}");
    let entries = fallback_entries(&Pusher::for_registry(&back), "app", s.index.digest()).await;
    assert_eq!(digests(&entries), vec![s.index_sbom.digest().to_string()]);
    assert_eq!(entries[0]["artifactType"], SBOM);
}
