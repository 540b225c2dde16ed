//! A config of more mirrors than a run starts at once: mirror runs start as
//! others end (`regmirror sync` holds at most `concurrency` x 8 mirror runs
//! at a time), every mirror still runs, and the report keeps the config's
//! order of mirrors and of their images, not the order runs ended in.

use crate::common;

use common::{Format, ImageSet, Pusher, RegistryOptions, TestRegistry, push};

/// Mirrors in the config: more than the 8 runs `--concurrency 1` starts at once.
const MIRRORS: usize = 13;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_mirrors_than_run_at_once_all_run_and_report_in_config_order() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = String::new();
    // Names in the reverse of their sorted order, so that the report's order
    // can only be the config's.
    let names: Vec<String> = (0..MIRRORS).rev().map(|i| format!("m{i:02}")).collect();
    for (n, name) in names.iter().enumerate() {
        let image = ImageSet::image(name, "linux/amd64", Format::Oci);
        push(
            &src,
            &format!("team/r{n}"),
            "v1",
            common::Node::Image(image),
        )
        .await
        .unwrap();
        config.push_str(&format!(
            "[[mirror]]\nname = \"{name}\"\nsource = \"{}/team/r{n}:v1\"\ntarget = \"{}/mirror/r{n}\"\n\n",
            src.host(),
            dst.host()
        ));
    }
    let path = dir.path().join("mirror.toml");
    std::fs::write(&path, config).unwrap();
    let run = common::regmirror(&[
        "sync",
        "--config",
        path.to_str().unwrap(),
        "--concurrency",
        "1",
        "--output",
        "json",
    ])
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["totals"]["copied"], MIRRORS as u64, "{report:#}");
    let order = |list: &str, key: &str| -> Vec<String> {
        report[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m[key].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(order("mirrors", "name"), names, "{report:#}");
    assert_eq!(order("images", "mirror"), names, "{report:#}");
    let pusher = Pusher::for_registry(&dst);
    for n in 0..MIRRORS {
        assert!(
            pusher
                .manifest_exists(&format!("mirror/r{n}"), "v1")
                .await
                .unwrap(),
            "mirror/r{n}:v1 is missing at the target"
        );
    }
}

/// At most `concurrency` x 8 mirror runs at once: with `--concurrency 1`
/// and twelve mirrors of whole repositories whose tag listings the source's
/// proxy holds (a fault a real registry cannot be told to make), exactly
/// eight listings arrive and no ninth, since no run can end to make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_concurrency_1_eight_mirror_runs_start_at_once() {
    use common::{Fault, FaultPlan, TestProxy};
    use std::time::{Duration, Instant};
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let plan = FaultPlan::none().always(
        "GET",
        "^/v2/team/r[0-9]+/tags/list",
        Fault::Stall(Duration::from_secs(600)),
    );
    let proxy = TestProxy::start(&src.base_url(), plan).await;
    let dir = tempfile::tempdir().unwrap();
    let config: String = (0..12)
        .map(|n| {
            format!(
                "[[mirror]]\nname = \"m{n:02}\"\nsource = \"{}/team/r{n}\"\ntarget = \"{}/mirror/r{n}\"\n\n",
                proxy.host(),
                dst.host()
            )
        })
        .collect();
    let path = dir.path().join("mirror.toml");
    std::fs::write(&path, config).unwrap();
    let path = path.to_str().unwrap().to_string();
    let run = tokio::spawn(async move {
        common::regmirror(&["sync", "--config", &path, "--concurrency", "1"]).await
    });
    let listings = || proxy.count_matching("GET", "^/v2/team/r[0-9]+/tags/list");
    let started = Instant::now();
    while listings() < 8 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {} tag listings in 60 s: {:?}",
            listings(),
            proxy.requests()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every run holds its slot while its listing stalls: a ninth listing
    // would mean more than eight runs at once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(listings(), 8, "{:?}", proxy.requests());
    run.abort();
}
