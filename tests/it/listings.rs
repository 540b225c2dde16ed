//! Every paginated listing has an overall deadline: a registry that
//! answers each tag-list or catalog page slowly but within the request
//! deadline, with a `Link` to yet another page, is cut off at
//! `listing_timeout_seconds` with an error naming the pages read.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::FakeServer;

/// Each page takes 300 ms and links to the next, for ever.
async fn endless_page(State(count): State<Arc<AtomicUsize>>) -> Response {
    let n = count.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut headers = HeaderMap::new();
    let link = format!("</v2/app/tags/list?n=1&last=t{n}>; rel=\"next\"");
    headers.insert("link", HeaderValue::from_str(&link).unwrap());
    let body = serde_json::json!({ "name": "app", "tags": [format!("t{n}")] });
    (headers, axum::Json(body)).into_response()
}

async fn endless_catalog(State(count): State<Arc<AtomicUsize>>) -> Response {
    let n = count.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut headers = HeaderMap::new();
    let link = format!("</v2/_catalog?n=1&last=r{n}>; rel=\"next\"");
    headers.insert("link", HeaderValue::from_str(&link).unwrap());
    let body = serde_json::json!({ "repositories": [format!("r{n}")] });
    (headers, axum::Json(body)).into_response()
}

async fn slow_registry() -> (FakeServer, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route("/v2/", get(|| async { axum::Json(serde_json::json!({})) }))
        .route("/v2/app/tags/list", get(endless_page))
        .route("/v2/_catalog", get(endless_catalog))
        .with_state(count.clone());
    (FakeServer::start(router).await, count)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_endless_listing_ends_at_the_listing_deadline() {
    let (fake, count) = slow_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regmirror.toml");
    std::fs::write(
        &config,
        format!(
            "[[registry]]\nhost = \"{}\"\nlisting_timeout_seconds = 2\n\n\
             [[mirror]]\nname = \"all\"\nsource = \"{}\"\ntarget = \"127.0.0.1:9/mirror\"\n\
             repositories = ['.*']\n",
            fake.host(),
            fake.host()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let run = common::regmirror(&["tags", "-c", config, &format!("{}/app", fake.host())]).await;
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.elapsed < Duration::from_secs(20), "{:?}", run.elapsed);
    for w in ["listing deadline", "pages", "listing_timeout_seconds"] {
        assert!(run.stderr.contains(w), "expected {w:?} in {}", run.stderr);
    }
    let pages = count.load(Ordering::SeqCst);
    assert!((3..=10).contains(&pages), "{pages} pages read");

    let run = common::regmirror(&["check", "--config", config, "--discover"]).await;
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.elapsed < Duration::from_secs(20), "{:?}", run.elapsed);
    assert!(
        run.stderr.contains("listing deadline") || run.stdout.contains("listing deadline"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
}
