//! A proxy that plays the documented request rules of registries that
//! cannot run here (ACR, ECR, Artifact Registry, a registry behind a stock
//! nginx, a registry that announces `OCI-Chunk-Min-Length`) in front of a
//! real `docker-registry`.
//!
//! It exists because distribution 2.8 accepts every upload shape: a
//! monolithic `PUT` of any size, `Transfer-Encoding: chunked`, a body-less
//! `POST` without `Content-Length`, parts of any size. Each rule below names
//! where it is documented; the proxy refuses what that registry refuses, with
//! that registry's status and words, and forwards everything else unchanged
//! (streaming, `Location` rewritten to the proxy). It also counts the body
//! bytes that pass each way, so tests can tell how much a retry resent.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::sync::oneshot;

use super::proxy::is_hop_by_hop;

/// 20 MiB: the largest upload body ACR accepted in the reports below.
pub const ACR_MAX_BODY: u64 = 20 * 1024 * 1024;
/// nginx's default `client_max_body_size` (1m).
pub const NGINX_MAX_BODY: u64 = 1024 * 1024;
/// ECR's smallest upload part but the last.
pub const ECR_MIN_PART: u64 = 5 * 1024 * 1024;
/// The account ID in ECR's answers (moto's, for symmetry with the ECR API tests).
pub const ECR_ACCOUNT: &str = "123456789012";

/// The rule set a [`RulesProxy`] enforces.
#[derive(Clone, Debug, PartialEq)]
pub enum Rules {
    /// Azure Container Registry (goharbor/harbor issue #23015 and PR #23016):
    /// an upload body above about 20 MB is answered
    /// `413 Request Entity Too Large - AzureContainerRegistry`; a `PATCH` or
    /// `PUT` sent with `Transfer-Encoding: chunked` is answered 400
    /// `CONTENT_LENGTH_INVALID`.
    Acr,
    /// Amazon ECR: every upload part except the last must be at least 5 MiB
    /// ("All layer parts except the last part should be at least 5MB",
    /// dotnet/sdk-container-builds #424, dotnet/sdk PR #33019), checked when
    /// the upload completes; a `PATCH` is answered 201 where the spec says
    /// 202; a repository that was not created answers `NAME_UNKNOWN`
    /// (ECR's "RepositoryNotFoundException"; create with
    /// [`RulesProxy::create_repository`]).
    Ecr,
    /// Google Artifact Registry: a body-less upload `POST` without
    /// `Content-Length` is answered `411 Length Required` with an HTML page
    /// (oras-project/rust-oci-client PR #176).
    Gar,
    /// A registry behind a stock nginx: `client_max_body_size` defaults to
    /// 1 MiB, larger request bodies get nginx's 413 HTML page
    /// (nginx documentation, `client_max_body_size`).
    Nginx,
    /// A registry that announces `OCI-Chunk-Min-Length: N` on the upload
    /// session (OCI distribution spec 1.1, "Pushing a blob in chunks") and
    /// refuses, when the upload completes, a part but the last that is
    /// smaller.
    ChunkMin(u64),
    /// No rule: everything is forwarded and counted (the source side of
    /// the resume tests).
    Plain,
}

/// A broken transfer the proxy plays once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cut {
    /// The upload body (`PATCH`/`PUT` under `/blobs/uploads/`) during which
    /// the upload bytes received so far pass `after` is not forwarded, and
    /// its connection is closed mid-answer.
    Upload { after: u64 },
    /// The first blob GET whose body is larger than `after` bytes is cut
    /// after `after` bytes.
    BlobGet { after: u64 },
}

/// A request the proxy refused, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub reason: String,
}

struct ProxyState {
    rules: Rules,
    upstream: String,
    self_base: String,
    client: reqwest::Client,
    created: Mutex<HashSet<String>>,
    /// Part sizes of each open upload session, by the session's path.
    parts: Mutex<HashMap<String, Vec<u64>>>,
    refusals: Mutex<Vec<Refusal>>,
    requests: Mutex<Vec<(String, String)>>,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    /// Upload body bytes received, refused or not.
    bytes_received: AtomicU64,
    cut: Mutex<Option<Cut>>,
    /// Body bytes (received for uploads, sent for GETs) after the cut fired.
    after_cut: AtomicU64,
    cut_fired: std::sync::atomic::AtomicBool,
    /// Text of a `Warning: 299 - "…"` header added to every answer.
    warning: Mutex<Option<String>>,
    /// How upload `Location` headers are passed on.
    locations: Mutex<Locations>,
    /// Monolithic upload `PUT`s still to be answered 500 (not forwarded).
    fail_puts: AtomicU64,
}

/// How the proxy passes on the upload `Location` headers of the registry.
/// distribution 2.8 sends absolute URLs (built from the request's host);
/// other registries send paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Locations {
    /// Absolute URLs naming the proxy (the registry's own form).
    #[default]
    Absolute,
    /// Paths with their query, without scheme and host.
    Relative,
}

/// A running rules proxy; stops when dropped.
pub struct RulesProxy {
    state: Arc<ProxyState>,
    addr: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RulesProxy {
    /// Starts a proxy playing `rules` in front of `upstream_base_url`.
    pub async fn start(upstream_base_url: &str, rules: Rules) -> RulesProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the rules proxy to 127.0.0.1:0");
        let addr = listener.local_addr().expect("rules proxy local address");
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(true)
            .build()
            .expect("building the rules proxy's upstream client");
        let state = Arc::new(ProxyState {
            rules,
            upstream: upstream_base_url.trim_end_matches('/').to_string(),
            self_base: format!("http://{addr}"),
            client,
            created: Mutex::new(HashSet::new()),
            parts: Mutex::new(HashMap::new()),
            refusals: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            cut: Mutex::new(None),
            after_cut: AtomicU64::new(0),
            cut_fired: std::sync::atomic::AtomicBool::new(false),
            warning: Mutex::new(None),
            locations: Mutex::new(Locations::default()),
            fail_puts: AtomicU64::new(0),
        });
        let router = Router::new().fallback(handle).with_state(state.clone());
        let tx = super::serve_until_dropped(listener, router);
        RulesProxy {
            state,
            addr,
            shutdown: Some(tx),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.state.self_base.clone()
    }

    /// ECR: makes `repository` exist (as `CreateRepository` would).
    pub fn create_repository(&self, repository: &str) {
        lock(&self.state.created).insert(repository.to_string());
    }

    /// Requests refused so far.
    pub fn refusals(&self) -> Vec<Refusal> {
        lock(&self.state.refusals).clone()
    }

    /// Every request seen, as (method, path without query).
    pub fn requests(&self) -> Vec<(String, String)> {
        lock(&self.state.requests).clone()
    }

    /// Request body bytes forwarded to the registry.
    pub fn bytes_up(&self) -> u64 {
        self.state.bytes_up.load(Ordering::SeqCst)
    }

    /// Response body bytes sent back to the client.
    pub fn bytes_down(&self) -> u64 {
        self.state.bytes_down.load(Ordering::SeqCst)
    }

    /// Upload body bytes received from the client (refused ones included).
    pub fn bytes_received(&self) -> u64 {
        self.state.bytes_received.load(Ordering::SeqCst)
    }

    /// Plays `cut` once, from now on.
    pub fn cut(&self, cut: Cut) {
        *lock(&self.state.cut) = Some(cut);
        self.state.cut_fired.store(false, Ordering::SeqCst);
        self.state.after_cut.store(0, Ordering::SeqCst);
    }

    /// Adds `Warning: 299 - "<text>"` to every answer from now on.
    pub fn warn(&self, text: &str) {
        *lock(&self.state.warning) = Some(text.to_string());
    }

    /// Passes on upload `Location` headers as `style` from now on.
    pub fn locations(&self, style: Locations) {
        *lock(&self.state.locations) = style;
    }

    /// Answers the next `n` upload `PUT`s that carry a body with HTTP 500
    /// (their bodies read, nothing forwarded).
    pub fn fail_body_puts(&self, n: u64) {
        self.state.fail_puts.store(n, Ordering::SeqCst);
    }

    /// Whether the cut happened.
    pub fn cut_fired(&self) -> bool {
        self.state.cut_fired.load(Ordering::SeqCst)
    }

    /// Body bytes that passed (upload bytes received, blob bytes sent)
    /// after the cut: what the retry transferred again, and the rest.
    pub fn bytes_after_cut(&self) -> u64 {
        self.state.after_cut.load(Ordering::SeqCst)
    }
}

impl Drop for RulesProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A refusal answer: `body` with `content_type`.
fn answer(status: u16, content_type: &str, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .expect("static response parts are valid")
}

fn registry_error(status: u16, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    answer(status, "application/json", body.to_string())
}

/// The repository name of a `/v2/<name>/(manifests|blobs|tags|referrers)/…` path.
fn repository_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    ["/manifests/", "/blobs/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .map(|i| &rest[..i])
}

fn is_upload(path: &str) -> bool {
    path.contains("/blobs/uploads/")
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn is_chunked(headers: &HeaderMap) -> bool {
    headers
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

/// Counts received upload body bytes (and those after the cut).
fn count_received(st: &ProxyState, n: u64) {
    st.bytes_received.fetch_add(n, Ordering::SeqCst);
    if st.cut_fired.load(Ordering::SeqCst) {
        st.after_cut.fetch_add(n, Ordering::SeqCst);
    }
}

/// Whether the upload cut fires now (once).
fn upload_cut_due(st: &ProxyState) -> bool {
    let Some(Cut::Upload { after }) = *lock(&st.cut) else {
        return false;
    };
    st.bytes_received.load(Ordering::SeqCst) > after && !st.cut_fired.swap(true, Ordering::SeqCst)
}

/// An answer whose connection closes before its body ends.
fn cut_answer() -> Response {
    let body = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(b"{"))]);
    Response::builder()
        .status(502)
        .header(header::CONTENT_LENGTH, "64")
        .body(Body::from_stream(super::proxy::truncate_then_fail(body, 1)))
        .expect("static response parts are valid")
}

/// The rules that can be decided from the request line and headers alone.
fn refuse_early(
    st: &ProxyState,
    method: &str,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    let length = declared_length(headers);
    match &st.rules {
        Rules::Gar
            if method == "POST" && is_upload(path) && length.is_none() && !is_chunked(headers) =>
        {
            Some(answer(
                411,
                "text/html; charset=UTF-8",
                "<!DOCTYPE html>\n<html lang=en><title>Error 411 (Length Required)!!1</title>\
                 <p><b>411.</b> <ins>That's an error.</ins><p>POST requests require a \
                 <code>Content-length</code> header. <ins>That's all we know.</ins>"
                    .to_string(),
            ))
        }
        Rules::Acr
            if (method == "PATCH" || method == "PUT") && is_upload(path) && is_chunked(headers) =>
        {
            Some(registry_error(
                400,
                "CONTENT_LENGTH_INVALID",
                "chunked transfer encoding is not supported; send Content-Length",
            ))
        }
        Rules::Acr if length.is_some_and(|n| n > ACR_MAX_BODY) => Some(acr_too_large()),
        Rules::Nginx if length.is_some_and(|n| n > NGINX_MAX_BODY) => Some(nginx_too_large()),
        Rules::Ecr => {
            let repo = repository_of(path)?;
            if lock(&st.created).contains(repo) {
                return None;
            }
            Some(registry_error(
                404,
                "NAME_UNKNOWN",
                &format!(
                    "The repository with name '{repo}' does not exist in the registry with id '{ECR_ACCOUNT}'"
                ),
            ))
        }
        _ => None,
    }
}

fn acr_too_large() -> Response {
    answer(
        413,
        "text/plain",
        "413 Request Entity Too Large - AzureContainerRegistry".to_string(),
    )
}

fn nginx_too_large() -> Response {
    answer(
        413,
        "text/html",
        "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n\
         <center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n\
         </body>\r\n</html>\r\n"
            .to_string(),
    )
}

/// The body cap of rule sets that refuse large bodies, for bodies whose
/// length is not declared up front.
fn body_cap(rules: &Rules) -> Option<(u64, fn() -> Response)> {
    match rules {
        Rules::Acr => Some((ACR_MAX_BODY, acr_too_large)),
        Rules::Nginx => Some((NGINX_MAX_BODY, nginx_too_large)),
        _ => None,
    }
}

/// The smallest part but the last that the rule set allows.
fn min_part(rules: &Rules) -> Option<u64> {
    match rules {
        Rules::Ecr => Some(ECR_MIN_PART),
        Rules::ChunkMin(n) => Some(*n),
        _ => None,
    }
}

/// The upload session a path belongs to (`/v2/<name>/blobs/uploads/<id>`).
fn session_of(path: &str) -> Option<String> {
    let i = path.find("/blobs/uploads/")?;
    let id = &path[i + "/blobs/uploads/".len()..];
    (!id.is_empty()).then(|| path.to_string())
}

/// Records a part of an upload session; at completion (`PUT`), refuses the
/// upload when a part but the last is under the minimum.
fn check_parts(st: &ProxyState, method: &str, path: &str, len: u64) -> Option<Response> {
    let min = min_part(&st.rules)?;
    let session = session_of(path)?;
    let mut parts = lock(&st.parts);
    let list = parts.entry(session.clone()).or_default();
    if len > 0 || method == "PATCH" {
        list.push(len);
    }
    if method != "PUT" {
        return None;
    }
    let list = parts.remove(&session).unwrap_or_default();
    let (_, all_but_last) = list.split_last()?;
    let small = all_but_last.iter().find(|n| **n < min)?;
    let message = match st.rules {
        Rules::Ecr => format!(
            "All layer parts except the last part should be at least 5MB (a part of {small} bytes)"
        ),
        _ => format!("a chunk of {small} bytes is under OCI-Chunk-Min-Length {min}"),
    };
    Some(registry_error(400, "BLOB_UPLOAD_INVALID", &message))
}

async fn handle(State(st): State<Arc<ProxyState>>, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    lock(&st.requests).push((method.clone(), path.clone()));
    if let Some(refused) = refuse_early(&st, &method, &path, req.headers()) {
        return refuse(&st, &method, &path, req, refused).await;
    }
    let (parts, body) = req.into_parts();
    let body = match read_body(&st, body, &parts.headers).await {
        Ok(b) => b,
        Err(refused) => {
            record(&st, &method, &path, &refused);
            return refused;
        }
    };
    let len = body.as_ref().map_or(0, |b| b.len() as u64);
    if method == "PUT"
        && is_upload(&path)
        && len > 0
        && st
            .fail_puts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        let failed = registry_error(500, "UNKNOWN", "the storage backend failed");
        record(&st, &method, &path, &failed);
        return failed;
    }
    if let Some(refused) = check_parts(&st, &method, &path, len) {
        record(&st, &method, &path, &refused);
        return refused;
    }
    forward(&st, parts, body).await
}

async fn refuse(st: &ProxyState, method: &str, path: &str, req: Request, r: Response) -> Response {
    record(st, method, path, &r);
    let mut s = req.into_body().into_data_stream();
    while let Some(Ok(_)) = s.next().await {}
    r
}

fn record(st: &ProxyState, method: &str, path: &str, r: &Response) {
    lock(&st.refusals).push(Refusal {
        method: method.to_string(),
        path: path.to_string(),
        status: r.status().as_u16(),
        reason: format!("{:?}", st.rules),
    });
}

/// The request body, read whole (test bodies are at most tens of MiB);
/// `None` when the request has none. Over the rule set's cap: its 413.
async fn read_body(
    st: &ProxyState,
    body: Body,
    headers: &HeaderMap,
) -> Result<Option<Bytes>, Response> {
    if declared_length(headers).unwrap_or(0) == 0 && !is_chunked(headers) {
        return Ok(None);
    }
    let cap = body_cap(&st.rules);
    let mut buf = BytesMut::new();
    let mut stream = body.into_data_stream();
    let mut over = false;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Err(registry_error(
                400,
                "BLOB_UPLOAD_INVALID",
                "the request body broke off",
            ));
        };
        if over {
            continue;
        }
        count_received(st, chunk.len() as u64);
        if upload_cut_due(st) {
            return Err(cut_answer());
        }
        buf.extend_from_slice(&chunk);
        if cap.is_some_and(|(max, _)| buf.len() as u64 > max) {
            over = true;
            buf.clear();
        }
    }
    if over {
        return Err(cap
            .map(|(_, too_large)| too_large())
            .expect("over only with a cap"));
    }
    st.bytes_up.fetch_add(buf.len() as u64, Ordering::SeqCst);
    Ok(Some(buf.freeze()))
}

async fn forward(
    st: &Arc<ProxyState>,
    parts: axum::http::request::Parts,
    body: Option<Bytes>,
) -> Response {
    let path_and_query = parts.uri.path_and_query().map_or_else(
        || parts.uri.path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    let url = format!("{}{}", st.upstream, path_and_query);
    let mut rb = st.client.request(parts.method.clone(), &url);
    for (name, value) in parts.headers.iter() {
        if name == header::HOST || name == header::CONTENT_LENGTH || is_hop_by_hop(name) {
            continue;
        }
        rb = rb.header(name, value);
    }
    if let Some(body) = body {
        rb = rb.body(body);
    } else if parts.headers.contains_key(header::CONTENT_LENGTH) {
        rb = rb.header(header::CONTENT_LENGTH, "0");
    }
    let upstream = match rb.send().await {
        Ok(r) => r,
        Err(e) => {
            return registry_error(
                502,
                "UNKNOWN",
                &format!("rules proxy could not reach {url}: {e}"),
            );
        }
    };
    respond(st, parts.method.as_str(), upstream)
}

/// The byte count after which this blob GET answer is cut, when the blob
/// cut is due (once).
fn blob_get_cut_due(st: &ProxyState, method: &str, upstream: &reqwest::Response) -> Option<u64> {
    let Some(Cut::BlobGet { after }) = *lock(&st.cut) else {
        return None;
    };
    let is_blob = upstream.url().path().contains("/blobs/sha256:");
    let large = upstream.content_length().is_some_and(|n| n > after);
    (method == "GET" && is_blob && large && !st.cut_fired.swap(true, Ordering::SeqCst))
        .then_some(after)
}

fn respond(st: &Arc<ProxyState>, method: &str, upstream: reqwest::Response) -> Response {
    let mut status = upstream.status().as_u16();
    if st.rules == Rules::Ecr && method == "PATCH" && status == 202 {
        status = 201;
    }
    let mut builder = Response::builder().status(status);
    for (name, value) in upstream.headers().iter() {
        if is_hop_by_hop(name) {
            continue;
        }
        if name == header::LOCATION
            && let Ok(loc) = value.to_str()
            && let Some(rest) = loc.strip_prefix(&st.upstream)
            && let Ok(v) = HeaderValue::from_str(&match *lock(&st.locations) {
                Locations::Absolute => format!("{}{}", st.self_base, rest),
                Locations::Relative => rest.to_string(),
            })
        {
            builder = builder.header(name, v);
            continue;
        }
        builder = builder.header(name, value);
    }
    if let Rules::ChunkMin(n) = st.rules
        && method == "POST"
        && status == 202
    {
        builder = builder.header("OCI-Chunk-Min-Length", n.to_string());
    }
    if let Some(text) = lock(&st.warning).as_deref()
        && let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\""))
    {
        builder = builder.header(header::WARNING, v);
    }
    let cut_after = blob_get_cut_due(st, method, &upstream);
    let counter = st.clone();
    let stream = upstream
        .bytes_stream()
        .map_err(std::io::Error::other)
        .map_ok(move |c| {
            counter
                .bytes_down
                .fetch_add(c.len() as u64, Ordering::SeqCst);
            if counter.cut_fired.load(Ordering::SeqCst) && cut_after.is_none() {
                counter
                    .after_cut
                    .fetch_add(c.len() as u64, Ordering::SeqCst);
            }
            c
        });
    let body = match cut_after {
        Some(after) => Body::from_stream(super::proxy::truncate_then_fail(stream, after)),
        None => Body::from_stream(stream),
    };
    builder
        .body(body)
        .unwrap_or_else(|e| registry_error(502, "UNKNOWN", &format!("rules proxy: {e}")))
}
