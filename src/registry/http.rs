//! Per-registry HTTP transport: TLS, limits, authentication and retries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::{Mutex, Semaphore};
use url::Url;

use super::auth::{Challenge, Credentials, Scopes, Token, TokenResponse, parse_challenge};
use super::config::{RegistryConfig, TlsMode};
use super::error::{Error, Op, Result};
use super::escape::shown;
use super::limits::{Limits, MAX_TOKEN_BYTES, within};
use super::origin::{Destination, classify};
use super::reference::{api_host, is_loopback_host};
use super::transport::{ByteStream, RetryPolicy};
use crate::metrics;

/// The user agent sent to registries.
pub const USER_AGENT: &str = concat!("regmirror/", env!("CARGO_PKG_VERSION"));
const DEFAULT_MAX_CONCURRENT: usize = 32;
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Added to the blob idle timeout for the HTTP stack's own read timeout.
const READ_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);
/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// A request body.
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    /// Sent once: a request with a stream body is never retried here.
    Stream(ByteStream, u64),
}

/// One request to send.
pub(crate) struct Request {
    pub op: Op,
    /// What the request is about, for errors (`host/repo:tag`).
    pub target: String,
    /// The repository the request is about: same-origin URLs must stay
    /// under `/v2/<repo>/`.
    pub repo: String,
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Body,
    pub scopes: Scopes,
    /// Statuses handed back to the caller rather than turned into errors.
    pub pass_statuses: &'static [u16],
}

#[derive(Default)]
enum Scheme {
    #[default]
    Unknown,
    Anonymous,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Default)]
struct AuthState {
    scheme: Scheme,
    tokens: HashMap<Scopes, Token>,
}

/// State for one registry host.
pub(crate) struct Host {
    /// Registry name as in references.
    pub name: String,
    pub base: Url,
    http: reqwest::Client,
    limit: Semaphore,
    rate: Option<std::sync::Mutex<(Instant, Duration)>>,
    credentials: Credentials,
    auth: Mutex<AuthState>,
    retry: RetryPolicy,
    pub chunk_size: Option<u64>,
    /// Caps and deadlines of this registry.
    pub limits: Limits,
    /// The pull allowance of this registry and credential.
    pub pulls: super::ratelimit::PullBudget,
}

impl Host {
    pub fn new(
        name: &str,
        cfg: Option<&RegistryConfig>,
        docker_config: Option<&std::path::Path>,
        retry: &RetryPolicy,
        limits: &Limits,
        shared: &reqwest::Client,
    ) -> Result<Host> {
        let default_cfg = RegistryConfig {
            host: name.to_string(),
            ..Default::default()
        };
        let cfg = cfg.unwrap_or(&default_cfg);
        let cfg_err = |detail: String| Error::Config {
            host: name.to_string(),
            detail,
        };
        let tls = cfg.tls.unwrap_or(if is_loopback_host(name) {
            TlsMode::PlainHttp
        } else {
            TlsMode::Verify
        });
        let scheme = if tls == TlsMode::PlainHttp {
            "http"
        } else {
            "https"
        };
        let base = Url::parse(&format!("{scheme}://{}/", api_host(name)))
            .map_err(|e| cfg_err(format!("cannot form a URL for this host: {e}")))?;
        let shared_idle = limits.blob_idle_timeout;
        let limits = limits.overlaid(cfg);
        if let Err((key, message)) = cfg.check_numbers() {
            return Err(cfg_err(format!("{key}: {message}")));
        }
        // The shared client's read timeout follows the default idle timeout;
        // a registry with its own gets its own client.
        let custom = tls == TlsMode::SkipVerify
            || cfg.ca_file.is_some()
            || cfg.client_cert_file.is_some()
            || limits.blob_idle_timeout != shared_idle;
        let http = if custom {
            let mut b = client_builder(limits.blob_idle_timeout);
            if tls == TlsMode::SkipVerify {
                b = b.tls_danger_accept_invalid_certs(true);
            }
            if let Some(ca) = &cfg.ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| cfg_err(format!("cannot read ca_file {}: {e}", ca.display())))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    cfg_err(format!(
                        "ca_file {} holds no usable PEM certificate: {e}",
                        ca.display()
                    ))
                })?;
                b = b.tls_certs_merge(certs);
            }
            match (&cfg.client_cert_file, &cfg.client_key_file) {
                (Some(cert), Some(key)) => {
                    let mut pem = std::fs::read(cert).map_err(|e| {
                        cfg_err(format!(
                            "cannot read client_cert_file {}: {e}",
                            cert.display()
                        ))
                    })?;
                    pem.push(b'\n');
                    pem.extend(std::fs::read(key).map_err(|e| {
                        cfg_err(format!(
                            "cannot read client_key_file {}: {e}",
                            key.display()
                        ))
                    })?);
                    let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                        cfg_err(format!("client certificate or key is not usable PEM: {e}"))
                    })?;
                    b = b.identity(id);
                }
                (None, None) => {}
                _ => {
                    return Err(cfg_err(
                        "client_cert_file and client_key_file go together".into(),
                    ));
                }
            }
            b.build()
                .map_err(|e| cfg_err(format!("cannot build the HTTPS client: {e}")))?
        } else {
            shared.clone()
        };
        let credentials = super::credentials::resolve(
            name,
            Some(cfg),
            docker_config,
            super::credentials::Helpers::Run,
        )?
        .credentials;
        let rate = cfg
            .requests_per_second
            .filter(|r| *r > 0.0)
            .and_then(|r| Duration::try_from_secs_f64(1.0 / r).ok())
            .map(|gap| std::sync::Mutex::new((Instant::now(), gap)));
        let pulls = super::ratelimit::PullBudget::new(name, &credentials, cfg.pull_budget_floor);
        Ok(Host {
            pulls,
            name: name.to_string(),
            base,
            http,
            limit: Semaphore::new(
                cfg.max_concurrent_requests
                    .unwrap_or(DEFAULT_MAX_CONCURRENT)
                    .max(1),
            ),
            rate,
            credentials,
            auth: Mutex::new(AuthState::default()),
            retry: retry.clone(),
            chunk_size: cfg.chunk_size.filter(|c| *c > 0),
            limits,
        })
    }

    /// `https://host/v2/<repo>/<segments…>`, built from percent-encoded segments.
    pub fn url(&self, repo: &str, segments: &[&str]) -> Url {
        super::origin::registry_url(&self.base, repo, segments)
    }

    /// Check a URL a registry named (`Location`, `Link`) for a request about
    /// `repo`: `Err` when it must not be requested.
    pub fn check_url(&self, op: Op, target: &str, repo: &str, url: &Url, what: &str) -> Result<()> {
        classify(&self.base, repo, url)
            .map(|_| ())
            .map_err(|why| Error::BadResponse {
                op,
                target: target.to_string(),
                detail: format!(
                    "registry {} sent a {what} URL that regmirror refuses because {why}",
                    self.name
                ),
            })
    }

    async fn pace(&self) {
        let Some(rate) = &self.rate else { return };
        let wait = {
            let mut g = rate.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = g.0.max(now);
            g.0 = slot.checked_add(g.1).unwrap_or(slot);
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// The `Authorization` header for `scopes`, fetching a token when needed.
    async fn authorization(
        &self,
        op: Op,
        target: &str,
        scopes: &Scopes,
    ) -> Result<Option<HeaderValue>> {
        let mut state = self.auth.lock().await;
        match &state.scheme {
            Scheme::Unknown | Scheme::Anonymous => Ok(None),
            Scheme::Basic => Ok(self.basic_header()),
            Scheme::Bearer { realm, service } => {
                if let Some(t) = state.tokens.get(scopes)
                    && t.refresh_at > Instant::now()
                {
                    return Ok(Some(bearer(&t.value)));
                }
                let (realm, service) = (realm.clone(), service.clone());
                let token = self
                    .fetch_token(op, target, &realm, service.as_deref(), scopes)
                    .await?;
                let header = bearer(&token.value);
                state.tokens.insert(scopes.clone(), token);
                Ok(Some(header))
            }
        }
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        use base64::Engine as _;
        let (user, pass) = match &self.credentials {
            Credentials::Basic { username, password } => (username.as_str(), password.expose()),
            _ => return None,
        };
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        let mut v = HeaderValue::from_str(&format!("Basic {enc}")).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// Learn the scheme from a 401's challenge; drop the stale token.
    async fn on_challenge(
        &self,
        op: Op,
        target: &str,
        resp: &Response,
        scopes: &Scopes,
    ) -> Result<Scopes> {
        let header = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut state = self.auth.lock().await;
        state.tokens.remove(scopes);
        match parse_challenge(header) {
            Some(Challenge::Basic) => {
                if matches!(self.credentials, Credentials::Anonymous) {
                    return Err(Error::Auth {
                        op,
                        target: target.to_string(),
                        detail: format!(
                            "registry {} requires credentials and none were found: pass --username HOST=USER with --password-env HOST=VAR or --password-file HOST=PATH, set username and password_env or password_file in its [[registry]] table, or run `docker login` / `podman login` for it",
                            self.name
                        ),
                    });
                }
                state.scheme = Scheme::Basic;
                Ok(scopes.clone())
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                state.scheme = Scheme::Bearer { realm, service };
                Ok(match scope {
                    Some(s) => scopes.clone().with(&s),
                    None => scopes.clone(),
                })
            }
            None => {
                state.scheme = Scheme::Anonymous;
                Err(Error::Auth {
                    op,
                    target: target.to_string(),
                    detail: format!(
                        "registry {} answered 401 with no usable WWW-Authenticate challenge",
                        self.name
                    ),
                })
            }
        }
    }

    /// Fetch a token from the realm, within the request deadline.
    async fn fetch_token(
        &self,
        op: Op,
        target: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &Scopes,
    ) -> Result<Token> {
        within(
            self.limits.request_timeout,
            Op::Token,
            target,
            || {
                format!(
                    "the token service of registry {} gave no complete answer",
                    self.name
                )
            },
            self.fetch_token_once(op, target, realm, service, scopes),
        )
        .await
    }

    /// The token request itself. The HTTP client follows no redirect, so a
    /// token service answering 3xx never gets credentials or the identity
    /// token re-sent elsewhere: it is an error.
    async fn fetch_token_once(
        &self,
        op: Op,
        target: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &Scopes,
    ) -> Result<Token> {
        let auth_err = |detail: String| Error::Auth {
            op,
            target: target.to_string(),
            detail,
        };
        let realm_url = Url::parse(realm)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| auth_err(format!("token service URL {:?} is invalid", shown(realm))))?;
        let realm_host = realm_url.host_str().unwrap_or("").to_string();
        // Credentials for an HTTPS registry never travel in clear text: a
        // challenge naming a plain-HTTP token service (other than loopback)
        // is refused rather than followed.
        let has_credentials = !matches!(self.credentials, Credentials::Anonymous);
        if has_credentials && !realm_may_receive_credentials(&self.base, &realm_url) {
            return Err(auth_err(format!(
                "registry {} names a token service over plain HTTP ({realm_host}); regmirror does \
                 not send credentials in clear text, so it refuses to use it",
                self.name
            )));
        }
        let req = self.token_request(&realm_url, service, scopes);
        let mut last = None;
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300 * 2u64.pow(attempt))).await;
            }
            let Some(r) = req.try_clone() else { break };
            match r.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    metrics::record_response(&realm_host, "GET", Some(status.as_u16()));
                    if status.is_success() {
                        let body =
                            read_capped(resp, MAX_TOKEN_BYTES)
                                .await
                                .map_err(|e| match e {
                                    Capped::TooBig => auth_err(format!(
                                        "the token service at {realm_host} answered with more than \
                                 {MAX_TOKEN_BYTES} bytes, over the limit for a token answer (fixed)"
                                    )),
                                    Capped::Broken(e) => auth_err(format!(
                                        "reading the token from {realm_host} failed: {}",
                                        describe(&e)
                                    )),
                                })?;
                        let tr: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
                            auth_err(format!("the token service at {realm_host} answered with something that is not a token"))
                        })?;
                        return tr.into_token(op, target);
                    }
                    if status.is_redirection() {
                        return Err(auth_err(format!(
                            "the token service at {realm_host} answered with a redirect (HTTP {}); \
                             regmirror does not follow token-service redirects, so credentials \
                             are never sent to where it points",
                            status.as_u16()
                        )));
                    }
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        return Err(auth_err(format!(
                            "the token service at {realm_host} refused {} (HTTP {}): check the credentials configured for registry {}",
                            self.who(),
                            status.as_u16(),
                            self.name
                        )));
                    }
                    last = Some(auth_err(format!(
                        "the token service at {realm_host} answered HTTP {}",
                        status.as_u16()
                    )));
                    if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
                        break;
                    }
                }
                Err(e) => {
                    metrics::record_response(&realm_host, "GET", None);
                    let detail = describe(&e);
                    let tls = is_tls_failure(&detail);
                    last = Some(auth_err(format!(
                        "cannot reach the token service at {realm_host}: {detail}"
                    )));
                    if tls {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| auth_err("token request failed".into())))
    }

    /// Who the token request speaks for, for errors.
    fn who(&self) -> String {
        match &self.credentials {
            Credentials::Anonymous => "anonymous access".to_string(),
            Credentials::Basic { username, .. } => format!("user {:?}", shown(username)),
            Credentials::IdentityToken { .. } => "the configured identity token".to_string(),
        }
    }

    /// The token request: an OAuth2 POST for an identity token, else a GET
    /// with Basic credentials (when configured).
    fn token_request(
        &self,
        realm_url: &Url,
        service: Option<&str>,
        scopes: &Scopes,
    ) -> reqwest::RequestBuilder {
        match &self.credentials {
            Credentials::IdentityToken { token, .. } => {
                let scope = scopes.iter().cloned().collect::<Vec<_>>().join(" ");
                let mut form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", token.expose().to_string()),
                    ("client_id", "regmirror".to_string()),
                    ("scope", scope),
                ];
                if let Some(s) = service {
                    form.push(("service", s.to_string()));
                }
                let body = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", urlencode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                self.http
                    .post(realm_url.clone())
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body)
            }
            creds => {
                let mut url = realm_url.clone();
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scopes.iter() {
                        q.append_pair("scope", s);
                    }
                }
                let mut r = self.http.get(url);
                if let Credentials::Basic { .. } = creds
                    && let Some(h) = self.basic_header()
                {
                    r = r.header(AUTHORIZATION, h);
                }
                r
            }
        }
    }

    /// Send a request within the request deadline (requests whose body is a
    /// stream, i.e. blob uploads, are bounded by the stream instead: see
    /// [`super::client`]'s blob guard).
    pub async fn send(&self, req: Request) -> Result<Response> {
        if matches!(req.body, Body::Stream(..)) {
            return self.send_retrying(req).await;
        }
        let (op, target) = (req.op, req.target.clone());
        within(
            self.limits.request_timeout,
            op,
            &target,
            || format!("registry {} gave no answer", self.name),
            self.send_retrying(req),
        )
        .await
    }

    /// Send a request: pacing, concurrency cap, authentication (one
    /// re-authentication on 401), redirects (followed here, credentials only
    /// to the registry's own origin) and retries with backoff on transient
    /// failures, honouring `Retry-After`.
    async fn send_retrying(&self, mut req: Request) -> Result<Response> {
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut reauthenticated = false;
        let mut redirects = 0usize;
        let first_url = req.url.clone();
        let method_label = req.method.as_str().to_string();
        loop {
            attempt += 1;
            self.pace().await;
            let dest =
                classify(&self.base, &req.repo, &req.url).map_err(|why| Error::BadResponse {
                    op: req.op,
                    target: req.target.clone(),
                    detail: format!(
                        "regmirror refuses to request a URL of registry {} because {why}",
                        self.name
                    ),
                })?;
            let auth = match dest {
                Destination::Registry => {
                    self.authorization(req.op, &req.target, &req.scopes).await?
                }
                Destination::Foreign => None,
            };
            let (body, replayable) = match std::mem::replace(&mut req.body, Body::Empty) {
                Body::Empty => {
                    if matches!(req.method, Method::POST | Method::PUT | Method::PATCH) {
                        req.headers
                            .insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(0u64));
                    }
                    (None, true)
                }
                Body::Bytes(b) => {
                    req.body = Body::Bytes(b.clone());
                    (Some(reqwest::Body::from(b)), true)
                }
                Body::Stream(s, len) => {
                    req.headers
                        .insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(len));
                    (Some(reqwest::Body::wrap_stream(s)), false)
                }
            };
            let mut builder = self
                .http
                .request(req.method.clone(), req.url.clone())
                .headers(req.headers.clone());
            if let Some(a) = auth {
                builder = builder.header(AUTHORIZATION, a);
            }
            if let Some(b) = body {
                builder = builder.body(b);
            }
            // Manifest GETs spend the pull allowance: refused, not sent,
            // below the floor or while the pull-limit circuit is open.
            let mut ticket = self.pulls.admit(req.op, &req.target)?;
            let sent_at = Instant::now();
            let result = {
                let _permit = self.limit.acquire().await.ok();
                builder.send().await
            };
            let error = match result {
                Err(e) => {
                    metrics::record_response(&self.name, &method_label, None);
                    let detail = describe(&e);
                    if is_tls_failure(&detail) {
                        Error::Tls {
                            op: req.op,
                            target: req.target.clone(),
                            detail,
                        }
                    } else {
                        Error::Connection {
                            op: req.op,
                            target: req.target.clone(),
                            detail,
                        }
                    }
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    metrics::record_response(&self.name, &method_label, Some(status));
                    self.note_rate_limit(&resp);
                    match &mut ticket {
                        Some(t) => t.answered(resp.headers()),
                        None if req.op == Op::HeadManifest => {
                            self.pulls.observe(resp.headers(), sent_at);
                        }
                        None => {}
                    }
                    drop(ticket);
                    if resp.status().is_redirection() {
                        redirects += 1;
                        req.url = self.redirect_target(&req, &resp, redirects)?;
                        attempt -= 1;
                        continue;
                    }
                    if status == 401 && dest == Destination::Foreign {
                        return Err(Error::Auth {
                            op: req.op,
                            target: req.target.clone(),
                            detail: format!(
                                "{} (another origin than registry {}) asked for credentials \
                                 (HTTP 401); regmirror sends credentials only to the registry's \
                                 own origin and its token service, so it stops here",
                                shown(&origin_text(&req.url)),
                                self.name
                            ),
                        });
                    }
                    if status == 401 && !reauthenticated && !req.pass_statuses.contains(&401) {
                        reauthenticated = true;
                        let scopes = self
                            .on_challenge(req.op, &req.target, &resp, &req.scopes)
                            .await?;
                        req.scopes = scopes;
                        if replayable {
                            attempt -= 1;
                            continue;
                        }
                        // The body was a stream and is gone: report a
                        // retryable failure so the caller restarts the
                        // transfer, now with a fresh token.
                        return Err(Error::Connection {
                            op: req.op,
                            target: req.target.clone(),
                            detail: "the registry asked to re-authenticate during the upload"
                                .into(),
                        });
                    }
                    if resp.status().is_success() || req.pass_statuses.contains(&status) {
                        return Ok(resp);
                    }
                    if status == 401 {
                        return Err(Error::Auth {
                            op: req.op,
                            target: req.target.clone(),
                            detail: format!(
                                "registry {} refused the credentials (HTTP 401): check the username and password configured for it",
                                self.name
                            ),
                        });
                    }
                    let retry_after = parse_retry_after(resp.headers());
                    let headers = resp.headers().clone();
                    let body = read_limited(resp, MAX_ERROR_BODY).await;
                    let codes = Error::parse_codes(&body);
                    // A pull-limit 429 is not retried: retries would burn more.
                    if status == 429
                        && let Some(e) = self.pulls.on_too_many_requests(
                            req.op,
                            &req.target,
                            &headers,
                            &codes,
                            retry_after,
                        )
                    {
                        return Err(e);
                    }
                    Error::Status {
                        op: req.op,
                        target: req.target.clone(),
                        status,
                        codes,
                        retry_after,
                    }
                }
            };
            if !error.is_retryable() || !replayable {
                return Err(error);
            }
            let elapsed = started.elapsed();
            let backoff = self.backoff(attempt, &error);
            if attempt >= self.retry.max_attempts || elapsed + backoff > self.retry.max_elapsed {
                return Err(Error::RetriesExhausted {
                    attempts: attempt,
                    elapsed,
                    last: Box::new(error),
                });
            }
            metrics::record_retry(&self.name);
            tracing::debug!(registry = %self.name, op = %req.op, attempt, delay_ms = backoff.as_millis() as u64, error = %error, "retrying");
            tokio::time::sleep(backoff).await;
            req.url = first_url.clone();
        }
    }

    fn note_rate_limit(&self, resp: &Response) {
        if let Some(rem) = resp
            .headers()
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .and_then(|v| v.trim().parse::<i64>().ok())
        {
            metrics::set_ratelimit_remaining(&self.name, rem);
        }
    }

    /// Where a redirect of `req` leads. Only GET and HEAD are redirected
    /// (blobs served by a storage backend); the target URL passes
    /// [`classify`] on the next round, which refuses downgrades and
    /// same-origin paths outside the repository and strips credentials for
    /// other origins.
    fn redirect_target(&self, req: &Request, resp: &Response, n: usize) -> Result<Url> {
        let err = |detail: String| Error::BadResponse {
            op: req.op,
            target: req.target.clone(),
            detail,
        };
        let status = resp.status().as_u16();
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Err(err(format!(
                "registry {} answered HTTP {status}, a redirect status regmirror does not handle",
                self.name
            )));
        }
        if req.method != Method::GET && req.method != Method::HEAD {
            return Err(err(format!(
                "registry {} answered a {} with a redirect (HTTP {status}); regmirror follows \
                 redirects of reads only",
                self.name, req.method
            )));
        }
        if n > MAX_REDIRECTS {
            return Err(err(format!(
                "registry {} redirected more than {MAX_REDIRECTS} times",
                self.name
            )));
        }
        let loc = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                err(format!(
                    "registry {} answered HTTP {status} without a usable Location",
                    self.name
                ))
            })?;
        let next = req.url.join(loc).map_err(|_| {
            err(format!(
                "registry {} redirected to an unusable URL {:?}",
                self.name,
                shown(loc)
            ))
        })?;
        self.check_url(req.op, &req.target, &req.repo, &next, "redirect")?;
        Ok(next)
    }

    /// Exponential backoff with full jitter; `Retry-After` wins, capped.
    fn backoff(&self, attempt: u32, error: &Error) -> Duration {
        if let Error::Status {
            retry_after: Some(ra),
            ..
        } = error
        {
            return (*ra).min(self.retry.max_backoff);
        }
        let exp = self
            .retry
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.retry.max_backoff);
        let jitter = rand::random::<f64>();
        exp.mul_f64(0.5 + jitter / 2.0)
    }
}

/// Whether credentials may be sent to a token service: never from an HTTPS
/// registry to a plain-HTTP realm, unless the realm is on loopback.
fn realm_may_receive_credentials(registry: &Url, realm: &Url) -> bool {
    registry.scheme() != "https"
        || realm.scheme() == "https"
        || is_loopback_host(realm.host_str().unwrap_or(""))
}

fn bearer(token: &super::config::Secret) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    v.set_sensitive(true);
    v
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Read at most `max` bytes of a body (for error bodies).
pub(crate) async fn read_limited(mut resp: Response, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = max.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= max {
            break;
        }
    }
    out
}

/// Why [`read_capped`] stopped.
pub(crate) enum Capped {
    /// More than the cap arrived.
    TooBig,
    /// The connection broke.
    Broken(reqwest::Error),
}

/// Read a whole body, stopping as soon as more than `max` bytes arrived.
pub(crate) async fn read_capped(mut resp: Response, max: usize) -> Result<Bytes, Capped> {
    if resp.content_length().is_some_and(|l| l > max as u64) {
        return Err(Capped::TooBig);
    }
    let mut out = bytes::BytesMut::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() + c.len() > max {
                    return Err(Capped::TooBig);
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out.freeze()),
            Err(e) => return Err(Capped::Broken(e)),
        }
    }
}

/// True for TLS failures retrying cannot fix: certificates, and protocol
/// version or handshake mismatches (a plain-HTTP server on an HTTPS port,
/// a server offering only old TLS versions).
pub(crate) fn is_tls_failure(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    [
        "certificate",
        "protocol version",
        "protocolversion",
        "wrong version number",
        "invalidcontenttype",
        "invalid content type",
        "handshakefailure",
        "handshake failure",
        "peer is incompatible",
        "peerincompatible",
        "corrupt message",
    ]
    .iter()
    .any(|n| d.contains(n))
}

/// `scheme://host:port` of a URL, for messages (no path: it may carry secrets).
fn origin_text(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// A transport error described without its URL (which may carry upload state).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else if e.is_body() || e.is_decode() {
        "the connection broke while transferring the body".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = e.source();
    let mut depth = 0;
    while let Some(s) = src {
        let text = s.to_string();
        if !text.is_empty() && depth < 4 {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        src = s.source();
        depth += 1;
    }
    msg
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A reqwest client builder with regmirror's defaults. Redirects are never
/// followed by the HTTP stack: [`Host::send`] follows them itself, deciding
/// per origin what to send. `read_timeout` (plus a margin, so that the blob
/// guard's clearer error comes first) bounds each wait for bytes.
pub(crate) fn client_builder(read_timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(read_timeout.saturating_add(READ_TIMEOUT_MARGIN))
        .pool_idle_timeout(Duration::from_secs(90))
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .field("credentials", &self.credentials)
            .finish()
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Host>();
    is::<Arc<Host>>();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_go_to_a_clear_text_realm_of_an_https_registry() {
        let u = |s: &str| Url::parse(s).unwrap();
        let https = u("https://registry.example.com/");
        assert!(realm_may_receive_credentials(
            &https,
            &u("https://auth.example.com/token")
        ));
        assert!(!realm_may_receive_credentials(
            &https,
            &u("http://auth.example.com/token")
        ));
        assert!(realm_may_receive_credentials(
            &https,
            &u("http://127.0.0.1:5001/token")
        ));
        let http = u("http://127.0.0.1:5000/");
        assert!(realm_may_receive_credentials(
            &http,
            &u("http://auth.example.com/token")
        ));
    }

    #[test]
    fn tls_version_and_certificate_failures_are_recognised() {
        assert!(is_tls_failure(
            "request failed: received fatal alert: ProtocolVersion"
        ));
        assert!(is_tls_failure("invalid peer certificate: UnknownIssuer"));
        assert!(is_tls_failure(
            "received corrupt message of type InvalidContentType"
        ));
        assert!(!is_tls_failure("cannot connect: Connection refused"));
    }

    #[test]
    fn retry_after_in_seconds_or_http_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let d = parse_retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h), None);
    }
}
