//! A streaming HTTP proxy on 127.0.0.1 in front of one registry: it records
//! every request and injects faults following a deterministic [`FaultPlan`].
//!
//! Requests are forwarded with method, path, query, headers and a streamed
//! body; responses stream back. `Location` headers pointing at the upstream are
//! rewritten to the proxy so uploads keep going through it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use regex::Regex;
use tokio::sync::oneshot;

use super::image::splitmix64;

/// What the proxy does to a request chosen by a [`FaultRule`].
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer this status (e.g. 500, 503) without contacting the upstream.
    Status(u16),
    /// Answer 429 with `Retry-After: retry_after_secs` without contacting the upstream.
    TooManyRequests { retry_after_secs: u64 },
    /// Forward, then send the headers (with the upstream `Content-Length`) and
    /// about half of the body, then close the connection. Only meaningful for
    /// responses with a body (not HEAD).
    DropMidBody,
    /// Forward, but flip one byte in the middle of the response body, keeping
    /// `Content-Length` (meant for blob GETs).
    CorruptBody,
    /// Wait this long, then forward normally.
    Stall(Duration),
}

/// When a rule fires among the requests it matches.
#[derive(Clone, Debug)]
pub enum Trigger {
    /// Only the Nth matching request (1-based).
    Nth(usize),
    /// The first N matching requests.
    FirstN(usize),
    /// Every matching request.
    Always,
    /// Each matching request with this probability, drawn from the plan's seed.
    Probability(f64),
}

/// One fault rule: requests with `method` (any if `None`) whose path matches `path`.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub method: Option<String>,
    pub path: Regex,
    pub trigger: Trigger,
    pub fault: Fault,
}

/// Deterministic list of fault rules. The first rule that fires for a request wins;
/// every rule whose method/path match counts the request.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    pub seed: u64,
    pub rules: Vec<FaultRule>,
}

impl FaultPlan {
    /// No faults: a pure counting proxy.
    pub fn none() -> FaultPlan {
        FaultPlan::default()
    }

    pub fn seeded(seed: u64) -> FaultPlan {
        FaultPlan {
            seed,
            rules: Vec::new(),
        }
    }

    /// Adds a rule. `path_regex` is matched against the path (no query).
    /// Panics on an invalid regex (test input).
    pub fn rule(
        mut self,
        method: Option<&str>,
        path_regex: &str,
        trigger: Trigger,
        fault: Fault,
    ) -> Self {
        let path = Regex::new(path_regex)
            .unwrap_or_else(|e| panic!("fault rule path regex {path_regex:?} is invalid: {e}"));
        self.rules.push(FaultRule {
            method: method.map(|m| m.to_ascii_uppercase()),
            path,
            trigger,
            fault,
        });
        self
    }

    pub fn nth(self, method: &str, path_regex: &str, n: usize, fault: Fault) -> Self {
        self.rule(Some(method), path_regex, Trigger::Nth(n), fault)
    }

    pub fn first(self, method: &str, path_regex: &str, n: usize, fault: Fault) -> Self {
        self.rule(Some(method), path_regex, Trigger::FirstN(n), fault)
    }

    pub fn always(self, method: &str, path_regex: &str, fault: Fault) -> Self {
        self.rule(Some(method), path_regex, Trigger::Always, fault)
    }

    pub fn probability(self, method: Option<&str>, path_regex: &str, p: f64, fault: Fault) -> Self {
        self.rule(method, path_regex, Trigger::Probability(p), fault)
    }
}

struct PlanState {
    plan: FaultPlan,
    counters: Vec<usize>,
    rng: u64,
}

impl PlanState {
    fn new(plan: FaultPlan) -> PlanState {
        PlanState {
            counters: vec![0; plan.rules.len()],
            rng: plan.seed,
            plan,
        }
    }

    fn decide(&mut self, method: &str, path: &str) -> Option<Fault> {
        let mut chosen = None;
        for (i, rule) in self.plan.rules.iter().enumerate() {
            if rule.method.as_deref().is_some_and(|m| m != method) || !rule.path.is_match(path) {
                continue;
            }
            self.counters[i] += 1;
            let n = self.counters[i];
            let fires = match rule.trigger {
                Trigger::Nth(k) => n == k,
                Trigger::FirstN(k) => n <= k,
                Trigger::Always => true,
                Trigger::Probability(p) => {
                    let r = (splitmix64(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64;
                    r < p
                }
            };
            if fires && chosen.is_none() {
                chosen = Some(rule.fault.clone());
            }
        }
        chosen
    }
}

/// A fault the proxy injected.
#[derive(Clone, Debug, PartialEq)]
pub struct InjectedFault {
    pub method: String,
    pub path: String,
    pub fault: Fault,
}

struct ProxyState {
    upstream: String,
    self_base: String,
    client: reqwest::Client,
    plan: Mutex<PlanState>,
    requests: Mutex<Vec<(String, String)>>,
    /// (basic-auth user, method, path) of every request, in arrival order.
    users: Mutex<Vec<(Option<String>, String, String)>>,
    injected: Mutex<Vec<InjectedFault>>,
}

/// A running proxy; stops when dropped.
pub struct TestProxy {
    state: Arc<ProxyState>,
    addr: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for TestProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestProxy")
            .field("base_url", &self.base_url())
            .field("upstream", &self.state.upstream)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TestProxy {
    /// Starts a proxy forwarding to `upstream_base_url` (http or https; upstream
    /// certificates are not verified). Needs a Tokio runtime.
    pub async fn start(upstream_base_url: &str, plan: FaultPlan) -> TestProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the test proxy to 127.0.0.1:0");
        let addr = listener.local_addr().expect("proxy local address");
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(true)
            .build()
            .expect("building the proxy's upstream client");
        let state = Arc::new(ProxyState {
            upstream: upstream_base_url.trim_end_matches('/').to_string(),
            self_base: format!("http://{addr}"),
            client,
            plan: Mutex::new(PlanState::new(plan)),
            requests: Mutex::new(Vec::new()),
            users: Mutex::new(Vec::new()),
            injected: Mutex::new(Vec::new()),
        });
        let router = Router::new().fallback(handle).with_state(state.clone());
        let tx = super::serve_until_dropped(listener, router);
        TestProxy {
            state,
            addr,
            shutdown: Some(tx),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.state.self_base.clone()
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request seen, as (method, path without query), in arrival order.
    pub fn requests(&self) -> Vec<(String, String)> {
        lock(&self.state.requests).clone()
    }

    /// Every request seen, as (HTTP basic-auth user name if any, method, path
    /// without query), in arrival order: tells apart clients that share the
    /// proxy with different credentials.
    pub fn requests_with_user(&self) -> Vec<(Option<String>, String, String)> {
        lock(&self.state.users).clone()
    }

    /// Requests with `method` whose path starts with `path_prefix`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        lock(&self.state.requests)
            .iter()
            .filter(|(m, p)| m.eq_ignore_ascii_case(method) && p.starts_with(path_prefix))
            .count()
    }

    /// Requests with `method` whose path matches `path_regex`.
    pub fn count_matching(&self, method: &str, path_regex: &str) -> usize {
        let re = Regex::new(path_regex)
            .unwrap_or_else(|e| panic!("count_matching regex {path_regex:?} is invalid: {e}"));
        lock(&self.state.requests)
            .iter()
            .filter(|(m, p)| m.eq_ignore_ascii_case(method) && re.is_match(p))
            .count()
    }

    /// Forgets recorded requests and injected faults (the plan's counters stay).
    pub fn reset(&self) {
        lock(&self.state.requests).clear();
        lock(&self.state.users).clear();
        lock(&self.state.injected).clear();
    }

    /// Replaces the fault plan (counters restart from zero).
    pub fn set_plan(&self, plan: FaultPlan) {
        *lock(&self.state.plan) = PlanState::new(plan);
    }

    /// Faults injected so far.
    pub fn injected(&self) -> Vec<InjectedFault> {
        lock(&self.state.injected).clone()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub(super) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The user name of an `Authorization: Basic` header.
fn basic_user(headers: &axum::http::HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(
        text.split_once(':')
            .map_or(text.as_str(), |(u, _)| u)
            .to_string(),
    )
}

fn plain(status: StatusCode, msg: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::json!({"errors": [{"code": "UNKNOWN", "message": msg}]}).to_string(),
        ))
        .expect("static response parts are valid")
}

async fn handle(State(st): State<Arc<ProxyState>>, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    lock(&st.requests).push((method.clone(), path.clone()));
    lock(&st.users).push((basic_user(req.headers()), method.clone(), path.clone()));
    let fault = lock(&st.plan).decide(&method, &path);
    if let Some(f) = &fault {
        lock(&st.injected).push(InjectedFault {
            method: method.clone(),
            path: path.clone(),
            fault: f.clone(),
        });
    }

    match &fault {
        Some(Fault::Status(code)) => {
            drain(req).await;
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return plain(status, format!("injected fault: status {code}"));
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            drain(req).await;
            let mut r = plain(
                StatusCode::TOO_MANY_REQUESTS,
                "injected fault: too many requests".to_string(),
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&retry_after_secs.to_string())
                    .expect("digits are a valid header"),
            );
            return r;
        }
        Some(Fault::Stall(d)) => tokio::time::sleep(*d).await,
        _ => {}
    }

    let has_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let (parts, body) = req.into_parts();
    let url = format!("{}{}", st.upstream, path_and_query);
    let mut rb = st.client.request(parts.method.clone(), &url);
    for (name, value) in parts.headers.iter() {
        if name == header::HOST || is_hop_by_hop(name) {
            continue;
        }
        rb = rb.header(name, value);
    }
    if has_body {
        rb = rb.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let upstream = match rb.send().await {
        Ok(r) => r,
        Err(e) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                format!("proxy could not reach upstream {url}: {e}"),
            );
        }
    };

    let mut builder = Response::builder().status(upstream.status().as_u16());
    let content_length = upstream.content_length();
    for (name, value) in upstream.headers().iter() {
        if is_hop_by_hop(name) {
            continue;
        }
        if name == header::LOCATION
            && let Ok(loc) = value.to_str()
            && let Some(rest) = loc.strip_prefix(&st.upstream)
        {
            let rewritten = format!("{}{}", st.self_base, rest);
            if let Ok(v) = HeaderValue::from_str(&rewritten) {
                builder = builder.header(name, v);
                continue;
            }
        }
        builder = builder.header(name, value);
    }
    let stream = upstream.bytes_stream().map_err(std::io::Error::other);
    let body = match fault {
        Some(Fault::DropMidBody) => {
            let limit = content_length.map(|l| (l / 2).max(1)).unwrap_or(1);
            Body::from_stream(truncate_then_fail(stream, limit))
        }
        Some(Fault::CorruptBody) => {
            let at = content_length.map(|l| l / 2).unwrap_or(0);
            Body::from_stream(corrupt_at(stream, at))
        }
        _ => Body::from_stream(stream),
    };
    builder.body(body).unwrap_or_else(|e| {
        plain(
            StatusCode::BAD_GATEWAY,
            format!("proxy could not rebuild the upstream response: {e}"),
        )
    })
}

async fn drain(req: Request) {
    let mut s = req.into_body().into_data_stream();
    while let Some(Ok(_)) = s.next().await {}
}

type IoStream = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Passes `limit` bytes through, pauses so they reach the client, then fails
/// (which makes the server close the connection mid-body).
pub(super) fn truncate_then_fail(
    inner: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    limit: u64,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let inner: IoStream = Box::pin(inner);
    futures_util::stream::unfold(
        (inner, 0u64, false),
        move |(mut s, sent, done)| async move {
            if done {
                return None;
            }
            if sent >= limit {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Some((
                    Err(std::io::Error::other(
                        "injected fault: connection dropped mid-body",
                    )),
                    (s, sent, true),
                ));
            }
            match s.next().await {
                Some(Ok(chunk)) => {
                    let room = (limit - sent) as usize;
                    if chunk.len() > room {
                        Some((Ok(chunk.slice(..room)), (s, limit, false)))
                    } else {
                        let n = chunk.len() as u64;
                        Some((Ok(chunk), (s, sent + n, false)))
                    }
                }
                Some(Err(e)) => Some((Err(e), (s, sent, true))),
                None => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((
                        Err(std::io::Error::other(
                            "injected fault: connection dropped mid-body",
                        )),
                        (s, sent, true),
                    ))
                }
            }
        },
    )
}

/// Flips (XOR 0xFF) the byte at offset `at` of the stream.
fn corrupt_at(
    inner: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    at: u64,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let mut offset = 0u64;
    inner.map(move |item| {
        let chunk = item?;
        let start = offset;
        offset += chunk.len() as u64;
        if at >= start && at < offset {
            let mut v = chunk.to_vec();
            v[(at - start) as usize] ^= 0xFF;
            Ok(Bytes::from(v))
        } else {
            Ok(chunk)
        }
    })
}
