//! Debug events of the HTTP stack (`--debug`, or `regmirror=debug`): one per
//! registry request and per token request, one per redirect and per 401
//! challenge. They never carry a secret: URLs are shown without user info
//! or fragment and with every query value but a few known-harmless ones
//! replaced by `REDACTED` (presigned storage URLs carry signatures and
//! tokens there); no header is logged but the authorization scheme's name;
//! token service answers and request bodies are never logged.

use std::time::Duration;

use reqwest::header::HeaderValue;
use url::Url;

use super::auth::Challenge;
use crate::registry::escape::{printable, shown};

/// Query parameters whose values are shown: the distribution API's own,
/// none of them a credential.
const SHOWN_QUERY: [&str; 7] = ["service", "scope", "n", "last", "digest", "mount", "from"];

/// What replaces a query value that is not shown.
const REDACTED: &str = "REDACTED";

/// `url` as it may be logged: no user info, no fragment, query values
/// other than [`SHOWN_QUERY`]'s redacted.
pub(crate) fn shown_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_fragment(None);
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let keep = SHOWN_QUERY.contains(&k.as_ref());
                let value = if keep {
                    v.into_owned()
                } else {
                    REDACTED.into()
                };
                (k.into_owned(), value)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    printable(u.as_str()).into_owned()
}

/// The scheme word of an `Authorization` value (`Bearer`, `Basic`), never
/// the credential after it.
pub(super) fn auth_scheme(value: Option<&HeaderValue>) -> &'static str {
    let Some(v) = value else { return "none" };
    let word = v.to_str().unwrap_or("").split(' ').next().unwrap_or("");
    if word.eq_ignore_ascii_case("bearer") {
        "bearer"
    } else if word.eq_ignore_ascii_case("basic") {
        "basic"
    } else {
        "other"
    }
}

/// One round trip to a registry or to its token service.
pub(super) struct Sent<'a> {
    /// A token request (else a registry request).
    pub token: bool,
    pub registry: &'a str,
    pub method: &'a str,
    pub url: &'a Url,
    /// What authenticated the request: for a registry request the
    /// `Authorization` scheme (see [`auth_scheme`]); for a token request
    /// the grant (`anonymous`, `basic`, `refresh_token`). Never the secret.
    pub auth: &'static str,
    pub attempt: u32,
    pub took: Duration,
}

impl Sent<'_> {
    /// Log the answer (`Ok(status)`) or the failure to get one.
    pub(super) fn log(&self, answer: Result<u16, &str>) {
        let url = shown_url(self.url);
        let ms = self.took.as_millis() as u64;
        let what = if self.token {
            "token request"
        } else {
            "registry request"
        };
        match answer {
            Ok(status) => tracing::debug!(
                registry = %self.registry, method = self.method, url = %url, status,
                duration_ms = ms, attempt = self.attempt, auth = self.auth,
                "{what}: {} {url} -> HTTP {status}", self.method
            ),
            Err(error) => tracing::debug!(
                registry = %self.registry, method = self.method, url = %url,
                duration_ms = ms, attempt = self.attempt, auth = self.auth, error = %error,
                "{what}: {} {url} -> no answer", self.method
            ),
        }
    }
}

/// A redirect followed to `next` (only its host is logged).
pub(super) fn redirect(registry: &str, status: u16, next: &Url) {
    let host = shown(next.host_str().unwrap_or(""));
    tracing::debug!(registry = %registry, status, location_host = %host, "registry redirected the request to {host}");
}

/// A 401's `WWW-Authenticate` challenge, as parsed (`None`: unusable).
pub(super) fn challenge(registry: &str, parsed: Option<&Challenge>) {
    match parsed {
        Some(Challenge::Basic) => {
            tracing::debug!(registry = %registry, scheme = "basic", "auth challenge: basic");
        }
        Some(Challenge::Bearer {
            realm,
            service,
            scope,
        }) => {
            let realm = Url::parse(realm)
                .map(|u| shown_url(&u))
                .unwrap_or_else(|_| shown(realm));
            let service = service.as_deref().map(shown);
            let scope = scope.as_deref().map(shown);
            tracing::debug!(
                registry = %registry, scheme = "bearer", realm = %realm,
                service = service.as_deref().unwrap_or(""), scope = scope.as_deref().unwrap_or(""),
                "auth challenge: bearer realm {realm}"
            );
        }
        None => {
            tracing::debug!(registry = %registry, scheme = "unusable", "auth challenge: none usable");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_fragments_and_unknown_query_values_are_not_shown() {
        let u = Url::parse(
            "https://user:pa55@s3.example/bucket/blob?X-Amz-Signature=abc&X-Amz-Credential=k\
             &token=t0k&digest=sha256:1&n=10#frag",
        )
        .unwrap();
        let s = shown_url(&u);
        for secret in ["user", "pa55", "abc", "=k", "t0k", "frag"] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        assert!(s.contains("X-Amz-Signature=REDACTED"), "{s}");
        assert!(s.contains("token=REDACTED"), "{s}");
        assert!(s.contains("digest=sha256%3A1"), "{s}");
        assert!(s.contains("n=10"), "{s}");
        assert!(s.starts_with("https://s3.example/bucket/blob?"), "{s}");
    }

    #[test]
    fn a_url_without_query_is_shown_as_is() {
        let u = Url::parse("http://127.0.0.1:5000/v2/team/app/manifests/v1").unwrap();
        assert_eq!(
            shown_url(&u),
            "http://127.0.0.1:5000/v2/team/app/manifests/v1"
        );
    }

    #[test]
    fn only_the_scheme_of_an_authorization_is_named() {
        let v = HeaderValue::from_static("Bearer secret-token");
        assert_eq!(auth_scheme(Some(&v)), "bearer");
        let v = HeaderValue::from_static("Basic dXNlcjpwYXNz");
        assert_eq!(auth_scheme(Some(&v)), "basic");
        assert_eq!(auth_scheme(None), "none");
    }
}
