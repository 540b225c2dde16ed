//! Fan-out of a signed image through the binary against real registries:
//! a mirror with three `targets` reads the source's referrers (the
//! referrers API probe, the `sha256-<hex>` fallback tags, cosign's `.sig`
//! tags, the referrer manifests and their blobs) once for all of them:
//! every source request, counted at a proxy in front of the source, is
//! exactly one of a single-target run. Each target ends with the image,
//! its signatures and its referrers byte-identical to the source's: two
//! distribution registries (fallback tags written by regmirror) and one
//! ferro-oci-server (the referrers API).
//!
//! A second run, all targets up to date, reads the source as a single
//! target's second run does. A target that refuses the fallback indexes
//! regmirror writes (a fault proxy in front of a real registry answers
//! those PUTs with a 500: a real registry cannot be told to refuse only
//! them) fails alone: the others end complete, and the source is still
//! read as by one target.
//!
//! A source with the referrers API (ferro-oci-server) is listed once per
//! subject for all targets too, on a first run and on an up-to-date one.
//!
//! The proxy in front of the source only counts: it forwards every request.

use crate::common;

use crate::fanout::assert_failed_alone;
use crate::sync_run::{ConfigFile, sync_json};
use common::artifacts::SignedImage;
use common::ferro::{AnyRegistry, FerroRegistry};
use common::referrers_verify::{At, mirror_problems};
use common::{Fault, FaultPlan, RegistryOptions, TestProxy, TestRegistry};

/// Every request the source answered, sorted (the order of concurrent
/// work varies). A source without the referrers API (`api` false) is
/// probed once, about whichever subject comes first, so that digest is
/// left out.
fn source_requests(p: &TestProxy, api: bool) -> Vec<(String, String)> {
    let mut r: Vec<(String, String)> = p
        .requests()
        .into_iter()
        .map(|(m, path)| match path.split_once("/referrers/") {
            Some((repo, _)) if !api => (m, format!("{repo}/referrers/(probe)")),
            _ => (m, path),
        })
        .collect();
    r.sort();
    r
}

/// A referrers-enabled mirror of `source` (`team/app:v1`) into `targets`.
fn config(source: &str, targets: &[String]) -> String {
    let list: Vec<String> = targets
        .iter()
        .map(|t| format!("\"{t}/mirror/app\""))
        .collect();
    format!(
        "[[mirror]]\nname = \"signed\"\nsource = \"{source}/team/app\"\ntags = [\"v1\"]\n\
         targets = [{}]\nreferrers = true\ncosign_tags = true\n",
        list.join(", ")
    )
}

/// `sync` of the config at `path` with the source's requests counted: the
/// exit code, the report, the requests.
async fn counted(
    sp: &TestProxy,
    path: &std::path::Path,
    api: bool,
) -> (i32, serde_json::Value, Vec<(String, String)>) {
    sp.reset();
    let (code, report, stderr) = sync_json(path, &[]).await;
    assert!(stderr.len() < 200_000, "{stderr}");
    (code, report, source_requests(sp, api))
}

/// The signed image pushed to `src` as `team/app:v1`, and the source's
/// requests of a first and a second single-target run, with the first
/// run's report.
async fn single_target_runs(
    src: AnyRegistry<'_>,
    sp: &TestProxy,
    seed: &str,
) -> (
    SignedImage,
    Vec<(String, String)>,
    Vec<(String, String)>,
    serde_json::Value,
) {
    let mut img = SignedImage::build(seed);
    img.push(src, "team/app", "v1").await.unwrap();
    let api = src.has_referrers_api();
    let single = TestRegistry::start(RegistryOptions::anonymous()).await;
    let cfg = ConfigFile::new();
    let path = cfg.write(&config(&sp.host(), &[single.host()]));
    let (code, report, first) = counted(sp, &path, api).await;
    assert_eq!(code, 0, "{report:#}");
    for needle in ["/referrers/", ".sig", "/blobs/"] {
        assert!(
            first.iter().any(|(_, p)| p.contains(needle)),
            "the single-target run read {needle}: {first:#?}"
        );
    }
    let (code, again, second) = counted(sp, &path, api).await;
    assert_eq!(code, 0, "{again:#}");
    assert!(
        !second.iter().any(|(_, p)| p.contains("/blobs/")),
        "an up-to-date run reads no blob: {second:#?}"
    );
    (img, first, second, report)
}

#[tokio::test(flavor = "multi_thread")]
async fn three_targets_read_the_referrers_once() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let sp = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
    let (img, first, second, single_report) =
        single_target_runs((&src).into(), &sp, "fanout-referrers").await;

    let (a, b) = (
        TestRegistry::start(RegistryOptions::anonymous()).await,
        TestRegistry::start(RegistryOptions::anonymous()).await,
    );
    let f = FerroRegistry::start().await;
    let cfg = ConfigFile::new();
    let path = cfg.write(&config(&sp.host(), &[a.host(), f.host(), b.host()]));
    let (code, report, fanned) = counted(&sp, &path, false).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(fanned, first, "three targets read the source as one does");
    let from = At::new(&src, "team/app");
    let subjects = img.referrer_subjects();
    for (to, what) in [
        (At::new(&a, "mirror/app"), "first distribution target"),
        (At::new(&f, "mirror/app"), "ferro target"),
        (At::new(&b, "mirror/app"), "second distribution target"),
    ] {
        let problems = mirror_problems(&img, from, to, "v1", &subjects).await;
        assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
    }
    // Each target decided on its own what it lacked: every referrer and
    // cosign tag was pushed to each, as to the single target.
    let alone = &single_report["images"][0]["referrers"];
    assert!(alone["copied"].as_u64() > Some(0), "{single_report:#}");
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 3, "{report:#}");
    for i in images {
        assert_eq!(i["result"], "copied", "{i:#}");
        for n in ["found", "copied", "cosign_tags_copied"] {
            assert_eq!(i["referrers"][n], alone[n], "{n}: {i:#}");
        }
    }

    // All up to date: the source is read as by one up-to-date target.
    let (code, report, fanned) = counted(&sp, &path, false).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(fanned, second, "an up-to-date run of three targets");
    for i in report["images"].as_array().unwrap() {
        assert_eq!(i["result"], "up-to-date", "{i:#}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_refusing_referrers_fails_alone() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let sp = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
    let (img, first, _, _) = single_target_runs((&src).into(), &sp, "fanout-referrers-fail").await;

    let (a, b, c) = (
        TestRegistry::start(RegistryOptions::anonymous()).await,
        TestRegistry::start(RegistryOptions::anonymous()).await,
        TestRegistry::start(RegistryOptions::anonymous()).await,
    );
    // Fallback indexes only (`sha256-<hex>`, not cosign's `.sig` tags).
    let refusing =
        FaultPlan::none().always("PUT", "/manifests/sha256-[0-9a-f]{64}$", Fault::Status(500));
    let cp = TestProxy::start(&c.base_url(), refusing).await;
    let cfg = ConfigFile::new();
    let path = cfg.write(&config(&sp.host(), &[a.host(), cp.host(), b.host()]));
    let (code, report, fanned) = counted(&sp, &path, false).await;
    assert_ne!(code, 0, "{report:#}");
    assert_eq!(fanned, first, "three targets read the source as one does");
    let from = At::new(&src, "team/app");
    let subjects = img.referrer_subjects();
    for healthy in [&a, &b] {
        let to = At::new(healthy, "mirror/app");
        let problems = mirror_problems(&img, from, to, "v1", &subjects).await;
        assert!(
            problems.is_empty(),
            "{}:\n  {}",
            healthy.host(),
            problems.join("\n  ")
        );
    }
    let failing = format!("{}/mirror/app", cp.host());
    assert_eq!(report["images"].as_array().map(Vec::len), Some(3));
    assert_failed_alone(&report, &failing, &cp.host());
    assert!(
        cp.requests()
            .iter()
            .any(|(m, p)| m == "PUT" && p.contains("/manifests/sha256-")),
        "the failing target was asked to take a fallback index"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_with_the_referrers_api_is_listed_once() {
    let src = FerroRegistry::start().await;
    let sp = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
    let (img, first, second, _) =
        single_target_runs((&src).into(), &sp, "fanout-referrers-api").await;
    let listings = first
        .iter()
        .filter(|(_, p)| p.contains("/referrers/"))
        .count();
    assert!(listings > 1, "one listing per subject: {first:#?}");

    let (a, b, c) = (
        TestRegistry::start(RegistryOptions::anonymous()).await,
        TestRegistry::start(RegistryOptions::anonymous()).await,
        TestRegistry::start(RegistryOptions::anonymous()).await,
    );
    let cfg = ConfigFile::new();
    let path = cfg.write(&config(&sp.host(), &[a.host(), b.host(), c.host()]));
    let (code, report, fanned) = counted(&sp, &path, true).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(fanned, first, "three targets list the source as one does");
    let from = At::new(&src, "team/app");
    let subjects = img.referrer_subjects();
    for reg in [&a, &b, &c] {
        let problems =
            mirror_problems(&img, from, At::new(reg, "mirror/app"), "v1", &subjects).await;
        assert!(
            problems.is_empty(),
            "{}:\n  {}",
            reg.host(),
            problems.join("\n  ")
        );
    }
    let (code, report, fanned) = counted(&sp, &path, true).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(fanned, second, "an up-to-date run of three targets");
}
