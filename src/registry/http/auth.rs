//! Authentication data: `WWW-Authenticate` challenges, token scopes, the
//! token service's answer, and the per-host token cache. The token flow
//! itself (basic credentials or an OAuth2 refresh token exchanged at the
//! token service for short-lived bearer tokens) is in [`super::token`].

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde::Deserialize;

pub use super::credentials::Credentials;
use crate::registry::config::Secret;
use crate::registry::error::{Error, Op, Result};
use crate::registry::limits::MAX_TOKEN_LIFETIME;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=…`.
    Basic,
    /// `Bearer realm=…,service=…,scope=…`.
    Bearer {
        /// Token service URL.
        realm: String,
        /// `service` parameter.
        service: Option<String>,
        /// `scope` parameter, when the registry names one.
        scope: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` header value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = s[key_start..i].trim().to_ascii_lowercase();
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch = s[i..].chars().next().unwrap_or(' ');
                v.push(ch);
                i += ch.len_utf8();
            }
            i += 1;
            v
        } else {
            let start = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            s[start..i].trim().to_string()
        };
        if !key.is_empty() {
            out.insert(key, value);
        }
    }
    out
}

/// A set of token scopes (`repository:name:pull,push`), kept sorted so that
/// equal sets share one cache entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// Pull access to `repo`.
    pub fn pull(repo: &str) -> Scopes {
        Scopes(BTreeSet::from([format!("repository:{repo}:pull")]))
    }
    /// Pull and push access to `repo`.
    pub fn push(repo: &str) -> Scopes {
        Scopes(BTreeSet::from([format!("repository:{repo}:pull,push")]))
    }
    /// This set plus another scope.
    pub fn and(mut self, other: Scopes) -> Scopes {
        self.0.extend(other.0);
        self
    }
    /// Add a scope string the registry asked for.
    pub fn with(mut self, scope: &str) -> Scopes {
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            self.0.insert(s.to_string());
        }
        self
    }
    /// The scopes.
    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.iter()
    }
}

/// A bearer token with its expiry.
#[derive(Clone)]
pub struct Token {
    /// The token.
    pub value: Secret,
    /// When to stop using it.
    pub refresh_at: Instant,
}

/// What the token service answers.
#[derive(Deserialize)]
pub struct TokenResponse {
    /// Docker's field.
    #[serde(default)]
    pub token: Option<String>,
    /// OAuth2's field.
    #[serde(default)]
    pub access_token: Option<String>,
    /// Lifetime in seconds (default 60). Any JSON number is taken: floats
    /// are cut, negative values count as 0.
    #[serde(default, deserialize_with = "lenient_seconds")]
    pub expires_in: Option<u64>,
}

fn lenient_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.and_then(|v| {
        v.as_u64().or_else(|| {
            v.as_f64().map(|f| {
                if f.is_finite() && f > 0.0 {
                    f as u64
                } else {
                    0
                }
            })
        })
    }))
}

impl TokenResponse {
    /// The token and when to refresh it: at 90% of its lifetime.
    pub fn into_token(self, op: Op, target: &str) -> Result<Token> {
        let value = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| Error::Auth {
                op,
                target: target.to_string(),
                detail: "the token service answered without a token".into(),
            })?;
        // A server may claim any lifetime (even 2^64-1 s): believe at most a
        // day, and add with checked arithmetic.
        let lifetime =
            Duration::from_secs(self.expires_in.unwrap_or(60).max(1)).min(MAX_TOKEN_LIFETIME);
        let now = Instant::now();
        Ok(Token {
            value: Secret::new(value),
            refresh_at: now.checked_add(lifetime.mul_f64(0.9)).unwrap_or(now),
        })
    }
}

/// The scheme a host's challenge named.
#[derive(Default)]
pub(super) enum Scheme {
    #[default]
    Unknown,
    Anonymous,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// One host's scheme and bearer tokens, cached per scope set.
#[derive(Default)]
pub(super) struct AuthState {
    pub scheme: Scheme,
    pub tokens: HashMap<Scopes, Token>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull,push".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn absurd_token_lifetimes_do_not_panic() {
        for expires_in in [Some(u64::MAX), Some(u64::MAX / 2), Some(0), None] {
            let t = TokenResponse {
                token: Some("t".into()),
                access_token: None,
                expires_in,
            }
            .into_token(Op::Token, "r")
            .unwrap();
            assert!(t.refresh_at <= Instant::now() + MAX_TOKEN_LIFETIME);
        }
    }

    #[test]
    fn scopes_are_sets() {
        let a = Scopes::push("t/x").and(Scopes::pull("s/y"));
        let b = Scopes::pull("s/y").and(Scopes::push("t/x"));
        assert_eq!(a, b);
        assert_eq!(a.iter().count(), 2);
    }
}
