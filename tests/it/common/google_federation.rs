//! Loopback fakes of the Google services behind workload identity
//! federation and impersonation, and of the AWS instance metadata an AWS
//! workload reads, each playing its documented protocol (no cloud is
//! reachable from the tests; the services' URLs come from the credentials
//! file, as Google's libraries allow):
//!
//! - Google's Security Token Service, `POST /v1/token` (RFC 8693 token
//!   exchange, cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token):
//!   `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`, the pool
//!   provider as `audience`, `requested_token_type=…:access_token`, and a
//!   subject token: an OIDC token it was told to trust, or (subject token
//!   type `urn:ietf:params:aws:token-type:aws4_request`) a serialized AWS
//!   `GetCallerIdentity` request, which the fake checks as Google documents
//!   it ("Exchange the AWS credential": URL-encoded JSON of `url`, `method`,
//!   `headers` with `Authorization`, `host`, `x-amz-date`,
//!   `x-goog-cloud-target-resource`) and whose AWS Signature Version 4 it
//!   recomputes from the known test secret (docs.aws.amazon.com, "Create a
//!   signed AWS API request": canonical request, string to sign, HMAC-SHA256
//!   signing key chain);
//! - the IAM Service Account Credentials API,
//!   `POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken`
//!   (cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken):
//!   a bearer token the STS or the [`GoogleFake`] issued, a JSON body of
//!   `scope`, `lifetime`, `delegates`; answered with `accessToken` and
//!   `expireTime`;
//! - a URL serving an OIDC token as JSON to requests with a header (as
//!   Azure's instance metadata does), for a URL-sourced subject token;
//! - the EC2 instance metadata service with IMDSv2 (docs.aws.amazon.com,
//!   "Use the Instance Metadata Service to access instance metadata"):
//!   `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds`,
//!   then `GET`s carrying `X-aws-ec2-metadata-token`: the availability zone,
//!   the role name and the role's temporary credentials.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::sync::oneshot;

use super::cloud_fakes::{GoogleFake, bind, json_response, lock, random_token};

/// The subject token type of an AWS `GetCallerIdentity` request.
pub const AWS_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
/// An OIDC ID token's subject token type.
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// The role the metadata service serves credentials for.
pub const IMDS_ROLE: &str = "regmirror-role";
/// The region of the metadata service's availability zone (`…b`).
pub const IMDS_REGION: &str = "eu-west-3";

type Issuer = Box<dyn Fn() -> (String, Duration) + Send + Sync>;
type Checker = Box<dyn Fn(&str) -> bool + Send + Sync>;

struct FedState {
    audience: String,
    service_account: String,
    issue: Issuer,
    google_token: Checker,
    oidc_subjects: Mutex<HashSet<String>>,
    /// AWS access key id → (secret, session token).
    aws_keys: Mutex<HashMap<String, (String, Option<String>)>>,
    imds_sessions: Mutex<HashSet<String>>,
    imds_keys: (String, String, String),
    require_impersonation: AtomicBool,
    federated: Mutex<HashMap<String, Instant>>,
    impersonated: Mutex<HashSet<String>>,
    impersonation_bodies: Mutex<Vec<Value>>,
    sts_grants: AtomicUsize,
    aws_grants: AtomicUsize,
    imds_session_requests: AtomicUsize,
    sts_refusals: Mutex<Vec<String>>,
    aws_regions: Mutex<Vec<String>>,
}

/// Google's STS and IAM credentials API, and AWS's instance metadata.
pub struct FederationFake {
    state: Arc<FedState>,
    host: String,
    _shutdown: oneshot::Sender<()>,
}

impl FederationFake {
    /// For the pool provider `audience` and the service account
    /// `service_account`, issuing tokens `google` (and its GAR) accepts.
    pub async fn start(
        google: &GoogleFake,
        audience: &str,
        service_account: &str,
    ) -> FederationFake {
        let imds_keys = (
            format!("ASIA{:016X}", rand::random::<u64>()),
            random_token("imds-secret/"),
            random_token("imds-session-token+"),
        );
        let state = Arc::new(FedState {
            audience: audience.into(),
            service_account: service_account.into(),
            issue: Box::new(google.issuer()),
            google_token: Box::new(google.token_checker()),
            oidc_subjects: Mutex::default(),
            aws_keys: Mutex::new(HashMap::from([(
                imds_keys.0.clone(),
                (imds_keys.1.clone(), Some(imds_keys.2.clone())),
            )])),
            imds_sessions: Mutex::default(),
            imds_keys,
            require_impersonation: AtomicBool::new(false),
            federated: Mutex::default(),
            impersonated: Mutex::default(),
            impersonation_bodies: Mutex::default(),
            sts_grants: AtomicUsize::new(0),
            aws_grants: AtomicUsize::new(0),
            imds_session_requests: AtomicUsize::new(0),
            sts_refusals: Mutex::default(),
            aws_regions: Mutex::default(),
        });
        let (listener, addr) = bind().await;
        let router = Router::new().fallback(route).with_state(state.clone());
        FederationFake {
            state,
            host: addr,
            _shutdown: super::serve_until_dropped(listener, router),
        }
    }

    /// The STS token endpoint, for a file's `token_url`.
    pub fn token_url(&self) -> String {
        format!("http://{}/v1/token", self.host)
    }

    /// The service account's `generateAccessToken` URL.
    pub fn impersonation_url(&self) -> String {
        format!(
            "http://{}/v1/projects/-/serviceAccounts/{}:generateAccessToken",
            self.host, self.state.service_account
        )
    }

    /// `http://HOST/latest`, the metadata service's base.
    pub fn imds_base(&self) -> String {
        format!("http://{}/latest", self.host)
    }

    /// Trust `token` as an OIDC subject token.
    pub fn trust_oidc(&self, token: &str) {
        lock(&self.state.oidc_subjects).insert(token.to_string());
    }

    /// Accept AWS requests signed with this access key and secret (and,
    /// for temporary keys, carrying and signing this session token).
    pub fn trust_aws_key(&self, id: &str, secret: &str, session_token: Option<&str>) {
        lock(&self.state.aws_keys).insert(
            id.into(),
            (secret.into(), session_token.map(str::to_string)),
        );
    }

    /// The regions of the signed AWS requests accepted, in order.
    pub fn aws_regions(&self) -> Vec<String> {
        lock(&self.state.aws_regions).clone()
    }

    /// `http://HOST/oidc`: serves `{"id_token": TOKEN}` to requests with
    /// the header `Metadata: True` (a URL-sourced subject token in JSON).
    pub fn subject_url(&self) -> String {
        format!("http://{}/oidc", self.host)
    }

    /// From now on, STS tokens are good for impersonation only (the
    /// registry accepts only the service account's tokens).
    pub fn require_impersonation(&self) {
        self.state
            .require_impersonation
            .store(true, Ordering::SeqCst);
    }

    /// Token exchanges the STS granted.
    pub fn sts_grants(&self) -> usize {
        self.state.sts_grants.load(Ordering::SeqCst)
    }

    /// Of which for a signed AWS request.
    pub fn aws_grants(&self) -> usize {
        self.state.aws_grants.load(Ordering::SeqCst)
    }

    /// IMDSv2 session tokens handed out.
    pub fn imds_session_requests(&self) -> usize {
        self.state.imds_session_requests.load(Ordering::SeqCst)
    }

    /// Why the STS refused exchanges, in order.
    pub fn sts_refusals(&self) -> Vec<String> {
        lock(&self.state.sts_refusals).clone()
    }

    /// The bodies of the `generateAccessToken` calls granted, in order.
    pub fn impersonations(&self) -> Vec<Value> {
        lock(&self.state.impersonation_bodies).clone()
    }

    /// Whether `token` is one `generateAccessToken` issued.
    pub fn is_impersonated(&self, token: &str) -> bool {
        lock(&self.state.impersonated).contains(token)
    }
}

fn error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        json!({"error": error, "error_description": description}),
    )
}

async fn route(State(st): State<Arc<FedState>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path == "/v1/token" && req.method() == "POST" {
        return sts(&st, req).await;
    }
    if path.ends_with(":generateAccessToken") && req.method() == "POST" {
        return generate_access_token(&st, req).await;
    }
    if path == "/oidc" {
        let subject = lock(&st.oidc_subjects).iter().next().cloned();
        return match (
            req.headers().get("metadata").and_then(|v| v.to_str().ok()),
            subject,
        ) {
            (Some("True"), Some(t)) => json_response(StatusCode::OK, json!({"id_token": t})),
            _ => StatusCode::BAD_REQUEST.into_response(),
        };
    }
    if path.starts_with("/latest/") {
        return imds(&st, &req, &path);
    }
    error(StatusCode::NOT_FOUND, "not_found", &path)
}

async fn sts(st: &FedState, req: Request) -> Response {
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let f: HashMap<String, String> = url::form_urlencoded::parse(&bytes).into_owned().collect();
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let checks = [
        (
            get("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange",
            "grant_type",
        ),
        (get("audience") == st.audience, "audience"),
        (
            get("scope")
                .split(' ')
                .any(|s| s == "https://www.googleapis.com/auth/cloud-platform"),
            "scope",
        ),
        (
            get("requested_token_type") == "urn:ietf:params:oauth:token-type:access_token",
            "requested_token_type",
        ),
    ];
    if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
        lock(&st.sts_refusals).push(format!("bad {what}"));
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("bad {what}"),
        );
    }
    let subject = get("subject_token");
    let verdict = match get("subject_token_type") {
        ID_TOKEN_TYPE | "urn:ietf:params:oauth:token-type:jwt" => {
            if lock(&st.oidc_subjects).contains(subject) {
                Ok(false)
            } else {
                Err("the OIDC token is not trusted".to_string())
            }
        }
        AWS_TOKEN_TYPE => verify_aws(st, subject).map(|()| true),
        other => Err(format!("unsupported subject_token_type {other}")),
    };
    let aws = match verdict {
        Ok(aws) => aws,
        Err(why) => {
            lock(&st.sts_refusals).push(why.clone());
            return error(StatusCode::BAD_REQUEST, "invalid_grant", &why);
        }
    };
    st.sts_grants.fetch_add(1, Ordering::SeqCst);
    if aws {
        st.aws_grants.fetch_add(1, Ordering::SeqCst);
    }
    let (token, lifetime) = if st.require_impersonation.load(Ordering::SeqCst) {
        let token = random_token("federated.");
        let lifetime = Duration::from_secs(3600);
        lock(&st.federated).insert(token.clone(), Instant::now() + lifetime);
        (token, lifetime)
    } else {
        (st.issue)()
    };
    json_response(
        StatusCode::OK,
        json!({"access_token": token, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
               "token_type": "Bearer", "expires_in": lifetime.as_secs()}),
    )
}

/// Check a serialized, signed `GetCallerIdentity` request.
fn verify_aws(st: &FedState, subject: &str) -> Result<(), String> {
    if !subject
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.~/%".contains(&b))
    {
        return Err("the AWS subject token is not URL-encoded".into());
    }
    let decoded = url::form_urlencoded::parse(format!("t={subject}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let v: Value = serde_json::from_str(&decoded).map_err(|e| format!("not JSON: {e}"))?;
    if v["method"] != "POST" {
        return Err("method is not POST".into());
    }
    let url = url::Url::parse(v["url"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
    let headers: HashMap<String, String> = v["headers"]
        .as_array()
        .ok_or("no headers list")?
        .iter()
        .filter_map(|h| {
            Some((
                h["key"].as_str()?.to_ascii_lowercase(),
                h["value"].as_str()?.to_string(),
            ))
        })
        .collect();
    let header = |k: &str| headers.get(k).cloned().ok_or(format!("no {k} header"));
    if header("x-goog-cloud-target-resource")? != st.audience {
        return Err("x-goog-cloud-target-resource is not the audience".into());
    }
    let auth = header("authorization")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .ok_or("not SigV4")?;
    let parts: Vec<&str> = rest.split(", ").collect();
    let [credential, signed, signature] = parts.as_slice() else {
        return Err(format!("Authorization has {} parts", parts.len()));
    };
    let signed = signed
        .strip_prefix("SignedHeaders=")
        .ok_or("no SignedHeaders")?;
    let signature = signature.strip_prefix("Signature=").ok_or("no Signature")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, "sts", "aws4_request"] = scope.as_slice() else {
        return Err(format!("bad credential scope {credential}"));
    };
    if url.scheme() != "https"
        || url.host_str() != Some(&format!("sts.{region}.amazonaws.com"))
        || url.query() != Some("Action=GetCallerIdentity&Version=2011-06-15")
    {
        return Err(format!(
            "{url} is not GetCallerIdentity of sts.{region}.amazonaws.com"
        ));
    }
    if header("host")? != url.host_str().unwrap_or_default() {
        return Err("host header is not the URL's host".into());
    }
    let names: Vec<&str> = signed.split(';').collect();
    for needed in ["host", "x-amz-date", "x-goog-cloud-target-resource"] {
        if !names.contains(&needed) {
            return Err(format!("{needed} is not signed"));
        }
    }
    let (secret, session) = lock(&st.aws_keys)
        .get(*key_id)
        .cloned()
        .ok_or(format!("unknown AWS access key {key_id}"))?;
    if let Some(session) = session
        && (headers.get("x-amz-security-token") != Some(&session)
            || !names.contains(&"x-amz-security-token"))
    {
        return Err("the session token is missing or unsigned".into());
    }
    let mut canonical_headers = String::new();
    for n in &names {
        canonical_headers.push_str(&format!("{n}:{}\n", header(n)?.trim()));
    }
    let empty_hash = hex::encode(sha2::Sha256::digest(b""));
    let canonical = format!(
        "POST\n/\n{}\n{canonical_headers}\n{signed}\n{empty_hash}",
        url.query().unwrap_or_default()
    );
    let amz_date = header("x-amz-date")?;
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/sts/aws4_request\n{}",
        hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
    );
    let mac = |key: &[u8], data: &str| {
        ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            data.as_bytes(),
        )
        .as_ref()
        .to_vec()
    };
    let mut key = mac(format!("AWS4{secret}").as_bytes(), date);
    for part in [*region, "sts", "aws4_request"] {
        key = mac(&key, part);
    }
    if hex::encode(mac(&key, &to_sign)) != *signature {
        return Err("The AWS signature does not match".into());
    }
    lock(&st.aws_regions).push(region.to_string());
    Ok(())
}

async fn generate_access_token(st: &FedState, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let federated = lock(&st.federated)
        .get(&bearer)
        .is_some_and(|u| *u > Instant::now());
    if !federated && !(st.google_token)(&bearer) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": 401, "status": "UNAUTHENTICATED",
                   "message": "Request had invalid authentication credentials."}}),
        );
    }
    let want = format!(
        "/v1/projects/-/serviceAccounts/{}:generateAccessToken",
        st.service_account
    );
    if path != want {
        return json_response(
            StatusCode::FORBIDDEN,
            json!({"error": {"code": 403, "status": "PERMISSION_DENIED",
                   "message": "Permission 'iam.serviceAccounts.getAccessToken' denied"}}),
        );
    }
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let scoped = body["scope"].as_array().is_some_and(|s| {
        s.iter()
            .any(|x| x == "https://www.googleapis.com/auth/cloud-platform")
    });
    if !scoped {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "scope"}}),
        );
    }
    let (token, lifetime) = (st.issue)();
    lock(&st.impersonated).insert(token.clone());
    lock(&st.impersonation_bodies).push(body);
    let expire = chrono::Utc::now() + lifetime;
    json_response(
        StatusCode::OK,
        json!({"accessToken": token,
               "expireTime": expire.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
    )
}

fn imds(st: &FedState, req: &Request, path: &str) -> Response {
    if path == "/latest/api/token" {
        if req.method() != "PUT"
            || !req
                .headers()
                .contains_key("x-aws-ec2-metadata-token-ttl-seconds")
        {
            return StatusCode::BAD_REQUEST.into_response();
        }
        st.imds_session_requests.fetch_add(1, Ordering::SeqCst);
        let session = random_token("imdsv2-");
        lock(&st.imds_sessions).insert(session.clone());
        return session.into_response();
    }
    let session = req
        .headers()
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !lock(&st.imds_sessions).contains(session) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let (id, secret, token) = &st.imds_keys;
    match path.trim_start_matches("/latest/meta-data/") {
        "placement/availability-zone" => format!("{IMDS_REGION}b").into_response(),
        "iam/security-credentials" | "iam/security-credentials/" => IMDS_ROLE.into_response(),
        p if p == format!("iam/security-credentials/{IMDS_ROLE}") => json_response(
            StatusCode::OK,
            json!({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": id,
                   "SecretAccessKey": secret, "Token": token,
                   "Expiration": (chrono::Utc::now() + Duration::from_secs(3600)).to_rfc3339()}),
        ),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
