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
