//! The run-state store's memory of source repositories without referrers,
//! through the binary against real registries (Debian's `docker-registry`,
//! which has no referrers API, behind counting proxies): once a run found
//! neither the API nor a referrer tag (checking an image already mirrored),
//! a no-op run makes no referrers probe
//! (no `GET .../referrers/<digest>`, no tag listing for referrer tags) while
//! the finding is younger than `full_check_every`; a referrer pushed
//! upstream meanwhile is copied by the first run after that.
//!
//! Time is moved with `REGMIRROR_TEST_CLOCK`, which only debug builds read.

use crate::common;
use crate::state_store::{T0, config, image, run_env, sync, totals};

use std::path::Path;

use common::artifacts::{fallback_entries, push_referrer, sbom_for};
use common::{FaultPlan, Pusher, RegistryOptions, TestProxy, TestRegistry, push};

/// Requests at the source proxy: referrers API GETs and tag listings.
fn probes(p: &TestProxy) -> (usize, usize) {
    (
        p.count_matching("GET", "/referrers/"),
        p.count_matching("GET", "/tags/list"),
    )
}

/// `sync` of `config` at `clock` without the store: (exit code, stderr).
async fn sync_without_store(config: &Path, clock: u64) -> (i32, String) {
    let path = config.to_str().unwrap();
    let args = ["sync", "--config", path, "--output", "json"];
    let (code, _, stderr) = run_env(&args, Some(clock), &[("REGMIRROR_NO_STATE", "1")]).await;
    (code, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_without_referrers_is_not_probed_until_the_full_check() {
    if !cfg!(debug_assertions) {
        eprintln!("release build: REGMIRROR_TEST_CLOCK is ignored, nothing to test here");
        return;
    }
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let sp = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
    let img = image("probe", &[]);
    push(&src, "team/app", "1.0", img.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        &format!(
            "[[mirror]]\nsource = \"{}/team/app:1.0\"\ntarget = \"{}/mirror/app\"\n\
             full_check_every = \"2h\"\n",
            sp.host(),
            dst.host()
        ),
    );
    let (code, first, stderr) = sync(&path, Some(T0)).await;
    assert_eq!(
        (code, totals(&first)),
        (0, [1, 0, 0, 0]),
        "{first:#}\n{stderr}"
    );
    // The first no-op probes (one referrers API GET, one tag listing) and
    // the store notes the finding.
    sp.reset();
    let (code, second, stderr) = sync(&path, Some(T0 + 60)).await;
    assert_eq!(
        (code, totals(&second)),
        (0, [0, 1, 0, 0]),
        "{second:#}\n{stderr}"
    );
    assert_eq!(probes(&sp), (1, 1), "{:?}", sp.requests());
    let probed = sp.requests().len();

    // Later no-ops: without the store they probe; with it, the probe is
    // skipped and nothing else changes.
    sp.reset();
    let (code, stderr) = sync_without_store(&path, T0 + 600).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(sp.requests().len(), probed, "{:?}", sp.requests());
    sp.reset();
    let (code, third, stderr) = sync(&path, Some(T0 + 3600)).await;
    assert_eq!(
        (code, totals(&third)),
        (0, [0, 1, 0, 0]),
        "{third:#}\n{stderr}"
    );
    assert_eq!(probes(&sp), (0, 0), "no probe: {:?}", sp.requests());
    assert_eq!(sp.requests().len(), probed - 2, "{:?}", sp.requests());

    // A referrer pushed upstream waits for the full check: not copied
    // within full_check_every (2 h) of the finding (at T0 + 60), copied after it.
    let sbom = sbom_for(&img.manifest, "probe-sbom");
    let src_pusher = Pusher::for_registry(&src);
    push_referrer(&src_pusher, "team/app", &sbom).await.unwrap();
    let dst_pusher = Pusher::for_registry(&dst);
    let (code, held, stderr) = sync(&path, Some(T0 + 5400)).await;
    assert_eq!(
        (code, totals(&held)),
        (0, [0, 1, 0, 0]),
        "{held:#}\n{stderr}"
    );
    let entries = fallback_entries(&dst_pusher, "mirror/app", img.digest()).await;
    assert!(entries.unwrap().is_none(), "copied before the full check");
    sp.reset();
    let (code, fourth, stderr) = sync(&path, Some(T0 + 2 * 3600 + 120)).await;
    assert_eq!(
        (code, totals(&fourth)),
        (0, [0, 1, 0, 0]),
        "{fourth:#}\n{stderr}"
    );
    assert_eq!(
        probes(&sp).0,
        1,
        "the full check probes: {:?}",
        sp.requests()
    );
    let entries = fallback_entries(&dst_pusher, "mirror/app", img.digest())
        .await
        .unwrap()
        .unwrap_or_default();
    let digests: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["digest"].as_str())
        .collect();
    assert_eq!(digests, [sbom.digest()], "{fourth:#}");

    // The repository has a referrer tag now: the next runs keep probing.
    sp.reset();
    let (code, _, stderr) = sync(&path, Some(T0 + 2 * 3600 + 180)).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(probes(&sp).0, 1, "{:?}", sp.requests());
}
