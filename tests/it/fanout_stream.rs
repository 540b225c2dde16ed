//! Fan-out streaming and integrity through the binary against real
//! registries: a blob of several MiB is fetched once from the source
//! (counted at a proxy in front of it) for three targets; a target whose
//! uploads hang does not hold back the other two; a source blob whose bytes
//! do not match its digest reaches no target (no blob, no tag) and every
//! target's image names the mismatch; with a signature policy, three
//! targets cost the source what one does, and a rejected image is written
//! to none of them.
//!
//! Fakes, and why: the hanging target is a real registry behind the
//! harness's fault proxy holding each upload `PUT` (a real registry cannot
//! be told to stop taking a body mid-upload); the lying source is a real
//! registry behind the proxy flipping one byte of one blob's body (a real
//! registry serves what it stores, and it stores only bytes that match).

use std::time::Duration;

use crate::common;

use crate::sync_run::{ConfigFile, sync_json};
use common::cosign::{CosignKey, sig_tag, signature_layer, signature_manifest};
use common::{
    Fault, FaultPlan, Format, Image, ImageBuilder, ImageSet, Node, Pusher, RegistryOptions,
    TestProxy, TestRegistry, push,
};

/// The size of the large layer: several MiB, many spool chunks.
const BIG: usize = 8 * 1024 * 1024;

/// An image with a small layer and a large one (`layers[1]`).
fn big_image(seed: &str) -> Image {
    ImageBuilder::new(Format::Oci)
        .random_layer(&format!("{seed}-small"), 50_000)
        .random_layer(&format!("{seed}-big"), BIG)
        .build()
}

/// The path of blob `digest` in the source repository `team/app`.
fn blob_path(digest: &str) -> String {
    format!("/v2/team/app/blobs/{digest}")
}

/// `[[mirror]]` of `source/team/app:v1` into `mirror/app` on each target.
fn mirror_config(source: &str, targets: &[String]) -> String {
    let targets: Vec<String> = targets
        .iter()
        .map(|t| format!("\"{t}/mirror/app\""))
        .collect();
    format!(
        "[[mirror]]\nname = \"app\"\nsource = \"{source}/team/app\"\ntags = [\"v1\"]\n\
         targets = [{}]\n",
        targets.join(", ")
    )
}

/// True when `reg` serves `mirror/app:v1`.
async fn has_tag(reg: &TestRegistry) -> bool {
    Pusher::for_registry(reg)
        .manifest_exists("mirror/app", "v1")
        .await
        .unwrap()
}

/// True when `reg` holds blob `digest` in `mirror/app`.
async fn has_blob(reg: &TestRegistry, digest: &str) -> bool {
    Pusher::for_registry(reg)
        .blob_exists("mirror/app", digest)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_blob_is_fetched_once_and_a_hanging_target_holds_back_no_other() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let sp = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
    let image = big_image("stream");
    push(&src, "team/app", "v1", image.clone()).await.unwrap();
    let big = image.layers[1].digest.clone();

    let (a, b) = (
        TestRegistry::start(RegistryOptions::anonymous()).await,
        TestRegistry::start(RegistryOptions::anonymous()).await,
    );
    let slow = TestRegistry::start(RegistryOptions::anonymous()).await;
    // Every upload PUT to the slow target is held (far longer than this
    // test waits): the target never takes a blob.
    let hold = FaultPlan::none().always(
        "PUT",
        "/blobs/uploads/",
        Fault::Stall(Duration::from_secs(3600)),
    );
    let slow_proxy = TestProxy::start(&slow.base_url(), hold).await;
    // The hanging target comes first: it is not waited for.
    let targets = [slow_proxy.host(), a.host(), b.host()];
    let cfg = ConfigFile::new();
    let path = cfg.write(&mirror_config(&sp.host(), &targets));
    let mut run = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args([
            "sync",
            "--config",
            path.to_str().unwrap(),
            "--output",
            "json",
        ])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("starting regmirror sync");

    // Wait (bounded, as any test) for the two healthy targets to hold the
    // image and the slow one to have been sent its uploads.
    let uploads = |p: &TestProxy| p.count("PUT", "/v2/mirror/app/blobs/uploads/");
    let mut waited = 0;
    while !(has_tag(&a).await && has_tag(&b).await && uploads(&slow_proxy) > 0) {
        assert!(
            run.try_wait().unwrap().is_none(),
            "sync ended before the healthy targets held the image"
        );
        waited += 1;
        assert!(waited < 1200, "the healthy targets never held the image");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // They hold the whole image while the slow target's uploads are held.
    for reg in [&a, &b] {
        let pusher = Pusher::for_registry(reg);
        let problems = common::graph_problems(&pusher, "mirror/app", "v1", image.digest()).await;
        assert!(problems.is_empty(), "{}: {problems:?}", reg.host());
    }
    assert!(!has_blob(&slow, &big).await && !has_tag(&slow).await);
    assert!(
        run.try_wait().unwrap().is_none(),
        "the run waits for the slow target"
    );
    assert_eq!(
        sp.count_matching("GET", &format!("^{}$", blob_path(&big))),
        1,
        "the large blob is fetched once for three targets: {:?}",
        sp.requests()
    );
    run.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_blob_that_does_not_match_its_digest_reaches_no_target() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let image = big_image("corrupt");
    push(&src, "team/app", "v1", image.clone()).await.unwrap();
    let big = image.layers[1].digest.clone();
    let lying =
        FaultPlan::none().always("GET", &format!("^{}$", blob_path(&big)), Fault::CorruptBody);
    let sp = TestProxy::start(&src.base_url(), lying).await;
    let regs = [
        TestRegistry::start(RegistryOptions::anonymous()).await,
        TestRegistry::start(RegistryOptions::anonymous()).await,
        TestRegistry::start(RegistryOptions::anonymous()).await,
    ];
    let targets: Vec<String> = regs.iter().map(TestRegistry::host).collect();
    let cfg = ConfigFile::new();
    let (code, report, stderr) =
        sync_json(&cfg.write(&mirror_config(&sp.host(), &targets)), &[]).await;

    assert_ne!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["mirrors"][0]["result"], "failed", "{report:#}");
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 3, "{report:#}");
    for i in images {
        let error = i["error"].as_str().unwrap_or_default();
        assert_eq!(i["result"], "failed", "{i:#}");
        assert!(
            error.contains(&big) && error.contains("content has digest"),
            "each target's image names the mismatch: {error}"
        );
    }
    for reg in &regs {
        assert!(
            !has_blob(reg, &big).await,
            "{} holds the corrupt blob",
            reg.host()
        );
        assert!(!has_tag(reg).await, "{} was tagged", reg.host());
    }
    assert_eq!(
        sp.count_matching("GET", &format!("^{}$", blob_path(&big))),
        1,
        "{:?}",
        sp.requests()
    );
}

/// The source's requests, sorted: what reading the source costs.
fn source_requests(p: &TestProxy) -> Vec<(String, String)> {
    let mut r = p.requests();
    r.sort();
    r
}

/// A mirror of `source/app:TAG` into `mirror/app` on each target, with a
/// policy requiring a signature by `key1.pub`. Referrers are not copied:
/// what is counted is the policy's reading of the source (the referrers'
/// own reads are counted in `fanout_referrers`).
fn policy_config(source: &str, tag: &str, targets: &[String]) -> String {
    let targets: Vec<String> = targets
        .iter()
        .map(|t| format!("\"{t}/mirror/app\""))
        .collect();
    format!(
        "[[mirror]]\nname = \"signed\"\nsource = \"{source}/app:{tag}\"\ntargets = [{}]\n\
         referrers = false\n[mirror.policy]\nrequire = \"any\"\nkeys = [\"key1.pub\"]\n",
        targets.join(", ")
    )
}

/// Sync `text` (key files beside it) with the source's requests counted.
async fn counted_sync(
    cfg: &ConfigFile,
    sp: &TestProxy,
    text: &str,
) -> (i32, serde_json::Value, Vec<(String, String)>) {
    sp.reset();
    let (code, report, stderr) = sync_json(&cfg.write(text), &[]).await;
    assert!(stderr.len() < 100_000, "{stderr}");
    (code, report, source_requests(sp))
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_policy_three_targets_cost_the_source_what_one_does() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let sp = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
    let key = CosignKey::from_seed("fan-out policy key");
    let signed = ImageSet::image("fanout-signed", "linux/amd64", Format::Oci);
    let unsigned = ImageSet::image("fanout-unsigned", "linux/amd64", Format::Oci);
    push(&src, "app", "v1", signed.clone()).await.unwrap();
    push(&src, "app", "v2", unsigned.clone()).await.unwrap();
    let layer = signature_layer(&key, &format!("{}/app", sp.host()), signed.digest());
    Pusher::for_registry(&src)
        .push_node(
            "app",
            &Node::Image(signature_manifest(vec![layer])),
            Some(&sig_tag(signed.digest())),
        )
        .await
        .unwrap();
    let cfg = ConfigFile::new();
    let dir = cfg.write("").parent().unwrap().to_path_buf();
    std::fs::write(dir.join("key1.pub"), key.public_pem()).unwrap();
    let one = TestRegistry::start(RegistryOptions::anonymous()).await;
    let regs = [
        TestRegistry::start(RegistryOptions::anonymous()).await,
        TestRegistry::start(RegistryOptions::anonymous()).await,
        TestRegistry::start(RegistryOptions::anonymous()).await,
    ];
    let three: Vec<String> = regs.iter().map(TestRegistry::host).collect();

    for (tag, want) in [("v1", "copied"), ("v2", "rejected")] {
        let (_, single, alone) =
            counted_sync(&cfg, &sp, &policy_config(&sp.host(), tag, &[one.host()])).await;
        assert_eq!(single["images"][0]["result"], want, "{single:#}");
        let (code, report, fanned) =
            counted_sync(&cfg, &sp, &policy_config(&sp.host(), tag, &three)).await;
        assert_eq!(
            fanned, alone,
            "{tag}: three targets read the source as one does"
        );
        assert!(
            fanned
                .iter()
                .any(|(_, p)| p.contains(&sig_tag(signed.digest()))
                    || p.contains(&sig_tag(unsigned.digest()))),
            "the policy looked for signatures: {fanned:?}"
        );
        let images = report["images"].as_array().unwrap();
        assert_eq!(images.len(), 3, "{report:#}");
        for i in images {
            assert_eq!(i["result"], want, "{tag}: {i:#}");
        }
        let pusher_digest = if tag == "v1" {
            signed.digest()
        } else {
            unsigned.digest()
        };
        for reg in &regs {
            let held = Pusher::for_registry(reg)
                .manifest_exists("mirror/app", pusher_digest)
                .await
                .unwrap();
            assert_eq!(held, want == "copied", "{tag} at {}", reg.host());
        }
        if want == "rejected" {
            assert_eq!(code, 1, "{report:#}");
            for i in images {
                assert_eq!(i["rejection"], "no_signature", "{i:#}");
            }
        }
    }
}
