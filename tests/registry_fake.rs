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
                hm.insert("ratelimit-remaining", "0;w=21600".parse().unwrap());
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
            "regmirror_dockerhub_ratelimit_remaining{{host=\"{host}\"}} 97"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "regmirror_rate_limited_total{{host=\"{host}\"}} 2"
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
/// real token service is covered in tests/registry.rs; here the number of
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
