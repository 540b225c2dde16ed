//! Every shipped alert rule (`deploy/helm/regmirror/files/prometheus-rules.yaml`,
//! the same rules as the kustomize PrometheusRule) evaluated by a real
//! Prometheus (Debian's `prometheus`, on loopback) on the series of real
//! `serve`s: each rule fires on the situation it describes, and none names
//! the healthy mirror or its registries, nor fires before its situation.
//!
//! One Prometheus scrapes three daemons (one with a mirror per situation,
//! and the two replicas of a sharded pair); the rules run with every `for:`
//! cut to 0 s, their expressions unchanged. Targets come from a file
//! (`file_sd`) that is empty at first, as when no pod exists, and carry the
//! `namespace` and `pod` labels the Prometheus Operator adds. Fakes stand in
//! only for what a real registry cannot do:
//! - 429 answers with Docker Hub's rate-limit headers (`ratelimit-limit`,
//!   `ratelimit-remaining` with `;w=` windows, `docker-ratelimit-source`;
//!   <https://docs.docker.com/docker-hub/usage/pulls/>), from
//!   [`too_many_requests`];
//! - an announced allowance below the configured floor, from the
//!   Docker-Hub-like front of `budget::` ([`HubServer`]);
//! - a source that stalls or starts failing, from the fault proxy.
//!
//! At the end, the series Prometheus scraped go through `promtool test
//! rules` with the shipped `for:` durations (`alerts_promtool::`).
//!
//! `RegmirrorReplicationLagHigh` needs a tag written long after its
//! upstream change: a `sync` run with the test clock of debug builds an
//! hour back notes the first sighting in the run-state store the main
//! daemon then uses (`first_seen_an_hour_ago`).
//!
//! The last `/metrics` page of the main daemon, which by then has every
//! family, is also checked against `docs/metrics.md` (`metrics_page::`);
//! its `[[notify]]` sink gives `regmirror_notifications_total` series.

use crate::alerts_promtool::{self, Capture};
use crate::budget::{HubPlan, HubServer};
use crate::common;
use crate::dashboard::{prometheus_bin, spawn};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use common::fake::FakeServer;
use common::proxy::{Fault, FaultPlan, TestProxy, Trigger};
use common::serve::{Daemon, free_port, sample};
use common::{Format, ImageSet, Node, RegistryOptions, TestRegistry, push};

/// A firing alert's labels.
type Alert = BTreeMap<String, String>;

/// A 429 as Docker Hub sends it when a client asks too often, with its
/// rate-limit headers: an allowance of 100 pulls per 6 h, 7 left. Not the
/// pull-limit 429 (no `ratelimit-remaining: 0`, no "pull rate limit"
/// message), so it is retried after its `Retry-After`.
async fn too_many_requests() -> Response {
    Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::RETRY_AFTER, "1")
        .header("ratelimit-limit", "100;w=21600")
        .header("ratelimit-remaining", "7;w=21600")
        .header("docker-ratelimit-source", "127.0.0.1")
        .body(Body::from(
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"too many requests"}]}"#,
        ))
        .unwrap()
}

/// The registries, fakes and proxies the daemons mirror from and to.
struct World {
    src: TestRegistry,
    dst: TestRegistry,
    /// Answers 429 to everything but the `/v2/` ping.
    limited: FakeServer,
    /// Announces an allowance below the floor the config sets for it.
    hub: HubServer,
    /// In front of `src`; stalls every manifest request.
    slow: TestProxy,
    /// In front of `src`; fails everything once told to.
    stale: TestProxy,
    /// In front of `dst`; fails tag `2.0` of mirror `late` until told not to.
    late: TestProxy,
}

impl World {
    async fn start() -> World {
        let src = TestRegistry::start(RegistryOptions::anonymous()).await;
        let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
        let image = ImageSet::image("alerts", "linux/amd64", Format::Oci);
        push(&src, "team/app", "1.0", Node::Image(image))
            .await
            .unwrap();
        let multi = ImageSet::multi_arch(
            "alerts",
            &["linux/amd64", "linux/arm64"],
            false,
            Format::Oci,
        );
        push(&src, "team/multi", "1.0", multi.to_node())
            .await
            .unwrap();
        push(&src, "team/audited", "1.0", multi.to_node())
            .await
            .unwrap();
        let limited = FakeServer::start(
            Router::new()
                .route("/v2/", axum::routing::get(|| async { "{}" }))
                .fallback(too_many_requests),
        )
        .await;
        let hub = HubServer::start(&src, HubPlan::hub(100, 3600)).await;
        let stall = Fault::Stall(Duration::from_secs(4));
        let slow = TestProxy::start(
            &src.base_url(),
            FaultPlan::none().rule(None, "/manifests/", Trigger::Always, stall),
        )
        .await;
        let stale = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
        for tag in ["1.0", "2.0"] {
            let image = ImageSet::image(&format!("late-{tag}"), "linux/amd64", Format::Oci);
            push(&src, "team/late", tag, Node::Image(image))
                .await
                .unwrap();
        }
        let late = TestProxy::start(&dst.base_url(), late_plan()).await;
        World {
            src,
            dst,
            limited,
            hub,
            slow,
            stale,
            late,
        }
    }

    /// The main daemon's config: one mirror per situation, listening on
    /// `port`, its run-state store in `state`.
    fn main_config(&self, port: u16, state: &Path) -> String {
        let (s, d) = (self.src.host(), self.dst.host());
        let mirror = |name: &str, source: String, schedule: &str| {
            format!(
                "[[mirror]]\nname = \"{name}\"\nsource = \"{source}\"\n\
                 target = \"{d}/mirror/{name}\"\nschedule = \"{schedule}\"\n\n"
            )
        };
        let every_second = "* * * * * *";
        [
            format!("state_dir = {state:?}\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n\n"),
            // A sink that refuses connections: its notifications fail
            // (regmirror_notifications_total), the mirrors are unaffected.
            "[[notify]]\nname = \"ops\"\nurl = \"http://127.0.0.1:1/\"\non = \"on_change\"\n\n"
                .to_string(),
            format!(
                "[[registry]]\nhost = \"{}\"\npull_budget_floor = 200\n\n",
                self.hub.host
            ),
            mirror("healthy", format!("{s}/team/app:1.0"), "*/10 * * * * *")
                .replace("\"\n\n", "\"\naudit_schedule = \"*/3 * * * * *\"\n\n"),
            // Run once a year, audited every 2 s: once its source tag moves
            // (see [`move_audited_upstream`]), the audit finds it.
            mirror("audited", format!("{s}/team/audited:1.0"), "0 0 0 1 1 *")
                .replace("\"\n\n", "\"\naudit_schedule = \"*/2 * * * * *\"\n\n"),
            // Its source refuses connections: every run fails.
            mirror("down", "127.0.0.1:1/team/app:1.0".into(), every_second),
            // One tag never pushed: not found, quarantined after 3 runs.
            mirror("gone", format!("{s}/team/app"), every_second)
                .replace("\"\ntarget", "\"\ntags = [\"1.0\", \"gone\"]\ntarget"),
            mirror(
                "limited",
                format!("{}/team/app:1.0", self.limited.host()),
                every_second,
            ),
            mirror(
                "deferred",
                format!("{}/team/multi:1.0", self.hub.host),
                every_second,
            ),
            mirror(
                "slow",
                format!("{}/team/app:1.0", self.slow.host()),
                every_second,
            ),
            mirror(
                "stale",
                format!("{}/team/app:1.0", self.stale.host()),
                "*/5 * * * * *",
            ),
            // Tag 2.0 was first seen an hour ago (see `first_seen_an_hour_ago`)
            // and cannot be written until `release_late`: a late write.
            mirror("late", format!("{s}/team/late"), every_second).replace(
                &format!("\"\ntarget = \"{d}/"),
                &format!(
                    "\"\ntags = [\"1.0\", \"2.0\"]\ntarget = \"{}/",
                    self.late.host()
                ),
            ),
        ]
        .concat()
    }

    /// The config of the sharded pair: four mirrors split between them,
    /// run once a year.
    fn shard_config(&self, port: u16) -> String {
        let mut text = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n\n");
        for m in ["a", "b", "c", "d"] {
            text.push_str(&format!(
                "[[mirror]]\nname = \"shard-{m}\"\nsource = \"{}/team/app:1.0\"\n\
                 target = \"{}/mirror/shard-{m}\"\nschedule = \"0 0 0 1 1 *\"\n\n",
                self.src.host(),
                self.dst.host()
            ));
        }
        text
    }
}

/// The faults of the proxy in front of mirror `late`'s target: every
/// request for tag `2.0` answers 503 (a server error, which never
/// quarantines an image).
fn late_plan() -> FaultPlan {
    FaultPlan::none().rule(
        None,
        "/manifests/2\\.0$",
        Trigger::Always,
        Fault::Status(503),
    )
}

/// Make the run-state store in `state` hold that the source digest of tag
/// `team/late:2.0` was first seen an hour ago: a `sync` with the test clock
/// of debug builds set an hour back holds it by `min_age`, which notes its
/// first sighting. Mirror `late` of the main daemon, which shares the store,
/// writes it later: a replication lag of an hour.
async fn first_seen_an_hour_ago(world: &World, dir: &Path, state: &Path) {
    let config = dir.join("first-seen.toml");
    let text = format!(
        "state_dir = {state:?}\n\n[[mirror]]\nname = \"late\"\nsource = \"{}/team/late:2.0\"\n\
         target = \"{}/mirror/first-seen\"\nmin_age = \"7d\"\n",
        world.src.host(),
        world.dst.host()
    );
    std::fs::write(&config, text).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let hour_ago = (now.unwrap().as_secs() - 3600).to_string();
    let clock = ("REGMIRROR_TEST_CLOCK", hour_ago.as_str());
    let args = ["sync", "--config", config.to_str().unwrap()];
    // The harness turns the store off by default (REGMIRROR_NO_STATE=1).
    let store_on = ("REGMIRROR_NO_STATE", "0");
    let run = common::cli::regmirror_env(&args, &[clock, store_on]).await;
    let out = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(run.code, 0, "{out}");
    assert!(out.contains("held"), "tag 2.0 is not held: {out}");
}

/// Once Prometheus has scraped mirror `late`'s first write (tag 1.0, no
/// lag), let tag 2.0 through: its lag is an hour.
async fn release_late(world: &World, prom: &Prometheus) {
    let start = Instant::now();
    let written = "regmirror_replication_lag_seconds_count{mirror=\"late\"} == 1";
    while crate::dashboard::query(&prom.http, &prom.addr, written).await != Ok(1) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "mirror late never wrote tag 1.0"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    world.late.set_plan(FaultPlan::none());
}

/// A real Prometheus with the shipped rules (`for:` cut to 0 s), scraping
/// the targets of a file every 2 s.
struct Prometheus {
    addr: String,
    targets: std::path::PathBuf,
    _child: tokio::process::Child,
    http: reqwest::Client,
}

impl Prometheus {
    fn start(dir: &Path) -> Prometheus {
        let rules_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/helm/regmirror/files/prometheus-rules.yaml");
        let rules: String = std::fs::read_to_string(rules_path)
            .unwrap()
            .lines()
            .map(|l| match l.find("for: ") {
                Some(i) if l.trim_start().starts_with("for: ") => format!("{}for: 0s\n", &l[..i]),
                _ => format!("{l}\n"),
            })
            .collect();
        std::fs::write(dir.join("rules.yaml"), rules).unwrap();
        let targets = dir.join("targets.json");
        std::fs::write(&targets, "[]").unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: regmirror\n    file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
                dir.join("rules.yaml").display(),
                targets.display()
            ),
        )
        .unwrap();
        let child = spawn(
            &prometheus_bin(),
            &[
                &format!("--config.file={}", config.display()),
                &format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
                &format!("--web.listen-address={addr}"),
            ],
            &dir.join("prometheus.log"),
        );
        Prometheus {
            addr,
            targets,
            _child: child,
            http: common::http_client(None),
        }
    }

    /// Scrape `(pod, port)` targets in namespace `regmirror` from now on.
    fn set_targets(&self, pods: &[(&str, u16)]) {
        let groups: Vec<serde_json::Value> = pods
            .iter()
            .map(|(pod, port)| {
                serde_json::json!({
                    "targets": [format!("127.0.0.1:{port}")],
                    "labels": {"namespace": "regmirror", "pod": pod},
                })
            })
            .collect();
        let tmp = self.targets.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_string(&groups).unwrap()).unwrap();
        std::fs::rename(&tmp, &self.targets).unwrap();
    }

    /// Wait until `n` targets answered a scrape and the rules ran twice
    /// since (before, a replica not yet scraped looks like a missing shard).
    async fn wait_up(&self, n: usize) {
        let start = Instant::now();
        while crate::dashboard::query(&self.http, &self.addr, "up == 1").await != Ok(n) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "Prometheus never scraped {n} targets"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    /// The labels of every firing alert.
    async fn firing(&self) -> Vec<Alert> {
        let url = format!("http://{}/api/v1/alerts", self.addr);
        let Ok(r) = self.http.get(url).send().await else {
            return Vec::new();
        };
        let v: serde_json::Value =
            serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or_default();
        let alerts = v["data"]["alerts"].as_array().cloned().unwrap_or_default();
        alerts
            .iter()
            .filter(|a| a["state"] == "firing")
            .filter_map(|a| serde_json::from_value(a["labels"].clone()).ok())
            .collect()
    }
}

/// True when an alert named `name` with every label of `labels` fires.
fn fires(seen: &[Alert], name: &str, labels: &[(&str, &str)]) -> bool {
    seen.iter().any(|a| {
        a.get("alertname").map(String::as_str) == Some(name)
            && labels
                .iter()
                .all(|(k, v)| a.get(*k).map(String::as_str) == Some(*v))
    })
}

/// What must fire, and what must not while waiting for it.
struct Expect<'a> {
    want: Vec<(&'a str, Vec<(&'a str, &'a str)>)>,
    /// An alert with any of these label values must never fire.
    never: Vec<(&'a str, String)>,
    /// Alerts that must not fire during this wait.
    not_yet: Vec<&'a str>,
}

/// Poll until every wanted alert fires together (at most `timeout`);
/// panic with the logs at the first forbidden alert or at the timeout.
async fn wait_for(prom: &Prometheus, expect: &Expect<'_>, timeout: Duration, logs: &[&Path]) {
    let logs = || {
        logs.iter()
            .map(|p| {
                format!(
                    "{}:\n{}",
                    p.display(),
                    std::fs::read_to_string(p).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let start = Instant::now();
    loop {
        let seen = prom.firing().await;
        for a in &seen {
            let named = expect.never.iter().any(|(k, v)| a.get(*k) == Some(v));
            let early = expect.not_yet.iter().any(|n| a["alertname"] == *n);
            assert!(
                !named && !early,
                "{a:?} fired; firing: {seen:#?}\n{}",
                logs()
            );
        }
        if expect.want.iter().all(|(n, l)| fires(&seen, n, l)) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "after {timeout:?}, want {:?}; firing: {seen:#?}\n{}",
            expect.want,
            logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The pods of the daemons, in the order [`start_daemons`] starts them.
const PODS: [&str; 3] = ["regmirror-main", "regmirror-shard-0", "regmirror-shard-1"];

/// Start the main daemon and the sharded pair, each in a directory of its
/// own, and have `prom` scrape them once they are ready: each daemon and
/// its config file.
async fn start_daemons(world: &World, dir: &Path, prom: &Prometheus) -> Vec<(Daemon, PathBuf)> {
    let mut daemons = Vec::new();
    for (i, name) in ["main", "shard-0", "shard-1"].iter().enumerate() {
        let sub = dir.join(name);
        std::fs::create_dir(&sub).unwrap();
        let port = free_port();
        let config = sub.join("config.toml");
        let text = if i == 0 {
            let state = sub.join("state");
            first_seen_an_hour_ago(world, &sub, &state).await;
            world.main_config(port, &state)
        } else {
            world.shard_config(port)
        };
        std::fs::write(&config, text).unwrap();
        let index = (i.max(1) - 1).to_string();
        let shard = ["--shard-count", "2", "--shard-index", index.as_str()];
        let extra: &[&str] = if i == 0 { &[] } else { &shard };
        daemons.push((Daemon::start_with(&config, &sub, port, extra), config));
    }
    for (d, _) in &daemons {
        d.wait_for_answer("ready", "/readyz", |s, _| s == 200).await;
    }
    let targets: Vec<(&str, u16)> = PODS
        .iter()
        .zip(&daemons)
        .map(|(p, (d, _))| (*p, d.port))
        .collect();
    prom.set_targets(&targets);
    prom.wait_up(3).await;
    daemons
}

/// Label values of the healthy mirror and its registries, which no alert
/// may carry.
fn healthy(world: &World) -> Vec<(&'static str, String)> {
    vec![
        ("mirror", "healthy".to_string()),
        ("registry", world.src.host()),
        ("registry", world.dst.host()),
    ]
}

/// The alerts of the main daemon's mirrors and registries.
fn situations<'a>(world: &World, limited: &'a str) -> Expect<'a> {
    Expect {
        want: vec![
            ("RegmirrorMirrorFailing", vec![("mirror", "down")]),
            ("RegmirrorMirrorNeverSucceeded", vec![("mirror", "down")]),
            ("RegmirrorTagsQuarantined", vec![("mirror", "gone")]),
            ("RegmirrorMirrorStale", vec![("mirror", "stale")]),
            ("RegmirrorRateLimited", vec![("registry", limited)]),
            (
                "RegmirrorDockerHubAllowanceLow",
                vec![("registry", limited), ("account", "anonymous")],
            ),
            ("RegmirrorPullsDeferred", vec![("mirror", "deferred")]),
            ("RegmirrorRunsSkipped", vec![("mirror", "slow")]),
            ("RegmirrorReplicationLagHigh", vec![("mirror", "late")]),
            ("RegmirrorAuditMissing", vec![("mirror", "audited")]),
        ],
        never: healthy(world),
        not_yet: vec![
            "RegmirrorConfigReloadFailed",
            "RegmirrorDown",
            "RegmirrorShardMissing",
        ],
    }
}

/// The alerts of a rejected reload of the main daemon and of a dead shard 1.
fn failures(world: &World) -> Expect<'static> {
    Expect {
        want: vec![
            ("RegmirrorConfigReloadFailed", vec![("pod", PODS[0])]),
            ("RegmirrorDown", vec![("pod", PODS[2])]),
            ("RegmirrorShardMissing", vec![("shard", "1")]),
        ],
        never: [healthy(world), vec![("shard", "0".to_string())]].concat(),
        not_yet: vec!["RegmirrorAbsent"],
    }
}

/// Wait until mirror `audited` was copied and audited complete, then move
/// its source tag to another image: the next audit finds the tag moved.
async fn move_audited_upstream(world: &World, main: &Daemon) {
    main.wait_for(
        "a success and a complete audit of mirror audited",
        Duration::from_secs(60),
        async || {
            let text = main.metrics().await;
            let last = "regmirror_mirror_last_success_timestamp_seconds";
            sample(&text, last, &[("mirror", "audited")]).is_some()
                && sample(&text, "regmirror_audit_missing", &[("mirror", "audited")]) == Some(0.0)
        },
    )
    .await;
    let other = ImageSet::image("alerts-moved", "linux/amd64", Format::Oci);
    push(&world.src, "team/audited", "1.0", Node::Image(other))
        .await
        .unwrap();
}

/// Wait for a success of mirror `stale`, then fail every request of its source.
async fn fail_stale_after_a_success(world: &World, main: &Daemon) {
    main.wait_for(
        "a success of mirror stale",
        Duration::from_secs(60),
        async || {
            let text = main.metrics().await;
            let last = "regmirror_mirror_last_success_timestamp_seconds";
            sample(&text, last, &[("mirror", "stale")]).is_some()
        },
    )
    .await;
    let fail = Fault::Status(503);
    world
        .stale
        .set_plan(FaultPlan::none().rule(None, "^/v2/.", Trigger::Always, fail));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_alert_fires_on_its_situation_and_not_on_a_healthy_mirror() {
    let world = World::start().await;
    let dir = tempfile::tempdir().unwrap();
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let capture_start = unix.unwrap().as_secs() as i64;
    let prom = Prometheus::start(dir.path());
    let prom_log = dir.path().join("prometheus.log");
    // No target at all yet: only RegmirrorAbsent.
    let absent = Expect {
        want: vec![("RegmirrorAbsent", vec![])],
        never: vec![],
        not_yet: vec![],
    };
    wait_for(&prom, &absent, Duration::from_secs(60), &[&prom_log]).await;

    let mut daemons = start_daemons(&world, dir.path(), &prom).await;
    let (mut shard1, _) = daemons.pop().unwrap();
    let (main, main_config) = &daemons[0];
    let logs = [main.stderr_path.as_path(), prom_log.as_path()];
    fail_stale_after_a_success(&world, main).await;
    move_audited_upstream(&world, main).await;
    release_late(&world, &prom).await;
    let limited = world.limited.host();
    wait_for(
        &prom,
        &situations(&world, &limited),
        Duration::from_secs(120),
        &logs,
    )
    .await;
    let seen = prom.firing().await;
    assert!(
        !fires(&seen, "RegmirrorAbsent", &[]),
        "targets exist: {seen:#?}"
    );

    // A rejected reload of the main daemon; shard 1's replica dies.
    std::fs::write(main_config, "[[mirror]\nnot toml").unwrap();
    main.signal("HUP");
    shard1.child.start_kill().unwrap();
    wait_for(&prom, &failures(&world), Duration::from_secs(60), &logs).await;
    let seen = prom.firing().await;
    for pod in &PODS[..2] {
        let down = fires(&seen, "RegmirrorDown", &[("pod", pod)]);
        assert!(!down, "{pod} is up: {seen:#?}");
    }
    let reload = "RegmirrorConfigReloadFailed";
    assert!(!fires(&seen, reload, &[("pod", PODS[1])]), "{seen:#?}");

    // The same series, read back from Prometheus, through promtool with the
    // shipped `for:` durations.
    let capture = Capture::read(&prom.http, &prom.addr, capture_start, 2).await;
    let healthy = [world.src.host(), world.dst.host()];
    let cases = alerts_promtool::cases(&capture, &limited, [&healthy[0], &healthy[1]]);
    alerts_promtool::check(&capture, &cases, dir.path());

    let page = main.metrics().await;
    let drift = crate::metrics_page::drift(&page, &crate::metrics_page::docs());
    assert!(
        drift.is_empty(),
        "docs/metrics.md and /metrics disagree: {drift:#?}\n{page}"
    );
}

#[test]
fn the_dashboard_and_the_rules_use_only_documented_families() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = crate::metrics_page::docs();
    let names = regex::Regex::new(r"\bregmirror_[a-z0-9_]+").unwrap();
    for file in [
        "deploy/grafana/regmirror.json",
        "deploy/helm/regmirror/files/prometheus-rules.yaml",
        "deploy/kubernetes/components/monitoring/prometheusrule.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for m in names.find_iter(&text) {
            let name = m.as_str();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| docs.contains(&format!("| `{f}` | histogram |")))
                .unwrap_or(name);
            assert!(
                docs.contains(&format!("| `{family}` |")),
                "{file} uses {name}, which docs/metrics.md does not list"
            );
        }
    }
}
