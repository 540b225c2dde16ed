//! An in-test token server implementing Docker's registry token authentication
//! (`GET /token`) and its OAuth2 variant (`POST /token`), signing ES256 JWTs
//! that `docker-registry` (distribution 2.8) verifies through the `x5c` chain.
//!
//! Token expiry: distribution 2.8 accepts a token until `exp + 60 s` (its fixed
//! clock-skew leeway). To make the registry reject a token exactly `lifetime`
//! after it was issued, the issuer writes `exp = iat + lifetime - 60 s` into the
//! JWT while answering `expires_in = lifetime` to the client. A test that wants
//! expiry sets a short lifetime (e.g. 3 s), waits past it, and reads
//! [`TokenIssuer::token_requests`] to see whether the client fetched a new token.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::sync::oneshot;

use super::tls::TestCa;

/// Clock-skew leeway distribution 2.8 adds to `exp` (and subtracts from `nbf`).
pub const REGISTRY_LEEWAY_SECS: u64 = 60;

/// Configuration of a [`TokenIssuer`].
#[derive(Clone)]
pub struct TokenIssuerOptions {
    /// The one user allowed to authenticate (basic auth on `GET`, password grant on `POST`).
    pub user: Option<(String, String)>,
    /// Anonymous requests get a token with `pull` only; when false they get 401.
    pub anonymous_pull: bool,
    /// Refresh token accepted by the `refresh_token` grant (Docker's `identitytoken`).
    /// When `None`, one is generated; read it with [`TokenIssuer::refresh_token`].
    pub refresh_token: Option<String>,
    /// Actions the authenticated user may get; `None` grants every requested action.
    pub user_actions: Option<Vec<String>>,
    /// Time for which the registry accepts a token (see the module docs).
    pub lifetime: Duration,
    /// `service` (JWT audience) the registry is configured with.
    pub service: String,
    /// `iss` claim the registry trusts.
    pub issuer: String,
}

impl Default for TokenIssuerOptions {
    fn default() -> Self {
        TokenIssuerOptions {
            user: Some(("tokenuser".to_string(), "tokenpass".to_string())),
            anonymous_pull: false,
            refresh_token: None,
            user_actions: None,
            lifetime: Duration::from_secs(300),
            service: "regmirror-test-registry".to_string(),
            issuer: "regmirror-test-issuer".to_string(),
        }
    }
}

impl fmt::Debug for TokenIssuerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuerOptions")
            .field("user", &self.user.as_ref().map(|(u, _)| (u, "<redacted>")))
            .field("anonymous_pull", &self.anonymous_pull)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("user_actions", &self.user_actions)
            .field("lifetime", &self.lifetime)
            .field("service", &self.service)
            .field("issuer", &self.issuer)
            .finish()
    }
}

struct Shared {
    opts: TokenIssuerOptions,
    refresh_token: String,
    key: EncodingKey,
    x5c: Vec<String>,
    lifetime_secs: AtomicU64,
    token_requests: AtomicUsize,
    rejected_requests: AtomicUsize,
    jti: AtomicUsize,
    scopes: Mutex<Vec<String>>,
}

struct Inner {
    shared: Arc<Shared>,
    base_url: String,
    ca_pem: String,
    dir: tempfile::TempDir,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(tx) = self
            .shutdown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = tx.send(());
        }
    }
}

/// Handle on a running token server; cheap to clone, stops when the last clone drops.
#[derive(Clone)]
pub struct TokenIssuer {
    inner: Arc<Inner>,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("realm", &self.realm())
            .field("opts", &self.inner.shared.opts)
            .finish()
    }
}

impl TokenIssuer {
    /// Starts the issuer on a free port of 127.0.0.1. Needs a Tokio runtime.
    pub async fn start(opts: TokenIssuerOptions) -> TokenIssuer {
        let ca = TestCa::new("regmirror test token CA");
        let leaf = ca.signing_leaf("regmirror test token signer");
        let key = EncodingKey::from_ec_pem(leaf.key_pem.as_bytes())
            .expect("the rcgen P-256 key should load as an ES256 signing key");
        let x5c = vec![base64::engine::general_purpose::STANDARD.encode(&leaf.cert_der)];
        let dir = tempfile::Builder::new()
            .prefix("regmirror-token-")
            .tempdir()
            .expect("creating a tempdir for the token issuer");
        let refresh_token = opts
            .refresh_token
            .clone()
            .unwrap_or_else(|| format!("refresh-{:016x}", rand::random::<u64>()));
        let shared = Arc::new(Shared {
            lifetime_secs: AtomicU64::new(opts.lifetime.as_secs().max(1)),
            opts,
            refresh_token,
            key,
            x5c,
            token_requests: AtomicUsize::new(0),
            rejected_requests: AtomicUsize::new(0),
            jti: AtomicUsize::new(0),
            scopes: Mutex::new(Vec::new()),
        });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the token issuer to 127.0.0.1:0");
        let addr = listener.local_addr().expect("token issuer local address");
        let tx = super::serve_until_dropped(listener, router);
        let ca_pem = ca.cert_pem().to_string();
        std::fs::write(dir.path().join("token-ca.pem"), &ca_pem)
            .expect("writing the token CA bundle");
        TokenIssuer {
            inner: Arc::new(Inner {
                shared,
                base_url: format!("http://{addr}"),
                ca_pem,
                dir,
                shutdown: Mutex::new(Some(tx)),
            }),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The realm URL for the registry config and `WWW-Authenticate`.
    pub fn realm(&self) -> String {
        format!("{}/token", self.inner.base_url)
    }

    /// The `service` the registry must announce (JWT audience).
    pub fn service(&self) -> &str {
        &self.inner.shared.opts.service
    }

    /// The `iss` claim of every token.
    pub fn issuer_name(&self) -> &str {
        &self.inner.shared.opts.issuer
    }

    /// PEM file of the CA that signed the token-signing certificate
    /// (`auth.token.rootcertbundle`).
    pub fn root_cert_bundle_path(&self) -> std::path::PathBuf {
        self.inner.dir.path().join("token-ca.pem")
    }

    /// PEM of that CA.
    pub fn root_cert_pem(&self) -> &str {
        &self.inner.ca_pem
    }

    /// The configured user and password.
    pub fn credentials(&self) -> Option<(String, String)> {
        self.inner.shared.opts.user.clone()
    }

    /// The refresh token the `refresh_token` grant accepts.
    pub fn refresh_token(&self) -> &str {
        &self.inner.shared.refresh_token
    }

    /// Number of HTTP requests to `/token` (GET and POST, granted or rejected).
    pub fn token_requests(&self) -> usize {
        self.inner.shared.token_requests.load(Ordering::SeqCst)
    }

    /// Number of `/token` requests answered 400/401.
    pub fn rejected_requests(&self) -> usize {
        self.inner.shared.rejected_requests.load(Ordering::SeqCst)
    }

    /// Every scope string requested over HTTP, in order of arrival.
    pub fn requested_scopes(&self) -> Vec<String> {
        self.inner
            .shared
            .scopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resets the request counters and the recorded scopes.
    pub fn reset_counters(&self) {
        self.inner.shared.token_requests.store(0, Ordering::SeqCst);
        self.inner
            .shared
            .rejected_requests
            .store(0, Ordering::SeqCst);
        self.inner
            .shared
            .scopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.inner
            .shared
            .lifetime_secs
            .store(lifetime.as_secs().max(1), Ordering::SeqCst);
    }

    /// Signs a token granting exactly `scopes` (e.g. `repository:app:pull,push`)
    /// without an HTTP request (not counted by [`Self::token_requests`]).
    pub fn mint(&self, scopes: &[&str]) -> String {
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|s| parse_scope(s))
            .map(|(kind, name, actions)| json!({"type": kind, "name": name, "actions": actions}))
            .collect();
        let subject = self
            .inner
            .shared
            .opts
            .user
            .as_ref()
            .map(|(u, _)| u.clone())
            .unwrap_or_default();
        self.inner.shared.sign(&subject, access)
    }
}

impl Shared {
    fn lifetime(&self) -> u64 {
        self.lifetime_secs.load(Ordering::SeqCst)
    }

    fn sign(&self, subject: &str, access: Vec<serde_json::Value>) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let exp = (now + self.lifetime()).saturating_sub(REGISTRY_LEEWAY_SECS);
        let jti = self.jti.fetch_add(1, Ordering::SeqCst);
        let claims = json!({
            "iss": self.opts.issuer,
            "sub": subject,
            "aud": self.opts.service,
            "exp": exp,
            "nbf": now,
            "iat": now,
            "jti": format!("regmirror-test-{jti}-{:08x}", rand::random::<u32>()),
            "access": access,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".to_string());
        header.x5c = Some(self.x5c.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).expect("ES256 signing of a test token")
    }

    /// Actions granted for one requested scope to an authenticated (`true`) or
    /// anonymous caller.
    fn grant(&self, actions: &[String], authenticated: bool) -> Vec<String> {
        actions
            .iter()
            .filter(|a| {
                if authenticated {
                    match &self.opts.user_actions {
                        None => true,
                        Some(allowed) => allowed.iter().any(|x| x == *a || x == "*"),
                    }
                } else {
                    self.opts.anonymous_pull && a.as_str() == "pull"
                }
            })
            .cloned()
            .collect()
    }

    fn access_for(&self, scopes: &[String], authenticated: bool) -> Vec<serde_json::Value> {
        scopes
            .iter()
            .filter_map(|s| parse_scope(s))
            .map(|(kind, name, actions)| {
                let granted = self.grant(&actions, authenticated);
                json!({"type": kind, "name": name, "actions": granted})
            })
            .collect()
    }
}

/// Splits `repository:name/with/slashes:pull,push` into (type, name, actions).
fn parse_scope(scope: &str) -> Option<(String, String, Vec<String>)> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if kind.is_empty() || name.is_empty() {
        return None;
    }
    let actions = actions
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    Some((kind.to_string(), name.to_string(), actions))
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("static response parts are valid")
}

fn basic_credentials(headers: &HeaderMap) -> Option<Option<(String, String)>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        // Some other scheme: treated as anonymous.
        return None;
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    Some(decoded.and_then(|s| {
        s.split_once(':')
            .map(|(u, p)| (u.to_string(), p.to_string()))
    }))
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    if req.uri().path() != "/token" {
        return json_response(StatusCode::NOT_FOUND, json!({"error": "not found"}));
    }
    shared.token_requests.fetch_add(1, Ordering::SeqCst);
    let response = match *req.method() {
        Method::GET => handle_get(&shared, &req),
        Method::POST => {
            let (_, body) = req.into_parts();
            match axum::body::to_bytes(body, 1 << 20).await {
                Ok(bytes) => handle_post(&shared, &bytes),
                Err(_) => json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "invalid_request", "error_description": "unreadable body"}),
                ),
            }
        }
        _ => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "only GET and POST are supported"}),
        ),
    };
    if response.status() == StatusCode::UNAUTHORIZED || response.status() == StatusCode::BAD_REQUEST
    {
        shared.rejected_requests.fetch_add(1, Ordering::SeqCst);
    }
    response
}

fn record_scopes(shared: &Shared, scopes: &[String]) {
    shared
        .scopes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(scopes.iter().cloned());
}

fn handle_get(shared: &Shared, req: &Request) -> Response {
    let query = req.uri().query().unwrap_or("");
    let mut scopes = Vec::new();
    let mut offline = false;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "scope" => scopes.extend(v.split(' ').filter(|s| !s.is_empty()).map(str::to_string)),
            "offline_token" => offline = v == "true",
            _ => {}
        }
    }
    record_scopes(shared, &scopes);
    let authenticated = match basic_credentials(req.headers()) {
        Some(Some(given)) => {
            if shared.opts.user.as_ref() == Some(&given) {
                true
            } else {
                return unauthorized("invalid username or password");
            }
        }
        Some(None) => return unauthorized("malformed basic authorization header"),
        None => {
            if !shared.opts.anonymous_pull {
                return unauthorized("authentication required");
            }
            false
        }
    };
    let subject = if authenticated {
        shared
            .opts
            .user
            .as_ref()
            .map(|(u, _)| u.clone())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let token = shared.sign(&subject, shared.access_for(&scopes, authenticated));
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": shared.lifetime(),
        "issued_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if offline && authenticated {
        body["refresh_token"] = json!(shared.refresh_token);
    }
    json_response(StatusCode::OK, body)
}

fn handle_post(shared: &Shared, body: &[u8]) -> Response {
    let mut grant_type = String::new();
    let mut scopes = Vec::new();
    let mut username = None;
    let mut password = None;
    let mut refresh = None;
    let mut offline = false;
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "grant_type" => grant_type = v.into_owned(),
            "scope" => scopes.extend(v.split(' ').filter(|s| !s.is_empty()).map(str::to_string)),
            "username" => username = Some(v.into_owned()),
            "password" => password = Some(v.into_owned()),
            "refresh_token" => refresh = Some(v.into_owned()),
            "access_type" => offline = v == "offline",
            _ => {}
        }
    }
    record_scopes(shared, &scopes);
    match grant_type.as_str() {
        "password" => {
            let given = username.zip(password);
            if given.is_none() || shared.opts.user != given {
                return unauthorized("invalid username or password");
            }
        }
        "refresh_token" => {
            if refresh.as_deref() != Some(shared.refresh_token.as_str()) {
                return unauthorized("invalid refresh token");
            }
        }
        other => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": "unsupported_grant_type", "error_description": format!("grant_type {other:?} is not supported")}),
            );
        }
    }
    let subject = shared
        .opts
        .user
        .as_ref()
        .map(|(u, _)| u.clone())
        .unwrap_or_default();
    let token = shared.sign(&subject, shared.access_for(&scopes, true));
    let mut body = json!({
        "access_token": token,
        "scope": scopes.join(" "),
        "expires_in": shared.lifetime(),
        "issued_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if offline || grant_type == "refresh_token" {
        body["refresh_token"] = json!(shared.refresh_token);
    }
    json_response(StatusCode::OK, body)
}

fn unauthorized(why: &str) -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        json!({"errors": [{"code": "UNAUTHORIZED", "message": why}], "error": "invalid_grant", "error_description": why}),
    )
}
