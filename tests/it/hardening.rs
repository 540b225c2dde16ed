//! Unattended-mirror hardening against real registries behind
//! fault-injecting proxies:
//! - many multi-arch images through ~10% seeded transient faults (5xx, 429
//!   with `Retry-After`, connections dropped mid-body, stalls) all arrive
//!   byte-identical;
//! - a corrupted blob is never published (no tag created or moved) and the
//!   failure names the image and the blob;
//! - retries stop after a bounded number of attempts with a clear error;
//! - manifest, tag-list and config bodies cut mid-transfer are fetched again;
//! - `kill -9` in the middle of a sync never leaves a tag pointing at an
//!   incomplete image, and the rerun completes;
//! - short-lived tokens expire mid-run and are refreshed; wrong credentials
//!   fail fast without a retry storm;
//! - passwords, identity tokens, their Basic base64 forms and issued bearer
//!   tokens never appear in trace logs (text and JSON) nor in `/metrics`.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{
    Fault, FaultPlan, Format, ImageSet, Index, Node, Pusher, RegistryOptions, TestProxy,
    TestRegistry, TokenIssuer, TokenIssuerOptions, push, regmirror, regmirror_env,
    skopeo_raw_digest,
};
use regmirror::registry::{Client, ClientOptions, Reference, RetryPolicy};
use regmirror::sync::Config;
use regmirror::sync::run::{ImageResult, RunResult, SyncOptions, Syncer};
use tokio_util::sync::CancellationToken;

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("mirror.toml");
    std::fs::write(&path, text).expect("writing the config");
    path
}

/// A client retrying fast, so fault tests stay short.
fn fast_client() -> Client {
    Client::new(ClientOptions {
        retry: RetryPolicy {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(2),
            max_elapsed: Duration::from_secs(60),
        },
        ..Default::default()
    })
    .expect("building a regmirror client")
}

/// Checks that `reference` in `repo` and everything it references (child
/// manifests, configs, layers) is present, with the harness's own pusher.
/// Returns what is missing, if anything.
fn missing_parts<'a>(
    pusher: &'a Pusher,
    repo: &'a str,
    reference: &'a str,
) -> futures_util::future::BoxFuture<'a, anyhow::Result<Vec<String>>> {
    Box::pin(async move {
        let (_, bytes) = pusher.get_manifest(repo, reference).await?;
        let doc: serde_json::Value = serde_json::from_slice(&bytes)?;
        let mut missing = Vec::new();
        if let Some(children) = doc["manifests"].as_array() {
            for c in children {
                let d = c["digest"].as_str().unwrap_or_default().to_string();
                if !pusher.manifest_exists(repo, &d).await? {
                    missing.push(format!("{repo}:{reference} -> manifest {d}"));
                    continue;
                }
                missing.extend(missing_parts(pusher, repo, &d).await?);
            }
        } else {
            let mut blobs = vec![doc["config"].clone()];
            blobs.extend(doc["layers"].as_array().cloned().unwrap_or_default());
            for b in blobs {
                if b.get("urls").is_some() {
                    continue;
                }
                let d = b["digest"].as_str().unwrap_or_default();
                if !pusher.blob_exists(repo, d).await? {
                    missing.push(format!("{repo}:{reference} -> blob {d}"));
                }
            }
        }
        Ok(missing)
    })
}

/// A 10% transient-fault plan: the first rule that fires wins, each request
/// draws once per rule, so the total rate is about the sum below.
fn transient_faults(seed: u64, with_drops: bool) -> FaultPlan {
    let any = "^/v2/";
    let mut plan = FaultPlan::seeded(seed)
        .probability(None, any, 0.025, Fault::Status(500))
        .probability(None, any, 0.025, Fault::Status(503))
        .probability(
            None,
            any,
            0.01,
            Fault::TooManyRequests {
                retry_after_secs: 1,
            },
        )
        .probability(None, any, 0.02, Fault::Stall(Duration::from_millis(400)));
    if with_drops {
        plan = plan.probability(Some("GET"), "/(blobs|manifests)/", 0.03, Fault::DropMidBody);
    } else {
        plan = plan.probability(None, any, 0.02, Fault::Status(502));
    }
    plan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_through_ten_percent_transient_faults_copies_every_image_exactly() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let tags = ["1.0", "1.1", "2.0"];
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    let mut pushes = Vec::new();
    for r in 0..8 {
        for t in tags {
            let index = ImageSet::multi_arch(
                &format!("faults/repo{r}/{t}"),
                &["linux/amd64", "linux/arm64"],
                true,
                Format::Oci,
            );
            expected.insert(format!("mirror/repo{r}:{t}"), index.digest().to_string());
            pushes.push((format!("team/repo{r}"), t, index));
        }
    }
    // One at a time: concurrent pushes of shared blobs race in the registry.
    for (repo, t, index) in &pushes {
        push(&src, repo, t, index.to_node()).await.unwrap();
    }

    let src_proxy = TestProxy::start(&src.base_url(), transient_faults(0x5eed_0001, true)).await;
    let dst_proxy = TestProxy::start(&dst.base_url(), transient_faults(0x5eed_0002, false)).await;
    let mut text = String::from("[defaults]\nconcurrency = 4\nblob_concurrency = 4\n\n");
    for r in 0..8 {
        text.push_str(&format!(
            "[[mirror]]\nsource = \"{}/team/repo{r}\"\ntarget = \"{}/mirror/repo{r}\"\n\n",
            src_proxy.host(),
            dst_proxy.host()
        ));
    }
    let config = Config::parse(Path::new("faults.toml"), &text).unwrap();
    let syncer = Syncer::new(
        fast_client(),
        SyncOptions {
            concurrency: 4,
            blob_concurrency: 4,
            dry_run: false,
            record_metrics: false,
        },
        CancellationToken::new(),
    );
    let start = Instant::now();
    let report = syncer.run_all(&config.mirrors).await;
    let elapsed = start.elapsed();

    let injected: Vec<_> = src_proxy
        .injected()
        .into_iter()
        .chain(dst_proxy.injected())
        .collect();
    let requests = src_proxy.requests().len() + dst_proxy.requests().len();
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &injected {
        let kind = match f.fault {
            Fault::Status(500) => "500",
            Fault::Status(502) => "502",
            Fault::Status(503) => "503",
            Fault::Status(_) => "other status",
            Fault::TooManyRequests { .. } => "429",
            Fault::DropMidBody => "drop mid-body",
            Fault::CorruptBody => "corrupt",
            Fault::Stall(_) => "stall",
        };
        *by_kind.entry(kind).or_default() += 1;
    }
    eprintln!(
        "transient faults: {} images in {elapsed:.1?}; {requests} requests, {} faults injected ({:.1}%): {by_kind:?}",
        expected.len(),
        injected.len(),
        100.0 * injected.len() as f64 / requests as f64
    );
    // Request-level retries the client counted (this test's hosts only).
    let metrics = regmirror::metrics::render();
    let retries: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("regmirror_registry_retries_total")
                && (l.contains(&src_proxy.host()) || l.contains(&dst_proxy.host()))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let restarts = injected
        .iter()
        .filter(|f| {
            (f.method == "PUT"
                && f.path.contains("/blobs/uploads/")
                && !matches!(f.fault, Fault::Stall(_)))
                || (f.fault == Fault::DropMidBody && f.path.contains("/blobs/"))
        })
        .count();
    eprintln!(
        "transient faults: {retries} request retries counted by the client; \
         {restarts} faults on streamed blob transfers (each restarts the transfer)"
    );
    assert!(retries > 0.0, "the faults caused no retry: {metrics}");
    let failures: Vec<String> = report
        .mirrors
        .iter()
        .flat_map(|m| {
            m.errors.iter().cloned().chain(
                m.images
                    .iter()
                    .filter(|i| i.result.is_failure())
                    .map(|i| format!("{}: {:?}", i.source, i.error)),
            )
        })
        .collect();
    assert_eq!(report.result(), RunResult::Success, "{failures:#?}");
    let copied: usize = report
        .mirrors
        .iter()
        .map(|m| m.count(ImageResult::Copied))
        .sum();
    assert_eq!(copied, expected.len());
    // The plan really injected every kind of fault, at about the 10% asked for.
    for kind in ["500", "503", "429", "drop mid-body", "stall"] {
        assert!(
            by_kind.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} injected: {by_kind:?}"
        );
    }
    assert!(
        injected.len() * 100 >= requests * 5,
        "only {} faults over {requests} requests",
        injected.len()
    );

    // Every target tag is byte-identical: skopeo and regmirror's client agree.
    let client = fast_client();
    let checks = expected.iter().map(|(name, digest)| {
        let (dst, client) = (&dst, &client);
        async move {
            let by_skopeo = skopeo_raw_digest(dst, name).await.unwrap();
            let r = Reference::parse(&format!("{}/{name}", dst.host())).unwrap();
            let by_client = client.get_manifest(&r).await.unwrap().digest.to_string();
            (name, digest, by_skopeo, by_client)
        }
    });
    for (name, digest, by_skopeo, by_client) in futures_util::future::join_all(checks).await {
        assert_eq!(&by_skopeo, digest, "{name} per skopeo");
        assert_eq!(&by_client, digest, "{name} per regmirror's client");
    }
    let pusher = Pusher::for_registry(&dst);
    for name in expected.keys().take(3) {
        let (repo, tag) = name.split_once(':').unwrap();
        let missing = missing_parts(&pusher, repo, tag).await.unwrap();
        assert!(missing.is_empty(), "{missing:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_blob_is_never_published_and_the_failure_names_it() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    // The target already mirrors an old v1; the source moved v1 and added v2.
    let old = ImageSet::multi_arch("corrupt/old", &["linux/amd64"], false, Format::Oci);
    push(&dst, "mirror/app", "v1", old.to_node()).await.unwrap();
    let new = ImageSet::multi_arch(
        "corrupt/new",
        &["linux/amd64", "linux/arm64"],
        true,
        Format::Oci,
    );
    push(&src, "team/app", "v1", new.to_node()).await.unwrap();
    push(&src, "team/app", "v2", new.to_node()).await.unwrap();
    let fine = ImageSet::multi_arch("corrupt/fine", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/fine", "v1", fine.to_node()).await.unwrap();
    // The app layer of the arm64 image comes back with one byte flipped, every time.
    let bad_blob = new.image_for("linux/arm64").unwrap().layers[1]
        .digest
        .clone();
    let plan = FaultPlan::none().always("GET", &format!("/blobs/{bad_blob}$"), Fault::CorruptBody);
    let src_proxy = TestProxy::start(&src.base_url(), plan).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[mirror]]\nsource = \"{s}/team/app\"\ntarget = \"{d}/mirror/app\"\ntags = [\"v1\", \"v2\"]\n\n\
             [[mirror]]\nsource = \"{s}/team/fine:v1\"\ntarget = \"{d}/mirror/fine\"\n",
            s = src_proxy.host(),
            d = dst.host()
        ),
    );
    let run = regmirror(&["sync", "--config", config.to_str().unwrap()]).await;
    assert_eq!(
        run.code, 3,
        "two images failed, one copied: {}\n{}",
        run.stdout, run.stderr
    );
    for tag in ["v1", "v2"] {
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(&format!("team/app:{tag}")) && l.contains(&bad_blob))
            .unwrap_or_else(|| {
                panic!(
                    "no failure naming team/app:{tag} and {bad_blob}:\n{}",
                    run.stderr
                )
            });
        assert!(line.contains("digest"), "{line}");
        eprintln!("corrupt blob, reported as: {}", line.trim());
    }
    assert!(
        !src_proxy.injected().is_empty(),
        "the corrupting rule never fired"
    );
    let pusher = Pusher::for_registry(&dst);
    // v1 still points at the old image; v2 was never created; the bad blob is absent.
    let (_, bytes) = pusher.get_manifest("mirror/app", "v1").await.unwrap();
    assert_eq!(common::sha256_digest(&bytes), old.digest());
    assert!(!pusher.manifest_exists("mirror/app", "v2").await.unwrap());
    assert!(
        !pusher
            .manifest_exists("mirror/app", new.digest())
            .await
            .unwrap()
    );
    assert!(!pusher.blob_exists("mirror/app", &bad_blob).await.unwrap());
    assert_eq!(
        skopeo_raw_digest(&dst, "mirror/fine:v1").await.unwrap(),
        fine.digest()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_after_a_bounded_number_with_a_clear_error() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    for repo in ["team/down", "team/flaky", "team/ok"] {
        let image = ImageSet::image(repo, "linux/amd64", Format::Docker);
        push(&src, repo, "v1", Node::Image(image)).await.unwrap();
    }
    // team/down: its tag listing always answers 503; team/flaky: its
    // manifest always does. team/ok is healthy.
    let plan = FaultPlan::none()
        .always("GET", "^/v2/team/down/tags/list$", Fault::Status(503))
        .rule(
            None,
            "^/v2/team/flaky/manifests/",
            common::Trigger::Always,
            Fault::Status(503),
        );
    let src_proxy = TestProxy::start(&src.base_url(), plan).await;
    let dir = tempfile::tempdir().unwrap();
    let (s, d) = (src_proxy.host(), dst.host());
    let config = write_config(
        dir.path(),
        &format!(
            "[[mirror]]\nsource = \"{s}/team/down\"\ntarget = \"{d}/mirror/down\"\n\n\
             [[mirror]]\nsource = \"{s}/team/flaky:v1\"\ntarget = \"{d}/mirror/flaky\"\n\n\
             [[mirror]]\nsource = \"{s}/team/ok:v1\"\ntarget = \"{d}/mirror/ok\"\n"
        ),
    );
    let run = regmirror(&["sync", "--config", config.to_str().unwrap()]).await;
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    // Default policy: 5 attempts per request, exponential backoff.
    let listings = src_proxy.count("GET", "/v2/team/down/tags/list");
    let flaky = src_proxy.count("HEAD", "/v2/team/flaky/manifests/")
        + src_proxy.count("GET", "/v2/team/flaky/manifests/");
    eprintln!(
        "503 always: {listings} tag listings, {flaky} manifest requests, run took {:.1?}",
        run.elapsed
    );
    assert_eq!(listings, 5, "{:?}", src_proxy.requests());
    assert!(
        (5..=10).contains(&flaky),
        "{flaky} requests: {:?}",
        src_proxy.requests()
    );
    assert!(run.elapsed < Duration::from_secs(40), "{:?}", run.elapsed);
    for (what, needle) in [("listing", "team/down"), ("manifest", "team/flaky:v1")] {
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(needle) && l.contains("gave up"))
            .unwrap_or_else(|| panic!("no give-up error for the {what}:\n{}", run.stderr));
        assert!(
            line.contains("gave up after 5 attempts over")
                && line.contains("HTTP 503")
                && line.contains(&s),
            "the error says attempts, time, registry and status: {line}"
        );
        eprintln!("503 always, {what} reported as: {}", line.trim());
    }
    assert!(run.stderr.contains("listing the tags of"), "{}", run.stderr);
    assert!(
        Pusher::for_registry(&dst)
            .manifest_exists("mirror/ok", "v1")
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_sync_never_leaves_a_tag_on_an_incomplete_image() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let tags = ["a", "b"];
    let mut expected: BTreeMap<String, Index> = BTreeMap::new();
    let mut pushes = Vec::new();
    for r in 0..8 {
        for t in tags {
            let index = ImageSet::multi_arch(
                &format!("crash/repo{r}/{t}"),
                &["linux/amd64", "linux/arm64"],
                true,
                Format::Oci,
            );
            expected.insert(format!("mirror/repo{r}:{t}"), index.clone());
            pushes.push((format!("team/repo{r}"), t, index));
        }
    }
    // One at a time: concurrent pushes of shared blobs race in the registry.
    for (repo, t, index) in &pushes {
        push(&src, repo, t, index.to_node()).await.unwrap();
    }
    // Every source blob and manifest GET stalls, so the run takes several seconds.
    let plan = FaultPlan::none().rule(
        Some("GET"),
        "/(blobs|manifests)/",
        common::Trigger::Always,
        Fault::Stall(Duration::from_millis(120)),
    );
    let src_proxy = TestProxy::start(&src.base_url(), plan).await;
    // The target sits behind a counting proxy to check the order of writes.
    let dst_proxy = TestProxy::start(&dst.base_url(), FaultPlan::none()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("[defaults]\nconcurrency = 2\nblob_concurrency = 2\n\n");
    for r in 0..8 {
        text.push_str(&format!(
            "[[mirror]]\nsource = \"{}/team/repo{r}\"\ntarget = \"{}/mirror/repo{r}\"\ntags = [\"a\", \"b\"]\n\n",
            src_proxy.host(),
            dst_proxy.host()
        ));
    }
    let config = write_config(dir.path(), &text);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["sync", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pusher = Pusher::for_registry(&dst);
    let repos: Vec<String> = (0..8).map(|r| format!("mirror/repo{r}")).collect();

    // Walks every tag of the target; returns (tags seen, missing parts).
    let walk = || async {
        let mut seen = 0;
        let mut missing = Vec::new();
        for repo in &repos {
            for tag in pusher.tags(repo).await.unwrap() {
                // A tag being written is listed a moment before it resolves
                // (distribution creates its directory, then writes its link).
                if !pusher.manifest_exists(repo, &tag).await.unwrap() {
                    continue;
                }
                seen += 1;
                missing.extend(missing_parts(&pusher, repo, &tag).await.unwrap());
            }
        }
        (seen, missing)
    };
    // Watch the run: every tag that appears is complete. Kill once a few exist.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut walks = 0;
    let at_kill = loop {
        let (seen, missing) = walk().await;
        walks += 1;
        assert!(
            missing.is_empty(),
            "during the run, tags on incomplete images: {missing:?}"
        );
        if seen >= 3 {
            break seen;
        }
        assert!(Instant::now() < deadline, "no tag appeared within 60 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "sync ended before the kill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
    let (after_kill, missing) = walk().await;
    eprintln!(
        "kill -9: {at_kill} of {} tags present at the kill ({walks} walks during the run), {after_kill} after it",
        expected.len()
    );
    assert!(
        missing.is_empty(),
        "after kill -9, tags on incomplete images: {missing:?}"
    );
    assert!(
        after_kill < expected.len(),
        "the kill landed after the run finished ({after_kill} tags); slow it down"
    );

    // The rerun (without stalls) completes and every digest is right.
    src_proxy.set_plan(FaultPlan::none());
    let run = regmirror(&["sync", "--config", config.to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let (all, missing) = walk().await;
    assert_eq!(all, expected.len());
    assert!(missing.is_empty(), "{missing:?}");
    let checks = expected.iter().map(|(name, index)| {
        let dst = &dst;
        async move {
            (
                name,
                index.digest(),
                skopeo_raw_digest(dst, name).await.unwrap(),
            )
        }
    });
    for (name, want, got) in futures_util::future::join_all(checks).await {
        assert_eq!(got, want, "{name}");
    }
    // Over both runs, every tag was written after all the manifests it lists.
    // (distribution also refuses an index whose children are missing; this
    // checks regmirror's own order.)
    let puts: Vec<String> = dst_proxy
        .requests()
        .into_iter()
        .filter(|(m, p)| m == "PUT" && p.contains("/manifests/"))
        .map(|(_, p)| p)
        .collect();
    let mut tag_puts = 0;
    for (i, path) in puts.iter().enumerate() {
        let (repo_path, reference) = path.rsplit_once("/manifests/").unwrap();
        if reference.starts_with("sha256:") {
            continue;
        }
        tag_puts += 1;
        let repo = repo_path.trim_start_matches("/v2/");
        let index = &expected[&format!("{repo}:{reference}")];
        for child in &index.children {
            let child_put = format!("{repo_path}/manifests/{}", child.digest());
            assert!(
                puts[..i].contains(&child_put),
                "{repo}:{reference} was written before its child {}",
                child.digest()
            );
        }
    }
    assert!(tag_puts >= expected.len(), "{tag_puts} tag writes seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expiring_mid_run_are_refreshed_without_failing_copies() {
    let issuer = TokenIssuer::start(TokenIssuerOptions {
        lifetime: Duration::from_secs(2),
        ..Default::default()
    })
    .await;
    let src = TestRegistry::start(RegistryOptions::token(&issuer)).await;
    let dst = TestRegistry::start(RegistryOptions::token(&issuer)).await;
    let mut expected = BTreeMap::new();
    for r in 0..2 {
        for t in ["1", "2"] {
            let index = ImageSet::multi_arch(
                &format!("tokens/repo{r}/{t}"),
                &["linux/amd64", "linux/arm64"],
                false,
                Format::Oci,
            );
            push(&src, &format!("team/repo{r}"), t, index.to_node())
                .await
                .unwrap();
            expected.insert(format!("mirror/repo{r}:{t}"), index.digest().to_string());
        }
    }
    // Stalls on source GETs and target uploads stretch the run over several lifetimes.
    let src_proxy = TestProxy::start(
        &src.base_url(),
        FaultPlan::none().rule(
            Some("GET"),
            "/(blobs|manifests)/",
            common::Trigger::Always,
            Fault::Stall(Duration::from_millis(200)),
        ),
    )
    .await;
    let dst_proxy = TestProxy::start(
        &dst.base_url(),
        FaultPlan::none().rule(
            Some("PUT"),
            "/blobs/uploads/",
            common::Trigger::Always,
            Fault::Stall(Duration::from_millis(200)),
        ),
    )
    .await;
    let (user, password) = issuer.credentials().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[defaults]\nconcurrency = 1\nblob_concurrency = 1\n\n\
         [[registry]]\nhost = \"{s}\"\nusername = \"{user}\"\npassword_env = \"REGMIRROR_TEST_PASSWORD\"\n\n\
         [[registry]]\nhost = \"{d}\"\nusername = \"{user}\"\npassword_env = \"REGMIRROR_TEST_PASSWORD\"\n\n",
        s = src_proxy.host(),
        d = dst_proxy.host()
    );
    for r in 0..2 {
        text.push_str(&format!(
            "[[mirror]]\nsource = \"{}/team/repo{r}\"\ntarget = \"{}/mirror/repo{r}\"\ntags = [\"1\", \"2\"]\n\n",
            src_proxy.host(),
            dst_proxy.host()
        ));
    }
    let config = write_config(dir.path(), &text);
    issuer.reset_counters();
    let run = regmirror_env(
        &[
            "sync",
            "--config",
            config.to_str().unwrap(),
            "--output",
            "json",
        ],
        &[("REGMIRROR_TEST_PASSWORD", &password)],
    )
    .await;
    let token_requests = issuer.token_requests();
    eprintln!(
        "token expiry: run took {:.1?} with 2 s tokens; {token_requests} token requests, {} rejected; {} source and {} target requests",
        run.elapsed,
        issuer.rejected_requests(),
        src_proxy.requests().len(),
        dst_proxy.requests().len()
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["totals"]["copied"], 4, "{doc:#}");
    assert_eq!(doc["totals"]["failed"], 0, "{doc:#}");
    assert!(
        run.elapsed > Duration::from_secs(6),
        "the run ({:?}) must span several 2 s token lifetimes",
        run.elapsed
    );
    // Tokens were renewed as they expired: more than one per scope in use…
    assert!(token_requests >= 6, "{token_requests} token requests");
    // …but not a storm: about one per scope per lifetime.
    let bound = 8 * (run.elapsed.as_secs() as usize / 2 + 2);
    assert!(
        token_requests <= bound,
        "{token_requests} token requests > {bound}"
    );
    assert_eq!(issuer.rejected_requests(), 0);
    for (name, digest) in &expected {
        assert_eq!(
            &skopeo_raw_digest(&dst, name).await.unwrap(),
            digest,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_fast_without_a_retry_storm() {
    let issuer = TokenIssuer::start(TokenIssuerOptions::default()).await;
    let src = TestRegistry::start(RegistryOptions::token(&issuer)).await;
    let dst = TestRegistry::start(RegistryOptions::htpasswd("mirror", "right-password")).await;
    for r in 0..4 {
        let image = ImageSet::image(&format!("creds/{r}"), "linux/amd64", Format::Docker);
        push(&src, &format!("team/repo{r}"), "v1", Node::Image(image))
            .await
            .unwrap();
    }
    let src_proxy = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
    let dst_proxy = TestProxy::start(&dst.base_url(), FaultPlan::none()).await;
    let (user, password) = issuer.credentials().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mirrors: String = (0..4)
        .map(|r| {
            format!(
                "[[mirror]]\nsource = \"{}/team/repo{r}:v1\"\ntarget = \"{}/mirror/repo{r}\"\n\n",
                src_proxy.host(),
                dst_proxy.host()
            )
        })
        .collect();

    // Wrong target password (htpasswd): every image fails, exit 1, fast.
    let config = write_config(
        dir.path(),
        &format!(
            "[[registry]]\nhost = \"{s}\"\nusername = \"{user}\"\npassword = \"{password}\"\n\n\
             [[registry]]\nhost = \"{d}\"\nusername = \"mirror\"\npassword = \"wrong-password\"\n\n{mirrors}",
            s = src_proxy.host(),
            d = dst_proxy.host()
        ),
    );
    issuer.reset_counters();
    let run = regmirror(&["sync", "--config", config.to_str().unwrap()]).await;
    let dst_requests = dst_proxy.requests().len();
    eprintln!(
        "wrong htpasswd password: exit {} in {:.1?}, {dst_requests} target requests",
        run.code, run.elapsed
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
    assert!(
        run.stderr.contains("refused the credentials") && run.stderr.contains(&dst_proxy.host()),
        "{}",
        run.stderr
    );
    assert!(
        dst_requests <= 4 * 3 + 2,
        "retry storm: {:?}",
        dst_proxy.requests()
    );
    assert_eq!(dst_proxy.count("PUT", "/"), 0);

    // Wrong source password (token service): exit 1, one token request per image at most.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace(
                &format!("password = \"{password}\""),
                "password = \"not-it\"",
            )
            .replace("wrong-password", "right-password"),
    )
    .unwrap();
    src_proxy.reset();
    dst_proxy.reset();
    issuer.reset_counters();
    let run = regmirror(&["sync", "--config", config.to_str().unwrap()]).await;
    let token_requests = issuer.token_requests();
    let src_requests = src_proxy.requests().len();
    eprintln!(
        "wrong token-service password: exit {} in {:.1?}, {token_requests} token requests, {src_requests} source requests",
        run.code, run.elapsed
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
    assert!(
        run.stderr.contains("refused") && run.stderr.contains(&format!("{user:?}")),
        "{}",
        run.stderr
    );
    assert!(
        token_requests <= 4 * 2,
        "token request storm: {token_requests}"
    );
    assert!(
        src_requests <= 4 * 3 + 2,
        "retry storm: {:?}",
        src_proxy.requests()
    );
    assert_eq!(dst_proxy.count("PUT", "/"), 0);
}

/// Everything that must never be printed, with what it is.
fn secret_forms(
    secrets: &[(&str, &str)],
    user_passwords: &[(&str, &str)],
) -> Vec<(String, String)> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut forms: Vec<(String, String)> = secrets
        .iter()
        .map(|(what, s)| (what.to_string(), s.to_string()))
        .collect();
    for (user, password) in user_passwords {
        forms.push((
            format!("Basic form of {user}'s password"),
            b64(&format!("{user}:{password}")),
        ));
        forms.push((format!("base64 of {user}'s password"), b64(password)));
    }
    forms
}

fn assert_clean(what: &str, text: &str, forms: &[(String, String)]) {
    for (name, form) in forms {
        assert!(
            !text.contains(form.as_str()),
            "{what} contains the {name}:\n{}",
            text.lines()
                .filter(|l| l.contains(form.as_str()))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_errors_or_metrics() {
    const HT_PASSWORD: &str = "Htp4ss-Distinctive-7c1e9b";
    const TOKEN_PASSWORD: &str = "T0kenP4ss-Distinctive-51d2";
    const REFRESH: &str = "Refresh-Identity-Distinctive-90ab";
    let issuer = TokenIssuer::start(TokenIssuerOptions {
        user: Some(("tokenbot".to_string(), TOKEN_PASSWORD.to_string())),
        refresh_token: Some(REFRESH.to_string()),
        ..Default::default()
    })
    .await;
    let src = TestRegistry::start(RegistryOptions::token(&issuer)).await;
    let dst = TestRegistry::start(RegistryOptions::htpasswd("htbot", HT_PASSWORD)).await;
    let image = ImageSet::multi_arch("secrets/app", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/app", "v1", image.to_node()).await.unwrap();
    // Issued JWTs all start with the same header (algorithm and x5c chain):
    // finding it anywhere means a bearer token leaked.
    let minted = issuer.mint(&["repository:team/app:pull"]);
    let jwt_header = minted.split('.').next().unwrap().to_string();
    let forms = secret_forms(
        &[
            ("htpasswd password", HT_PASSWORD),
            ("token password", TOKEN_PASSWORD),
            ("identity token", REFRESH),
            ("issued bearer token header", &jwt_header),
        ],
        &[("htbot", HT_PASSWORD), ("tokenbot", TOKEN_PASSWORD)],
    );
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("ht-password");
    std::fs::write(&password_file, format!("{HT_PASSWORD}\n")).unwrap();
    let (s, d) = (src.host(), dst.host());
    let dst_creds = format!(
        "[[registry]]\nhost = \"{d}\"\nusername = \"htbot\"\npassword_file = \"{}\"\n\n",
        password_file.display()
    );
    let with_password = format!(
        "{dst_creds}[[registry]]\nhost = \"{s}\"\nusername = \"tokenbot\"\npassword_env = \"REGMIRROR_TEST_SECRET\"\n\n"
    );
    let with_identity = format!(
        "{dst_creds}[[registry]]\nhost = \"{s}\"\nusername = \"tokenbot\"\nidentity_token = \"{REFRESH}\"\n\n"
    );
    let wrong_ht = format!(
        "[[registry]]\nhost = \"{d}\"\nusername = \"htbot\"\npassword = \"{HT_PASSWORD}-wrong\"\n\n\
         [[registry]]\nhost = \"{s}\"\nusername = \"tokenbot\"\npassword = \"{TOKEN_PASSWORD}-wrong\"\n\n"
    );
    let mirror = |tag: &str| {
        format!("[[mirror]]\nsource = \"{s}/team/app:v1\"\ntarget = \"{d}/mirror/app:{tag}\"\n")
    };
    let mut seen_trace = false;
    for (case, text, want) in [
        ("password", format!("{with_password}{}", mirror("p")), 0),
        (
            "identity token",
            format!("{with_identity}{}", mirror("i")),
            0,
        ),
        ("wrong passwords", format!("{wrong_ht}{}", mirror("w")), 1),
    ] {
        let config = write_config(dir.path(), &text);
        for format in ["text", "json"] {
            let run = regmirror_env(
                &[
                    "sync",
                    "--config",
                    config.to_str().unwrap(),
                    "--log-level",
                    "trace",
                    "--log-format",
                    format,
                ],
                &[("REGMIRROR_TEST_SECRET", TOKEN_PASSWORD)],
            )
            .await;
            assert_eq!(
                run.code, want,
                "{case} ({format}): {}\n{}",
                run.stdout, run.stderr
            );
            seen_trace |= run.stderr.contains("TRACE") || run.stderr.contains("\"TRACE\"");
            assert_clean(&format!("stdout of {case} ({format})"), &run.stdout, &forms);
            assert_clean(&format!("stderr of {case} ({format})"), &run.stderr, &forms);
            if want == 1 {
                assert!(run.stderr.contains("refused"), "{}", run.stderr);
            }
        }
    }
    assert!(
        seen_trace,
        "no trace-level line was logged: the test saw nothing"
    );
    assert!(
        Pusher::for_registry(&dst)
            .manifest_exists("mirror/app", "i")
            .await
            .unwrap()
    );

    // `serve`: /metrics after a run with credentials.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(
        dir.path(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n{with_password}{}\nschedule = \"0 0 1 1 *\"\n\n{}",
            mirror("s"),
            mirror("w").replace("mirror/app:w", "mirror/other:w")
        ),
    );
    let log_path = dir.path().join("serve.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--log-level",
            "trace",
        ])
        .env("REGMIRROR_TEST_SECRET", TOKEN_PASSWORD)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = common::http_client(None);
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let pusher = Pusher::for_registry(&dst);
        if pusher.manifest_exists("mirror/app", "s").await.unwrap()
            && let Ok(r) = http
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
        {
            let body = r.text().await.unwrap();
            if body.contains("regmirror_") {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "serve did not copy within 30 s:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.start_kill();
    let _ = child.wait().await;
    assert_clean("/metrics", &metrics, &forms);
    assert_clean(
        "serve's log",
        &std::fs::read_to_string(&log_path).unwrap(),
        &forms,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_cut_mid_transfer_are_fetched_again() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let index = ImageSet::multi_arch("cut/app", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/app", "v1", index.to_node()).await.unwrap();
    let config_digest = index.images()[0].config.digest.clone();
    // The first GET of the manifest, the tag list and the config each lose
    // the second half of their body.
    let plan = FaultPlan::none()
        .nth("GET", "/manifests/v1$", 1, Fault::DropMidBody)
        .nth("GET", "/tags/list$", 1, Fault::DropMidBody)
        .nth(
            "GET",
            &format!("/blobs/{config_digest}$"),
            1,
            Fault::DropMidBody,
        );
    let proxy = TestProxy::start(&src.base_url(), plan).await;
    let client = fast_client();
    let r = Reference::parse(&format!("{}/team/app:v1", proxy.host())).unwrap();
    let m = client.get_manifest(&r).await.unwrap();
    assert_eq!(m.digest.to_string(), index.digest());
    let tags = client
        .list_tags(&Reference::parse_repository(&format!("{}/team/app", proxy.host())).unwrap())
        .await
        .unwrap();
    assert_eq!(tags, ["v1"]);
    let digest: regmirror::registry::Digest = config_digest.parse().unwrap();
    let bytes = client
        .get_blob_bytes(&r.repository_only(), &digest, 1 << 20)
        .await
        .unwrap();
    assert_eq!(common::sha256_digest(&bytes), config_digest);
    assert_eq!(proxy.injected().len(), 3, "{:?}", proxy.injected());
    assert_eq!(proxy.count("GET", "/v2/team/app/manifests/v1"), 2);
    assert_eq!(proxy.count("GET", "/v2/team/app/tags/list"), 2);
    assert_eq!(
        proxy.count("GET", &format!("/v2/team/app/blobs/{config_digest}")),
        2
    );

    // A body that always breaks: bounded, and the error says so.
    push(&src, "team/app", "cut", index.to_node())
        .await
        .unwrap();
    proxy.set_plan(FaultPlan::none().always("GET", "/manifests/cut$", Fault::DropMidBody));
    let r = Reference::parse(&format!("{}/team/app:cut", proxy.host())).unwrap();
    let err = client.get_manifest(&r).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("gave up after 8 attempts") && msg.contains("team/app:cut"),
        "{msg}"
    );
    assert_eq!(proxy.count("GET", "/v2/team/app/manifests/cut"), 8);
}
