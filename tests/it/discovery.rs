//! Repository discovery: mirrors whose source is a whole registry or a
//! namespace (`repositories = [...]`) expand into one job per repository of
//! the source's `_catalog`.
//!
//! - Against distribution 2.8, which pages `_catalog` with `n` and `Link`:
//!   more repositories than one page of 1000, the wanted ones on page two.
//! - Against distribution 2.8 with token auth: the `registry:catalog:*` scope.
//! - Against fakes for what distribution cannot show: ACR's fixed pages of
//!   100 with `Link`, a registry that pages only with `last=` (and one that
//!   ignores `last`), hostile names and `Link` URLs, and registries without
//!   a catalog (Docker Hub's 401, a 404).

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{
    FakeServer, FaultPlan, Format, ImageSet, RegistryOptions, TestProxy, TestRegistry, TokenIssuer,
    TokenIssuerOptions, push, regmirror, regmirror_env, skopeo_raw_digest,
};

/// A JSON answer.
fn json(v: serde_json::Value) -> Response {
    ([("content-type", "application/json")], v.to_string()).into_response()
}

/// Validate a report against docs/report.schema.json.
fn assert_schema(report: &serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{report:#}");
}

/// `regmirror sync --config CONFIG --output json` with `envs`: the run and its report.
async fn sync_json(config: &Path, envs: &[(&str, &str)]) -> (common::Run, serde_json::Value) {
    let args = [
        "sync",
        "--config",
        config.to_str().unwrap(),
        "--output",
        "json",
    ];
    let run = regmirror_env(&args, envs).await;
    let report = json_of(&run.stdout, &run.stderr);
    (run, report)
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("mirror.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn json_of(stdout: &str, stderr: &str) -> serde_json::Value {
    serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("output is not JSON ({e}): {stdout}\nstderr: {stderr}"))
}

/// Creates `count` repositories `many/rNNNN` on `reg` by mounting one blob
/// of `from` into each (a mount is enough for the catalog to list them).
async fn make_repositories(reg: &TestRegistry, from: &str, digest: &str, count: usize) {
    let http = reg.http_client();
    let base = reg.base_url();
    let made = Arc::new(AtomicUsize::new(0));
    let jobs = (0..count).map(|i| {
        let (http, base, made) = (http.clone(), base.clone(), made.clone());
        let url = format!("{base}/v2/many/r{i:04}/blobs/uploads/?mount={digest}&from={from}");
        async move {
            let resp = http.post(&url).send().await.expect("mount request");
            assert_eq!(resp.status().as_u16(), 201, "mount into many/r{i:04}");
            made.fetch_add(1, Ordering::Relaxed);
        }
    });
    futures_util::stream::iter(jobs)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    assert_eq!(made.load(Ordering::Relaxed), count);
}

use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_wide_mirror_finds_repositories_past_the_first_catalog_page() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let src_proxy = TestProxy::start(&src.base_url(), FaultPlan::none()).await;
    // Images in `zz/` sort after the 1,005 `many/` repositories: page two.
    let mut expected = Vec::new();
    for (repo, tag) in [("zz/app1", "1.0"), ("zz/app2", "1.0"), ("zz/app2", "2.0")] {
        let index = ImageSet::multi_arch(
            &format!("{repo}/{tag}"),
            &["linux/amd64", "linux/arm64"],
            false,
            Format::Oci,
        );
        push(&src, repo, tag, index.to_node()).await.unwrap();
        expected.push((format!("mirror/{repo}:{tag}"), index.digest().to_string()));
    }
    let old = ImageSet::image("zz/app-old", "linux/amd64", Format::Oci);
    push(&src, "zz/app-old", "1.0", old.clone()).await.unwrap();
    make_repositories(&src, "zz/app-old", &old.layers[0].digest, 1005).await;

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[mirror]]\nname = \"zz\"\nsource = \"{}\"\ntarget = \"{}/mirror\"\n\
             repositories = ['^zz/']\nexclude_repositories = ['-old$']\n",
            src_proxy.host(),
            dst.host()
        ),
    );
    let cfg = config.to_str().unwrap();

    // `check --discover` lists the whole catalog and shows the selection.
    let run = regmirror(&["check", "--config", cfg, "--discover"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "discover zz: 2 of 1008 listed repositories selected (0 invalid names skipped)"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "{}/zz/app2 -> {}/mirror/zz/app2",
            src_proxy.host(),
            dst.host()
        )),
        "{}",
        run.stdout
    );
    let catalog_gets = src_proxy.count("GET", "/v2/_catalog");
    assert_eq!(
        catalog_gets,
        2,
        "two pages of at most 1000: {:?}",
        src_proxy.requests()
    );

    // `sync` copies every tag of the selected repositories, nothing else.
    let (run, report) = sync_json(&config, &[]).await;
    assert_eq!(run.code, 0, "{report:#}\n{}", run.stderr);
    assert_eq!(report["totals"]["copied"], 3, "{report:#}");
    assert_schema(&report);
    let discovered = &report["mirrors"][0]["discovered"];
    assert_eq!(discovered["listed"], 1008, "{report:#}");
    assert_eq!(
        discovered["repositories"],
        serde_json::json!(["zz/app1", "zz/app2"]),
        "{report:#}"
    );
    for (reference, digest) in &expected {
        assert_eq!(
            &skopeo_raw_digest(&dst, reference).await.unwrap(),
            digest,
            "{reference}"
        );
    }
    let pusher = common::Pusher::for_registry(&dst);
    assert!(
        pusher
            .tags("mirror/zz/app-old")
            .await
            .unwrap_or_default()
            .is_empty()
    );
    assert!(
        pusher
            .tags("mirror/many/r0000")
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_asks_for_the_catalog_scope() {
    let issuer = TokenIssuer::start(TokenIssuerOptions::default()).await;
    let src = TestRegistry::start(RegistryOptions::token(&issuer)).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let image = ImageSet::image("team/app", "linux/amd64", Format::Oci);
    push(&src, "team/app", "1.0", image.clone()).await.unwrap();
    push(&src, "other/app", "1.0", image.clone()).await.unwrap();
    let (user, password) = issuer.credentials().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[registry]]\nhost = \"{s}\"\nusername = \"{user}\"\npassword_env = \"REGMIRROR_TEST_PASSWORD\"\n\n\
             [[mirror]]\nsource = \"{s}/team\"\ntarget = \"{d}\"\nrepositories = ['.*']\n",
            s = src.host(),
            d = dst.host()
        ),
    );
    issuer.reset_counters();
    let (run, report) = sync_json(&config, &[("REGMIRROR_TEST_PASSWORD", password.as_str())]).await;
    assert_eq!(run.code, 0, "{report:#}\n{}", run.stderr);
    assert!(
        issuer
            .requested_scopes()
            .iter()
            .any(|s| s == "registry:catalog:*"),
        "{:?}",
        issuer.requested_scopes()
    );
    // The namespace keeps to itself: team/app only, under its full path.
    assert_eq!(
        report["mirrors"][0]["discovered"]["repositories"],
        serde_json::json!(["team/app"]),
        "{report:#}"
    );
    assert_eq!(
        skopeo_raw_digest(&dst, "team/app:1.0").await.unwrap(),
        image.digest()
    );
}

/// How a fake catalog pages.
#[derive(Clone, Copy)]
enum Paging {
    /// ACR: at most 100 per page whatever `n` says, `Link` to the next.
    Acr100,
    /// No `Link`; honours `last=`.
    LastOnly,
    /// No `Link`; ignores `last=` and sends the first page again.
    IgnoresLast,
}

#[derive(Clone)]
struct Catalog {
    names: Arc<Vec<String>>,
    paging: Paging,
    requests: Arc<AtomicUsize>,
}

async fn catalog_page(State(c): State<Catalog>, RawQuery(raw): RawQuery) -> Response {
    let q: HashMap<String, String> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    c.requests.fetch_add(1, Ordering::SeqCst);
    let n: usize = q.get("n").and_then(|n| n.parse().ok()).unwrap_or(100);
    let (size, start) = match c.paging {
        Paging::Acr100 => (n.min(100), q.get("last")),
        Paging::LastOnly => (n, q.get("last")),
        Paging::IgnoresLast => (n, None),
    };
    let from = start
        .and_then(|l| c.names.iter().position(|x| x == l).map(|i| i + 1))
        .unwrap_or(0);
    let page: Vec<&String> = c.names.iter().skip(from).take(size).collect();
    let mut headers = HeaderMap::new();
    if matches!(c.paging, Paging::Acr100) && from + page.len() < c.names.len() {
        let link = format!(
            "</v2/_catalog?last={}&n={size}>; rel=\"next\"",
            page.last().unwrap()
        );
        headers.insert("link", HeaderValue::from_str(&link).unwrap());
    }
    (headers, json(serde_json::json!({ "repositories": page }))).into_response()
}

async fn fake_catalog(names: Vec<String>, paging: Paging) -> (FakeServer, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let state = Catalog {
        names: Arc::new(names),
        paging,
        requests: requests.clone(),
    };
    let router = Router::new()
        .route("/v2/", get(|| async { json(serde_json::json!({})) }))
        .route("/v2/_catalog", get(catalog_page))
        .with_state(state);
    (FakeServer::start(router).await, requests)
}

/// `check --discover` of a registry-wide mirror of `host`.
async fn discover(host: &str, extra: &str) -> common::Run {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[mirror]]\nname = \"all\"\nsource = \"{host}\"\ntarget = \"127.0.0.1:9/mirror\"\n\
             repositories = ['.*']\n{extra}"
        ),
    );
    regmirror(&[
        "check",
        "--config",
        config.to_str().unwrap(),
        "--discover",
        "--no-credentials",
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acr_style_pages_of_100_are_followed_through_link() {
    // A fake: distribution honours `n`, ACR caps every page at 100.
    let names: Vec<String> = (0..250).map(|i| format!("team/app{i:03}")).collect();
    let (fake, requests) = fake_catalog(names, Paging::Acr100).await;
    let run = discover(&fake.host(), "").await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("discover all: 250 of 250 listed repositories selected"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("/team/app249 -> 127.0.0.1:9/mirror/team/app249"),
        "{}",
        run.stdout
    );
    assert_eq!(requests.load(Ordering::SeqCst), 3);

    // Over max_repositories: an error, nothing selected silently.
    let run = discover(&fake.host(), "max_repositories = 200\n").await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("selects 250 repositories (every repository of registry"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("over max_repositories = 200, so none was synced"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_paging_runs_until_a_short_or_repeated_page() {
    // Fakes: a registry that pages with `last=` only, and one that ignores it.
    let names: Vec<String> = (0..2500).map(|i| format!("r{i:04}")).collect();
    let (fake, requests) = fake_catalog(names.clone(), Paging::LastOnly).await;
    let run = discover(&fake.host(), "max_repositories = 5000\n").await;
    assert!(
        run.stdout.contains("2500 of 2500 listed"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        requests.load(Ordering::SeqCst),
        3,
        "pages of 1000, 1000, 500"
    );

    let (fake, requests) = fake_catalog(names, Paging::IgnoresLast).await;
    let run = discover(&fake.host(), "max_repositories = 5000\n").await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("1000 of 1000 listed"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        requests.load(Ordering::SeqCst),
        2,
        "stops at the repeated page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_dropped_and_foreign_links_refused() {
    // A fake playing a malicious registry: names no registry may hold, and
    // a Link that leaves the catalog.
    let names = [
        "good/app",
        "../escape",
        "Upper/app",
        "a:tag",
        "good/app",
        "b@sha256:00",
        "x//y",
    ]
    .map(String::from)
    .to_vec();
    let (fake, _) = fake_catalog(names, Paging::LastOnly).await;
    let run = discover(&fake.host(), "").await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("1 of 1 listed repositories selected (5 invalid names skipped)"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("escape"), "{}", run.stdout);

    for link in [
        "<http://127.0.0.2:1/v2/_catalog?n=1>; rel=\"next\"",
        "</v2/victim/tags/list>; rel=\"next\"",
    ] {
        let link = link.to_string();
        let router = Router::new()
            .route("/v2/", get(|| async { json(serde_json::json!({})) }))
            .route(
                "/v2/_catalog",
                get(move || {
                    let link = link.clone();
                    async move {
                        let mut h = HeaderMap::new();
                        h.insert("link", HeaderValue::from_str(&link).unwrap());
                        (h, json(serde_json::json!({"repositories": ["a"]})))
                    }
                }),
            );
        let fake = FakeServer::start(router).await;
        let run = discover(&fake.host(), "").await;
        assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains("catalog Link"), "{}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_without_a_catalog_says_to_list_repositories() {
    // Fakes: Docker Hub answers `_catalog` with 401 even with a token (its
    // token service grants no catalog access); others have no such route.
    let hub = FakeServer::start_with(|base| {
        let challenge = format!(
            "Bearer realm=\"{base}/token\",service=\"registry.fake\",scope=\"registry:catalog:*\""
        );
        let c2 = challenge.clone();
        Router::new()
            .route("/v2/", get(|| async { json(serde_json::json!({})) }))
            .route(
                "/token",
                get(|| async { json(serde_json::json!({"token": "t", "expires_in": 300})) }),
            )
            .route(
                "/v2/_catalog",
                get(move || {
                    let c = c2.clone();
                    async move {
                        (
                            StatusCode::UNAUTHORIZED,
                            [("www-authenticate", c)],
                            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                        )
                    }
                }),
            )
    })
    .await;
    let none = FakeServer::start(
        Router::new().route("/v2/", get(|| async { json(serde_json::json!({})) })),
    )
    .await;
    let refusing = |status: StatusCode, code: &'static str| {
        Router::new()
            .route("/v2/", get(|| async { json(serde_json::json!({})) }))
            .route(
                "/v2/_catalog",
                get(move || async move {
                    let body = format!(r#"{{"errors":[{{"code":"{code}","message":"no"}}]}}"#);
                    (status, [("content-type", "application/json")], body)
                }),
            )
    };
    let denied = FakeServer::start(refusing(StatusCode::FORBIDDEN, "DENIED")).await;
    let unsupported =
        FakeServer::start(refusing(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED")).await;
    let unsupported_400 = FakeServer::start(refusing(StatusCode::BAD_REQUEST, "UNSUPPORTED")).await;
    for fake in [&hub, &none, &denied, &unsupported, &unsupported_400] {
        let run = discover(&fake.host(), "").await;
        assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("does not offer its repository catalog"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("list them explicitly"),
            "{}",
            run.stderr
        );

        // `sync` fails the mirror with the same advice and copies nothing.
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(
            dir.path(),
            &format!(
                "[[mirror]]\nsource = \"{}\"\ntarget = \"127.0.0.1:9/mirror\"\nrepositories = ['.*']\n",
                fake.host()
            ),
        );
        let (run, report) = sync_json(&config, &[]).await;
        assert_eq!(run.code, 1, "{report:#}");
        let errors = report["mirrors"][0]["errors"].to_string();
        assert!(errors.contains("list them explicitly"), "{report:#}");
        assert_eq!(report["totals"]["images"], 0, "{report:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_discovers_again_at_each_run() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let app = ImageSet::image("team/app", "linux/amd64", Format::Oci);
    push(&src, "team/app", "1.0", app.clone()).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[mirror]]\nsource = \"{}/team\"\ntarget = \"{}/mirror\"\nrepositories = ['.*']\n\
             schedule = \"*/1 * * * * *\"\n",
            src.host(),
            dst.host()
        ),
    );
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let _daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawning regmirror serve");
    let pusher = common::Pusher::for_registry(&dst);
    let wait_for = async |repo: &str| {
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(30) {
            if pusher.manifest_exists(repo, "1.0").await.unwrap_or(false) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
        panic!("{repo}:1.0 never reached the target; serve log:\n{log}");
    };
    wait_for("mirror/team/app").await;
    // A repository created upstream after serve started is found by a later run.
    let new = ImageSet::image("team/new", "linux/amd64", Format::Oci);
    push(&src, "team/new", "1.0", new.clone()).await.unwrap();
    wait_for("mirror/team/new").await;
    assert_eq!(
        skopeo_raw_digest(&dst, "mirror/team/new:1.0")
            .await
            .unwrap(),
        new.digest()
    );
}
