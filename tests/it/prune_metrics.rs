//! Prune metrics per target, through the binary against real registries
//! (distribution 2.8 with deletes on): a mirror with `targets` and
//! `prune = "not-in-source"` counts the tags each target's prune deleted
//! under that target's `target` label (`regmirror_target_pruned_tags_total`),
//! beside the mirror's total (`regmirror_pruned_tags_total`), and a target
//! whose prune was refused (an image failed there) under its own label
//! (`regmirror_target_prune_refused_total`), read from the run's
//! `--metrics-file` export.
//!
//! The failing target is a real registry behind the harness's fault proxy,
//! which answers every blob upload PUT with a 500 of its own: a real
//! registry cannot be told to refuse uploads while it answers the checks
//! before them, which is what a target that fails mid-run does.

use std::path::Path;

use crate::common;

use crate::sync_run::{ConfigFile, push_tags, tags};
use common::{Fault, FaultPlan, Format, ImageSet, Node, RegistryOptions, TestProxy, TestRegistry};

fn image(seed: &str) -> Node {
    Node::Image(ImageSet::image(seed, "linux/amd64", Format::Oci))
}

/// `sync --config CONFIG --metrics-file METRICS`: the exit code and the
/// exported metrics.
async fn sync_with_metrics(config: &Path) -> (i32, String) {
    let metrics = config.with_file_name("run.prom");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args([
            "sync",
            "--config",
            config.to_str().unwrap(),
            "--metrics-file",
        ])
        .arg(&metrics)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("running regmirror");
    let text = std::fs::read_to_string(&metrics).unwrap_or_else(|e| {
        panic!(
            "no metrics file ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit code"), text)
}

/// The value of the series `series` (name and labels as exported), if any.
fn value(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("an integer counter"))
}

#[tokio::test(flavor = "multi_thread")]
async fn each_target_counts_its_own_prune() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (a, b, c) = (
        TestRegistry::start(RegistryOptions::anonymous().with_delete()).await,
        TestRegistry::start(RegistryOptions::anonymous().with_delete()).await,
        TestRegistry::start(RegistryOptions::anonymous().with_delete()).await,
    );
    let refusing = FaultPlan::none().always("PUT", "/blobs/uploads/", Fault::Status(500));
    let cp = TestProxy::start(&c.base_url(), refusing).await;
    push_tags(&src, "team/app", &["1.0"], &image("prune-metrics/1.0")).await;
    // Tags the source does not have: two at the first target, one at the
    // second, one at the third (which a failed copy keeps from pruning).
    push_tags(&a, "mirror/app", &["0.8", "0.9"], &image("prune-metrics/a")).await;
    push_tags(&b, "mirror/app", &["0.7"], &image("prune-metrics/b")).await;
    push_tags(&c, "mirror/app", &["0.6"], &image("prune-metrics/c")).await;
    let targets = [
        format!("{}/mirror/app", a.host()),
        format!("{}/mirror/app", b.host()),
        format!("{}/mirror/app", cp.host()),
    ];
    let cfg = ConfigFile::new();
    let path = cfg.write(&format!(
        "[[mirror]]\nname = \"app\"\nsource = \"{}/team/app\"\ntargets = {targets:?}\n\
         prune = \"not-in-source\"\n",
        src.host()
    ));
    let (code, metrics) = sync_with_metrics(&path).await;
    assert_ne!(code, 0, "the third target failed:\n{metrics}");
    assert_eq!(tags(&a, "mirror/app").await, ["1.0"]);
    assert_eq!(tags(&b, "mirror/app").await, ["1.0"]);
    assert_eq!(tags(&c, "mirror/app").await, ["0.6"]);

    let pruned = |target: &str| {
        format!(
            "regmirror_target_pruned_tags_total{{mirror=\"app\",result=\"deleted\",target=\"{target}\"}}"
        )
    };
    let refused = |target: &str| {
        format!("regmirror_target_prune_refused_total{{mirror=\"app\",target=\"{target}\"}}")
    };
    let want = [
        (pruned(&targets[0]), 2),
        (pruned(&targets[1]), 1),
        (pruned(&targets[2]), 0),
        (refused(&targets[0]), 0),
        (refused(&targets[1]), 0),
        (refused(&targets[2]), 1),
        (
            "regmirror_pruned_tags_total{mirror=\"app\",result=\"deleted\"}".to_string(),
            3,
        ),
        (
            "regmirror_prune_refused_total{mirror=\"app\"}".to_string(),
            1,
        ),
    ];
    for (series, n) in want {
        assert_eq!(value(&metrics, &series), Some(n), "{series}\n{metrics}");
    }
}
