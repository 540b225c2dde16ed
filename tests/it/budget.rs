//! The pull budget: `sync` against a Docker-Hub-like source that announces
//! its allowance, keeps `pull_budget_floor` in reserve, defers images (exit
//! 5) instead of failing them, copies the rest in a later window, spends no
//! manifest GET when nothing changed, and stops GETs after a pull-limit 429.
//!
//! The source is a fake in front of a real `docker-registry` (which serves
//! the image content): real registries send no `ratelimit-*` headers and
//! never answer 429, so the fake adds Docker Hub's headers to every manifest
//! answer, counts manifest GETs (HEADs are free, as on Docker Hub) against
//! an allowance, and answers 429 with Docker Hub's body once it is spent.

use crate::common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use common::{Format, ImageSet, Pusher, RegistryOptions, TestRegistry, graph_problems, push};

/// Docker Hub's answer when the allowance is spent.
const HUB_429_BODY: &str = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"}]}"#;

/// How the fake behaves.
#[derive(Clone)]
pub(crate) struct HubPlan {
    /// Pulls per window.
    limit: u64,
    /// The window announced in `w=` (seconds).
    announced_window: u64,
    /// When the fake's own window really resets (`None`: only by `refill`).
    resets_every: Option<Duration>,
    /// Send `ratelimit-*` headers (false: a registry or proxy that strips
    /// them, so only a 429's body tells that the limit is reached).
    headers: bool,
    /// Another client on the same address spends the whole allowance after
    /// this many of our GETs.
    stolen_after: Option<u64>,
}

impl HubPlan {
    /// Docker Hub's behaviour: `limit` pulls, the headers on every manifest
    /// answer announcing a window of `window` seconds, which only
    /// [`HubServer::refill`] ends.
    pub(crate) fn hub(limit: u64, window: u64) -> HubPlan {
        HubPlan {
            limit,
            announced_window: window,
            resets_every: None,
            headers: true,
            stolen_after: None,
        }
    }
}

/// A source registry seeded with [`seed`]'s images behind the fake, an
/// empty target registry, and a directory for configs.
struct Env {
    /// Kept running: the fake forwards to it.
    _src: TestRegistry,
    dst: TestRegistry,
    images: Vec<(String, String)>,
    hub: HubServer,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new(plan: HubPlan) -> Env {
        let src = TestRegistry::start(RegistryOptions::anonymous()).await;
        let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
        let images = seed(&src).await;
        let hub = HubServer::start(&src, plan).await;
        Env {
            _src: src,
            dst,
            images,
            hub,
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

#[derive(Debug)]
struct Counters {
    remaining: u64,
    window_start: Instant,
    /// Manifest GETs answered with content.
    served: u64,
    /// Manifest GETs answered 429.
    refused: u64,
    /// Manifest GETs that arrived after the first 429 was answered.
    after_first_429: u64,
    /// The lowest allowance left after a GET.
    lowest: u64,
    /// Manifest HEADs.
    heads: u64,
}

struct Hub {
    plan: HubPlan,
    upstream: String,
    client: reqwest::Client,
    counters: Mutex<Counters>,
}

/// The fake on a loopback port; dropped with the test.
pub(crate) struct HubServer {
    state: Arc<Hub>,
    pub(crate) host: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl HubServer {
    pub(crate) async fn start(upstream: &TestRegistry, plan: HubPlan) -> HubServer {
        let state = Arc::new(Hub {
            counters: Mutex::new(Counters {
                remaining: plan.limit,
                window_start: Instant::now(),
                served: 0,
                refused: 0,
                after_first_429: 0,
                lowest: plan.limit,
                heads: 0,
            }),
            plan,
            upstream: upstream.base_url(),
            client: common::http_client(None),
        });
        let router = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let stop = common::serve_until_dropped(listener, router);
        HubServer {
            state,
            host,
            _stop: stop,
        }
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.state.counters.lock().unwrap()
    }

    /// The window ended: the whole allowance is back, counts start again.
    fn refill(&self) {
        let mut c = self.counters();
        c.remaining = self.state.plan.limit;
        c.window_start = Instant::now();
        c.lowest = c.remaining;
        c.served = 0;
        c.refused = 0;
        c.after_first_429 = 0;
        c.heads = 0;
    }
}

fn quota_headers(plan: &HubPlan, remaining: u64, r: &mut Response) {
    if !plan.headers {
        return;
    }
    let w = plan.announced_window;
    let h = r.headers_mut();
    h.insert(
        "ratelimit-limit",
        HeaderValue::from_str(&format!("{};w={w}", plan.limit)).unwrap(),
    );
    h.insert(
        "ratelimit-remaining",
        HeaderValue::from_str(&format!("{remaining};w={w}")).unwrap(),
    );
    h.insert(
        "docker-ratelimit-source",
        HeaderValue::from_static("127.0.0.1"),
    );
}

async fn handle(State(hub): State<Arc<Hub>>, req: Request) -> Response {
    let is_manifest = req.uri().path().contains("/manifests/");
    let is_get = req.method() == axum::http::Method::GET;
    let is_head = req.method() == axum::http::Method::HEAD;
    let mut remaining_after = None;
    if is_manifest && (is_get || is_head) {
        let mut c = hub.counters.lock().unwrap();
        if let Some(every) = hub.plan.resets_every
            && c.window_start.elapsed() >= every
        {
            c.remaining = hub.plan.limit;
            c.window_start = Instant::now();
        }
        if is_head {
            c.heads += 1;
        } else {
            if c.refused > 0 {
                c.after_first_429 += 1;
            }
            if hub.plan.stolen_after.is_some_and(|n| c.served >= n) {
                c.remaining = 0;
            }
            if c.remaining == 0 {
                c.refused += 1;
                let mut r = Response::builder()
                    .status(StatusCode::TOO_MANY_REQUESTS)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(HUB_429_BODY))
                    .unwrap();
                quota_headers(&hub.plan, 0, &mut r);
                return r;
            }
            c.remaining -= 1;
            c.served += 1;
            c.lowest = c.lowest.min(c.remaining);
        }
        remaining_after = Some(c.remaining);
    }
    let mut r = forward(&hub, req).await;
    if let Some(rem) = remaining_after {
        quota_headers(&hub.plan, rem, &mut r);
    }
    r
}

/// Forward a read to the real registry behind the fake.
async fn forward(hub: &Hub, req: Request) -> Response {
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let mut rb = hub
        .client
        .request(req.method().clone(), format!("{}{pq}", hub.upstream));
    for (name, value) in req.headers() {
        if name != header::HOST {
            rb = rb.header(name, value);
        }
    }
    let up = rb.send().await.expect("the upstream registry answers");
    let mut b = Response::builder().status(up.status().as_u16());
    for (name, value) in up.headers() {
        if name != header::TRANSFER_ENCODING && name != header::CONNECTION {
            b = b.header(name, value);
        }
    }
    let bytes = up.bytes().await.expect("the upstream body arrives");
    b.body(Body::from(bytes)).unwrap()
}

/// Four multi-arch images (index + 2 platform manifests: 3 pulls each)
/// under tags 1..4 of `team/app` at the real registry.
async fn seed(src: &TestRegistry) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in ["1", "2", "3", "4"] {
        let set = ImageSet::multi_arch(
            &format!("budget/{t}"),
            &["linux/amd64", "linux/arm64"],
            false,
            Format::Oci,
        );
        push(src, "team/app", t, set.to_node()).await.unwrap();
        out.push((t.to_string(), set.digest().to_string()));
    }
    out
}

/// A config mirroring tags 1..4 from the fake to `dst`, with `defaults`
/// and, when given, the fake's `pull_budget_floor`.
fn config(
    dir: &tempfile::TempDir,
    hub: &HubServer,
    dst: &TestRegistry,
    defaults: &str,
    floor: Option<u64>,
) -> PathBuf {
    let floor = floor
        .map(|f| format!("pull_budget_floor = {f}\n"))
        .unwrap_or_default();
    let text = format!(
        "[defaults]\n{defaults}\n[[registry]]\nhost = \"{hub}\"\n{floor}\n[[mirror]]\n\
         source = \"{hub}/team/app\"\ntarget = \"{dst}/mirror/app\"\n\
         tags = [\"1\", \"2\", \"3\", \"4\"]\n",
        hub = hub.host,
        dst = dst.host(),
    );
    let path = dir.path().join("mirror.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `regmirror sync --output json`: exit code, report, stderr.
async fn sync(config: &std::path::Path) -> (i32, Value, String) {
    let run = common::regmirror(&[
        "sync",
        "--config",
        config.to_str().unwrap(),
        "--output",
        "json",
    ])
    .await;
    let json: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", run.stdout, run.stderr));
    // Deferred reports are valid documents of the one report schema.
    let schema_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{json:#}");
    assert_eq!(json["exit_code"].as_i64(), Some(i64::from(run.code)));
    (run.code, json, run.stderr)
}

fn total(v: &Value, k: &str) -> u64 {
    v["totals"][k].as_u64().unwrap_or(u64::MAX)
}

fn tags_with(v: &Value, result: &str) -> Vec<String> {
    v["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["result"] == result)
        .map(|i| {
            i["target"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Every copied tag is complete at the target; every deferred tag is absent.
async fn check_target(dst: &TestRegistry, images: &[(String, String)], report: &Value) {
    let reader = Pusher::for_registry(dst);
    for tag in tags_with(report, "copied") {
        let want = &images.iter().find(|(t, _)| *t == tag).unwrap().1;
        let problems = graph_problems(&reader, "mirror/app", &tag, want).await;
        assert!(problems.is_empty(), "{tag}: {problems:?}");
    }
    for tag in tags_with(report, "deferred") {
        assert!(
            !reader.manifest_exists("mirror/app", &tag).await.unwrap(),
            "deferred tag {tag} was written"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_exit_code_0_makes_a_deferred_sync_exit_0_with_its_deferred_report() {
    let env = Env::new(HubPlan::hub(12, 3600)).await;
    let (dst, hub, dir) = (&env.dst, &env.hub, &env.dir);
    let cfg = config(dir, hub, dst, "concurrency = 4\n", Some(2));
    let cfg = cfg.to_str().unwrap();
    let args = [
        "sync",
        "--config",
        cfg,
        "--output",
        "json",
        "--deferred-exit-code",
        "0",
    ];
    let run = common::regmirror(&args).await;
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", run.stdout, run.stderr));
    assert_eq!(run.code, 0, "{report:#}\n{}", run.stderr);
    assert_eq!(report["result"], "deferred", "{report:#}");
    assert_eq!(report["exit_code"], 0, "{report:#}");
    assert!(total(&report, "deferred") >= 1, "{report:#}");
    let bad = common::regmirror(&["sync", "--config", cfg, "--deferred-exit-code", "3"]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("--deferred-exit-code"),
        "{}",
        bad.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budgeted_sync_defers_above_the_floor_and_a_later_window_copies_the_rest() {
    // 12 pulls for 12 needed, floor 2; the window (an hour, as announced)
    // does not end during the run, so nothing waits for it.
    let env = Env::new(HubPlan::hub(12, 3600)).await;
    let (dst, images, hub, dir) = (&env.dst, &env.images, &env.hub, &env.dir);
    let cfg = config(dir, hub, dst, "concurrency = 4\n", Some(2));

    let (code, report, stderr) = sync(&cfg).await;
    assert_eq!(code, 5, "{report:#}\n{stderr}");
    assert_eq!(report["result"], "deferred");
    assert_eq!(report["mirrors"][0]["result"], "deferred");
    let (copied, deferred) = (total(&report, "copied"), total(&report, "deferred"));
    assert!(copied >= 1 && deferred >= 1, "{report:#}");
    assert_eq!(copied + deferred, 4, "{report:#}");
    assert_eq!(total(&report, "failed"), 0, "{report:#}");
    {
        let c = hub.counters();
        assert!(c.lowest >= 2, "spent below the floor: {c:?}");
        assert_eq!(c.refused, 0, "a 429 was provoked: {c:?}");
    }
    for i in report["images"].as_array().unwrap() {
        if i["result"] == "deferred" {
            let d = &i["deferral"];
            assert_eq!(d["registry"], hub.host.as_str(), "{i:#}");
            assert_eq!(d["floor"], 2, "{i:#}");
            assert_eq!(d["circuit"], false, "{i:#}");
            let (avail, needed) = (
                d["available"].as_u64().unwrap(),
                d["needed"].as_u64().unwrap(),
            );
            assert!(avail < 2 + needed, "{i:#}");
            assert!(d["retry_in_seconds"].as_f64().unwrap() > 3000.0, "{i:#}");
            assert!(i["error"].is_null(), "{i:#}");
        } else {
            assert!(i["deferral"].is_null(), "{i:#}");
        }
    }
    assert!(stderr.contains("deferred"), "{stderr}");
    check_target(dst, images, &report).await;
    let first_copied = tags_with(&report, "copied");

    // The window ends: a later run copies what was deferred, nothing else.
    hub.refill();
    let (code, report, stderr) = sync(&cfg).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(total(&report, "copied"), deferred, "{report:#}");
    assert_eq!(total(&report, "up_to_date"), copied, "{report:#}");
    for t in &first_copied {
        assert!(tags_with(&report, "up-to-date").contains(t), "{report:#}");
    }
    assert_eq!(hub.counters().served, 3 * deferred);
    check_target(dst, images, &report).await;

    // Nothing changed: HEADs only, not one pull.
    hub.refill();
    let (code, report, _) = sync(&cfg).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(total(&report, "up_to_date"), 4, "{report:#}");
    let c = hub.counters();
    assert_eq!((c.served, c.refused), (0, 0), "a no-op run pulled: {c:?}");
    assert!(c.heads >= 4, "{c:?}");
}

/// The race of concurrent images over one allowance, many times: each run
/// starts a fresh process and a fresh target repository, with 4 images at
/// once and their children fetched 4 at a time; the floor holds every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_images_never_spend_below_the_floor_repeated() {
    let env = Env::new(HubPlan::hub(9, 3600)).await;
    let (dst, images, hub, dir) = (&env.dst, &env.images, &env.hub, &env.dir);
    for round in 0..8 {
        hub.refill();
        let text = format!(
            "[defaults]\nconcurrency = 4\nblob_concurrency = 4\n\n[[registry]]\nhost = \"{hub}\"\n\
             pull_budget_floor = 3\n\n[[mirror]]\nsource = \"{hub}/team/app\"\n\
             target = \"{dst}/round{round}/app\"\ntags = [\"1\", \"2\", \"3\", \"4\"]\n",
            hub = hub.host,
            dst = dst.host(),
        );
        let cfg = dir.path().join(format!("round{round}.toml"));
        std::fs::write(&cfg, text).unwrap();
        let (code, report, stderr) = sync(&cfg).await;
        assert_eq!(code, 5, "round {round}: {report:#}\n{stderr}");
        assert_eq!(total(&report, "failed"), 0, "round {round}: {report:#}");
        assert_eq!(
            total(&report, "copied") + total(&report, "deferred"),
            4,
            "round {round}: {report:#}"
        );
        {
            let c = hub.counters();
            assert!(c.lowest >= 3, "round {round}: below the floor: {c:?}");
            assert_eq!(c.refused, 0, "round {round}: {c:?}");
        }
        let reader = Pusher::for_registry(dst);
        for tag in tags_with(&report, "deferred") {
            let repo = format!("round{round}/app");
            assert!(!reader.manifest_exists(&repo, &tag).await.unwrap());
        }
        for tag in tags_with(&report, "copied") {
            let want = &images.iter().find(|(t, _)| *t == tag).unwrap().1;
            let repo = format!("round{round}/app");
            let problems = graph_problems(&reader, &repo, &tag, want).await;
            assert!(problems.is_empty(), "round {round} {tag}: {problems:?}");
        }
    }
}

/// A window that resets within the run: the deferred images are copied in
/// the same run, after waiting for it, and the run succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_images_are_copied_within_the_run_when_the_window_resets_soon() {
    let env = Env::new(HubPlan {
        limit: 6,
        announced_window: 2,
        resets_every: Some(Duration::from_secs(2)),
        headers: true,
        stolen_after: None,
    })
    .await;
    let (dst, images, hub, dir) = (&env.dst, &env.images, &env.hub, &env.dir);
    // No floor set: 0 for a registry other than Docker Hub.
    let cfg = config(dir, hub, dst, "concurrency = 2\n", None);
    let started = Instant::now();
    let (code, report, stderr) = sync(&cfg).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(total(&report, "copied"), 4, "{report:#}");
    assert_eq!(total(&report, "deferred"), 0, "{report:#}");
    // 12 pulls at 6 per 2-second window: it had to wait for a reset.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(hub.counters().refused, 0);
    check_target(dst, images, &report).await;
}

/// A pull-limit 429 (Docker Hub's body, no headers to warn before) opens
/// the circuit: not one more manifest GET to that registry in the run, no
/// retry of the 429, and every image not yet copied is deferred.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_limit_429_stops_manifest_gets_until_the_window_resets() {
    let env = Env::new(HubPlan {
        limit: 100,
        announced_window: 3600,
        resets_every: None,
        headers: false,
        stolen_after: Some(4),
    })
    .await;
    let (dst, images, hub, dir) = (&env.dst, &env.images, &env.hub, &env.dir);
    // One image at a time, one child at a time: the GETs are sequential, so
    // exactly one can meet the 429.
    let cfg = config(
        dir,
        hub,
        dst,
        "concurrency = 1\nblob_concurrency = 1\n",
        None,
    );
    let (code, report, stderr) = sync(&cfg).await;
    assert_eq!(code, 5, "{report:#}\n{stderr}");
    {
        let c = hub.counters();
        assert_eq!(c.served, 4, "{c:?}");
        assert_eq!(c.refused, 1, "the 429 was retried: {c:?}");
        assert_eq!(c.after_first_429, 0, "GETs after the 429: {c:?}");
    }
    assert_eq!(total(&report, "copied"), 1, "{report:#}");
    assert_eq!(total(&report, "deferred"), 3, "{report:#}");
    for i in report["images"].as_array().unwrap() {
        if i["result"] == "deferred" {
            assert_eq!(i["deferral"]["circuit"], true, "{i:#}");
            // No Retry-After and no announced window: an hour.
            let wait = i["deferral"]["retry_in_seconds"].as_f64().unwrap();
            assert!(wait > 3000.0 && wait <= 3600.0, "{i:#}");
        }
    }
    assert!(stderr.contains("pull limit is reached"), "{stderr}");
    check_target(dst, images, &report).await;
}

/// `serve`: a slot defers what the allowance cannot pay for, `/metrics`
/// shows the allowance and the deferral, and a later slot (in a new
/// window) copies the rest, never spending below the floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_defers_then_copies_the_rest_at_a_later_slot() {
    let env = Env::new(HubPlan::hub(12, 3600)).await;
    let (dst, images, hub, dir) = (&env.dst, &env.images, &env.hub, &env.dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[[registry]]\nhost = \"{hub}\"\n\
         pull_budget_floor = 2\n\n[[mirror]]\nname = \"app\"\nsource = \"{hub}/team/app\"\n\
         target = \"{dst}/mirror/app\"\ntags = [\"1\", \"2\", \"3\", \"4\"]\n\
         schedule = \"*/2 * * * * *\"\n",
        hub = hub.host,
        dst = dst.host(),
    );
    let cfg = dir.path().join("serve.toml");
    std::fs::write(&cfg, text).unwrap();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let _daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawning regmirror serve");
    let http = common::http_client(None);
    let metrics = || async {
        match http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    };
    let log = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    let deferred_line = "regmirror_images_total{mirror=\"app\",result=\"deferred\"}";
    let remaining_line = format!(
        "regmirror_ratelimit_remaining{{account=\"anonymous\",registry=\"{}\"}}",
        hub.host
    );
    let runs_line = "regmirror_sync_runs_total{mirror=\"app\",result=\"deferred\"}";
    let started = Instant::now();
    let text = loop {
        let text = metrics().await;
        // Counters are exposed at zero from the start: wait for a count.
        // The images are counted when the run's retries end, the run a
        // little later, as it finishes: wait for both.
        if series_value(&text, deferred_line) > 0.0 && series_value(&text, runs_line) > 0.0 {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no deferred image and deferred run counted in 60 s:\n{text}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(text.contains(&remaining_line), "{text}");
    assert!(hub.counters().lowest >= 2, "{:?}", hub.counters());

    // The window ends; a later slot copies what is missing.
    hub.refill();
    let reader = Pusher::for_registry(dst);
    let started = Instant::now();
    loop {
        let mut all = true;
        for (tag, _) in images {
            all &= reader.manifest_exists("mirror/app", tag).await.unwrap();
        }
        if all {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not every tag copied in 60 s:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (tag, want) in images {
        let problems = graph_problems(&reader, "mirror/app", tag, want).await;
        assert!(problems.is_empty(), "{tag}: {problems:?}");
    }
    assert!(hub.counters().lowest >= 2, "{:?}", hub.counters());
    assert_eq!(hub.counters().refused, 0);
}

/// The value of one series in a `/metrics` text (0 when absent).
fn series_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
