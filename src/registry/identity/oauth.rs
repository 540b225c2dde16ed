//! OAuth2 plumbing shared by the cloud identity providers: form POSTs and
//! GETs to token endpoints, their JSON answers, expiry read from a JWT's
//! `exp` claim or an `expires_in`, and errors that name the endpoint and
//! the service's own words but never a secret.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::Value;

use crate::registry::config::{RegistryConfig, TlsMode};
use crate::registry::error::{Error, Op, Result};

/// Deadline to connect to an identity endpoint: short, so that a metadata
/// service that does not exist (off-cloud) is given up quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP client a provider uses for the identity service and, for
/// `acr`, the registry's own `/oauth2/exchange`: regmirror's user agent,
/// no redirects, and the registry's `tls` and `ca_file` settings.
pub(super) fn client_for(cfg: &RegistryConfig) -> Result<reqwest::Client> {
    let bad = |detail: String| Error::Config {
        host: cfg.host.clone(),
        detail,
    };
    let mut b = reqwest::Client::builder()
        .user_agent(crate::registry::http::USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT);
    if cfg.tls == Some(TlsMode::SkipVerify) {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    if let Some(ca) = &cfg.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| bad(format!("cannot read ca_file {}: {e}", ca.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            bad(format!(
                "ca_file {} holds no usable PEM certificate: {e}",
                ca.display()
            ))
        })?;
        b = b.tls_certs_merge(certs);
    }
    b.build().map_err(|e| {
        bad(format!(
            "cannot build the identity provider's HTTP client: {e}"
        ))
    })
}

/// `https://host` (or `http://` for plain-HTTP registries, loopback by
/// default) of the registry `cfg` describes.
pub(super) fn registry_base(cfg: &RegistryConfig) -> String {
    format!("{}://{}", cfg.scheme(&cfg.host), cfg.host)
}

/// Longest error text kept from a token endpoint's answer.
const MAX_DETAIL: usize = 300;
/// Deadline of one request to a token endpoint.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One token endpoint: what it is (for messages) and where.
pub(super) struct Endpoint<'a> {
    /// What the endpoint is, e.g. `Entra ID token endpoint`.
    pub what: &'a str,
    /// Its URL (never with a secret in it).
    pub url: &'a str,
    /// The registry the credential is for, named in errors.
    pub target: &'a str,
}

impl Endpoint<'_> {
    /// POST `form` (URL-encoded) with `headers`; the JSON answer.
    pub async fn post_form(
        &self,
        client: &reqwest::Client,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Result<Value> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = client
            .post(self.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    /// GET with `headers`; the JSON answer.
    pub async fn get(&self, client: &reqwest::Client, headers: &[(&str, &str)]) -> Result<Value> {
        let mut req = client.get(self.url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    /// POST a JSON body with a bearer token; the JSON answer.
    pub async fn post_json(
        &self,
        client: &reqwest::Client,
        bearer: &str,
        body: &Value,
    ) -> Result<Value> {
        let req = client
            .post(self.url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {bearer}"))
            .body(body.to_string());
        self.send(req).await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        let resp = req
            .header("accept", "application/json")
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| Error::Connection {
                op: Op::Token,
                target: self.target.to_string(),
                detail: format!("{} {}: {}", self.what, self.url, e.without_url()),
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| Error::Connection {
            op: Op::Token,
            target: self.target.to_string(),
            detail: format!(
                "{} {}: reading the answer: {}",
                self.what,
                self.url,
                e.without_url()
            ),
        })?;
        if !status.is_success() {
            return Err(self.refused(&format!(
                "answered HTTP {}{}",
                status.as_u16(),
                service_words(&bytes)
            )));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| self.refused(&format!("answered something that is not JSON ({e})")))
    }

    /// An authentication error naming this endpoint.
    pub fn refused(&self, what_happened: &str) -> Error {
        Error::Auth {
            op: Op::Token,
            target: self.target.to_string(),
            detail: format!("{} {} {what_happened}", self.what, self.url),
        }
    }

    /// The string field `name` of an answer, or an error naming it.
    pub fn field(&self, answer: &Value, name: &str) -> Result<String> {
        match answer.get(name).and_then(Value::as_str) {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err(self.refused(&format!("answered without `{name}`"))),
        }
    }
}

/// Refuse an endpoint that would carry a secret in clear: HTTPS only,
/// except on a loopback address. `setting` names where the URL came from.
pub(super) fn require_https_or_loopback(url: &str, setting: &str, target: &str) -> Result<()> {
    let parsed = url::Url::parse(url).map_err(|e| Error::Config {
        host: target.to_string(),
        detail: format!("{setting} {url} is not a URL: {e}"),
    })?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback) {
        return Ok(());
    }
    Err(Error::Config {
        host: target.to_string(),
        detail: format!(
            "{setting} {url} must use https (plain http is accepted on loopback only): \
             it receives a secret"
        ),
    })
}

/// `: <error>: <error_description>` from an OAuth2 error answer (or the
/// start of any other body), cut to a readable length.
pub(super) fn service_words(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let parts: Vec<&str> = ["error", "error_description", "message"]
                .iter()
                .filter_map(|k| match v.get(*k) {
                    Some(Value::String(s)) => Some(s.as_str()),
                    Some(Value::Object(o)) => o.get("message").and_then(Value::as_str),
                    _ => None,
                })
                .collect();
            parts.join(": ")
        }
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    };
    if text.is_empty() {
        return String::new();
    }
    let cut: String = text.chars().take(MAX_DETAIL).collect();
    format!(": {cut}")
}

/// When a token answered with `expires_in` (seconds, as a number or a
/// string) stops being valid, counted from now.
pub(super) fn expires_in(answer: &Value) -> Option<SystemTime> {
    let secs = match answer.get("expires_in")? {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    SystemTime::now().checked_add(Duration::from_secs(secs))
}

/// The `exp` claim of a JWT, read without checking its signature (the
/// registry checks it; the client only needs to know when to renew).
pub(super) fn jwt_exp(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_u64()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exp_of_a_jwt_without_a_signature_check() {
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwt = format!(
            "{}.{}.sig",
            enc.encode(br#"{"alg":"RS256"}"#),
            enc.encode(br#"{"exp":2000000000,"sub":"x"}"#)
        );
        assert_eq!(
            jwt_exp(&jwt),
            Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
        assert_eq!(jwt_exp("not-a-jwt"), None);
        assert_eq!(jwt_exp("a.!!!.c"), None);
    }

    #[test]
    fn expires_in_as_number_or_string() {
        let now = SystemTime::now();
        let a = expires_in(&serde_json::json!({"expires_in": 3600})).unwrap();
        let b = expires_in(&serde_json::json!({"expires_in": "3600"})).unwrap();
        assert!(a >= now + Duration::from_secs(3599) && b >= now + Duration::from_secs(3599));
        assert_eq!(expires_in(&serde_json::json!({})), None);
    }

    #[test]
    fn secrets_go_to_https_or_loopback_only() {
        assert!(require_https_or_loopback("https://login.example", "X", "r").is_ok());
        assert!(require_https_or_loopback("http://127.0.0.1:9", "X", "r").is_ok());
        assert!(require_https_or_loopback("http://[::1]:9", "X", "r").is_ok());
        let e = require_https_or_loopback("http://login.example", "X", "r").unwrap_err();
        assert!(e.to_string().contains("must use https"), "{e}");
    }

    #[test]
    fn service_words_keep_the_oauth_error_and_cut_long_bodies() {
        let w = service_words(br#"{"error":"invalid_client","error_description":"AADSTS7000215"}"#);
        assert_eq!(w, ": invalid_client: AADSTS7000215");
        let long = "x".repeat(2000);
        assert_eq!(service_words(long.as_bytes()).len(), MAX_DETAIL + 2);
        assert_eq!(service_words(b""), "");
    }
}
