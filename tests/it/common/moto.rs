//! A loopback stand-in for Amazon ECR, because no ECR runs here.
//!
//! - [`Moto`]: the `moto` server (PyPI `moto[server]`) plays the AWS APIs
//!   regmirror calls through the AWS SDK (`GetAuthorizationToken`,
//!   `CreateRepository`, `DescribeRepositories`), behind a counting proxy
//!   whose address goes into `AWS_ENDPOINT_URL`, as the SDK documents.
//! - [`EcrFake`]: a proxy in front of a real `docker-registry` that plays
//!   what ECR's registry API documents: basic auth with user `AWS` and the
//!   password `GetAuthorizationToken` issued, and nothing else; `NAME_UNKNOWN`
//!   for a repository that was never created (asked of moto with
//!   `DescribeRepositories`); `TAG_INVALID` "… cannot be overwritten because
//!   the tag is immutable" for a tag pushed again into an `IMMUTABLE`
//!   repository; and, on demand, an expired password: after N requests it
//!   refuses the password until `GetAuthorizationToken` is called again.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine as _;

use super::registry::{TestRegistry, spawn_tied_to_process};
use super::serve_until_dropped;

/// The fake AWS account moto answers for.
pub const ACCOUNT: &str = "123456789012";
/// Region of the fake.
pub const REGION: &str = "us-east-1";
const MAX_BODY: usize = 256 * 1024 * 1024;

/// A running `moto_server` behind a proxy that counts
/// `GetAuthorizationToken` calls.
pub struct Moto {
    child: Child,
    moto_url: String,
    /// `AWS_ENDPOINT_URL` for regmirror: the counting proxy.
    pub endpoint: String,
    token_calls: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    /// Start moto on loopback and wait until it answers.
    pub async fn start() -> Moto {
        let port = free_port();
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_tied_to_process(cmd).expect("moto_server (pip install 'moto[server]')");
        let moto_url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http
                .get(format!("{moto_url}/moto-api/"))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let token_calls = Arc::new(AtomicUsize::new(0));
        let state = (moto_url.clone(), token_calls.clone(), http);
        let router = Router::new().fallback(count_and_forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let stop = serve_until_dropped(listener, router);
        Moto {
            child,
            moto_url,
            endpoint,
            token_calls,
            _stop: stop,
        }
    }

    /// `GetAuthorizationToken` calls seen so far.
    pub fn token_calls(&self) -> usize {
        self.token_calls.load(Ordering::SeqCst)
    }

    /// One ECR API call (JSON protocol) straight to moto.
    pub async fn ecr(&self, op: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        ecr_call(&self.moto_url, op, body).await
    }

    /// The password moto issues, as `GetAuthorizationToken` gives it.
    pub async fn issued_password(&self) -> String {
        let (status, v) = self
            .ecr("GetAuthorizationToken", serde_json::json!({}))
            .await;
        assert_eq!(status, 200, "{v}");
        let token = v["authorizationData"][0]["authorizationToken"]
            .as_str()
            .unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .unwrap();
        let text = String::from_utf8(decoded).unwrap();
        text.strip_prefix("AWS:").unwrap().to_string()
    }

    /// Create a repository in moto (`IMMUTABLE` tags when `immutable`).
    pub async fn create_repository(&self, name: &str, immutable: bool) {
        let mutability = if immutable { "IMMUTABLE" } else { "MUTABLE" };
        let (status, v) = self
            .ecr(
                "CreateRepository",
                serde_json::json!({"repositoryName": name, "imageTagMutability": mutability}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }

    /// The environment regmirror needs to reach this fake with static fake
    /// keys: no password of the registry anywhere.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "AKIDFAKEFORTESTS".into()),
            ("AWS_SECRET_ACCESS_KEY", "fake-secret-for-tests".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

/// One ECR JSON call to `url` (moto needs no valid signature; the
/// `Authorization` header names the service and region).
async fn ecr_call(url: &str, op: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDFAKEFORTESTS/20250101/{REGION}/ecr/aws4_request, \
         SignedHeaders=host, Signature=0"
    );
    let resp = reqwest::Client::new()
        .post(format!("{url}/"))
        .header(
            "X-Amz-Target",
            format!("AmazonEC2ContainerRegistry_V20150921.{op}"),
        )
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("Authorization", auth)
        .body(body.to_string())
        .send()
        .await
        .expect("moto answers");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, v)
}

type MotoState = (String, Arc<AtomicUsize>, reqwest::Client);

async fn count_and_forward(State((url, calls, http)): State<MotoState>, req: Request) -> Response {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if target.ends_with(".GetAuthorizationToken") {
        calls.fetch_add(1, Ordering::SeqCst);
    }
    forward(&http, &url, req, None).await
}

/// Forward `req` to `base` (buffered: test images are small). With
/// `rewrite_to` (the registry fake), the client's `Authorization` stays
/// here and `Location` headers that point at `base` are rewritten to it.
async fn forward(
    http: &reqwest::Client,
    base: &str,
    req: Request,
    rewrite_to: Option<&str>,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut out = http.request(parts.method.clone(), format!("{base}{path}"));
    for (k, v) in &parts.headers {
        let skip = ["host", "content-length", "transfer-encoding"].contains(&k.as_str())
            || (rewrite_to.is_some() && k == "authorization");
        if !skip {
            out = out.header(k, v);
        }
    }
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(_) => return status(StatusCode::BAD_GATEWAY, ""),
    };
    let mut builder = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        if k == "transfer-encoding" {
            continue;
        }
        let mut v = v.clone();
        if k == "location"
            && let (Some(to), Ok(s)) = (rewrite_to, v.to_str())
        {
            v = HeaderValue::from_str(&s.replace(base, to)).unwrap();
        }
        builder = builder.header(k, v);
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    builder.body(Body::from(bytes)).unwrap()
}

fn status(code: StatusCode, body: &str) -> Response {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// The ECR registry API played in front of a real registry.
pub struct EcrFake {
    state: Arc<FakeState>,
    host: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

struct FakeState {
    upstream: String,
    own: String,
    moto_url: String,
    password: String,
    http: reqwest::Client,
    /// Authorized requests left before the password "expires"; 0: never.
    expire_after: AtomicUsize,
    /// Expired: refused until `GetAuthorizationToken` is called again.
    expired: AtomicBool,
    calls_at_expiry: AtomicUsize,
    token_calls: Arc<AtomicUsize>,
    /// Requests refused because the password had expired.
    pub refused_expired: AtomicUsize,
    /// Answers given, as (method, path, status).
    log: Mutex<Vec<(String, String, u16)>>,
}

impl EcrFake {
    /// Put the fake in front of `registry`, accepting moto's password.
    pub async fn start(moto: &Moto, registry: &TestRegistry) -> EcrFake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let state = Arc::new(FakeState {
            upstream: registry.base_url().trim_end_matches('/').to_string(),
            own: format!("http://{host}"),
            moto_url: moto.moto_url.clone(),
            password: moto.issued_password().await,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            expire_after: AtomicUsize::new(0),
            expired: AtomicBool::new(false),
            calls_at_expiry: AtomicUsize::new(0),
            token_calls: moto.token_calls.clone(),
            refused_expired: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        });
        let router = Router::new().fallback(ecr_answer).with_state(state.clone());
        let stop = serve_until_dropped(listener, router);
        EcrFake {
            state,
            host,
            _stop: stop,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// After `n` more authorized requests, the password expires: refused
    /// until regmirror asks moto for a new one.
    pub fn expire_after(&self, n: usize) {
        self.state.expire_after.store(n, Ordering::SeqCst);
    }

    /// Requests refused because the password had expired.
    pub fn refused_expired(&self) -> usize {
        self.state.refused_expired.load(Ordering::SeqCst)
    }

    /// Answers given, as (method, path, status).
    pub fn log(&self) -> Vec<(String, String, u16)> {
        self.state.log.lock().unwrap().clone()
    }
}

async fn ecr_answer(State(s): State<Arc<FakeState>>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let resp = judge(&s, req).await;
    s.log
        .lock()
        .unwrap()
        .push((method, path, resp.status().as_u16()));
    resp
}

fn unauthorized() -> Response {
    let mut r = status(
        StatusCode::UNAUTHORIZED,
        r#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}"#,
    );
    r.headers_mut().insert(
        "www-authenticate",
        HeaderValue::from_static(r#"Basic realm="https://ecr.fake/",service="ecr.amazonaws.com""#),
    );
    r
}

/// Whether the request carries `AWS:<password>` and the password is valid now.
fn authorized(s: &FakeState, req: &Request) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", s.password))
    );
    let sent = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if sent != Some(expected.as_str()) {
        return false;
    }
    if s.expired.load(Ordering::SeqCst) {
        if s.token_calls.load(Ordering::SeqCst) > s.calls_at_expiry.load(Ordering::SeqCst) {
            s.expired.store(false, Ordering::SeqCst);
        } else {
            s.refused_expired.fetch_add(1, Ordering::SeqCst);
            return false;
        }
    }
    let left = s.expire_after.load(Ordering::SeqCst);
    if left == 1 {
        s.calls_at_expiry
            .store(s.token_calls.load(Ordering::SeqCst), Ordering::SeqCst);
        s.expired.store(true, Ordering::SeqCst);
    }
    if left > 0 {
        s.expire_after.store(left - 1, Ordering::SeqCst);
    }
    true
}

async fn judge(s: &FakeState, req: Request) -> Response {
    if !authorized(s, &req) {
        return unauthorized();
    }
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/v2/").filter(|r| !r.is_empty()) else {
        return forward(&s.http, &s.upstream, req, Some(&s.own)).await;
    };
    let Some((name, kind, reference)) = split_api_path(rest) else {
        return forward(&s.http, &s.upstream, req, Some(&s.own)).await;
    };
    let (code, described) = ecr_call(
        &s.moto_url,
        "DescribeRepositories",
        serde_json::json!({"repositoryNames": [name]}),
    )
    .await;
    if code != 200 {
        return status(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"errors":[{"code":"NAME_UNKNOWN","message":format!(
                "The repository with name '{name}' does not exist in the registry with id '{ACCOUNT}'"
            )}]})
            .to_string(),
        );
    }
    let immutable = described["repositories"][0]["imageTagMutability"] == "IMMUTABLE";
    if immutable
        && kind == "manifests"
        && req.method() == "PUT"
        && !reference.starts_with("sha256:")
    {
        let head = s
            .http
            .head(format!("{}/v2/{name}/manifests/{reference}", s.upstream))
            .header("accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json")
            .send()
            .await;
        if head.is_ok_and(|r| r.status().is_success()) {
            return status(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"errors":[{"code":"TAG_INVALID","message":format!(
                    "The image tag '{reference}' already exists in the '{name}' repository and cannot be overwritten because the tag is immutable."
                )}]})
                .to_string(),
            );
        }
    }
    forward(&s.http, &s.upstream, req, Some(&s.own)).await
}

/// `name/with/slashes/manifests/ref` -> (name, "manifests", ref); also
/// blobs, tags and uploads.
fn split_api_path(rest: &str) -> Option<(String, String, String)> {
    for kind in ["/manifests/", "/blobs/uploads", "/blobs/", "/tags/"] {
        if let Some(i) = rest.rfind(kind) {
            let name = &rest[..i];
            let reference = rest[i + kind.len()..].trim_start_matches('/');
            let kind = kind.trim_matches('/').split('/').next().unwrap_or("");
            return Some((name.to_string(), kind.to_string(), reference.to_string()));
        }
    }
    None
}
