//! Proof by repetition: races between tags show in some runs only, so the
//! racy workload runs many times in a row and every run must be exact.
//!
//! The workload is what every real repository looks like: `latest` points at
//! the same index as the newest version tag. Each run is a fresh sync (a new
//! syncer, hence a new run memory) into fresh target repositories, at image
//! concurrency 8, checked with the harness's own reader: every tag has its
//! source digest and every manifest and blob it reaches is in place. Without
//! faults, each manifest is also pushed exactly once per run (an alias tag is
//! one PUT, a shared child is never pushed twice).

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    Fault, FaultPlan, Format, ImageSet, Pusher, RegistryOptions, TestProxy, TestRegistry,
    graph_problems, push, skopeo_raw_digest,
};
use regmirror::registry::{Client, ClientOptions, RetryPolicy};
use regmirror::sync::Config;
use regmirror::sync::run::{ImageResult, SyncOptions, Syncer};
use tokio_util::sync::CancellationToken;

const REPOS: usize = 4;
/// Version tags per repository; `latest` aliases the last one.
const VERSIONS: [&str; 2] = ["1.0.0", "1.1.0"];

/// The source: per repository, two multi-arch indexes with attestations
/// (OCI and Docker alternately) and `latest` on the newest. Returns
/// (repository, tag) → index digest, and the manifest PUTs one exact run
/// makes (each manifest once, plus one per alias tag).
async fn workload(src: &TestRegistry) -> (BTreeMap<(usize, String), String>, usize) {
    let mut expected = BTreeMap::new();
    let mut manifests_per_run = 0;
    for r in 0..REPOS {
        let format = if r % 2 == 0 {
            Format::Oci
        } else {
            Format::Docker
        };
        for v in VERSIONS {
            let index = ImageSet::multi_arch(
                &format!("rep/repo{r}/{v}"),
                &["linux/amd64", "linux/arm64", "linux/arm/v7"],
                format == Format::Oci,
                format,
            );
            push(src, &format!("team/repo{r}"), v, index.to_node())
                .await
                .unwrap();
            expected.insert((r, v.to_string()), index.digest().to_string());
            // Children plus the index itself.
            manifests_per_run += index.to_node().manifests_in_push_order().len();
        }
        let newest = VERSIONS[VERSIONS.len() - 1];
        let index = ImageSet::multi_arch(
            &format!("rep/repo{r}/{newest}"),
            &["linux/amd64", "linux/arm64", "linux/arm/v7"],
            format == Format::Oci,
            format,
        );
        push(src, &format!("team/repo{r}"), "latest", index.to_node())
            .await
            .unwrap();
        assert_eq!(expected[&(r, newest.to_string())], index.digest());
        expected.insert((r, "latest".to_string()), index.digest().to_string());
        // The alias: one more tag PUT.
        manifests_per_run += 1;
    }
    (expected, manifests_per_run)
}

fn config_for(run: usize, src: &str, dst: &str) -> Config {
    let mut text = String::from("[defaults]\nconcurrency = 8\nblob_concurrency = 4\n\n");
    for r in 0..REPOS {
        text.push_str(&format!(
            "[[mirror]]\nsource = \"{src}/team/repo{r}\"\ntarget = \"{dst}/run{run}/repo{r}\"\n\n"
        ));
    }
    Config::parse(Path::new("repetition.toml"), &text).unwrap()
}

fn client(fast_retries: bool) -> Client {
    let mut options = ClientOptions::default();
    if fast_retries {
        options.retry = RetryPolicy {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            max_elapsed: Duration::from_secs(60),
        };
    }
    Client::new(options).unwrap()
}

/// One fresh sync of run `run`, then the independent check of every tag.
async fn sync_and_verify(
    run: usize,
    src: &str,
    dst_proxy: &TestProxy,
    dst: &TestRegistry,
    expected: &BTreeMap<(usize, String), String>,
    fast_retries: bool,
) {
    let config = config_for(run, src, &dst_proxy.host());
    let syncer = Syncer::new(
        client(fast_retries),
        SyncOptions {
            concurrency: 8,
            blob_concurrency: 4,
            dry_run: false,
            record_metrics: false,
        },
        CancellationToken::new(),
    );
    let report = syncer.run_all(&config.mirrors).await;
    let failed: Vec<String> = report
        .mirrors
        .iter()
        .flat_map(|m| m.images.iter())
        .filter(|i| i.result != ImageResult::Copied)
        .map(|i| format!("{} -> {}: {:?} {:?}", i.source, i.target, i.result, i.error))
        .chain(report.mirrors.iter().flat_map(|m| m.errors.clone()))
        .collect();
    assert!(
        failed.is_empty(),
        "run {run}: not every image copied:\n{}",
        failed.join("\n")
    );
    assert_eq!(
        report.successes(),
        expected.len(),
        "run {run}: every tag reported"
    );
    let pusher = Pusher::for_registry(dst);
    let mut problems = Vec::new();
    for ((r, tag), digest) in expected {
        problems.extend(graph_problems(&pusher, &format!("run{run}/repo{r}"), tag, digest).await);
    }
    assert!(problems.is_empty(), "run {run}:\n{}", problems.join("\n"));
}

/// Manifest PUTs of one run, by path; each must appear once.
fn manifest_puts(proxy: &TestProxy, run: usize) -> HashMap<String, usize> {
    let mut puts = HashMap::new();
    for (m, path) in proxy.requests() {
        if m == "PUT" && path.starts_with(&format!("/v2/run{run}/")) && path.contains("/manifests/")
        {
            *puts.entry(path).or_default() += 1;
        }
    }
    puts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_fresh_alias_tag_syncs_in_a_row_are_all_exact() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (expected, manifests_per_run) = workload(&src).await;
    let dst_proxy = TestProxy::start(&dst.base_url(), FaultPlan::none()).await;
    const RUNS: usize = 30;
    let started = Instant::now();
    for run in 0..RUNS {
        sync_and_verify(run, &src.host(), &dst_proxy, &dst, &expected, false).await;
        let puts = manifest_puts(&dst_proxy, run);
        let twice: Vec<_> = puts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "run {run}: manifests pushed more than once: {twice:?}"
        );
        assert_eq!(
            puts.values().sum::<usize>(),
            manifests_per_run,
            "run {run}: one PUT per manifest, one per alias tag: {puts:?}"
        );
    }
    eprintln!(
        "{RUNS} fresh syncs of {} tags ({manifests_per_run} manifest PUTs each) in {:?}",
        expected.len(),
        started.elapsed()
    );
    // The last run, read by skopeo as well.
    for ((r, tag), digest) in &expected {
        let got = skopeo_raw_digest(&dst, &format!("run{}/repo{r}:{tag}", RUNS - 1))
            .await
            .unwrap();
        assert_eq!(&got, digest, "skopeo: repo{r}:{tag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_tag_syncs_through_five_percent_transient_faults_end_exact() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (expected, _) = workload(&src).await;
    const RUNS: usize = 10;
    let mut injected = 0;
    for run in 0..RUNS {
        let faults = |seed: u64| {
            let any = "^/v2/";
            FaultPlan::seeded(seed)
                .probability(None, any, 0.02, Fault::Status(500))
                .probability(None, any, 0.015, Fault::Status(503))
                .probability(None, any, 0.005, Fault::Stall(Duration::from_millis(300)))
                .probability(Some("GET"), "/(blobs|manifests)/", 0.01, Fault::DropMidBody)
        };
        let src_proxy = TestProxy::start(&src.base_url(), faults(0xa11a_5000 + run as u64)).await;
        let dst_proxy = TestProxy::start(&dst.base_url(), faults(0xa11a_6000 + run as u64)).await;
        sync_and_verify(run, &src_proxy.host(), &dst_proxy, &dst, &expected, true).await;
        injected += src_proxy.injected().len() + dst_proxy.injected().len();
    }
    eprintln!("{RUNS} fresh syncs through {injected} injected faults, all exact");
    assert!(injected >= RUNS, "faults were injected: {injected}");
}

/// Two runs going at once (two mirrors of `serve`, each a run of its own)
/// write different tags of one image into one repository: every manifest
/// and blob is still written once, because writes in flight are shared by
/// every run in the process. Repeated into fresh repositories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_into_one_repository_write_each_manifest_once() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let index = ImageSet::multi_arch(
        "runs/app",
        &["linux/amd64", "linux/arm64", "linux/arm/v7"],
        true,
        Format::Oci,
    );
    for tag in ["1.1.0", "latest"] {
        push(&src, "team/app", tag, index.to_node()).await.unwrap();
    }
    let manifests = index.to_node().manifests_in_push_order().len();
    let blobs = index.to_node().blobs().len();
    let dst_proxy = TestProxy::start(&dst.base_url(), FaultPlan::none()).await;
    for run in 0..10 {
        let text = format!(
            "[[mirror]]\nname = \"version\"\nsource = \"{s}/team/app:1.1.0\"\ntarget = \"{d}/run{run}/app\"\n\n\
             [[mirror]]\nname = \"alias\"\nsource = \"{s}/team/app:latest\"\ntarget = \"{d}/run{run}/app\"\n",
            s = src.host(),
            d = dst_proxy.host()
        );
        let config = Config::parse(Path::new("runs.toml"), &text).unwrap();
        let syncer = Syncer::new(
            client(false),
            SyncOptions::default(),
            CancellationToken::new(),
        );
        // Two runs, each with its own memory, at the same time.
        let (a, b) = tokio::join!(
            syncer.run_mirror(&config.mirrors[0]),
            syncer.run_mirror(&config.mirrors[1])
        );
        for r in [&a, &b] {
            assert_eq!(r.count(ImageResult::Copied), 1, "run {run}: {r:?}");
        }
        let puts = manifest_puts(&dst_proxy, run);
        let twice: Vec<_> = puts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "run {run}: pushed twice: {twice:?}");
        // Each manifest once (the index under one tag), plus the other tag.
        assert_eq!(
            puts.values().sum::<usize>(),
            manifests + 1,
            "run {run}: {puts:?}"
        );
        let uploads = dst_proxy
            .requests()
            .into_iter()
            .filter(|(m, p)| {
                m == "POST" && p.starts_with(&format!("/v2/run{run}/app/blobs/uploads"))
            })
            .count();
        assert_eq!(uploads, blobs, "run {run}: one upload per blob");
        let pusher = Pusher::for_registry(&dst);
        for tag in ["1.1.0", "latest"] {
            let problems =
                graph_problems(&pusher, &format!("run{run}/app"), tag, index.digest()).await;
            assert!(problems.is_empty(), "run {run}: {problems:?}");
        }
    }
}
