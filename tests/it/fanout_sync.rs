//! Fan-out (`targets`) with the sync features that work per repository,
//! through the binary against real registries (distribution 2.8):
//! - with `repositories`: every discovered source repository is written to
//!   every target tree under the same path, byte-exact (skopeo's raw bytes
//!   at each target are the source's), while the source sees exactly the
//!   requests of a one-target run (catalog, tag listings, manifests, blobs);
//! - with `prune`: each target is pruned against its own tags, and a target
//!   where a copy failed in the run keeps every tag until a run that
//!   completes it.
//!
//! The failing target is a real registry behind the harness's fault proxy,
//! which answers every blob upload PUT with a 500 of its own: a real
//! registry cannot be told to refuse uploads while it answers the checks
//! before them, which is what a target that fails mid-run does.

use crate::common;

use crate::fanout::{check_refuses, target_entry};
use crate::sync_run::{ConfigFile, push_tags, sync_json, tags};
use common::skopeo::skopeo_raw_manifest;
use common::{
    Fault, FaultPlan, Format, ImageSet, Node, RegistryOptions, SkopeoLoc, TestProxy, TestRegistry,
};

fn image(seed: &str) -> Node {
    Node::Image(ImageSet::image(seed, "linux/amd64", Format::Oci))
}

/// Every request the source answered, sorted: what a run costs it,
/// whatever the order. Which image comes first depends on timing, so the
/// referrers probe of a repository (about its first image) is counted
/// without its digest, and a blob two repositories share (read once, from
/// whichever repository needs it first) by its digest alone.
fn source_requests(p: &TestProxy) -> Vec<(String, String)> {
    let mut r: Vec<(String, String)> = p
        .requests()
        .into_iter()
        .map(|(m, path)| {
            if let Some((repo, _)) = path.split_once("/referrers/") {
                (m, format!("{repo}/referrers/<digest>"))
            } else if let Some((_, digest)) = path.split_once("/blobs/") {
                (m, format!("<repository>/blobs/{digest}"))
            } else {
                (m, path)
            }
        })
        .collect();
    r.sort();
    r
}

/// `sync_json` of `path`, which must succeed: its report.
async fn sync_ok(path: &std::path::Path) -> serde_json::Value {
    let (code, report, stderr) = sync_json(path, &[]).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    report
}

const REPOS: [&str; 2] = ["team/app", "team/db"];
const TAGS: [&str; 2] = ["v1", "v2"];

#[tokio::test(flavor = "multi_thread")]
async fn repositories_fan_out_to_three_registries_reading_the_source_once() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let sp = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
    for repo in REPOS {
        for tag in TAGS {
            let node = image(&format!("fanout-sync/{repo}/{tag}"));
            push_tags(&src, repo, &[tag], &node).await;
        }
    }
    let mirror = |targets: &str| {
        format!(
            "[[mirror]]\nname = \"team\"\nsource = \"{}/team\"\nrepositories = ['^team/']\n{targets}\n",
            sp.host()
        )
    };

    // The one-target run the fan-out is measured against.
    let single = TestRegistry::start(RegistryOptions::anonymous()).await;
    let cfg = ConfigFile::new();
    let path = cfg.write(&mirror(&format!("target = \"{}/mirror\"", single.host())));
    sp.reset();
    let report = sync_ok(&path).await;
    let one_target = source_requests(&sp);
    assert!(
        report["mirrors"][0]["targets"].is_null(),
        "one target has no targets[]"
    );
    assert!(
        one_target
            .iter()
            .any(|(m, p)| m == "GET" && p.contains("/blobs/"))
            && one_target
                .iter()
                .any(|(_, p)| p.starts_with("/v2/_catalog")),
        "{one_target:?}"
    );

    let regs = [
        TestRegistry::start(RegistryOptions::anonymous()).await,
        TestRegistry::start(RegistryOptions::anonymous()).await,
        TestRegistry::start(RegistryOptions::anonymous()).await,
    ];
    let roots = [
        format!("{}/mirror", regs[0].host()),
        format!("{}/mirror", regs[1].host()),
        regs[2].host(),
    ];
    let cfg = ConfigFile::new();
    let path = cfg.write(&mirror(&format!("targets = {roots:?}")));
    sp.reset();
    let report = sync_ok(&path).await;
    let three = source_requests(&sp);
    let extra: Vec<_> = three.iter().filter(|r| !one_target.contains(r)).collect();
    let missing: Vec<_> = one_target.iter().filter(|r| !three.contains(r)).collect();
    assert_eq!(
        three, one_target,
        "three targets cost the source what one does: extra {extra:?}, missing {missing:?}"
    );
    assert_eq!(
        report["images"].as_array().map(Vec::len),
        Some(12),
        "{report:#}"
    );
    for root in &roots {
        let e = target_entry(&report, root);
        let counts = ["result", "copied", "failed"].map(|k| e[k].to_string());
        assert_eq!(counts, ["\"success\"", "4", "0"], "{e:#}");
    }
    // Each target holds the source's exact bytes under the source path.
    for (reg, prefix) in regs.iter().zip(["mirror/", "mirror/", ""]) {
        for repo in REPOS {
            for tag in TAGS {
                let at = |r: &TestRegistry, name: String| {
                    let loc = SkopeoLoc::registry(r, &format!("{name}:{tag}"));
                    async move { skopeo_raw_manifest(&loc).await.unwrap() }
                };
                let want = at(&src, repo.to_string()).await;
                let got = at(reg, format!("{prefix}{repo}")).await;
                assert_eq!(got, want, "{}/{prefix}{repo}:{tag}", reg.host());
                let problems = common::graph_problems(
                    &common::Pusher::for_registry(reg),
                    &format!("{prefix}{repo}"),
                    tag,
                    &common::sha256_digest(&want),
                )
                .await;
                assert!(problems.is_empty(), "{}: {problems:?}", reg.host());
            }
        }
    }
}

/// The sorted tags `pruned[]` names for `target` in a prune report.
fn pruned_at(prune: &serde_json::Value, target: &str) -> Vec<String> {
    let mut out: Vec<String> = prune["pruned"]
        .as_array()
        .unwrap_or_else(|| panic!("no pruned[]: {prune:#}"))
        .iter()
        .filter_map(|p| p["target"].as_str())
        .filter_map(|t| t.strip_prefix(&format!("{target}:")))
        .map(str::to_string)
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_runs_per_target_and_never_at_a_target_that_failed() {
    let src = TestRegistry::start(RegistryOptions::anonymous().with_delete()).await;
    let (a, b, c) = (
        TestRegistry::start(RegistryOptions::anonymous().with_delete()).await,
        TestRegistry::start(RegistryOptions::anonymous().with_delete()).await,
        TestRegistry::start(RegistryOptions::anonymous().with_delete()).await,
    );
    let cp = TestProxy::start(&c.base_url(), FaultPlan::none()).await;
    for t in ["1.0", "2.0", "3.0"] {
        push_tags(&src, "team/app", &[t], &image(&format!("fanout-prune/{t}"))).await;
    }
    // A tag only one target has, outside what the source ever had: each
    // target's prune sees its own tags.
    push_tags(&b, "mirror/app", &["0.9"], &image("fanout-prune/0.9")).await;
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
    let first = sync_ok(&path).await;
    let prune = &first["mirrors"][0]["prune"];
    assert_eq!(pruned_at(prune, &targets[1]), ["0.9"], "{first:#}");
    assert!(pruned_at(prune, &targets[0]).is_empty(), "{first:#}");
    assert_eq!(
        pruned_at(&target_entry(&first, &targets[1])["prune"], &targets[1]),
        ["0.9"]
    );
    assert_eq!(tags(&b, "mirror/app").await, ["1.0", "2.0", "3.0"]);

    // Upstream: 3.0 deleted, 4.0 pushed; the third target refuses uploads.
    let digest = common::skopeo_raw_digest(&src, "team/app:3.0")
        .await
        .unwrap();
    let url = format!("{}/v2/team/app/manifests/{digest}", src.base_url());
    let resp = src.http_client().delete(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 202, "deleting 3.0 upstream");
    push_tags(&src, "team/app", &["4.0"], &image("fanout-prune/4.0")).await;
    cp.set_plan(FaultPlan::none().always("PUT", "/blobs/uploads/", Fault::Status(500)));
    let (code, run, stderr) = sync_json(&path, &[]).await;
    assert_ne!(code, 0, "{run:#}\n{stderr}");
    assert_eq!(run["mirrors"][0]["result"], "partial", "{run:#}");
    let prune = &run["mirrors"][0]["prune"];
    for (reg, target) in [(&a, &targets[0]), (&b, &targets[1])] {
        assert_eq!(pruned_at(prune, target), ["3.0"], "{run:#}");
        let e = target_entry(&run, target);
        assert_eq!(pruned_at(&e["prune"], target), ["3.0"], "{e:#}");
        assert!(e["prune"]["refused"].is_null(), "{e:#}");
        assert_eq!(tags(reg, "mirror/app").await, ["1.0", "2.0", "4.0"]);
    }
    let failing = target_entry(&run, &targets[2]);
    assert_eq!(failing["failed"].as_u64(), Some(1), "{failing:#}");
    let why = failing["prune"]["refused"].as_str().unwrap_or_default();
    assert!(
        why.contains("1 of its images failed") && why.contains("nothing was pruned"),
        "{failing:#}"
    );
    assert!(pruned_at(prune, &targets[2]).is_empty(), "{run:#}");
    let refused = prune["refused"].as_str().unwrap_or_default();
    assert!(refused.contains(&format!("at {}", targets[2])), "{prune:#}");
    assert_eq!(tags(&c, "mirror/app").await, ["1.0", "2.0", "3.0"]);

    // Once the target takes uploads again, the next run completes and prunes it.
    cp.set_plan(FaultPlan::none());
    let healed = sync_ok(&path).await;
    let prune = &healed["mirrors"][0]["prune"];
    assert_eq!(pruned_at(prune, &targets[2]), ["3.0"], "{healed:#}");
    assert!(pruned_at(prune, &targets[0]).is_empty(), "{healed:#}");
    assert_eq!(tags(&c, "mirror/app").await, ["1.0", "2.0", "4.0"]);
}

/// The TOML examples of docs/config.md's section on several targets, each
/// dedented from its list item.
fn fan_out_doc_examples() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let start = doc
        .find("### Several targets (fan-out)")
        .expect("docs/config.md has the section on several targets");
    let section = &doc[start + 4..];
    let section = &section[..section.find("\n### ").unwrap_or(section.len())];
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in section.lines() {
        match (line.trim(), &mut block) {
            ("```toml", None) => block = Some(String::new()),
            ("```", Some(b)) => {
                out.push(std::mem::take(b));
                block = None;
            }
            (_, Some(b)) => {
                b.push_str(line.strip_prefix("  ").unwrap_or(line));
                b.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_documented_fan_out_examples_are_valid() {
    let examples = fan_out_doc_examples();
    assert!(
        examples.iter().any(|e| e.contains("repositories"))
            && examples.iter().any(|e| e.contains("prune")),
        "{examples:#?}"
    );
    for text in examples {
        let cfg = ConfigFile::new();
        let path = cfg.write(&text);
        let run = common::regmirror(&[
            "check",
            "--no-credentials",
            "--config",
            path.to_str().unwrap(),
        ])
        .await;
        assert_eq!(run.code, 0, "{text}\n{}{}", run.stdout, run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_refuses_nested_trees_and_overlaps_through_any_tree() {
    let fan = "[[mirror]]\nname = \"team\"\nsource = \"r.example.com/team\"\n\
               repositories = ['^team/']\n";
    let cases = [
        (
            format!("{fan}targets = [\"a.example.com/mirror\", \"a.example.com/mirror/x\"]\n"),
            "nest",
        ),
        (
            format!("{fan}targets = [\"a.example.com/mirror\", \"r.example.com/team/copy\"]\n"),
            "lies inside the source",
        ),
        (
            format!(
                "{fan}targets = [\"a.example.com/mirror\", \"b.example.com\"]\n\n\
                 [[mirror]]\nname = \"plain\"\nsource = \"q.example.com/app:1\"\n\
                 target = \"b.example.com/team/app\"\n"
            ),
            "both write to",
        ),
        (
            format!(
                "{fan}targets = [\"a.example.com/mirror\", \"b.example.com\"]\nprune = \"not-in-source\"\n"
            ),
            "prune is not supported for a mirror that discovers its repositories",
        ),
    ];
    for (text, needle) in cases {
        check_refuses(&text, needle).await;
    }
    // Two trees side by side are fine.
    let cfg = ConfigFile::new();
    let path = cfg.write(&format!(
        "{fan}targets = [\"a.example.com/mirror\", \"a.example.com/other\", \"b.example.com\"]\n"
    ));
    let run = common::regmirror(&["check", "--config", path.to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}
