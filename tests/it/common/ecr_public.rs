//! A loopback play of Amazon ECR Public, because none runs here and the
//! `moto` server does not implement the `ecr-public` API (its backend index
//! lists `ecr` only), so this fake answers as the API reference documents:
//!
//! - `GetAuthorizationToken` of the ECR Public API (AWS JSON 1.1, `POST /`
//!   with `X-Amz-Target: SpencerFrontendService.GetAuthorizationToken`),
//!   signed with SigV4 for the service `ecr-public` in `us-east-1` (the only
//!   region of that API): `{"authorizationData": {"authorizationToken":
//!   base64("AWS:<password>"), "expiresAt": <epoch seconds>}}`. The fake
//!   checks that the request is signed for that service and region with the
//!   access key it was given (it cannot check the signature itself without
//!   re-implementing SigV4; the SDK computes it);
//! - the registry behind it: a token flow (`/token`, Basic
//!   `AWS:<password>`) in front of a real registry, accepting only a
//!   password the API issued and that has not expired.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use serde_json::json;
use tokio::sync::oneshot;

use super::cloud_fakes::{Accept, AuthGate, bind, json_response, lock, random_token};

struct ApiState {
    access_key: String,
    lifetime: Mutex<Duration>,
    /// Passwords issued, each valid until its instant.
    issued: Mutex<Vec<(String, Instant)>>,
    calls: AtomicUsize,
}

/// ECR Public's API and registry on loopback.
pub struct EcrPublicFake {
    state: Arc<ApiState>,
    api: String,
    /// The registry behind the token flow.
    pub gate: AuthGate,
    _shutdown: oneshot::Sender<()>,
}

impl EcrPublicFake {
    /// In front of `upstream_base_url`, answering requests signed with `access_key`.
    pub async fn start(upstream_base_url: &str, access_key: &str) -> EcrPublicFake {
        let state = Arc::new(ApiState {
            access_key: access_key.into(),
            lifetime: Mutex::new(Duration::from_secs(12 * 3600)),
            issued: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
        });
        let (listener, addr) = bind().await;
        let router = Router::new().fallback(api).with_state(state.clone());
        let shutdown = super::serve_until_dropped(listener, router);
        let st = state.clone();
        let accept: Accept = Box::new(move |user, password| {
            (user == "AWS")
                .then(|| {
                    lock(&st.issued)
                        .iter()
                        .find(|(p, until)| p == password && *until > Instant::now())
                        .map(|(_, until)| *until)
                })
                .flatten()
        });
        let gate = AuthGate::start(upstream_base_url, "/token", accept, Router::new()).await;
        EcrPublicFake {
            state,
            api: format!("http://{addr}"),
            gate,
            _shutdown: shutdown,
        }
    }

    /// `AWS_ENDPOINT_URL_ECR_PUBLIC` for regmirror.
    pub fn api_url(&self) -> &str {
        &self.api
    }

    /// Passwords issued from now on live `lifetime` (`expiresAt` says so).
    pub fn set_lifetime(&self, lifetime: Duration) {
        *lock(&self.state.lifetime) = lifetime;
    }

    /// `GetAuthorizationToken` calls answered with a token.
    pub fn token_calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }
}

fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    json_response(status, json!({"__type": kind, "message": message}))
}

async fn api(State(st): State<Arc<ApiState>>, req: Request) -> Response {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if req.method() != "POST" || target != "SpencerFrontendService.GetAuthorizationToken" {
        return aws_error(StatusCode::BAD_REQUEST, "UnknownOperationException", target);
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request, …
    let scope = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .and_then(|rest| rest.split(',').next())
        .map(|c| c.split('/').collect::<Vec<_>>())
        .unwrap_or_default();
    let signed_for_us = scope.len() == 5
        && scope[0] == st.access_key
        && scope[2] == "us-east-1"
        && scope[3] == "ecr-public"
        && scope[4] == "aws4_request";
    if !signed_for_us {
        return aws_error(
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        );
    }
    let lifetime = *lock(&st.lifetime);
    let password = random_token("ecrpublic.");
    lock(&st.issued).push((password.clone(), Instant::now() + lifetime));
    st.calls.fetch_add(1, Ordering::SeqCst);
    let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
    let expires = (SystemTime::now() + lifetime)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut r = json_response(
        StatusCode::OK,
        json!({"authorizationData": {"authorizationToken": token, "expiresAt": expires}}),
    );
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    r
}
