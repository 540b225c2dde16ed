//! Sharded `serve`: three processes run one config as shards 0, 1 and 2 of
//! three, against a real registry. Each process pushes with its own
//! credentials through one counting proxy, so every write to the target is
//! attributed to a process by what the registry was sent, not by what
//! regmirror reports; the registry's own access log confirms the writes.
//!
//! - every mirror's target repository is written by exactly one process,
//!   the one `regmirror check --shards` names, and every mirror is complete;
//! - with shard 1 killed, shards 0 and 2 keep mirroring new tags while shard
//!   1's mirrors are left alone; restarted, shard 1 catches up, still alone.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{FaultPlan, Format, ImageSet, Pusher, RegistryOptions, TestProxy, TestRegistry, push};

const SHARDS: u32 = 3;
const MIRRORS: usize = 9;
const PASSWORD: &str = "shard-secret";

/// A `regmirror serve` process of one shard; killed on drop.
struct ShardProcess {
    index: u32,
    child: tokio::process::Child,
    log_path: PathBuf,
}

impl ShardProcess {
    /// Starts shard `index`: its index comes from the host name, as in a
    /// StatefulSet pod (`regmirror-INDEX`); its target credentials are its own.
    fn start(config: &Path, dir: &Path, target_host: &str, index: u32) -> ShardProcess {
        let log_path = dir.join(format!("shard-{index}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .args(["--username", &format!("{target_host}=shard{index}")])
            .args(["--password-env", &format!("{target_host}=TARGET_PASSWORD")])
            .args(["--log-level", "regmirror=debug,info"])
            .env("TARGET_PASSWORD", PASSWORD)
            .env("HOSTNAME", format!("regmirror-{index}"))
            .env_remove("REGMIRROR_SHARD_COUNT")
            .env_remove("REGMIRROR_SHARD_INDEX")
            .env_remove("REGMIRROR_POD_INDEX")
            .env_remove("POD_NAME")
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawning regmirror serve");
        ShardProcess {
            index,
            child,
            log_path,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The metrics address, from the "serve started" line (the config
    /// listens on port 0 so that three processes can share it).
    async fn metrics_addr(&self) -> String {
        let start = Instant::now();
        loop {
            if let Some(addr) = self
                .log()
                .lines()
                .find(|l| l.contains("serve started"))
                .and_then(|l| l.split("listen=").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
            {
                return addr.to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "shard {} never logged its listen address:\n{}",
                self.index,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn mirror_name(i: usize) -> String {
    format!("app-{i}")
}

/// The shared config: `count` shards, every mirror on `schedule`.
fn config_text(src: &TestRegistry, target_host: &str, count: u32, schedule: &str) -> String {
    let mut t = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_seconds = 5\n\n[shard]\ncount = {count}\n"
    );
    for i in 0..MIRRORS {
        let m = mirror_name(i);
        t.push_str(&format!(
            "\n[[mirror]]\nname = \"{m}\"\nsource = \"{}/team/{m}\"\ntarget = \"{target_host}/mirror/{m}\"\nschedule = \"{schedule}\"\n",
            src.host()
        ));
    }
    t
}

/// Mirror name -> owning shard, as `regmirror check --shards` prints it.
async fn owners_from_check(config: &Path) -> BTreeMap<String, u32> {
    // A host name of the test machine ending in -N must not pose as an ordinal.
    let run = common::regmirror_env(
        &[
            "check",
            "--config",
            config.to_str().unwrap(),
            "--shards",
            "--next",
            "0",
        ],
        &[("HOSTNAME", "test-host")],
    )
    .await;
    assert_eq!(
        run.code, 0,
        "check --shards failed:\n{}{}",
        run.stdout, run.stderr
    );
    let mut owners = BTreeMap::new();
    let mut current = None;
    for line in run.stdout.lines() {
        if let Some(rest) = line.strip_prefix("shard ") {
            current = rest
                .split([':', ' '])
                .next()
                .and_then(|n| n.parse::<u32>().ok());
        } else if let (Some(s), Some(name)) = (current, line.strip_prefix("  ")) {
            if !name.starts_with(' ') {
                owners.insert(name.to_string(), s);
            }
        } else {
            current = None;
        }
    }
    owners
}

/// Target repository -> users that sent it write requests (PUT, POST,
/// PATCH), from `requests` (the proxy's record) starting at `from`.
fn writers(
    requests: &[(Option<String>, String, String)],
    from: usize,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (user, method, path) in &requests[from.min(requests.len())..] {
        if !matches!(method.as_str(), "PUT" | "POST" | "PATCH") {
            continue;
        }
        let Some(rest) = path.strip_prefix("/v2/mirror/") else {
            continue;
        };
        let repo = rest.split('/').next().unwrap_or_default().to_string();
        out.entry(repo)
            .or_default()
            .insert(user.clone().unwrap_or_else(|| "(anonymous)".to_string()));
    }
    out
}

async fn wait_until(
    what: &str,
    timeout: Duration,
    logs: &[&ShardProcess],
    mut done: impl AsyncFnMut() -> bool,
) {
    let start = Instant::now();
    while !done().await {
        if start.elapsed() > timeout {
            let logs: Vec<String> = logs
                .iter()
                .map(|p| format!("--- shard {}:\n{}", p.index, p.log()))
                .collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The digest the target serves for `repo:tag`, if any.
async fn target_digest(reader: &Pusher, repo: &str, tag: &str) -> Option<String> {
    let (_, bytes) = reader.get_manifest(repo, tag).await.ok()?;
    Some(common::sha256_digest(&bytes))
}

/// The target registry, with one user per shard process (distribution
/// re-reads htpasswd when it changes) besides its own, behind a proxy that
/// records which user sent each request.
async fn shard_target() -> (TestRegistry, TestProxy) {
    let dst = TestRegistry::start(RegistryOptions::htpasswd("checker", "checker-pw")).await;
    let mut htpasswd = std::fs::read_to_string(dst.dir().join("htpasswd")).unwrap();
    for i in 0..SHARDS {
        let hash = bcrypt::hash(PASSWORD, 4).unwrap();
        htpasswd.push_str(&format!("shard{i}:{hash}\n"));
    }
    std::fs::write(dst.dir().join("htpasswd"), htpasswd).unwrap();
    let proxy = TestProxy::start(&dst.base_url(), FaultPlan::none()).await;
    (dst, proxy)
}

/// True when the target serves `tag` of every mirror `want` selects with
/// the digest in `digests`.
async fn target_has(
    reader: &Pusher,
    digests: &BTreeMap<String, String>,
    tag: &str,
    want: impl Fn(&str) -> bool,
) -> bool {
    for (m, d) in digests {
        if want(m)
            && target_digest(reader, &format!("mirror/{m}"), tag)
                .await
                .as_ref()
                != Some(d)
        {
            return false;
        }
    }
    true
}

/// Pushes a new single-platform image as `tag` of every source repository;
/// returns mirror name -> digest.
async fn push_tag(src: &TestRegistry, tag: &str) -> BTreeMap<String, String> {
    let mut digests = BTreeMap::new();
    for i in 0..MIRRORS {
        let m = mirror_name(i);
        let img = ImageSet::image(&format!("{m}/{tag}"), "linux/amd64", Format::Oci);
        digests.insert(m.clone(), img.digest().to_string());
        push(src, &format!("team/{m}"), tag, img).await.unwrap();
    }
    digests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_write_disjoint_repositories_and_survive_a_lost_shard() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (dst, proxy) = shard_target().await;
    let reader = Pusher::for_registry(&dst);

    let v1 = push_tag(&src, "1").await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirrors.toml");
    let text = config_text(&src, &proxy.host(), SHARDS, "*/2 * * * * *");
    std::fs::write(&config, text).unwrap();

    // The split the daemons must follow, from the CLI and from the library.
    let owners = owners_from_check(&config).await;
    assert_eq!(
        owners.len(),
        MIRRORS,
        "check --shards lists every mirror once: {owners:?}"
    );
    for (m, s) in &owners {
        assert_eq!(*s, regmirror::sync::shard::owner(m, SHARDS), "{m}");
    }
    for s in 0..SHARDS {
        assert!(
            owners.values().any(|o| *o == s),
            "shard {s} owns no mirror of this config: {owners:?}"
        );
    }

    let mut procs: Vec<ShardProcess> = (0..SHARDS)
        .map(|i| ShardProcess::start(&config, dir.path(), &proxy.host(), i))
        .collect();
    let http = common::http_client(None);
    for p in &procs {
        let addr = p.metrics_addr().await;
        let owned = owners.values().filter(|o| **o == p.index).count();
        // Ready at once; the first runs are awaited through the metric.
        wait_until(
            "every first run",
            Duration::from_secs(60),
            &[p],
            async || {
                let Ok(r) = http.get(format!("http://{addr}/metrics")).send().await else {
                    return false;
                };
                let m = r.text().await.unwrap_or_default();
                m.lines().any(|l| l == "regmirror_first_runs_complete 1")
            },
        )
        .await;
        let m = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let info = format!(
            "regmirror_shard_info{{count=\"{SHARDS}\",index=\"{}\"}} 1",
            p.index
        );
        assert!(
            m.contains(&info),
            "shard {} metrics lack {info}:\n{m}",
            p.index
        );
        let mine = format!("regmirror_shard_mirrors{{shard=\"{}\"}} {owned}", p.index);
        assert!(
            m.contains(&mine),
            "shard {} metrics lack {mine}:\n{m}",
            p.index
        );
    }

    // Every mirror complete, each written by its owner alone.
    let all: Vec<&ShardProcess> = procs.iter().collect();
    wait_until(
        "every mirror's tag 1 on the target",
        Duration::from_secs(60),
        &all,
        async || target_has(&reader, &v1, "1", |_| true).await,
    )
    .await;
    // A few more schedule slots (every 2 s): a second writer would show now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let expect_writers = |m: &str| BTreeSet::from([format!("shard{}", owners[m])]);
    let w = writers(&proxy.requests_with_user(), 0);
    for m in owners.keys() {
        assert_eq!(
            w.get(m),
            Some(&expect_writers(m)),
            "writers of mirror/{m}: {w:?}"
        );
        // The registry itself saw the manifest written (through the proxy only).
        let puts = dst.access_log_count("PUT", &format!("/v2/mirror/{m}/manifests/"));
        let via_proxy = proxy.count("PUT", &format!("/v2/mirror/{m}/manifests/"));
        assert!(
            puts >= 1,
            "registry log shows no manifest PUT for mirror/{m}"
        );
        assert_eq!(
            puts, via_proxy,
            "mirror/{m}: every manifest PUT came through the proxy"
        );
    }

    // Shard 1 is lost. The others keep mirroring a new tag; shard 1's
    // mirrors are left alone until it is back.
    let lost = 1u32;
    procs[lost as usize].child.kill().await.unwrap();
    let mark = proxy.requests_with_user().len();
    let v2 = push_tag(&src, "2").await;
    let alive: Vec<&ShardProcess> = procs.iter().filter(|p| p.index != lost).collect();
    wait_until(
        "tag 2 of the live shards' mirrors",
        Duration::from_secs(60),
        &alive,
        async || target_has(&reader, &v2, "2", |m| owners[m] != lost).await,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (m, s) in &owners {
        if *s == lost {
            assert_eq!(
                target_digest(&reader, &format!("mirror/{m}"), "2").await,
                None,
                "mirror/{m} of the lost shard got tag 2 from another process"
            );
        }
    }
    let w = writers(&proxy.requests_with_user(), mark);
    for (m, users) in &w {
        assert_eq!(
            users,
            &expect_writers(m),
            "writers of mirror/{m} while shard {lost} was down"
        );
        assert_ne!(
            owners[m], lost,
            "mirror/{m} was written while its shard was down"
        );
    }

    // Shard 1 is back: its mirrors catch up, written by it alone.
    procs[lost as usize] = ShardProcess::start(&config, dir.path(), &proxy.host(), lost);
    let all: Vec<&ShardProcess> = procs.iter().collect();
    wait_until(
        "tag 2 of every mirror",
        Duration::from_secs(60),
        &all,
        async || target_has(&reader, &v2, "2", |_| true).await,
    )
    .await;
    let w = writers(&proxy.requests_with_user(), 0);
    for m in owners.keys() {
        assert_eq!(
            w.get(m),
            Some(&expect_writers(m)),
            "writers of mirror/{m} over the whole run: {w:?}"
        );
        for (tag, digests) in [("1", &v1), ("2", &v2)] {
            assert_eq!(
                target_digest(&reader, &format!("mirror/{m}"), tag)
                    .await
                    .as_ref(),
                Some(&digests[m]),
                "mirror/{m}:{tag}"
            );
        }
    }
}

/// `sync --dry-run` with shard settings against an empty registry (every
/// mirror fails at once, but the report still names the mirrors a shard
/// ran): the shards split the mirrors with no overlap, and
/// bad shard settings are usage errors (exit 2) that say where they came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_runs_only_its_shard_and_rejects_bad_shard_settings() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirrors.toml");
    let mut text = String::new();
    for i in 0..12 {
        text.push_str(&format!(
            "[[mirror]]\nname = \"m{i}\"\nsource = \"{0}/team/m{i}:1\"\ntarget = \"{0}/mirror/m{i}\"\n\n",
            reg.host()
        ));
    }
    std::fs::write(&config, &text).unwrap();
    let cfg = config.to_str().unwrap();
    let clean: &[(&str, &str)] = &[("HOSTNAME", "laptop")];

    let mut seen = BTreeMap::new();
    for i in 0..3 {
        let index = i.to_string();
        let run = common::regmirror_env(
            &[
                "sync",
                "--config",
                cfg,
                "--dry-run",
                "--output",
                "json",
                "--shard-count",
                "3",
                "--shard-index",
                &index,
            ],
            clean,
        )
        .await;
        let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
            panic!("shard {i}: not JSON ({e}):\n{}\n{}", run.stdout, run.stderr)
        });
        for m in report["mirrors"].as_array().unwrap() {
            let name = m["name"].as_str().unwrap().to_string();
            assert_eq!(
                regmirror::sync::shard::owner(&name, 3),
                i,
                "{name} run by shard {i}"
            );
            assert!(
                seen.insert(name.clone(), i).is_none(),
                "{name} run by two shards"
            );
        }
    }
    assert_eq!(seen.len(), 12, "every mirror run by one shard: {seen:?}");

    // The index from the environment, as in a StatefulSet pod or an Indexed Job.
    for env in [
        vec![("REGMIRROR_SHARD_COUNT", "3"), ("HOSTNAME", "regmirror-2")],
        vec![
            ("REGMIRROR_SHARD_COUNT", "3"),
            ("HOSTNAME", "laptop"),
            ("JOB_COMPLETION_INDEX", "2"),
        ],
        vec![
            ("REGMIRROR_SHARD_COUNT", "3"),
            ("REGMIRROR_POD_INDEX", "2"),
            ("HOSTNAME", "regmirror-0"),
        ],
    ] {
        let run = common::regmirror_env(
            &["sync", "--config", cfg, "--dry-run", "--output", "json"],
            &env,
        )
        .await;
        let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let names: BTreeSet<String> = report["mirrors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect();
        let expected: BTreeSet<String> = seen
            .iter()
            .filter(|(_, s)| **s == 2)
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(names, expected, "env {env:?}");
    }

    for (args, env, needle) in [
        (
            vec!["--shard-count", "3"],
            vec![("HOSTNAME", "laptop")],
            "shard index is unknown",
        ),
        (
            vec!["--shard-count", "3", "--shard-index", "3"],
            vec![],
            "not below the shard count 3",
        ),
        (
            vec![],
            vec![("REGMIRROR_SHARD_COUNT", "0")],
            "REGMIRROR_SHARD_COUNT",
        ),
        (
            vec![],
            vec![("REGMIRROR_SHARD_COUNT", "3"), ("HOSTNAME", "regmirror-5")],
            "HOSTNAME",
        ),
    ] {
        let mut all = vec!["sync", "--config", cfg, "--dry-run"];
        all.extend(args.iter().copied());
        let run = common::regmirror_env(&all, &env).await;
        assert_eq!(run.code, 2, "{all:?} {env:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(needle),
            "{all:?} {env:?}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "nothing ran: {}", run.stdout);
    }
    // `serve` refuses the same settings before it starts anything.
    let run = common::regmirror_env(
        &[
            "serve",
            "--config",
            cfg,
            "--shard-count",
            "3",
            "--shard-index",
            "3",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("not below the shard count 3"),
        "{}",
        run.stderr
    );
}

/// A reload that changes `[shard] count` re-splits the mirrors: the daemon
/// then runs only its new share, and the mirrors it gave away leave its
/// metrics (their last success would otherwise age into a staleness alert).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_a_new_shard_count_runs_only_the_new_share() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (dst, proxy) = shard_target().await;
    let reader = Pusher::for_registry(&dst);
    let v1 = push_tag(&src, "1").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirrors.toml");
    // Runs at start and after each reload only.
    let once = "0 0 1 1 *";
    std::fs::write(&config, config_text(&src, &proxy.host(), 1, once)).unwrap();
    let mut p = ShardProcess::start(&config, dir.path(), &proxy.host(), 0);
    let addr = p.metrics_addr().await;
    let http = common::http_client(None);
    let metrics = async || {
        let r = http.get(format!("http://{addr}/metrics")).send().await;
        match r {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    };
    wait_until(
        "every mirror copied by the single shard",
        Duration::from_secs(60),
        &[&p],
        async || target_has(&reader, &v1, "1", |_| true).await,
    )
    .await;
    let last_success =
        |m: &str| format!("regmirror_mirror_last_success_timestamp_seconds{{mirror=\"{m}\"}}");
    wait_until(
        "a last success for every mirror",
        Duration::from_secs(30),
        &[&p],
        async || {
            let text = metrics().await;
            v1.keys().all(|m| text.contains(&last_success(m)))
        },
    )
    .await;

    // Three shards now; this process is shard 0 (its host name says so).
    std::fs::write(&config, config_text(&src, &proxy.host(), SHARDS, once)).unwrap();
    let v2 = push_tag(&src, "2").await;
    let pid = p.child.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let info = format!("regmirror_shard_info{{count=\"{SHARDS}\",index=\"0\"}} 1");
    wait_until(
        "the new shard count on /metrics",
        Duration::from_secs(30),
        &[&p],
        async || metrics().await.contains(&info),
    )
    .await;
    let mine = |m: &str| regmirror::sync::shard::owner(m, SHARDS) == 0;
    assert!(
        v2.keys().any(|m| mine(m)) && v2.keys().any(|m| !mine(m)),
        "the test needs both kinds"
    );
    wait_until(
        "tag 2 of shard 0's mirrors",
        Duration::from_secs(60),
        &[&p],
        async || target_has(&reader, &v2, "2", mine).await,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = metrics().await;
    for m in v2.keys() {
        let on_target = target_digest(&reader, &format!("mirror/{m}"), "2")
            .await
            .is_some();
        assert_eq!(on_target, mine(m), "mirror/{m}:2 on the target");
        assert_eq!(
            text.contains(&last_success(m)),
            mine(m),
            "mirror {m} on /metrics:\n{text}"
        );
    }
    p.child.kill().await.unwrap();
}
