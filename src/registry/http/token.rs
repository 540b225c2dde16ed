//! The token flow of one host: the `Authorization` header of a request,
//! learning the scheme from a 401's `WWW-Authenticate` challenge, and
//! fetching bearer tokens from the token service (basic credentials or an
//! OAuth2 refresh token), cached per scope set.

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use url::Url;

use super::auth::{Challenge, Credentials, Scheme, Scopes, Token, TokenResponse, parse_challenge};
use super::host::Host;
use super::retry::is_tls_failure;
use super::wire::{Capped, describe, read_capped};
use crate::metrics;
use crate::registry::config::Secret;
use crate::registry::error::{Error, Op, Result};
use crate::registry::escape::shown;
use crate::registry::limits::{MAX_TOKEN_BYTES, within};
use crate::registry::reference::is_loopback_host;

impl Host {
    /// The `Authorization` header for `scopes`, fetching a token when needed.
    pub(super) async fn authorization(
        &self,
        op: Op,
        target: &str,
        scopes: &Scopes,
    ) -> Result<Option<HeaderValue>> {
        let mut state = self.auth.lock().await;
        match &state.scheme {
            Scheme::Unknown | Scheme::Anonymous => Ok(None),
            Scheme::Basic => Ok(basic_header(&self.credentials.current().await?)),
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

    /// Create what a push into `repo` needs (`create_repositories`), once
    /// per run; `before_push`: before the first push, else after a push met
    /// `NAME_UNKNOWN`. `Ok(true)` when pushing again may work.
    pub(crate) async fn create_repository(&self, repo: &str, before_push: bool) -> Result<bool> {
        self.credentials.create_repository(repo, before_push).await
    }

    /// Repositories created since the last call (`host/repo`).
    pub(crate) fn take_created_repositories(&self) -> Vec<String> {
        self.credentials.take_created()
    }

    /// A new run begins: credentials are read again at next use, and the
    /// bearer tokens of the old ones are dropped.
    pub(crate) async fn renew_credentials(&self) {
        self.credentials.renew();
        self.auth.lock().await.tokens.clear();
    }

    /// Learn the scheme from a 401's challenge; drop the stale token.
    pub(super) async fn on_challenge(
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
        if matches!(state.scheme, Scheme::Basic) {
            // The registry refused the credentials it was sent: read or
            // issue them again before the one retry.
            let _ = self.credentials.refused().await;
        }
        let parsed = parse_challenge(header);
        super::trace::challenge(&self.name, parsed.as_ref());
        match parsed {
            Some(Challenge::Basic) => {
                if matches!(self.credentials.current().await?, Credentials::Anonymous) {
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

    /// The token request, with the current credentials; when the token
    /// service refuses them, once more with credentials read or issued
    /// again. The HTTP client follows no redirect, so a token service
    /// answering 3xx never gets credentials or the identity token re-sent
    /// elsewhere: it is an error.
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
        let mut renewed = false;
        loop {
            let creds = self.credentials.current().await?;
            // Credentials for an HTTPS registry never travel in clear text: a
            // challenge naming a plain-HTTP token service (other than loopback)
            // is refused rather than followed.
            let has_credentials = !matches!(creds, Credentials::Anonymous);
            if has_credentials && !realm_may_receive_credentials(&self.base, &realm_url) {
                return Err(auth_err(format!(
                    "registry {} names a token service over plain HTTP ({realm_host}); regmirror \
                     does not send credentials in clear text, so it refuses to use it",
                    self.name
                )));
            }
            let req = self.token_request(&creds, &realm_url, service, scopes);
            match self.token_tries(req, &creds, &realm_host, &auth_err).await {
                Tried::Answer(tr) => return tr.into_token(op, target),
                Tried::Refused(_)
                    if has_credentials && !renewed && self.credentials.refused().await =>
                {
                    renewed = true;
                }
                Tried::Refused(e) | Tried::Final(e) | Tried::Again(e) => return Err(e),
            }
        }
    }

    /// Up to three tries of one token request; transient failures are tried
    /// again.
    async fn token_tries(
        &self,
        req: reqwest::RequestBuilder,
        creds: &Credentials,
        realm_host: &str,
        auth_err: &impl Fn(String) -> Error,
    ) -> Tried {
        let mut last = None;
        let shown = req.try_clone().and_then(|r| r.build().ok());
        for attempt in 0..3u32 {
            if attempt > 0
                && !super::retry::wait(Duration::from_millis(300 * 2u64.pow(attempt))).await
            {
                break;
            }
            let Some(r) = req.try_clone() else { break };
            let sent_at = Instant::now();
            let result = r.send().await;
            let log = |answer: std::result::Result<u16, &str>| {
                if let Some(built) = &shown {
                    let sent = super::trace::Sent {
                        token: true,
                        registry: &self.name,
                        method: built.method().as_str(),
                        url: built.url(),
                        auth: grant(creds),
                        attempt: attempt + 1,
                        took: sent_at.elapsed(),
                    };
                    sent.log(answer);
                }
            };
            let tried = match result {
                Ok(resp) => {
                    log(Ok(resp.status().as_u16()));
                    self.token_answer(resp, creds, realm_host, auth_err).await
                }
                Err(e) => {
                    metrics::record_response(realm_host, "GET", None);
                    let detail = describe(&e);
                    log(Err(&detail));
                    let err = auth_err(format!(
                        "cannot reach the token service at {realm_host}: {detail}"
                    ));
                    if is_tls_failure(&detail) {
                        Tried::Final(err)
                    } else {
                        Tried::Again(err)
                    }
                }
            };
            match tried {
                Tried::Again(e) => last = Some(e),
                other => return other,
            }
        }
        Tried::Final(last.unwrap_or_else(|| auth_err("token request failed".into())))
    }

    /// What one answer of the token service at `realm_host` tells.
    async fn token_answer(
        &self,
        resp: reqwest::Response,
        creds: &Credentials,
        realm_host: &str,
        auth_err: &impl Fn(String) -> Error,
    ) -> Tried {
        let status = resp.status();
        metrics::record_response(realm_host, "GET", Some(status.as_u16()));
        if status.is_success() {
            return match read_token(resp, realm_host).await {
                Ok(tr) => Tried::Answer(tr),
                Err(detail) => Tried::Final(auth_err(detail)),
            };
        }
        if status.is_redirection() {
            return Tried::Final(auth_err(format!(
                "the token service at {realm_host} answered with a redirect (HTTP {}); \
                 regmirror does not follow token-service redirects, so credentials \
                 are never sent to where it points",
                status.as_u16()
            )));
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Tried::Refused(auth_err(format!(
                "the token service at {realm_host} refused {} (HTTP {}): check the credentials \
                 configured for registry {} (from {})",
                who(creds),
                status.as_u16(),
                self.name,
                self.credentials.source()
            )));
        }
        let err = auth_err(format!(
            "the token service at {realm_host} answered HTTP {}",
            status.as_u16()
        ));
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Tried::Again(err)
        } else {
            Tried::Final(err)
        }
    }

    /// The token request: an OAuth2 POST for an identity token, else a GET
    /// with Basic credentials (when configured).
    fn token_request(
        &self,
        creds: &Credentials,
        realm_url: &Url,
        service: Option<&str>,
        scopes: &Scopes,
    ) -> reqwest::RequestBuilder {
        match creds {
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
                if let Some(h) = basic_header(creds) {
                    r = r.header(AUTHORIZATION, h);
                }
                r
            }
        }
    }
}

/// Who a token request speaks for, for errors.
fn who(creds: &Credentials) -> String {
    match creds {
        Credentials::Anonymous => "anonymous access".to_string(),
        Credentials::Basic { username, .. } => format!("user {:?}", shown(username)),
        Credentials::IdentityToken { .. } => "the configured identity token".to_string(),
    }
}

/// What a token request sends, for the debug log (never the credential).
fn grant(creds: &Credentials) -> &'static str {
    match creds {
        Credentials::Anonymous => "anonymous",
        Credentials::Basic { .. } => "basic",
        Credentials::IdentityToken { .. } => "refresh_token",
    }
}

/// The `Basic` header of basic credentials.
fn basic_header(creds: &Credentials) -> Option<HeaderValue> {
    use base64::Engine as _;
    let Credentials::Basic { username, password } = creds else {
        return None;
    };
    let enc = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose()));
    let mut v = HeaderValue::from_str(&format!("Basic {enc}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// What one try of the token request came to.
enum Tried {
    /// The token service's answer.
    Answer(TokenResponse),
    /// The token service refused the credentials (401, 403).
    Refused(Error),
    /// A transient failure: try again.
    Again(Error),
    /// A failure trying again cannot fix.
    Final(Error),
}

/// The token answer's body, read within its fixed cap and parsed; `Err`
/// says what was wrong with it.
async fn read_token(
    resp: reqwest::Response,
    realm_host: &str,
) -> std::result::Result<TokenResponse, String> {
    let body = read_capped(resp, MAX_TOKEN_BYTES)
        .await
        .map_err(|e| match e {
            Capped::TooBig => format!(
                "the token service at {realm_host} answered with more than \
                 {MAX_TOKEN_BYTES} bytes, over the limit for a token answer (fixed)"
            ),
            Capped::Broken(e) => format!(
                "reading the token from {realm_host} failed: {}",
                describe(&e)
            ),
        })?;
    serde_json::from_slice(&body).map_err(|_| {
        format!("the token service at {realm_host} answered with something that is not a token")
    })
}

/// Whether credentials may be sent to a token service: never from an HTTPS
/// registry to a plain-HTTP realm, unless the realm is on loopback.
fn realm_may_receive_credentials(registry: &Url, realm: &Url) -> bool {
    registry.scheme() != "https"
        || realm.scheme() == "https"
        || is_loopback_host(realm.host_str().unwrap_or(""))
}

fn bearer(token: &Secret) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    v.set_sensitive(true);
    v
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
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
}
