//! The run-state store trusts an immutable tag only as mirrored under the
//! mirror's current copy settings: a record carries a fingerprint of
//! `platforms`, `platforms_optional`, `convert_schema1` and `referrers`, so
//! a changed `platforms` is applied at the next run instead of at the next
//! full check (request counts at a counting proxy, and the run's report).

use crate::common;

use common::{FaultPlan, Format, ImageSet, Pusher, RegistryOptions, TestProxy, TestRegistry, push};

use crate::state_store::{T0, config, sync, totals};

/// Requests for manifests (any method) the proxy saw.
fn manifest_requests(p: &TestProxy) -> usize {
    p.requests()
        .iter()
        .filter(|(_, path)| path.contains("/manifests/"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_platforms_makes_the_next_run_check_a_trusted_immutable_tag() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let sp = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
    let image = ImageSet::multi_arch("shape", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    push(&src, "team/app", "1.0.0", image.to_node())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |platforms: &str| {
        config(
            dir.path(),
            &format!(
                "[[mirror]]\nsource = \"{}/team/app:1.0.0\"\ntarget = \"{}/mirror/app\"\nreferrers = false\n\
                 immutable_tags = '\\d+\\.\\d+\\.\\d+'\nplatforms = [{platforms}]\n",
                sp.host(),
                dst.host()
            ),
        )
    };
    let path = write("\"linux/amd64\"");
    let (code, first, stderr) = sync(&path, Some(T0)).await;
    assert_eq!(
        (code, totals(&first)),
        (0, [1, 0, 0, 0]),
        "{first:#}\n{stderr}"
    );
    let amd64_only = first["images"][0]["target_digest"].clone();

    // Same settings a minute later: trusted, the source is not asked.
    sp.reset();
    let (code, trusted, stderr) = sync(&path, Some(T0 + 60)).await;
    assert_eq!(
        (code, totals(&trusted)),
        (0, [0, 1, 0, 0]),
        "{trusted:#}\n{stderr}"
    );
    assert_eq!(manifest_requests(&sp), 0, "{:?}", sp.requests());

    // Another platform wanted: the next run checks the tag and copies both.
    write("\"linux/amd64\", \"linux/arm64\"");
    sp.reset();
    let (code, rechecked, stderr) = sync(&path, Some(T0 + 120)).await;
    assert_eq!(
        (code, totals(&rechecked)),
        (0, [1, 0, 0, 0]),
        "{rechecked:#}\n{stderr}"
    );
    assert!(manifest_requests(&sp) >= 1, "{:?}", sp.requests());
    let both = &rechecked["images"][0]["target_digest"];
    assert_ne!(both, &amd64_only, "{rechecked:#}");
    let at_target = Pusher::for_registry(&dst)
        .get_manifest("mirror/app", "1.0.0")
        .await
        .unwrap()
        .1;
    let index: serde_json::Value = serde_json::from_slice(&at_target).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index:#}");

    // And is trusted again under the new settings.
    sp.reset();
    let (code, again, stderr) = sync(&path, Some(T0 + 180)).await;
    assert_eq!(
        (code, totals(&again)),
        (0, [0, 1, 0, 0]),
        "{again:#}\n{stderr}"
    );
    assert_eq!(manifest_requests(&sp), 0, "{:?}", sp.requests());
}
