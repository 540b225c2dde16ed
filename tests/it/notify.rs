//! Run notifications (`[[notify]]`, docs/notifications.md) through the
//! binary against real registries: `sync` and `serve` post one message per
//! mirror run to a test receiver.
//!
//! The receiver is a small HTTP server in the test: it plays the webhook
//! consumer (a CloudEvents subscriber, Slack, Teams), which no real
//! registry can be, and answers as each case needs (500s, 400, or never).
//! The CloudEvents attributes are checked against the spec's required set
//! (`specversion`, `id`, `source`, `type`;
//! <https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md#required-attributes>)
//! and the optional ones regmirror sets (`time`, `subject`,
//! `datacontenttype`); structured mode's content type is
//! `application/cloudevents+json` (HTTP binding, section 3.2).

use crate::common;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use common::serve::{Daemon, free_port, sample};
use common::{
    FakeServer, Fault, FaultPlan, Format, ImageSet, RegistryOptions, TestProxy, TestRegistry,
    Trigger, push,
};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    sink: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e})", self.sink))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// The test receiver: `POST /{sink}` is recorded, then answered with the
/// next planned status of that sink (200 when none is planned); sink
/// `hang` never answers.
#[derive(Clone, Default)]
struct Inbox {
    got: Arc<Mutex<Vec<Received>>>,
    plan: Arc<Mutex<HashMap<String, VecDeque<u16>>>>,
}

impl Inbox {
    async fn start() -> (Inbox, FakeServer) {
        let inbox = Inbox::default();
        let router = Router::new()
            .route("/{sink}", axum::routing::post(receive))
            .with_state(inbox.clone());
        (inbox, FakeServer::start(router).await)
    }

    /// Answer the next requests of `sink` with `statuses`, in order.
    fn plan(&self, sink: &str, statuses: &[u16]) {
        self.plan
            .lock()
            .unwrap()
            .insert(sink.to_string(), statuses.iter().copied().collect());
    }

    fn of(&self, sink: &str) -> Vec<Received> {
        let got = self.got.lock().unwrap();
        got.iter().filter(|r| r.sink == sink).cloned().collect()
    }

    /// Wait until `sink` got `n` requests (at most 60 s).
    async fn wait(&self, sink: &str, n: usize) -> Vec<Received> {
        for _ in 0..600 {
            if self.of(sink).len() >= n {
                return self.of(sink);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("sink {sink} got {} requests, want {n}", self.of(sink).len());
    }
}

async fn receive(
    State(inbox): State<Inbox>,
    UrlPath(sink): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    inbox.got.lock().unwrap().push(Received {
        sink: sink.clone(),
        headers,
        body: body.to_vec(),
    });
    if sink == "hang" {
        std::future::pending::<()>().await;
    }
    let next = inbox
        .plan
        .lock()
        .unwrap()
        .get_mut(&sink)
        .and_then(VecDeque::pop_front);
    StatusCode::from_u16(next.unwrap_or(200)).unwrap()
}

/// A `[[notify]]` table posting to `/{name}` of `inbox_url`.
fn sink(name: &str, inbox_url: &str, extra: &str) -> String {
    format!("[[notify]]\nname = \"{name}\"\nurl = \"{inbox_url}/{name}\"\n{extra}\n")
}

/// `sync` of `config` (JSON report, debug logs, its metrics in
/// `DIR/metrics.prom`), the store off unless `clock` is given (then on,
/// at that test clock): the run and the metrics written.
async fn sync(config: &Path, envs: &[(&str, &str)], clock: Option<u64>) -> (common::Run, String) {
    sync_with(config, envs, clock, &[]).await
}

/// [`sync`] with `extra` arguments.
async fn sync_with(
    config: &Path,
    envs: &[(&str, &str)],
    clock: Option<u64>,
    extra: &[&str],
) -> (common::Run, String) {
    let metrics = config.with_file_name("metrics.prom");
    let _ = std::fs::remove_file(&metrics);
    let mut cmd = sync_command(config, envs, clock, extra);
    let start = std::time::Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("sync exits")
        .expect("running regmirror");
    let run = common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    };
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    (run, std::fs::read_to_string(&metrics).unwrap_or_default())
}

/// The command of [`sync_with`], not started.
fn sync_command(
    config: &Path,
    envs: &[(&str, &str)],
    clock: Option<u64>,
    extra: &[&str],
) -> tokio::process::Command {
    let metrics = config.with_file_name("metrics.prom");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"));
    cmd.args([
        "sync",
        "--config",
        config.to_str().unwrap(),
        "--output",
        "json",
    ])
    .args(["--metrics-file", metrics.to_str().unwrap()])
    .args(extra)
    .env("RUST_LOG", "regmirror=debug")
    .env_remove("REGMIRROR_TEST_CLOCK")
    .env_remove("REGMIRROR_TEST_PANIC_MIRROR")
    .envs(envs.iter().copied())
    .stdin(std::process::Stdio::null());
    match clock {
        Some(t) => cmd
            .env_remove("REGMIRROR_NO_STATE")
            .env("REGMIRROR_TEST_CLOCK", t.to_string()),
        None => cmd.env("REGMIRROR_NO_STATE", "1"),
    };
    cmd
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("mirror.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `regmirror_notifications_total{sink,result}` in `metrics`.
fn notifications(metrics: &str, sink: &str, result: &str) -> Option<f64> {
    let labels = [("sink", sink), ("result", result)];
    sample(metrics, "regmirror_notifications_total", &labels)
}

/// Assert `regmirror_notifications_total{sink,result}` is `want`.
fn expect_count(metrics: &str, sink: &str, result: &str, want: f64) {
    let got = notifications(metrics, sink, result);
    assert_eq!(got, Some(want), "{sink} {result}: {metrics}");
}

/// Every required CloudEvents attribute, and those regmirror sets.
fn check_cloudevent(event: &serde_json::Value, mirror: &str) {
    assert_eq!(event["specversion"], "1.0", "{event:#}");
    for attr in ["id", "source", "type", "time", "subject", "datacontenttype"] {
        let v = event[attr].as_str().unwrap_or("");
        assert!(
            !v.is_empty(),
            "attribute {attr} missing or empty: {event:#}"
        );
    }
    assert_eq!(event["type"], "io.regmirror.mirror.run.v1");
    assert_eq!(event["subject"], mirror);
    assert_eq!(event["datacontenttype"], "application/json");
    assert!(
        chrono::DateTime::parse_from_rfc3339(event["time"].as_str().unwrap()).is_ok(),
        "time is not RFC 3339: {event:#}"
    );
    assert!(event["data"].is_object(), "{event:#}");
    assert_eq!(event["data"]["mirror"], mirror);
}

/// Mirror `app` of `team/app:1.0` to `mirror/app`, with `extra` keys.
fn app_mirror(src: &TestRegistry, dst: &TestRegistry, extra: &str) -> String {
    format!(
        "[[mirror]]\nname = \"app\"\nsource = \"{}/team/app:1.0\"\ntarget = \"{}/mirror/app\"\nreferrers = false\n{extra}\n\n",
        src.host(),
        dst.host()
    )
}

/// Source `team/app:1.0` holds a new image; the target tag holds an older
/// one (moved with `force`): the previous and new digests.
async fn moved_tag(src: &TestRegistry, dst: &TestRegistry) -> (String, String) {
    let old = ImageSet::image("old", "linux/amd64", Format::Oci);
    let new = ImageSet::image("new", "linux/amd64", Format::Oci);
    push(dst, "mirror/app", "1.0", old.clone()).await.unwrap();
    push(src, "team/app", "1.0", new.clone()).await.unwrap();
    (old.digest().to_string(), new.digest().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_run_sends_one_event_per_mirror_with_changed_digests_routed_per_sink() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (old, new) = moved_tag(&src, &dst).await;
    let (inbox, server) = Inbox::start().await;
    let url = server.base_url();
    let secret = "s3cret-bearer-value-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let (s, d) = (src.host(), dst.host());
    let config = write(
        dir.path(),
        &[
            format!(
                "[[mirror]]\nname = \"app\"\nsource = \"{s}/team/app:1.0\"\ntarget = \"{d}/mirror/app\"\nforce = true\nreferrers = false\n\n\
                 [[mirror]]\nname = \"broken\"\nsource = \"{s}/team/app:missing\"\ntarget = \"{d}/mirror/broken\"\nreferrers = false\n\n"
            ),
            sink("all", &url, "secret_env = \"NOTIFY_TOKEN\""),
            sink("changes", &url, "on = \"on_change\""),
            sink("failures", &url, "on = \"on_failure\""),
            sink("slack", &url, "format = \"slack\"\nmirrors = [\"app\"]"),
            sink("teams", &url, "format = \"teams\"\nmirrors = [\"app\"]"),
        ]
        .concat(),
    );
    let envs = [("NOTIFY_TOKEN", secret)];
    let (run, metrics) = sync(&config, &envs, None).await;
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["totals"]["copied"], 1, "{report:#}\n{}", run.stderr);

    // One event per mirror run; each required attribute; the changed tag.
    let all = inbox.wait("all", 2).await;
    assert_eq!(all.len(), 2, "one event per mirror");
    let by_mirror = |rs: &[Received], m: &str| -> Vec<serde_json::Value> {
        rs.iter()
            .map(Received::json)
            .filter(|e| e["subject"] == m)
            .collect()
    };
    let app = by_mirror(&all, "app");
    assert_eq!(app.len(), 1, "{app:#?}");
    check_cloudevent(&app[0], "app");
    assert_eq!(app[0]["source"], "/regmirror/sync");
    let data = &app[0]["data"];
    assert_eq!(data["result"], "success", "{data:#}");
    let changed = data["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{data:#}");
    assert_eq!(changed[0]["target"], format!("{d}/mirror/app:1.0"));
    assert_eq!(changed[0]["previous_digest"], old.as_str(), "{data:#}");
    assert_eq!(changed[0]["digest"], new.as_str(), "{data:#}");
    assert!(changed[0]["lag_seconds"].as_f64().is_some(), "{data:#}");
    let broken = by_mirror(&all, "broken");
    check_cloudevent(&broken[0], "broken");
    assert_eq!(broken[0]["data"]["result"], "failed");
    let failure = &broken[0]["data"]["failures"][0];
    assert_eq!(failure["target"], format!("{d}/mirror/broken:missing"));
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    for r in &all {
        assert_eq!(
            r.header("content-type"),
            "application/cloudevents+json; charset=utf-8"
        );
        assert_eq!(r.header("authorization"), format!("Bearer {secret}"));
    }
    assert_ne!(app[0]["id"], broken[0]["id"], "ids are unique");

    // Routing: on_change only for the run that changed a tag, on_failure
    // only for the failed one; no secret in the logs.
    // (`sync` waits for its deliveries before it exits: the counts are final.)
    let changes = inbox.of("changes");
    assert_eq!((changes.len(), by_mirror(&changes, "app").len()), (1, 1));
    let failures = inbox.of("failures");
    assert_eq!(
        (failures.len(), by_mirror(&failures, "broken").len()),
        (1, 1)
    );
    assert!(!run.stderr.contains(secret), "{}", run.stderr);
    expect_count(&metrics, "all", "delivered", 2.0);
    let lag = [("mirror", "app")];
    let lags = sample(&metrics, "regmirror_replication_lag_seconds_count", &lag);
    assert_eq!(lags, Some(1.0), "{metrics}");

    // Slack: a text message; Teams: an Adaptive Card message.
    let slack = inbox.wait("slack", 1).await[0].json();
    let text = slack["text"].as_str().unwrap();
    assert_eq!(slack.as_object().unwrap().len(), 1, "{slack:#}");
    assert!(text.contains("mirror app success"), "{text}");
    assert!(
        text.contains(&format!("{d}/mirror/app:1.0: {old} → {new}")),
        "{text}"
    );
    let teams = inbox.wait("teams", 1).await[0].json();
    assert_eq!(teams["type"], "message", "{teams:#}");
    let card = &teams["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    let blocks = card["content"]["body"].as_array().unwrap();
    assert!(blocks.iter().all(|b| b["type"] == "TextBlock"), "{teams:#}");
    assert!(
        blocks
            .iter()
            .any(|b| b["text"].as_str().unwrap().contains(&new)),
        "{teams:#}"
    );

    // A second run changes nothing and fails again: `always` hears of
    // both mirrors, `on_change` of nothing, `on_failure` of the failure.
    let (run, _) = sync(&config, &envs, None).await;
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["totals"]["up_to_date"], 1, "{report:#}");
    inbox.wait("all", 4).await;
    inbox.wait("failures", 2).await;
    assert_eq!(inbox.of("changes").len(), 1, "a no-op run is no change");
    assert_eq!(
        inbox.of("slack").len(),
        2,
        "slack is told of every run of app"
    );
    let second = by_mirror(&inbox.of("all")[2..], "app");
    assert_eq!(second[0]["data"]["changed"], serde_json::json!([]));
    assert_eq!(second[0]["data"]["counts"]["up_to_date"], 1);

    // The example of docs/notifications.md has the shape of a real event.
    let example = docs_example();
    let broken_data = &broken[0]["data"];
    for (doc, real) in [
        (&example, &app[0]),
        (&example["data"], data),
        (&example["data"]["counts"], &data["counts"]),
        (&example["data"]["changed"][0], &changed[0]),
        (&example["data"]["failures"][0], &broken_data["failures"][0]),
    ] {
        assert_eq!(keys(doc), keys(real), "docs example vs {real:#}");
    }

    // A dry run changes nothing and tells nothing.
    let (run, _) = sync_with(&config, &envs, None, &["--dry-run"]).await;
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["dry_run"], true, "{report:#}");
    assert_eq!(inbox.of("all").len(), 4, "a dry run sends nothing");
}

/// The first JSON example of docs/notifications.md.
fn docs_example() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/notifications.md");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find("```json\n").expect("a JSON example") + "```json\n".len();
    let end = start + text[start..].find("```").unwrap();
    serde_json::from_str(&text[start..end]).expect("the example is JSON")
}

fn keys(v: &serde_json::Value) -> std::collections::BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_retry_after_500s_not_after_a_400_and_are_signed() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    moved_tag(&src, &dst).await;
    let (inbox, server) = Inbox::start().await;
    inbox.plan("flaky", &[500, 503]);
    inbox.plan("refusing", &[400, 400]);
    let url = server.base_url();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("hmac.key");
    let secret = "hmac-key-never-logged-9876";
    std::fs::write(&key, format!("{secret}\n")).unwrap();
    let config = write(
        dir.path(),
        &[
            app_mirror(&src, &dst, "force = true"),
            sink("flaky", &url, "auth = \"hmac\"\nsecret_file = \"hmac.key\""),
            sink("refusing", &url, ""),
        ]
        .concat(),
    );
    let (run, metrics) = sync(&config, &[], None).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Two 500s, then delivered: three tries of the same event.
    let tries = inbox.of("flaky");
    assert_eq!(tries.len(), 3, "{tries:#?}");
    assert!(tries.iter().all(|t| t.body == tries[0].body));
    expect_count(&metrics, "flaky", "delivered", 1.0);
    expect_count(&metrics, "flaky", "failed", 0.0);
    // The signature: HMAC-SHA256 of "<timestamp>.<body>" with the key.
    let t = &tries[2];
    let timestamp = t.header("x-regmirror-timestamp");
    assert!(timestamp.parse::<u64>().is_ok(), "{t:?}");
    let signed = [timestamp.as_bytes(), b".", &t.body].concat();
    let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let got = t.header("x-regmirror-signature-256");
    let mac = hex::decode(got.strip_prefix("sha256=").unwrap_or("")).unwrap_or_default();
    assert!(
        ring::hmac::verify(&hmac_key, &signed, &mac).is_ok(),
        "bad signature {got}"
    );
    assert_eq!(
        t.header("authorization"),
        "",
        "hmac sinks send no bearer token"
    );
    // A 400 is not retried: the same request would be refused again.
    assert_eq!(inbox.of("refusing").len(), 1);
    expect_count(&metrics, "refusing", "failed", 1.0);
    assert!(run.stderr.contains("400 Bad Request"), "{}", run.stderr);
    assert!(!run.stderr.contains(secret), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_that_never_answers_changes_no_result_and_sync_exits_after_its_flush_bound() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (_, new) = moved_tag(&src, &dst).await;
    let (inbox, server) = Inbox::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        &[
            app_mirror(&src, &dst, "force = true"),
            sink("hang", &server.base_url(), "timeout_seconds = 600"),
        ]
        .concat(),
    );
    let (run, metrics) = sync(&config, &[], None).await;
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        (run.code, &report["result"]),
        (0, &serde_json::json!("success")),
        "{}",
        run.stderr
    );
    assert_eq!(report["images"][0]["target_digest"], new.as_str());
    assert_eq!(inbox.of("hang").len(), 1, "the event was sent");
    // Left unanswered when the flush bound (10 s) ran out: dropped, and
    // the process exited (a generous bound, not a timing assertion).
    expect_count(&metrics, "hang", "dropped", 1.0);
    expect_count(&metrics, "hang", "delivered", 0.0);
    assert!(run.elapsed < Duration::from_secs(60), "{:?}", run.elapsed);
    assert!(
        run.stderr
            .contains("notifications not delivered before exit"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lag_counts_from_the_first_sighting_of_a_digest_held_by_min_age() {
    if !cfg!(debug_assertions) {
        return; // The test clock exists in debug builds only.
    }
    const T0: u64 = 2_000_000_000;
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    push(
        &src,
        "team/app",
        "1.0",
        ImageSet::image("lag", "linux/amd64", Format::Oci),
    )
    .await
    .unwrap();
    let (inbox, server) = Inbox::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        &[
            "state_dir = \"state\"\n".to_string(),
            app_mirror(&src, &dst, "min_age = \"1h\""),
            sink("changes", &server.base_url(), "on = \"on_change\""),
        ]
        .concat(),
    );
    // First seen at T0 and held; copied two hours later.
    let (run, _) = sync(&config, &[], Some(T0)).await;
    assert!(run.stdout.contains("\"held\""), "{}", run.stdout);
    let (run, metrics) = sync(&config, &[], Some(T0 + 7200)).await;
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["totals"]["copied"], 1, "{report:#}\n{}", run.stderr);
    let event = inbox.wait("changes", 1).await[0].json();
    let lag = event["data"]["changed"][0]["lag_seconds"].as_f64().unwrap();
    assert!((7200.0..7260.0).contains(&lag), "{event:#}");
    let bucket = |le: &str| {
        let labels = [("mirror", "app"), ("le", le)];
        sample(
            &metrics,
            "regmirror_replication_lag_seconds_bucket",
            &labels,
        )
    };
    // The test clock stands still within a run: exactly two hours.
    assert_eq!(
        (bucket("3600"), bucket("7200")),
        (Some(0.0), Some(1.0)),
        "{metrics}"
    );
    let sum = sample(
        &metrics,
        "regmirror_replication_lag_seconds_sum",
        &[("mirror", "app")],
    );
    assert_eq!(sum, Some(7200.0), "{metrics}");
    assert_eq!(inbox.of("changes").len(), 1, "the held run changed nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_sends_one_event_per_run_from_its_own_source() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (_, new) = moved_tag(&src, &dst).await;
    let (inbox, server) = Inbox::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "serve-token-abcdef").unwrap();
    let port = free_port();
    let config = write(
        dir.path(),
        &[
            format!("[server]\nlisten = \"127.0.0.1:{port}\"\n\n"),
            app_mirror(&src, &dst, "force = true\nschedule = \"0 0 0 1 1 *\""),
            sink("ce", &server.base_url(), "secret_file = \"token\""),
            sink("down", &server.base_url(), "on = \"on_change\""),
            sink("nosecret", &server.base_url(), "secret_file = \"absent\""),
            sink("hang", &server.base_url(), "timeout_seconds = 600"),
        ]
        .concat(),
    );
    inbox.plan("down", &[500; 10]);
    let mut daemon = Daemon::start(&config, dir.path(), port);
    let events = inbox.wait("ce", 1).await;
    let event = events[0].json();
    check_cloudevent(&event, "app");
    assert_eq!(event["source"], "/regmirror/serve");
    assert_eq!(event["data"]["changed"][0]["digest"], new.as_str());
    assert_eq!(
        events[0].header("authorization"),
        "Bearer serve-token-abcdef"
    );
    daemon
        .wait_for(
            "the delivery counted",
            Duration::from_secs(30),
            async || notifications(&daemon.metrics().await, "ce", "delivered") == Some(1.0),
        )
        .await;
    assert_eq!(inbox.of("ce").len(), 1, "one run, one event");
    assert!(
        !daemon.log().contains("serve-token-abcdef"),
        "{}",
        daemon.log()
    );

    // A sink answering 500 every time: 5 tries (1 + 2 + 4 + 8 s of
    // backoff), then failed. A secret that cannot be read: failed at
    // once, nothing sent, the daemon carries on.
    daemon
        .wait_for(
            "the 500s counted failed",
            Duration::from_secs(60),
            async || notifications(&daemon.metrics().await, "down", "failed") == Some(1.0),
        )
        .await;
    assert_eq!(inbox.of("down").len(), 5, "every try, and no more");
    let metrics = daemon.metrics().await;
    expect_count(&metrics, "nosecret", "failed", 1.0);
    assert_eq!(inbox.of("nosecret").len(), 0);
    assert!(
        daemon.log().contains("its secret (file "),
        "{}",
        daemon.log()
    );
    let (status, _) = daemon.get("/readyz").await.unwrap();
    assert_eq!(status, 200);

    // At shutdown serve waits for the sink that never answers at most its
    // flush bound (10 s), then exits, the message counted dropped.
    inbox.wait("hang", 1).await;
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(60)).await, 0);
    let log = daemon.log();
    assert!(
        log.contains("notifications not delivered before exit were dropped"),
        "{log}"
    );
}

#[test]
fn bad_notify_tables_are_config_errors_naming_the_key() {
    let mirror = "[[mirror]]\nname = \"m\"\nsource = \"r.test/a:1\"\ntarget = \"t.test/a\"\n\n";
    let cases = [
        (
            "[[notify]]\nurl = \"http://h.test/\"\n",
            "notify[1].name",
            "missing",
        ),
        (
            "[[notify]]\nname = \"n\"\nurl = \"http://h.test/\"\nurl_env = \"U\"\n",
            "notify[1].url",
            "exactly one of url",
        ),
        (
            "[[notify]]\nname = \"n\"\nurl = \"ftp://h.test/\"\n",
            "notify[1].url",
            "http",
        ),
        (
            "[[notify]]\nname = \"n\"\nurl = \"http://h.test/\"\nformat = \"email\"\n",
            "notify[1].format",
            "cloudevents, slack, teams",
        ),
        (
            "[[notify]]\nname = \"n\"\nurl = \"http://h.test/\"\non = \"sometimes\"\n",
            "notify[1].on",
            "always, on_change, on_failure",
        ),
        (
            "[[notify]]\nname = \"n\"\nurl = \"http://h.test/\"\nauth = \"hmac\"\n",
            "notify[1].auth",
            "needs a secret",
        ),
        (
            "[[notify]]\nname = \"n\"\nurl = \"http://h.test/\"\nmirrors = [\"other\"]\n",
            "notify[1].mirrors",
            "not the name of a mirror",
        ),
        (
            "[[notify]]\nname = \"n\"\nurl = \"http://h.test/\"\n[[notify]]\nname = \"n\"\nurl = \"http://h.test/\"\n",
            "notify[2].name",
            "duplicate",
        ),
        // A secret is never written in the config.
        (
            "[[notify]]\nname = \"n\"\nurl = \"http://h.test/\"\nsecret = \"hunter2\"\n",
            "notify",
            "secret",
        ),
    ];
    for (table, key, needle) in cases {
        let text = format!("{mirror}{table}");
        let e = regmirror::sync::Config::parse(Path::new("m.toml"), &text)
            .expect_err(table)
            .to_string();
        assert!(e.contains(key) && e.contains(needle), "{table}: {e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}

/// The API the event receiver calls: a run for an event carrying a time
/// counts the lag of what it writes from that time (in process, as the
/// receiver runs it).
#[tokio::test(flavor = "multi_thread")]
async fn a_run_for_an_event_counts_lag_from_the_event_time() {
    use regmirror::sync::{SyncOptions, Syncer};
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    moved_tag(&src, &dst).await;
    let text = app_mirror(&src, &dst, "force = true");
    let config = regmirror::sync::Config::parse(Path::new("event.toml"), &text).unwrap();
    let options = regmirror::registry::ClientOptions::default();
    let client = regmirror::registry::Client::new(options).unwrap();
    let pushed = std::time::SystemTime::now() - Duration::from_secs(300);
    let stop = tokio_util::sync::CancellationToken::new();
    let syncer = Syncer::new(client, SyncOptions::default(), stop).with_event_time(Some(pushed));
    let report = syncer.run_mirror(&config.mirrors[0]).await;
    assert_eq!(
        report.count(regmirror::sync::ImageResult::Copied),
        1,
        "{report:#?}"
    );
    let lag = report.images[0].lag_seconds.unwrap();
    assert!((300.0..360.0).contains(&lag), "{lag}");
}

/// Mirrors `slow` (its source behind a proxy that stalls each blob read
/// 25 s, tests/it/common/proxy.rs: long enough for `fast` to end first on
/// a loaded machine) and `fast`, in that order in the file, each to its
/// own target registry (the two images share a blob: at one target, `fast`
/// would wait for the copy of it `slow` has in flight, as the engine
/// copies a blob once):
/// each run's event is sent when that run ends, so `fast`'s comes first,
/// while `sync` is still running `slow`, and `slow`'s after.
#[tokio::test(flavor = "multi_thread")]
async fn sync_sends_each_mirror_runs_event_when_that_run_ends() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst2 = TestRegistry::start(RegistryOptions::anonymous()).await;
    for repo in ["team/slow", "team/fast"] {
        let image = ImageSet::image(repo, "linux/amd64", Format::Oci);
        push(&src, repo, "1.0", image).await.unwrap();
    }
    let stall = Fault::Stall(Duration::from_secs(25));
    let plan = FaultPlan::none().rule(Some("GET"), "/v2/team/slow/blobs/", Trigger::Always, stall);
    let proxy = TestProxy::start(&src.base_url(), plan).await;
    let (inbox, server) = Inbox::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (p, s, d, d2) = (proxy.host(), src.host(), dst.host(), dst2.host());
    let config = write(
        dir.path(),
        &[
            format!(
                "[[mirror]]\nname = \"slow\"\nsource = \"{p}/team/slow:1.0\"\ntarget = \"{d}/mirror/slow\"\nreferrers = false\n\n\
                 [[mirror]]\nname = \"fast\"\nsource = \"{s}/team/fast:1.0\"\ntarget = \"{d2}/mirror/fast\"\nreferrers = false\n\n"
            ),
            sink("all", &server.base_url(), ""),
        ]
        .concat(),
    );
    let mut child = sync_command(&config, &[], None, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let first = inbox.wait("all", 1).await;
    if first[0].json()["subject"] != "fast" {
        // Show when each run ended (sync's log) beside the first event.
        let out = child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ended: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("mirror run finished") || l.contains("mirror run started"))
            .collect();
        panic!(
            "the first event is not fast's: {:#}\nruns: {ended:#?}\nproxy: {:?}",
            first[0].json(),
            proxy.requests()
        );
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "fast's event came while sync still ran slow"
    );
    assert!(inbox.of("all").len() == 1, "slow's event waits for its run");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("sync exits")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let all = inbox.wait("all", 2).await;
    let subjects: Vec<serde_json::Value> =
        all.iter().map(|r| r.json()["subject"].clone()).collect();
    assert_eq!(
        subjects,
        ["fast", "slow"],
        "one event per mirror, as each ended"
    );
    for r in &all {
        let event = r.json();
        let mirror = event["subject"].as_str().unwrap().to_string();
        check_cloudevent(&event, &mirror);
        assert_eq!(event["data"]["result"], "success", "{event:#}");
    }
}

/// A mirror run that panics (a bug) still sends its event, `failed` with
/// the reason, the other mirror runs on, and `sync` exits non-zero. No
/// input makes regmirror panic, so the panic comes from the debug-only
/// test hook `REGMIRROR_TEST_PANIC_MIRROR` (compiled only with
/// debug_assertions, as the test binary is; see src/sync/run/caught.rs).
#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_run_that_panics_still_notifies_failed_and_sync_exits_non_zero() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (_, new) = moved_tag(&src, &dst).await;
    let (inbox, server) = Inbox::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (s, d) = (src.host(), dst.host());
    let config = write(
        dir.path(),
        &[
            app_mirror(&src, &dst, "force = true"),
            format!(
                "[[mirror]]\nname = \"buggy\"\nsource = \"{s}/team/app:1.0\"\ntarget = \"{d}/mirror/buggy\"\nreferrers = false\n\n"
            ),
            sink("all", &server.base_url(), ""),
        ]
        .concat(),
    );
    let mut cmd = sync_command(
        &config,
        &[("REGMIRROR_TEST_PANIC_MIRROR", "buggy")],
        None,
        &[],
    );
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("sync exits")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "partial: one mirror failed\n{stderr}"
    );
    assert!(stderr.contains("a test panic"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["result"], "partial", "{report:#}");
    assert_eq!(
        report["images"][0]["target_digest"],
        new.as_str(),
        "{report:#}"
    );
    let all = inbox.wait("all", 2).await;
    let buggy: Vec<serde_json::Value> = all
        .iter()
        .map(Received::json)
        .filter(|e| e["subject"] == "buggy")
        .collect();
    assert_eq!(buggy.len(), 1, "{all:#?}");
    check_cloudevent(&buggy[0], "buggy");
    let data = &buggy[0]["data"];
    assert_eq!(data["result"], "failed", "{data:#}");
    let text = data.to_string();
    assert!(
        text.contains("internal error") && text.contains("a test panic"),
        "the reason is in the event: {data:#}"
    );
}

/// A mirror with several `targets` (as in tests/it/fanout.rs): its event
/// lists each changed tag once per target, each entry naming its target
/// (`target_repository`), so a reader sees which target changed.
#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_mirrors_event_lists_each_tag_per_target_with_the_target_named() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let east = TestRegistry::start(RegistryOptions::anonymous()).await;
    let west = TestRegistry::start(RegistryOptions::anonymous()).await;
    for tag in ["v1", "v2"] {
        let image = ImageSet::image(&format!("app-{tag}"), "linux/amd64", Format::Oci);
        push(&src, "team/app", tag, image).await.unwrap();
    }
    let (inbox, server) = Inbox::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (s, e, w) = (src.host(), east.host(), west.host());
    let config = write(
        dir.path(),
        &[
            format!(
                "[[mirror]]\nname = \"app\"\nsource = \"{s}/team/app\"\ntags = [\"v1\", \"v2\"]\n\
                 targets = [\"{e}/mirror/app\", \"{w}/mirror/app\"]\nreferrers = false\n\n"
            ),
            sink("all", &server.base_url(), ""),
        ]
        .concat(),
    );
    let (run, _) = sync(&config, &[], None).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let event = inbox.wait("all", 1).await[0].json();
    check_cloudevent(&event, "app");
    let mut entries: Vec<(String, String)> = event["data"]["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["target_repository"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                c["target"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    entries.sort();
    let mut want: Vec<(String, String)> = Vec::new();
    for host in [&e, &w] {
        for tag in ["v1", "v2"] {
            let repo = format!("{host}/mirror/app");
            want.push((repo.clone(), format!("{repo}:{tag}")));
        }
    }
    want.sort();
    assert_eq!(entries, want, "one entry per tag and target: {event:#}");
}
