//! Registry-client behaviour that Debian's `docker-registry` (distribution
//! 2.8) cannot produce, checked against small in-test fake servers. Each test
//! says which behaviour the real registry lacks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use regmirror::registry::{Client, ClientOptions, Digest, Error, Reference, RetryPolicy};

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("127.0.0.1:{}", addr.port())
}

fn fast_client() -> Client {
    Client::new(ClientOptions {
        retry: RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(3),
            max_elapsed: Duration::from_secs(20),
        },
        ..Default::default()
    })
    .unwrap()
}

/// distribution 2.8 ignores `n` and never sends `Link`, so paging is
/// checked against a fake that pages as the distribution-spec says.
#[tokio::test]
async fn tag_listing_follows_link_pagination() {
    let pages = Arc::new(AtomicUsize::new(0));
    let p = pages.clone();
    let router = Router::new().fallback(move |uri: Uri| {
        let p = p.clone();
        async move {
            p.fetch_add(1, Ordering::SeqCst);
            let q = uri.query().unwrap_or("");
            let (tags, link) = if q.contains("last=b") {
                (r#"["c"]"#, None)
            } else {
                (
                    r#"["a","b"]"#,
                    Some(r#"</v2/ns/app/tags/list?n=2&last=b>; rel="next""#),
                )
            };
            let mut h = HeaderMap::new();
            if let Some(l) = link {
                h.insert("link", l.parse().unwrap());
            }
            (h, format!(r#"{{"name":"ns/app","tags":{tags}}}"#))
        }
    });
    let host = serve(router).await;
    let repo = Reference::parse_repository(&format!("{host}/ns/app")).unwrap();
    let tags = fast_client().list_tags(&repo).await.unwrap();
    assert_eq!(tags, vec!["a", "b", "c"]);
    assert_eq!(pages.load(Ordering::SeqCst), 2);
}

/// A real registry never answers 429; the fake answers twice with
/// `Retry-After: 1`, then serves the manifest.
#[tokio::test]
async fn honours_retry_after_on_429() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let router = Router::new().fallback(move || {
        let h = h.clone();
        async move {
            let n = h.fetch_add(1, Ordering::SeqCst);
            if n < 2 {
                let mut hm = HeaderMap::new();
                hm.insert("retry-after", "1".parse().unwrap());
                // Not 0: a 429 with no pulls left is a pull limit, never retried.
                hm.insert("ratelimit-remaining", "3;w=21600".parse().unwrap());
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    hm,
                    r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#.to_string(),
                )
                    .into_response()
            } else {
                let mut hm = HeaderMap::new();
                hm.insert(
                    "content-type",
                    "application/vnd.oci.image.manifest.v1+json"
                        .parse()
                        .unwrap(),
                );
                hm.insert("ratelimit-remaining", "97;w=21600".parse().unwrap());
                (
                    StatusCode::OK,
                    hm,
                    String::from_utf8(body.to_vec()).unwrap(),
                )
                    .into_response()
            }
        }
    });
    let host = serve(router).await;
    let r = Reference::parse(&format!("{host}/app:1")).unwrap();
    let start = Instant::now();
    let m = fast_client().get_manifest(&r).await.unwrap();
    assert_eq!(m.digest, Digest::sha256_of(body));
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // Two waits of Retry-After: 1 s each, far above the 20 ms backoff.
    assert!(
        start.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        start.elapsed()
    );
    let metrics = regmirror::metrics::render();
    assert!(
        metrics.contains(&format!(
            "regmirror_ratelimit_remaining{{account=\"anonymous\",registry=\"{host}\"}} 97"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "regmirror_registry_responses_total{{method=\"GET\",registry=\"{host}\",status=\"429\"}} 2"
        )),
        "{metrics}"
    );
}

/// A real registry does not fail on purpose; the fake always answers 503.
#[tokio::test]
async fn retries_are_bounded() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let router = Router::new().fallback(move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            (StatusCode::SERVICE_UNAVAILABLE, "down")
        }
    });
    let host = serve(router).await;
    let r = Reference::parse(&format!("{host}/app:1")).unwrap();
    let err = fast_client().get_manifest(&r).await.unwrap_err();
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    assert!(
        matches!(err, Error::RetriesExhausted { attempts: 4, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 503") && msg.contains("gave up after 4 attempts"),
        "{msg}"
    );
    assert!(msg.contains(&format!("{host}/app:1")), "{msg}");
}

#[derive(Default)]
struct MountFake {
    puts: Mutex<Vec<(String, usize)>>,
}

/// distribution 2.8 answers a mount from a readable repository with 201;
/// registries that answer 202 (an ordinary upload session) are faked here.
#[tokio::test]
async fn mount_answered_202_continues_as_upload() {
    let state = Arc::new(MountFake::default());
    let router = Router::new()
        .fallback(
            |State(st): State<Arc<MountFake>>, method: Method, uri: Uri, body: Bytes| async move {
                let q: Vec<(String, String)> =
                    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                        .into_owned()
                        .collect();
                let path = uri.path().to_string();
                if method == Method::POST && path.ends_with("/blobs/uploads/") {
                    assert!(q.iter().any(|(k, _)| k == "mount"));
                    let mut h = HeaderMap::new();
                    h.insert(
                        "location",
                        "/v2/t/app/blobs/uploads/session-1".parse().unwrap(),
                    );
                    return (StatusCode::ACCEPTED, h, Vec::new()).into_response();
                }
                if method == Method::PUT && path == "/v2/t/app/blobs/uploads/session-1" {
                    let digest = q
                        .iter()
                        .find(|(k, _)| k == "digest")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    st.puts.lock().unwrap().push((digest, body.len()));
                    return (StatusCode::CREATED, HeaderMap::new(), Vec::new()).into_response();
                }
                Response::builder()
                    .status(404)
                    .body(axum::body::Body::empty())
                    .unwrap()
            },
        )
        .with_state(state.clone());
    let host = serve(router).await;
    let client = fast_client();
    let target = Reference::parse_repository(&format!("{host}/t/app")).unwrap();
    let from = Reference::parse_repository(&format!("{host}/s/app")).unwrap();
    let data = Bytes::from_static(b"layer bytes");
    let d = Digest::sha256_of(&data);
    let session = client
        .mount_blob(&target, &d, &from)
        .await
        .unwrap()
        .expect("202 opens a session");
    let stream = futures_util::stream::once(async move { Ok(data) });
    client
        .upload_blob(session, &d, 11, Box::pin(stream))
        .await
        .unwrap();
    assert_eq!(
        state.puts.lock().unwrap().as_slice(),
        &[(d.to_string(), 11)]
    );
}

/// A corrupt stream is refused before the commit: the fake registry
/// (which, unlike distribution, does not check digests) never sees a full
/// body arrive.
#[tokio::test]
async fn corrupt_upload_is_aborted_before_commit() {
    let commits = Arc::new(AtomicUsize::new(0));
    let c = commits.clone();
    let router = Router::new().fallback(move |method: Method, body: Bytes| {
        let c = c.clone();
        async move {
            if method == Method::POST {
                let mut h = HeaderMap::new();
                h.insert("location", "/v2/t/app/blobs/uploads/s".parse().unwrap());
                return (StatusCode::ACCEPTED, h).into_response();
            }
            if method == Method::DELETE {
                // The aborted session is cancelled: not a commit.
                return StatusCode::NO_CONTENT.into_response();
            }
            let _ = body;
            c.fetch_add(1, Ordering::SeqCst);
            (StatusCode::CREATED, HeaderMap::new()).into_response()
        }
    });
    let host = serve(router).await;
    let client = fast_client();
    let repo = Reference::parse_repository(&format!("{host}/t/app")).unwrap();
    let d = Digest::sha256_of(b"good bytes");
    let session = client.start_upload(&repo).await.unwrap();
    let stream = futures_util::stream::once(async { Ok(Bytes::from_static(b"evil bytes")) });
    let err = client
        .upload_blob(session, &d, 10, Box::pin(stream))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert_eq!(commits.load(Ordering::SeqCst), 0);
}

/// A Bearer challenge whose token service refuses the credentials fails
/// at once with a clear message and no retry storm (a real registry with a
/// real token service is covered in tests/it/registry.rs; here the number of
/// requests is counted exactly).
#[tokio::test]
async fn wrong_credentials_fail_fast() {
    let registry_hits = Arc::new(AtomicUsize::new(0));
    let token_hits = Arc::new(AtomicUsize::new(0));
    let t = token_hits.clone();
    let token_host = serve(Router::new().fallback(move || {
        let t = t.clone();
        async move {
            t.fetch_add(1, Ordering::SeqCst);
            (StatusCode::UNAUTHORIZED, "bad creds")
        }
    }))
    .await;
    let r = registry_hits.clone();
    let realm = format!("http://{token_host}/token");
    let host = serve(Router::new().fallback(move || {
        let r = r.clone();
        let realm = realm.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            let mut h = HeaderMap::new();
            h.insert(
                "www-authenticate",
                format!(r#"Bearer realm="{realm}",service="fake""#)
                    .parse()
                    .unwrap(),
            );
            (StatusCode::UNAUTHORIZED, h)
        }
    }))
    .await;
    let client = Client::new(ClientOptions {
        registries: vec![regmirror::registry::RegistryConfig {
            host: host.clone(),
            username: Some("bob".into()),
            password: Some(regmirror::registry::Secret::new("hunter2-secret")),
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
    let err = client
        .get_manifest(&Reference::parse(&format!("{host}/app:1")).unwrap())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("refused user \"bob\""), "{msg}");
    assert!(!msg.contains("hunter2-secret"), "{msg}");
    assert!(!format!("{err:?}").contains("hunter2-secret"));
    assert_eq!(registry_hits.load(Ordering::SeqCst), 1);
    assert_eq!(token_hits.load(Ordering::SeqCst), 1);
}

/// Counts requests in flight; a real registry cannot report that.
#[tokio::test]
async fn concurrency_cap_and_rate_limit_per_registry() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (i, p) = (in_flight.clone(), peak.clone());
    let host = serve(Router::new().fallback(move || {
        let (i, p) = (i.clone(), p.clone());
        async move {
            let now = i.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            i.fetch_sub(1, Ordering::SeqCst);
            StatusCode::NOT_FOUND
        }
    }))
    .await;
    let limited = |max: usize, rps: Option<f64>| {
        Client::new(ClientOptions {
            registries: vec![regmirror::registry::RegistryConfig {
                host: host.clone(),
                max_concurrent_requests: Some(max),
                requests_per_second: rps,
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap()
    };
    let client = limited(2, None);
    let repo = Reference::parse_repository(&format!("{host}/app")).unwrap();
    let heads = (0..10).map(|n| {
        let c = client.clone();
        let repo = repo.clone();
        async move { c.head_blob(&repo, &Digest::sha256_of(&[n])).await }
    });
    for r in futures_util::future::join_all(heads).await {
        assert_eq!(r.unwrap(), None);
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);

    // 5 requests per second: 6 requests need at least one second of pacing.
    let client = limited(16, Some(5.0));
    let start = Instant::now();
    let heads = (0..6).map(|n| {
        let c = client.clone();
        let repo = repo.clone();
        async move { c.head_blob(&repo, &Digest::sha256_of(&[n])).await }
    });
    futures_util::future::join_all(heads).await;
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "{:?}",
        start.elapsed()
    );
}

/// A forward proxy is not something a registry can be; a raw listener
/// records what the client sends to `HTTP_PROXY`. Run through the binary so
/// the environment of the test process stays untouched.
#[tokio::test(flavor = "multi_thread")]
async fn honours_http_proxy_and_no_proxy_and_sends_user_agent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            s.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).to_string());
            let _ = sock
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
        }
    });
    // A registry name that only the proxy could reach.
    let run = |no_proxy: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
            .args([
                "inspect",
                "--plain-http",
                "registry.invalid",
                "registry.invalid/app:1",
            ])
            .env("HTTP_PROXY", format!("http://{proxy}"))
            .env("http_proxy", format!("http://{proxy}"))
            .env("NO_PROXY", no_proxy)
            .env("no_proxy", no_proxy)
            .output()
            .unwrap()
    };
    let out = run("");
    assert_eq!(out.status.code(), Some(1));
    {
        let seen = seen.lock().unwrap();
        let first = seen.first().expect("the proxy saw a request");
        assert!(
            first.starts_with("GET http://registry.invalid/v2/app/manifests/1 "),
            "{first}"
        );
        let ua = format!("user-agent: regmirror/{}", env!("CARGO_PKG_VERSION"));
        assert!(first.to_ascii_lowercase().contains(&ua), "{first}");
    }
    seen.lock().unwrap().clear();
    let out = run("registry.invalid");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        seen.lock().unwrap().is_empty(),
        "NO_PROXY host went through the proxy"
    );
}
