//! Fan-out through the binary against real registries: a mirror with
//! `targets` reads its source once for all of them (the source's manifest
//! and blob requests, counted at a proxy in front of it, are exactly those
//! of a single-target run), the healthy targets end complete and
//! byte-exact (the harness's own reader and skopeo), a failing target is
//! reported failed alone with the words it answered, and the next run heals
//! it. Target groups come from `[defaults.target_groups]`; `check` refuses
//! bad `targets`.
//!
//! The failing target is a real registry behind the harness's fault proxy,
//! which answers every blob upload PUT with a 500 of its own: a real
//! registry cannot be told to refuse uploads while it answers the checks
//! before them (pings, HEADs, upload POSTs), which is what a target that
//! fails mid-run does.

use crate::common;

use crate::sync_run::{ConfigFile, sync_json};
use common::{
    Blob, Fault, FaultPlan, Format, ImageBuilder, IndexBuilder, Node, Pusher, RegistryOptions,
    TestProxy, TestRegistry, push,
};

/// The source's manifest and blob requests, sorted: what reading the
/// source costs, whatever the order.
fn source_reads(p: &TestProxy) -> Vec<(String, String)> {
    let mut r: Vec<(String, String)> = p
        .requests()
        .into_iter()
        .filter(|(_, path)| path.contains("/manifests/") || path.contains("/blobs/"))
        .collect();
    r.sort();
    r
}

/// Two tags: a two-platform index and a single image, both on one base layer.
async fn push_source(src: &TestRegistry) -> Vec<(&'static str, Node)> {
    let base = Blob::layer(Format::Oci, "fanout-base", 300_000);
    let image = |p: &str, own: &str| {
        ImageBuilder::new(Format::Oci)
            .platform(p)
            .layer(base.clone())
            .random_layer(own, 200_000)
            .build()
    };
    let index = IndexBuilder::new(Format::Oci)
        .image(image("linux/amd64", "amd"))
        .image(image("linux/arm64", "arm"))
        .build();
    let nodes: Vec<(&str, Node)> = vec![
        ("v1", index.into()),
        ("v2", image("linux/amd64", "single").into()),
    ];
    for (tag, node) in &nodes {
        push(src, "team/app", tag, node.clone()).await.unwrap();
    }
    nodes
}

/// `reg` holds every tag complete at its digest: by the harness's reader,
/// and by skopeo's raw manifest.
async fn assert_complete(reg: &TestRegistry, nodes: &[(&str, Node)]) {
    let pusher = Pusher::for_registry(reg);
    for (tag, node) in nodes {
        let problems = common::graph_problems(&pusher, "mirror/app", tag, node.digest()).await;
        assert!(problems.is_empty(), "{}: {problems:?}", reg.host());
        let by_skopeo = common::skopeo_raw_digest(reg, &format!("mirror/app:{tag}"))
            .await
            .unwrap();
        assert_eq!(by_skopeo, node.digest(), "{} {tag} by skopeo", reg.host());
    }
}

/// The `targets[]` entry of `target` in the first mirror of `report`.
pub(crate) fn target_entry<'a>(
    report: &'a serde_json::Value,
    target: &str,
) -> &'a serde_json::Value {
    report["mirrors"][0]["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|e| e["target"] == target))
        .unwrap_or_else(|| panic!("no targets[] entry for {target}: {report:#}"))
}

/// Every image of `report` written to `failing` (a target behind the fault
/// proxy at `host`) failed with the error naming the target and the
/// proxy's injected 500; every other image was copied.
pub(crate) fn assert_failed_alone(report: &serde_json::Value, failing: &str, host: &str) {
    for i in report["images"].as_array().unwrap() {
        let target = i["target"].as_str().unwrap();
        if target.starts_with(failing) {
            let error = i["error"].as_str().unwrap_or_default();
            assert_eq!(i["result"], "failed", "{i:#}");
            assert!(
                error.contains(host) && error.contains("injected fault: status 500"),
                "the error names the target and its words: {error}"
            );
        } else {
            assert_eq!(i["result"], "copied", "{i:#}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_targets_read_the_source_once_and_a_failing_target_fails_alone() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let sp = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
    let nodes = push_source(&src).await;

    // The single-target run the fan-out is measured against.
    let single = TestRegistry::start(RegistryOptions::anonymous()).await;
    let cfg = ConfigFile::new();
    let path = cfg.write(&format!(
        "[[mirror]]\nsource = \"{}/team/app\"\ntags = [\"v1\", \"v2\"]\ntarget = \"{}/mirror/app\"\n",
        sp.host(),
        single.host()
    ));
    sp.reset();
    let (code, report, stderr) = sync_json(&path, &[]).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    let one_target = source_reads(&sp);
    assert!(
        one_target
            .iter()
            .any(|(m, p)| m == "GET" && p.contains("/blobs/")),
        "{one_target:?}"
    );

    let (a, b) = (
        TestRegistry::start(RegistryOptions::anonymous()).await,
        TestRegistry::start(RegistryOptions::anonymous()).await,
    );
    let c = TestRegistry::start(RegistryOptions::anonymous()).await;
    let refusing = FaultPlan::none().always("PUT", "/blobs/uploads/", Fault::Status(500));
    let cp = TestProxy::start(&c.base_url(), refusing).await;
    let cfg = ConfigFile::new();
    let path = cfg.write(&format!(
        "[[mirror]]\nname = \"app\"\nsource = \"{}/team/app\"\ntags = [\"v1\", \"v2\"]\n\
         targets = [\"{}/mirror/app\", \"{}/mirror/app\", \"{}/mirror/app\"]\n",
        sp.host(),
        a.host(),
        cp.host(),
        b.host()
    ));
    sp.reset();
    let (code, report, stderr) = sync_json(&path, &[]).await;
    assert_ne!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["mirrors"][0]["result"], "partial", "{report:#}");
    if source_reads(&sp) != one_target {
        eprintln!(
            "DEBUG stderr:\n{stderr}\nSOURCE: {:?}\nC: {:?}",
            sp.requests(),
            cp.requests()
        );
    }
    assert_eq!(
        source_reads(&sp),
        one_target,
        "three targets read the source as one does"
    );
    assert_complete(&a, &nodes).await;
    assert_complete(&b, &nodes).await;
    for healthy in [&a, &b] {
        let e = target_entry(&report, &format!("{}/mirror/app", healthy.host()));
        assert_eq!(
            (
                e["result"].as_str(),
                e["copied"].as_u64(),
                e["failed"].as_u64()
            ),
            (Some("success"), Some(2), Some(0)),
            "{e:#}"
        );
    }
    let failing = format!("{}/mirror/app", cp.host());
    let e = target_entry(&report, &failing);
    assert_eq!(
        (e["result"].as_str(), e["failed"].as_u64()),
        (Some("failed"), Some(2)),
        "{e:#}"
    );
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 6, "one image entry per tag and target");
    assert_failed_alone(&report, &failing, &cp.host());

    // The failing target recovers: the next run copies what it lacks, the
    // others cost their HEADs, and the source is read as by one target.
    cp.set_plan(FaultPlan::none());
    sp.reset();
    let (code, healed, stderr) = sync_json(&path, &[]).await;
    assert_eq!(code, 0, "{healed:#}\n{stderr}");
    assert_eq!(healed["mirrors"][0]["result"], "success", "{healed:#}");
    assert_eq!(
        source_reads(&sp),
        one_target,
        "the healing run's source reads"
    );
    assert_complete(&c, &nodes).await;
    let e = target_entry(&healed, &failing);
    assert_eq!(
        (e["result"].as_str(), e["copied"].as_u64()),
        (Some("success"), Some(2)),
        "{e:#}"
    );
    let e = target_entry(&healed, &format!("{}/mirror/app", a.host()));
    assert_eq!(e["up_to_date"].as_u64(), Some(2), "{e:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn target_groups_come_from_defaults() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let nodes = push_source(&src).await;
    let (a, b) = (
        TestRegistry::start(RegistryOptions::anonymous()).await,
        TestRegistry::start(RegistryOptions::anonymous()).await,
    );
    let cfg = ConfigFile::new();
    let path = cfg.write(&format!(
        "[defaults.target_groups]\nregions = [\"{}/mirror/app\", \"{}/mirror/app\"]\n\n\
         [[mirror]]\nsource = \"{}/team/app\"\ntags = [\"v1\", \"v2\"]\ntargets = [\"@regions\"]\n",
        a.host(),
        b.host(),
        src.host()
    ));
    // The spool files go to TMPDIR and are gone once the run ends.
    let tmp = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args([
            "sync",
            "--config",
            path.to_str().unwrap(),
            "--output",
            "json",
        ])
        .env("REGMIRROR_NO_STATE", "1")
        .env("TMPDIR", tmp.path())
        .output()
        .await
        .unwrap();
    let (code, stderr) = (out.status.code(), String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(code, Some(0), "{report:#}\n{stderr}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "spool files left behind: {left:?}");
    assert_eq!(
        report["mirrors"][0]["targets"].as_array().map(Vec::len),
        Some(2),
        "{report:#}"
    );
    assert_complete(&a, &nodes).await;
    assert_complete(&b, &nodes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn check_refuses_bad_targets() {
    let cases = [
        (
            "[[mirror]]\nsource = \"r.example.com/app:1\"\ntarget = \"a.example.com/x\"\n\
             targets = [\"b.example.com/x\"]\n",
            "set either target (one target) or targets (several), not both",
        ),
        (
            "[[mirror]]\nsource = \"r.example.com/app:1\"\ntargets = [\"@nowhere\"]\n",
            "no target group \"nowhere\"",
        ),
        (
            "[defaults.target_groups]\nboth = [\"a.example.com/x\", \"b.example.com/x\"]\n\n\
             [[mirror]]\nsource = \"r.example.com/app:1\"\ntargets = [\"@both\", \"b.example.com/x\"]\n",
            "is listed twice",
        ),
        (
            "[[mirror]]\nsource = \"r.example.com/app:1\"\ntargets = [\"a.example.com/x\", \"r.example.com/app\"]\n",
            "target is the source itself",
        ),
        (
            "[[mirror]]\nsource = \"r.example.com/app:1\"\ntargets = []\n",
            "targets is empty",
        ),
        (
            "[[mirror]]\nsource = \"r.example.com/app\"\ntargets = [\"a.example.com/x\", \"oci:bundle\"]\n\
             prune = \"not-in-source\"\n",
            "prune is not supported for an OCI layout or archive target",
        ),
        (
            "[[mirror]]\nname = \"one\"\nsource = \"r.example.com/app:1\"\ntarget = \"a.example.com/x\"\n\n\
             [[mirror]]\nname = \"two\"\nsource = \"r.example.com/other:1\"\n\
             targets = [\"b.example.com/x\", \"a.example.com/x\"]\n",
            "both write to",
        ),
    ];
    // Each target gets the single-target warnings.
    let cfg = ConfigFile::new();
    let path = cfg.write(
        "[[mirror]]\nsource = \"r.example.com/team/app:1\"\n\
         targets = [\"a.example.com/mirror/app\", \"b.example.com/m\"]\n",
    );
    let run = common::regmirror(&["check", "--config", path.to_str().unwrap()]).await;
    let shown = format!("{}{}", run.stdout, run.stderr);
    assert!(
        shown.contains("so target b.example.com/m is its repository")
            && !shown.contains("so target a.example.com/mirror/app is"),
        "{shown}"
    );
    for (text, needle) in cases {
        check_refuses(text, needle).await;
    }
}

/// `regmirror check` of the config `text` fails, saying `needle`.
pub(crate) async fn check_refuses(text: &str, needle: &str) {
    let cfg = ConfigFile::new();
    let path = cfg.write(text);
    let run = common::regmirror(&["check", "--config", path.to_str().unwrap()]).await;
    assert_ne!(run.code, 0, "accepted:\n{text}");
    let shown = format!("{}{}", run.stdout, run.stderr);
    assert!(
        shown.contains(needle),
        "{needle:?} not in:\n{shown}\nfor:\n{text}"
    );
}
