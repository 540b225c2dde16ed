//! Loopback fakes of the cloud identity services regmirror's `acr` and
//! `gar` providers talk to, and of the registries that accept only the
//! credentials those services issued. No cloud is reachable from the tests,
//! so each fake plays the documented protocol with the endpoint overrides
//! the clouds' own SDKs honour (`AZURE_AUTHORITY_HOST`,
//! `AZURE_POD_IDENTITY_AUTHORITY_HOST`, `GCE_METADATA_HOST`, a key file's
//! `token_uri`):
//!
//! - [`EntraFake`]: Microsoft Entra ID's token endpoint
//!   (`POST /{tenant}/oauth2/v2.0/token`, client credentials with a client
//!   secret, a federated client assertion, or the signed client assertion
//!   of a certificate credential: RS256, checked with the registered
//!   certificate's public key, `x5t#S256` its SHA-256 thumbprint, `aud` the
//!   token endpoint, `iss` = `sub` = the client id) and the instance metadata
//!   service's managed identity endpoint
//!   (`GET /metadata/identity/oauth2/token`, header `Metadata: true`);
//! - [`AcrFake`]: ACR's `POST /oauth2/exchange` (Entra access token for an
//!   ACR refresh token, a JWT with `exp`) and `/oauth2/token` (GET with Basic
//!   `00000000-0000-0000-0000-000000000000:<refresh token>`, or POST
//!   `grant_type=refresh_token`) in front of a real registry;
//! - [`GoogleFake`]: the GCE/GKE metadata server's token
//!   (`GET /computeMetadata/v1/instance/service-accounts/default/token`,
//!   header `Metadata-Flavor: Google`) and an OAuth2 token endpoint for a
//!   service-account key (`POST /token`, JWT-bearer grant, the RS256
//!   assertion checked with the key's public half) and for gcloud user
//!   credentials (`refresh_token` grant with client id and secret);
//! - [`GarFake`]: Artifact Registry's token flow (`GET /v2/token` with Basic
//!   `oauth2accesstoken:<access token>`) in front of a real registry.
//!
//! The registry fakes ([`AuthGate`]) answer 401 with a Bearer challenge to
//! anything but a token they issued and that has not expired, forward the
//! rest to the real registry, and can slow each forwarded request down so
//! that tokens with a short lifetime expire in the middle of a copy; a
//! [`Guard`] lets a fake refuse what its registry refuses (a push into a
//! Harbor project or an Artifact Registry repository that does not exist,
//! see `common::repo_apis`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use futures_util::TryStreamExt as _;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::proxy::is_hop_by_hop;

/// The user name ACR pairs with a refresh token.
pub const ACR_USER: &str = "00000000-0000-0000-0000-000000000000";
/// The scope regmirror asks Entra for.
pub const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn random_token(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

pub fn json_response(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("static response parts are valid")
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        json!({"error": error, "error_description": description}),
    )
}

pub async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a cloud fake to 127.0.0.1:0");
    let addr = listener.local_addr().expect("fake local address");
    (listener, addr.to_string())
}

/// The form of a request body (URL-encoded).
async fn form(req: Request) -> HashMap<String, String> {
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    url::form_urlencoded::parse(&bytes).into_owned().collect()
}

pub fn query(req: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

pub fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.strip_prefix("Basic ")?.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Tokens a fake issued, each valid until its instant.
#[derive(Default)]
struct Issued(Mutex<HashMap<String, Instant>>);

impl Issued {
    fn add(&self, token: &str, until: Instant) {
        lock(&self.0).insert(token.to_string(), until);
    }
    fn valid_until(&self, token: &str) -> Option<Instant> {
        lock(&self.0)
            .get(token)
            .copied()
            .filter(|u| *u > Instant::now())
    }
}

// ---------------------------------------------------------------------------
// Microsoft Entra ID and the Azure instance metadata service.

struct EntraState {
    tenant: String,
    client_id: String,
    secret: Option<String>,
    federated_token: Mutex<String>,
    /// A registered certificate (PEM) and its base64url SHA-256 thumbprint.
    certificate: Mutex<Option<(String, String)>>,
    certificate_grants: AtomicUsize,
    issued: Issued,
    requests: AtomicUsize,
}

/// Entra ID's token endpoint and Azure's managed identity endpoint on loopback.
pub struct EntraFake {
    state: Arc<EntraState>,
    base: String,
    _shutdown: oneshot::Sender<()>,
}

impl EntraFake {
    /// A fake authority for `tenant`, accepting client `client_id` with the
    /// client assertion `federated_token` (workload identity) or, when given,
    /// the client secret `secret`.
    pub async fn start(
        tenant: &str,
        client_id: &str,
        federated_token: &str,
        secret: Option<&str>,
    ) -> EntraFake {
        let state = Arc::new(EntraState {
            tenant: tenant.into(),
            client_id: client_id.into(),
            secret: secret.map(str::to_string),
            federated_token: Mutex::new(federated_token.into()),
            certificate: Mutex::new(None),
            certificate_grants: AtomicUsize::new(0),
            issued: Issued::default(),
            requests: AtomicUsize::new(0),
        });
        let (listener, addr) = bind().await;
        let router = Router::new().fallback(entra).with_state(state.clone());
        EntraFake {
            state,
            base: format!("http://{addr}"),
            _shutdown: super::serve_until_dropped(listener, router),
        }
    }

    /// `http://127.0.0.1:PORT`: the authority host (and metadata service).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Token requests answered so far (granted or refused).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Register the certificate `pem` (its thumbprint `x5t_s256`,
    /// base64url SHA-256 of the DER) as the client's credential.
    pub fn register_certificate(&self, pem: &str, x5t_s256: &str) {
        *lock(&self.state.certificate) = Some((pem.into(), x5t_s256.into()));
    }

    /// Tokens granted for a certificate's signed client assertion.
    pub fn certificate_grants(&self) -> usize {
        self.state.certificate_grants.load(Ordering::SeqCst)
    }

    /// Accept only `token` as the federated client assertion from now on
    /// (the kubelet rotated the projected token).
    pub fn rotate_federated_token(&self, token: &str) {
        *lock(&self.state.federated_token) = token.to_string();
    }
}

async fn entra(State(st): State<Arc<EntraState>>, req: Request) -> Response {
    st.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    if path == "/metadata/identity/oauth2/token" {
        let q = query(&req);
        if req.headers().get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Metadata header",
            );
        }
        if q.get("resource").map(String::as_str) != ACR_SCOPE.strip_suffix("/.default") {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_resource", "resource");
        }
        return entra_grant(&st, 3600);
    }
    if path != format!("/{}/oauth2/v2.0/token", st.tenant) || req.method() != "POST" {
        return oauth_error(
            StatusCode::NOT_FOUND,
            "invalid_request",
            "AADSTS90002: tenant",
        );
    }
    let token_url = format!(
        "http://{}{path}",
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    );
    let f = form(req).await;
    let get = |k: &str| f.get(k).map(String::as_str);
    if get("grant_type") != Some("client_credentials")
        || get("client_id") != Some(st.client_id.as_str())
        || get("scope") != Some(ACR_SCOPE)
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "AADSTS900144");
    }
    let by_assertion = get("client_assertion_type")
        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        && get("client_assertion") == Some(lock(&st.federated_token).as_str());
    let by_secret = st.secret.is_some() && get("client_secret") == st.secret.as_deref();
    let by_certificate = get("client_assertion_type")
        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        && signed_by_certificate(&st, get("client_assertion").unwrap_or_default(), &token_url);
    if by_certificate {
        st.certificate_grants.fetch_add(1, Ordering::SeqCst);
    }
    if !(by_assertion || by_secret || by_certificate) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS700024: Client assertion is not within its valid time range.",
        );
    }
    entra_grant(&st, 3600)
}

/// Whether `assertion` is a certificate credential's client assertion for
/// the registered certificate, this client and `token_url`.
fn signed_by_certificate(st: &EntraState, assertion: &str, token_url: &str) -> bool {
    let Some((pem, thumbprint)) = lock(&st.certificate).clone() else {
        return false;
    };
    let Ok(header) = jsonwebtoken::decode_header(assertion) else {
        return false;
    };
    if header.alg != jsonwebtoken::Algorithm::RS256
        || header.x5t_s256.as_deref() != Some(thumbprint.as_str())
        || header.x5t.is_none()
    {
        return false;
    }
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()) else {
        return false;
    };
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[token_url]);
    v.set_issuer(&[st.client_id.as_str()]);
    v.sub = Some(st.client_id.clone());
    v.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
    jsonwebtoken::decode::<Value>(assertion, &key, &v)
        .is_ok_and(|d| d.claims.get("jti").and_then(Value::as_str).is_some())
}

fn entra_grant(st: &EntraState, lifetime: u64) -> Response {
    let token = random_token("entra.");
    st.issued
        .add(&token, Instant::now() + Duration::from_secs(lifetime));
    json_response(
        StatusCode::OK,
        json!({"token_type": "Bearer", "expires_in": lifetime, "access_token": token}),
    )
}

// ---------------------------------------------------------------------------
// A registry behind a token gate.

/// Checks the credentials presented to a gate's token endpoint: `Some(until)`
/// when they are valid (the bearer token the gate issues lives no longer).
pub type Accept = Box<dyn Fn(&str, &str) -> Option<Instant> + Send + Sync>;

/// Decides, from a request's method and path, whether an authorized request
/// is refused (`Some(answer)`) instead of forwarded.
pub type Guard = Arc<dyn Fn(&axum::http::Method, &str) -> Option<Response> + Send + Sync>;

struct GateState {
    upstream: String,
    self_base: String,
    token_path: &'static str,
    client: reqwest::Client,
    accept: Accept,
    lifetime: Mutex<Duration>,
    delay: Mutex<Duration>,
    bearer: Issued,
    token_grants: AtomicUsize,
    token_refusals: AtomicUsize,
    stale_bearers: AtomicUsize,
    guard: Mutex<Option<Guard>>,
}

/// A real registry behind a token flow that accepts only credentials the
/// matching cloud fake issued.
pub struct AuthGate {
    state: Arc<GateState>,
    host: String,
    _shutdown: oneshot::Sender<()>,
}

impl AuthGate {
    /// A gate in front of `upstream_base_url` with its token endpoint at
    /// `token_path`, granting tokens to what `accept` accepts, and also
    /// serving `extra` (a registry's own API).
    pub async fn start(
        upstream_base_url: &str,
        token_path: &'static str,
        accept: Accept,
        extra: Router,
    ) -> AuthGate {
        let (listener, addr) = bind().await;
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the gate's upstream client");
        let state = Arc::new(GateState {
            upstream: upstream_base_url.trim_end_matches('/').to_string(),
            self_base: format!("http://{addr}"),
            token_path,
            client,
            accept,
            lifetime: Mutex::new(Duration::from_secs(3600)),
            delay: Mutex::new(Duration::ZERO),
            bearer: Issued::default(),
            token_grants: AtomicUsize::new(0),
            token_refusals: AtomicUsize::new(0),
            stale_bearers: AtomicUsize::new(0),
            guard: Mutex::new(None),
        });
        let router = Router::new()
            .route(token_path, axum::routing::get(gate_token).post(gate_token))
            .fallback(gate)
            .with_state(state.clone())
            .merge(extra);
        AuthGate {
            state,
            host: addr,
            _shutdown: super::serve_until_dropped(listener, router),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Registry bearer tokens granted so far.
    pub fn token_grants(&self) -> usize {
        self.state.token_grants.load(Ordering::SeqCst)
    }

    /// Token requests refused (unknown or expired credentials).
    pub fn token_refusals(&self) -> usize {
        self.state.token_refusals.load(Ordering::SeqCst)
    }

    /// Registry requests refused because their bearer token had expired.
    pub fn stale_bearers(&self) -> usize {
        self.state.stale_bearers.load(Ordering::SeqCst)
    }

    /// Bearer tokens granted from now on live `lifetime`.
    pub fn set_bearer_lifetime(&self, lifetime: Duration) {
        *lock(&self.state.lifetime) = lifetime;
    }

    /// Hold every forwarded registry request for `delay`.
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.state.delay) = delay;
    }

    /// Let `guard` refuse authorized registry requests from now on.
    pub fn set_guard(&self, guard: Guard) {
        *lock(&self.state.guard) = Some(guard);
    }
}

async fn gate_token(State(st): State<Arc<GateState>>, req: Request) -> Response {
    let creds = if req.method() == "POST" {
        let f = form(req).await;
        match f.get("grant_type").map(String::as_str) {
            Some("refresh_token") => f
                .get("refresh_token")
                .map(|t| (ACR_USER.to_string(), t.clone())),
            Some("password") => f
                .get("username")
                .zip(f.get("password"))
                .map(|(u, p)| (u.clone(), p.clone())),
            _ => None,
        }
    } else {
        basic(req.headers())
    };
    let until = creds.and_then(|(u, p)| (st.accept)(&u, &p));
    let Some(until) = until else {
        st.token_refusals.fetch_add(1, Ordering::SeqCst);
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "authentication required: the credential is unknown or expired",
        );
    };
    let lifetime = *lock(&st.lifetime);
    let until = until.min(Instant::now() + lifetime);
    let token = random_token("gate.");
    st.bearer.add(&token, until);
    st.token_grants.fetch_add(1, Ordering::SeqCst);
    let secs = until
        .saturating_duration_since(Instant::now())
        .as_secs()
        .max(1);
    json_response(
        StatusCode::OK,
        json!({"token": token, "access_token": token, "expires_in": secs}),
    )
}

async fn gate(State(st): State<Arc<GateState>>, req: Request) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let valid = bearer
        .as_deref()
        .is_some_and(|t| st.bearer.valid_until(t).is_some());
    if !valid {
        if bearer.is_some() {
            st.stale_bearers.fetch_add(1, Ordering::SeqCst);
        }
        let challenge = format!(
            "Bearer realm=\"{}{}\",service=\"{}\"",
            st.self_base,
            st.token_path,
            st.self_base.trim_start_matches("http://")
        );
        let mut r = json_response(
            StatusCode::UNAUTHORIZED,
            json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge).expect("a valid challenge"),
        );
        return r;
    }
    let guard = lock(&st.guard).clone();
    if let Some(refusal) = guard.and_then(|g| g(req.method(), req.uri().path())) {
        return refusal;
    }
    let delay = *lock(&st.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    forward(&st, req).await
}

/// Forward `req` to the real registry, without its Authorization header,
/// rewriting upload locations to the gate.
async fn forward(st: &GateState, req: Request) -> Response {
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    let mut rb = st
        .client
        .request(parts.method.clone(), format!("{}{pq}", st.upstream));
    for (name, value) in parts.headers.iter() {
        if name == header::HOST || name == header::AUTHORIZATION || is_hop_by_hop(name) {
            continue;
        }
        rb = rb.header(name, value);
    }
    rb = rb.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    let upstream = match rb.send().await {
        Ok(r) => r,
        Err(e) => return oauth_error(StatusCode::BAD_GATEWAY, "upstream", &e.to_string()),
    };
    let mut builder = Response::builder().status(upstream.status().as_u16());
    for (name, value) in upstream.headers().iter() {
        if is_hop_by_hop(name) {
            continue;
        }
        let rewritten = (name == header::LOCATION)
            .then(|| {
                value
                    .to_str()
                    .ok()?
                    .strip_prefix(&st.upstream)
                    .map(str::to_string)
            })
            .flatten()
            .and_then(|rest| HeaderValue::from_str(&format!("{}{rest}", st.self_base)).ok());
        builder = builder.header(name, rewritten.unwrap_or_else(|| value.clone()));
    }
    let stream = upstream.bytes_stream().map_err(std::io::Error::other);
    builder
        .body(Body::from_stream(stream))
        .expect("upstream response parts are valid")
}

// ---------------------------------------------------------------------------
// ACR: /oauth2/exchange and /oauth2/token.

struct AcrState {
    entra: Arc<EntraState>,
    refresh: Issued,
    lifetime: Mutex<Duration>,
    exchanges: AtomicUsize,
}

/// ACR's token exchange and token flow in front of a real registry.
pub struct AcrFake {
    state: Arc<AcrState>,
    /// The registry behind the token flow.
    pub gate: AuthGate,
}

impl AcrFake {
    /// In front of `upstream_base_url`, exchanging the access tokens `entra` issued.
    pub async fn start(upstream_base_url: &str, entra: &EntraFake) -> AcrFake {
        let state = Arc::new(AcrState {
            entra: entra.state.clone(),
            refresh: Issued::default(),
            lifetime: Mutex::new(Duration::from_secs(3 * 3600)),
            exchanges: AtomicUsize::new(0),
        });
        let accept_state = state.clone();
        let accept: Accept = Box::new(move |user, password| {
            (user == ACR_USER)
                .then(|| accept_state.refresh.valid_until(password))
                .flatten()
        });
        let extra = Router::new()
            .route("/oauth2/exchange", axum::routing::post(acr_exchange))
            .with_state(state.clone());
        let gate = AuthGate::start(upstream_base_url, "/oauth2/token", accept, extra).await;
        AcrFake { state, gate }
    }

    /// Refresh tokens issued from now on live `lifetime` (their JWT `exp`
    /// says so, and they are refused after it).
    pub fn set_refresh_lifetime(&self, lifetime: Duration) {
        *lock(&self.state.lifetime) = lifetime;
    }

    /// Successful exchanges so far.
    pub fn exchanges(&self) -> usize {
        self.state.exchanges.load(Ordering::SeqCst)
    }
}

/// A refresh token shaped like ACR's: a JWT whose payload holds `exp`.
fn refresh_jwt(exp: SystemTime) -> String {
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = exp.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    format!(
        "{}.{}.{}",
        enc.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        enc.encode(
            json!({"exp": exp, "jti": random_token(""), "grant_type": "refresh_token"}).to_string()
        ),
        enc.encode(random_token("sig").as_bytes())
    )
}

async fn acr_exchange(State(st): State<Arc<AcrState>>, req: Request) -> Response {
    let f = form(req).await;
    let get = |k: &str| f.get(k).map(String::as_str);
    if get("grant_type") != Some("access_token") || get("service").is_none() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type");
    }
    if get("tenant").is_some_and(|t| t != st.entra.tenant) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_tenant", "tenant");
    }
    let known = get("access_token").is_some_and(|t| st.entra.issued.valid_until(t).is_some());
    if !known {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the access token is not one Entra issued",
        );
    }
    let lifetime = *lock(&st.lifetime);
    let token = refresh_jwt(SystemTime::now() + lifetime);
    st.refresh.add(&token, Instant::now() + lifetime);
    st.exchanges.fetch_add(1, Ordering::SeqCst);
    json_response(StatusCode::OK, json!({"refresh_token": token}))
}

// ---------------------------------------------------------------------------
// Google: the metadata server, a service-account token endpoint, GAR.

struct GoogleState {
    public_key_pem: Option<String>,
    client_email: String,
    issued: Issued,
    lifetime: Mutex<Duration>,
    metadata_requests: AtomicUsize,
    key_grants: AtomicUsize,
    /// gcloud user credentials: (client id, client secret, refresh token).
    user: Mutex<Option<(String, String, String)>>,
    user_grants: AtomicUsize,
}

/// The GCE/GKE metadata server and an OAuth2 token endpoint on loopback.
pub struct GoogleFake {
    state: Arc<GoogleState>,
    host: String,
    _shutdown: oneshot::Sender<()>,
}

impl GoogleFake {
    /// A metadata server, and a token endpoint accepting assertions of
    /// `client_email` signed by the key whose public half is `public_key_pem`.
    pub async fn start(public_key_pem: Option<&str>, client_email: &str) -> GoogleFake {
        let state = Arc::new(GoogleState {
            public_key_pem: public_key_pem.map(str::to_string),
            client_email: client_email.into(),
            issued: Issued::default(),
            lifetime: Mutex::new(Duration::from_secs(3600)),
            metadata_requests: AtomicUsize::new(0),
            key_grants: AtomicUsize::new(0),
            user: Mutex::new(None),
            user_grants: AtomicUsize::new(0),
        });
        let (listener, addr) = bind().await;
        let router = Router::new().fallback(google).with_state(state.clone());
        GoogleFake {
            state,
            host: addr,
            _shutdown: super::serve_until_dropped(listener, router),
        }
    }

    /// `127.0.0.1:PORT`, for `GCE_METADATA_HOST`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The token endpoint, for a key file's `token_uri`.
    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.host)
    }

    /// Access tokens issued from now on live `lifetime` (`expires_in`).
    pub fn set_lifetime(&self, lifetime: Duration) {
        *lock(&self.state.lifetime) = lifetime;
    }

    /// Tokens the metadata server issued.
    pub fn metadata_requests(&self) -> usize {
        self.state.metadata_requests.load(Ordering::SeqCst)
    }

    /// Tokens the token endpoint issued for a service-account assertion.
    pub fn key_grants(&self) -> usize {
        self.state.key_grants.load(Ordering::SeqCst)
    }

    /// A checker of access tokens: whether this fake issued one that has
    /// not expired (for other Google APIs played on loopback).
    pub fn token_checker(&self) -> impl Fn(&str) -> bool + Send + Sync + 'static {
        let st = self.state.clone();
        move |token| st.issued.valid_until(token).is_some()
    }

    /// Accept the `refresh_token` grant (RFC 6749 section 6, gcloud's
    /// `authorized_user` credentials) for these credentials.
    pub fn register_user(&self, client_id: &str, client_secret: &str, refresh_token: &str) {
        *lock(&self.state.user) =
            Some((client_id.into(), client_secret.into(), refresh_token.into()));
    }

    /// Tokens the token endpoint issued for a refresh token.
    pub fn user_grants(&self) -> usize {
        self.state.user_grants.load(Ordering::SeqCst)
    }

    /// An issuer of access tokens that this fake (and a [`GarFake`] in front
    /// of it) accepts, living the current lifetime (for other Google token
    /// services played on loopback): the token and its lifetime.
    pub fn issuer(&self) -> impl Fn() -> (String, Duration) + Send + Sync + 'static {
        let st = self.state.clone();
        move || {
            let lifetime = *lock(&st.lifetime);
            let token = random_token("ya29.");
            st.issued.add(&token, Instant::now() + lifetime);
            (token, lifetime)
        }
    }
}

async fn google(State(st): State<Arc<GoogleState>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path == "/computeMetadata/v1/instance/service-accounts/default/token" {
        if req
            .headers()
            .get("metadata-flavor")
            .and_then(|v| v.to_str().ok())
            != Some("Google")
        {
            return oauth_error(StatusCode::FORBIDDEN, "forbidden", "Metadata-Flavor");
        }
        st.metadata_requests.fetch_add(1, Ordering::SeqCst);
        return google_grant(&st);
    }
    if path != "/token" || req.method() != "POST" {
        return oauth_error(StatusCode::NOT_FOUND, "not_found", &path);
    }
    let token_uri = format!(
        "http://{}/token",
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    );
    let f = form(req).await;
    if f.get("grant_type").map(String::as_str) == Some("refresh_token") {
        return user_grant(&st, &f);
    }
    if f.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant");
    }
    let Some(pem) = &st.public_key_pem else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "no key");
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).expect("a public key");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[token_uri]);
    v.set_issuer(&[st.client_email.as_str()]);
    let assertion = f.get("assertion").cloned().unwrap_or_default();
    match jsonwebtoken::decode::<Value>(&assertion, &key, &v) {
        Ok(data)
            if data.claims.get("scope").and_then(Value::as_str)
                == Some("https://www.googleapis.com/auth/cloud-platform") =>
        {
            st.key_grants.fetch_add(1, Ordering::SeqCst);
            google_grant(&st)
        }
        Ok(_) => oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "scope"),
        Err(e) => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &e.to_string()),
    }
}

/// The `refresh_token` grant of registered user credentials.
fn user_grant(st: &GoogleState, f: &HashMap<String, String>) -> Response {
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let presented = (get("client_id"), get("client_secret"), get("refresh_token"));
    if lock(&st.user).as_ref() != Some(&presented) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
    }
    st.user_grants.fetch_add(1, Ordering::SeqCst);
    google_grant(st)
}

fn google_grant(st: &GoogleState) -> Response {
    let lifetime = *lock(&st.lifetime);
    let token = random_token("ya29.");
    st.issued.add(&token, Instant::now() + lifetime);
    json_response(
        StatusCode::OK,
        json!({"access_token": token, "expires_in": lifetime.as_secs(), "token_type": "Bearer"}),
    )
}

/// Artifact Registry's token flow (`/v2/token`, Basic
/// `oauth2accesstoken:<access token>`) in front of a real registry.
pub struct GarFake {
    /// The registry behind the token flow.
    pub gate: AuthGate,
}

impl GarFake {
    /// In front of `upstream_base_url`, accepting the access tokens `google` issued.
    pub async fn start(upstream_base_url: &str, google: &GoogleFake) -> GarFake {
        let st = google.state.clone();
        let accept: Accept = Box::new(move |user, password| {
            (user == "oauth2accesstoken")
                .then(|| st.issued.valid_until(password))
                .flatten()
        });
        let gate = AuthGate::start(upstream_base_url, "/v2/token", accept, Router::new()).await;
        GarFake { gate }
    }
}

/// A fresh RSA key pair made by `openssl`: (PKCS#8 private PEM, SPKI public PEM).
pub fn rsa_key_pair(dir: &std::path::Path) -> (String, String) {
    let private = dir.join("sa-key.pem");
    let public = dir.join("sa-pub.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .status()
            .is_ok_and(|s| s.success());
    assert!(ok, "openssl could not make an RSA key pair");
    (
        std::fs::read_to_string(private).expect("the private key"),
        std::fs::read_to_string(public).expect("the public key"),
    )
}
