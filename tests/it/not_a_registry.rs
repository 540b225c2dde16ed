//! A host that is not a registry is never reported as copied: a web server
//! answering `200` with an HTML page to every request, a health endpoint
//! answering `200 OK` in plain text, and a login proxy that passes the API
//! root through but answers everything else with a login page. Each is a
//! clear error naming the host, as target and as source, for `import` and
//! `sync`, and nothing is written there.
//!
//! These are fake servers on purpose: no registry behaves like this, which
//! is the point; a real registry (`docker-registry`) is the other side.

use crate::common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use common::{FakeServer, Format, ImageSet, RegistryOptions, TestRegistry, push, regmirror};

type Seen = Arc<Mutex<Vec<(Method, String)>>>;

/// A server answering every request with `answer(method, path)`, recording them.
async fn fake(answer: fn(&Method, &str) -> Response) -> (FakeServer, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let router = Router::new().fallback(move |method: Method, uri: Uri| {
        let log = log.clone();
        async move {
            log.lock()
                .unwrap()
                .push((method.clone(), uri.path().to_string()));
            answer(&method, uri.path())
        }
    });
    (FakeServer::start(router).await, seen)
}

fn html_page(_: &Method, _: &str) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!doctype html><html><body>Welcome to nginx!</body></html>",
    )
        .into_response()
}

fn plain_ok(_: &Method, _: &str) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "OK").into_response()
}

fn login_proxy(_: &Method, path: &str) -> Response {
    if path == "/v2/" {
        return (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (
                    header::HeaderName::from_static("docker-distribution-api-version"),
                    "registry/2.0",
                ),
            ],
            "{}",
        )
            .into_response();
    }
    html_page(&Method::GET, path)
}

fn writes(seen: &Seen) -> Vec<(Method, String)> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(m, _)| [Method::PUT, Method::POST, Method::PATCH].contains(m))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_that_are_not_registries_are_never_reported_as_copied() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let index = ImageSet::multi_arch(
        "web/app",
        &["linux/amd64", "linux/arm64"],
        false,
        Format::Oci,
    );
    push(&src, "team/app", "1.0", index.to_node())
        .await
        .unwrap();
    let source = format!("{}/team/app:1.0", src.host());
    let dir = tempfile::tempdir().unwrap();

    for (what, answer) in [
        (
            "an HTML page for everything",
            html_page as fn(&Method, &str) -> Response,
        ),
        ("plain-text 200 OK for everything", plain_ok),
        ("a login page past the API root", login_proxy),
    ] {
        let (server, seen) = fake(answer).await;
        let host = server.host();
        let needle = format!("{host} is not a container registry");

        // As the target of import.
        let run = regmirror(&["import", &source, &format!("{host}/mirror/app:1.0")]).await;
        assert_eq!(
            run.code, 1,
            "{what}: import: {}\n{}",
            run.stdout, run.stderr
        );
        assert!(
            run.stderr.contains(&needle),
            "{what}: import: {}",
            run.stderr
        );
        assert!(!run.stdout.contains("copied"), "{what}: {}", run.stdout);

        // As the target of a sync: a failure, not a copy.
        let config = dir.path().join("mirror.toml");
        std::fs::write(
            &config,
            format!(
                "[[mirror]]\nsource = \"{}/team/app:1.0\"\ntarget = \"{host}/mirror/app\"\n",
                src.host()
            ),
        )
        .unwrap();
        let run = regmirror(&[
            "sync",
            "--config",
            config.to_str().unwrap(),
            "--output",
            "json",
        ])
        .await;
        assert_eq!(run.code, 1, "{what}: sync: {}\n{}", run.stdout, run.stderr);
        let report: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("{what}: sync JSON ({e}): {}", run.stdout));
        assert_eq!(report["totals"]["copied"], 0, "{what}: {report:#}");
        assert_eq!(report["totals"]["failed"], 1, "{what}: {report:#}");
        let error = report["images"][0]["error"].as_str().unwrap_or_default();
        assert!(error.contains(&needle), "{what}: {report:#}");

        // As the source of import.
        let run = regmirror(&[
            "import",
            &format!("{host}/team/app:1.0"),
            &format!("{}/copied/app:1.0", src.host()),
        ])
        .await;
        assert_eq!(run.code, 1, "{what}: import from it: {}", run.stderr);
        assert!(run.stderr.contains(&needle), "{what}: {}", run.stderr);

        assert!(
            writes(&seen).is_empty(),
            "{what}: writes reached it: {:?}",
            writes(&seen)
        );
    }
    // Nothing arrived in the real registry from the fake sources either.
    assert!(
        !common::Pusher::for_registry(&src)
            .manifest_exists("copied/app", "1.0")
            .await
            .unwrap()
    );
}
