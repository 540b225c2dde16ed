//! `regmirror sync` and `regmirror check` against real registries behind
//! counting proxies: a no-op re-sync stays cheap (request counts asserted),
//! platform-filtered mirrors are recognised as up to date from the target
//! alone, partial failures give the right exit code and list every cause.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{FaultPlan, Format, ImageSet, RegistryOptions, TestProxy, TestRegistry, push};

/// A source and a target registry, each behind a counting proxy.
struct Env {
    src: TestRegistry,
    dst: TestRegistry,
    src_proxy: TestProxy,
    dst_proxy: TestProxy,
    dir: tempfile::TempDir,
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
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn write_config(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("mirror.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn reset(&self) {
        self.src_proxy.reset();
        self.dst_proxy.reset();
    }
}

/// Run the binary with `args`, without blocking the test runtime.
async fn regmirror(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("running regmirror")
}

async fn sync_json(config: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec![
        "sync",
        "--config",
        config.to_str().unwrap(),
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = regmirror(&args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("sync output is not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (out.status.code().expect("exit code"), json, stderr)
}

/// Totals of the report (docs/report.md): copied, up to date, would copy, conflict, failed.
fn summary(v: &serde_json::Value) -> [u64; 5] {
    ["copied", "up_to_date", "would_copy", "conflict", "failed"]
        .map(|k| v["totals"][k].as_u64().unwrap_or(u64::MAX))
}

/// (method, path) requests that are manifest or blob GETs.
fn content_gets(p: &TestProxy) -> Vec<(String, String)> {
    p.requests()
        .into_iter()
        .filter(|(m, path)| {
            m == "GET" && (path.contains("/manifests/") || path.contains("/blobs/"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_resync_of_32_tags_over_8_repositories_is_cheap() {
    let env = Env::new().await;
    let tags = ["1.0.0", "1.1.0", "2.0.0", "latest"];
    for r in 0..8 {
        for t in tags {
            let index = ImageSet::multi_arch(
                &format!("repo{r}/{t}"),
                &["linux/amd64", "linux/arm64"],
                false,
                Format::Oci,
            );
            push(&env.src, &format!("team/repo{r}"), t, index.to_node())
                .await
                .unwrap();
        }
    }
    // Repositories 0-3 name exact tags (no listing); 4-7 filter listed tags.
    let mut config = String::from("[defaults]\nconcurrency = 4\n\n");
    for r in 0..8 {
        config.push_str(&format!(
            "[[mirror]]\nsource = \"{}/team/repo{r}\"\ntarget = \"{}/mirror/repo{r}\"\n",
            env.src_proxy.host(),
            env.dst_proxy.host()
        ));
        if r < 4 {
            config.push_str("tags = [\"1.0.0\", \"1.1.0\", \"2.0.0\", \"latest\"]\n\n");
        } else {
            config.push_str("include = ['^\\d+\\.\\d+\\.\\d+$', '^latest$']\n\n");
        }
    }
    let path = env.write_config(&config);

    let (code, first, stderr) = sync_json(&path, &[]).await;
    assert_eq!(code, 0, "first sync: {first:#}\n{stderr}");
    assert_eq!(summary(&first), [32, 0, 0, 0, 0], "{first:#}");
    for r in 0..8 {
        let mut got = common::Pusher::for_registry(&env.dst)
            .tags(&format!("mirror/repo{r}"))
            .await
            .unwrap();
        got.sort();
        assert_eq!(got, ["1.0.0", "1.1.0", "2.0.0", "latest"], "mirror/repo{r}");
    }

    env.reset();
    let (code, second, stderr) = sync_json(&path, &[]).await;
    assert_eq!(code, 0, "second sync: {second:#}\n{stderr}");
    assert_eq!(summary(&second), [0, 32, 0, 0, 0], "{second:#}");

    let src_total = env.src_proxy.requests().len();
    let dst_total = env.dst_proxy.requests().len();
    eprintln!(
        "no-op re-sync of 32 tags: {src_total} requests to the source, {dst_total} to the target"
    );
    // Referrers are on by default: per source repository one referrers-API
    // probe and one tag list (fallback and cosign tags are looked up in it),
    // nothing per image when neither shows any referrer.
    assert!(
        src_total <= 50 + 12,
        "source saw {src_total} requests: {:?}",
        env.src_proxy.requests()
    );
    assert!(
        dst_total <= 50,
        "target saw {dst_total} requests: {:?}",
        env.dst_proxy.requests()
    );
    // One HEAD per tag on each side, the tag lists of the 4 filtered mirrors, nothing else of note.
    assert_eq!(env.src_proxy.count_matching("HEAD", "/manifests/"), 32);
    assert_eq!(env.dst_proxy.count_matching("HEAD", "/manifests/"), 32);
    // The 4 filtered mirrors' listings serve the referrer lookups too; the
    // 4 with exact tags list once for them.
    assert_eq!(env.src_proxy.count_matching("GET", "/tags/list$"), 4 + 4);
    assert_eq!(env.src_proxy.count_matching("GET", "/referrers/"), 8);
    assert_eq!(env.dst_proxy.count_matching("GET", "/tags/list$"), 0);
    assert!(
        content_gets(&env.src_proxy).is_empty(),
        "{:?}",
        content_gets(&env.src_proxy)
    );
    assert!(
        content_gets(&env.dst_proxy).is_empty(),
        "{:?}",
        content_gets(&env.dst_proxy)
    );
    for m in ["PUT", "POST", "PATCH"] {
        assert_eq!(
            env.dst_proxy.count(m, "/"),
            0,
            "{m} on the target during a no-op"
        );
    }

    // A new upstream tag: the dry run reports it and copies nothing.
    let index = ImageSet::multi_arch("repo5/3.0.0", &["linux/amd64"], false, Format::Oci);
    push(&env.src, "team/repo5", "3.0.0", index.to_node())
        .await
        .unwrap();
    env.reset();
    let (code, dry, _) = sync_json(&path, &["--dry-run"]).await;
    assert_eq!(code, 0);
    assert_eq!(summary(&dry), [0, 32, 1, 0, 0], "{dry:#}");
    let would: Vec<&serde_json::Value> = dry["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["result"] == "would-copy")
        .collect();
    assert_eq!(would.len(), 1);
    assert!(
        would[0]["target"]
            .as_str()
            .unwrap()
            .ends_with("mirror/repo5:3.0.0"),
        "{would:?}"
    );
    for m in ["PUT", "POST", "PATCH"] {
        assert_eq!(
            env.dst_proxy.count(m, "/"),
            0,
            "{m} on the target during a dry run"
        );
    }
    assert!(
        !common::Pusher::for_registry(&env.dst)
            .manifest_exists("mirror/repo5", "3.0.0")
            .await
            .unwrap()
    );

    // The real run copies just that tag; the text report names it.
    let out = regmirror(&["sync", "--config", path.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("copied") && stdout.contains("mirror/repo5:3.0.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("summary: success: 1 copied, 32 up to date"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_filtered_mirror_is_up_to_date_from_the_target_alone() {
    let env = Env::new().await;
    let index = ImageSet::multi_arch(
        "app",
        &["linux/amd64", "linux/arm64", "linux/arm/v7"],
        true,
        Format::Oci,
    );
    push(&env.src, "team/app", "v1", index.to_node())
        .await
        .unwrap();
    let path = env.write_config(&format!(
        "[[mirror]]\nsource = \"{}/team/app:v1\"\ntarget = \"{}/mirror/app\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n",
        env.src_proxy.host(),
        env.dst_proxy.host()
    ));
    let (code, first, stderr) = sync_json(&path, &[]).await;
    assert_eq!(code, 0, "{first:#}\n{stderr}");
    assert_eq!(summary(&first), [1, 0, 0, 0, 0], "{first:#}");
    let target_digest = first["images"][0]["target_digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(
        target_digest,
        index.digest(),
        "a filtered index has its own digest"
    );
    let (_, bytes) = common::Pusher::for_registry(&env.dst)
        .get_manifest("mirror/app", "v1")
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        doc["annotations"][regmirror::copy::ANNOTATION_SOURCE_DIGEST],
        index.digest()
    );

    env.reset();
    let (code, second, _) = sync_json(&path, &[]).await;
    assert_eq!(code, 0);
    assert_eq!(summary(&second), [0, 1, 0, 0, 0], "{second:#}");
    // Source: one HEAD. Target: one manifest GET. No blob request anywhere.
    assert_eq!(env.src_proxy.count_matching("HEAD", "/manifests/"), 1);
    assert_eq!(env.src_proxy.count_matching("GET", "/manifests/"), 0);
    assert_eq!(env.dst_proxy.count_matching("GET", "/manifests/"), 1);
    for p in [&env.src_proxy, &env.dst_proxy] {
        assert_eq!(
            p.count_matching("GET", "/blobs/") + p.count_matching("HEAD", "/blobs/"),
            0,
            "{:?}",
            p.requests()
        );
    }

    // Asking for another platform set makes the target stale.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"linux/arm64\"", "\"linux/arm/v7\""),
    )
    .unwrap();
    let (code, third, _) = sync_json(&path, &[]).await;
    assert_eq!(code, 0);
    assert_eq!(summary(&third), [1, 0, 0, 0, 0], "{third:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_and_total_failures_have_their_exit_codes() {
    let env = Env::new().await;
    let image = ImageSet::image("one", "linux/amd64", Format::Docker);
    push(&env.src, "team/ok", "v1", common::Node::Image(image))
        .await
        .unwrap();
    let (s, d) = (env.src_proxy.host(), env.dst_proxy.host());

    // One good image, one missing tag, one repository whose tag listing fails.
    let path = env.write_config(&format!(
        "[[mirror]]\nsource = \"{s}/team/ok:v1\"\ntarget = \"{d}/mirror/ok\"\n\n\
         [[mirror]]\nname = \"missing\"\nsource = \"{s}/team/ok:nope\"\ntarget = \"{d}/mirror/ok\"\n\n\
         [[mirror]]\nname = \"unlisted\"\nsource = \"{s}/team/absent\"\ntarget = \"{d}/mirror/absent\"\nlatest = 2\n"
    ));
    let out = regmirror(&["sync", "--config", path.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "some failed -> 3\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("summary: partial: 1 copied"), "{stdout}");
    assert!(stderr.contains("failures (2):"), "{stderr}");
    assert!(
        stderr.contains("team/ok:nope") && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(
        stderr.contains("listing the tags of") && stderr.contains("team/absent"),
        "{stderr}"
    );
    assert!(
        common::Pusher::for_registry(&env.dst)
            .manifest_exists("mirror/ok", "v1")
            .await
            .unwrap()
    );

    // JSON says the same.
    let (code, json, _) = sync_json(&path, &[]).await;
    assert_eq!(code, 3);
    assert_eq!(json["result"], "partial");
    assert_eq!(summary(&json), [0, 1, 0, 0, 2], "{json:#}");
    assert_eq!(json["mirrors"][2]["errors"].as_array().unwrap().len(), 1);

    // Nothing succeeds -> 1.
    let out = regmirror(&[
        "sync",
        "--config",
        path.to_str().unwrap(),
        "--mirror",
        "missing",
        "--mirror",
        "unlisted",
    ])
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A bad config -> 2, with the file and key named.
    let bad = env
        .write_config("[[mirror]]\nsource = \"nginx\"\ntarget = \"r.io/x\"\nschedule = \"nope\"\n");
    let out = regmirror(&["sync", "--config", bad.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("mirror.toml") && stderr.contains("mirror[1].schedule"),
        "{stderr}"
    );
    let out = regmirror(&["sync"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_next_runs_and_touches_no_registry() {
    let env = Env::new().await;
    let (s, d) = (env.src_proxy.host(), env.dst_proxy.host());
    let path = env.write_config(&format!(
        "[defaults]\ntimezone = \"Europe/Paris\"\n\n\
         [[mirror]]\nname = \"half-hourly\"\nsource = \"{s}/team/app\"\ntarget = \"{d}/mirror/app\"\nschedule = \"*/30 * * * *\"\n\n\
         [[mirror]]\nsource = \"{s}/team/other:v1\"\ntarget = \"{d}\"\n"
    ));
    let out = regmirror(&["check", "--config", path.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("mirror half-hourly"), "{stdout}");
    assert!(stdout.contains("mirror team/other:v1"), "{stdout}");
    assert_eq!(stdout.matches("next:").count(), 6, "{stdout}");
    // Half-hourly slots in Paris time: minutes 00 or 30, with the +01:00/+02:00 offset.
    let slots: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("next:"))
        .take(3)
        .collect();
    for l in &slots {
        assert!(l.contains(":00:00+0") || l.contains(":30:00+0"), "{l}");
    }
    assert!(env.src_proxy.requests().is_empty() && env.dst_proxy.requests().is_empty());

    let bad = env.write_config("[defaults]\ntimezone = \"Nowhere/Land\"\n");
    let out = regmirror(&["check", "--config", bad.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("defaults.timezone"));
}
