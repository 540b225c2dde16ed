//! Authentication: credentials, `WWW-Authenticate` challenges and the Docker
//! token flow (basic credentials or an OAuth2 refresh token exchanged at the
//! token service for short-lived bearer tokens, cached per scope set).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use super::config::{RegistryConfig, Secret};
use super::error::{Error, Op, Result};

/// Credentials for one registry.
#[derive(Clone, Default)]
pub enum Credentials {
    /// No credentials: anonymous access.
    #[default]
    Anonymous,
    /// User name and password (or access token used as a password).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// An OAuth2 refresh token (Docker's `identitytoken`).
    IdentityToken {
        /// User name, when known.
        username: Option<String>,
        /// The refresh token.
        token: Secret,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::IdentityToken { username, .. } => {
                write!(f, "IdentityToken({username:?}, <redacted>)")
            }
        }
    }
}

impl Credentials {
    /// Resolve a registry's configured credentials (`password`,
    /// `password_env`, `password_file`, `identity_token`). `Ok(None)` when
    /// none are configured.
    pub fn from_config(cfg: &RegistryConfig) -> Result<Option<Credentials>> {
        let err = |detail: String| Error::Config {
            host: cfg.host.clone(),
            detail,
        };
        let sources = [
            cfg.password.is_some(),
            cfg.password_env.is_some(),
            cfg.password_file.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if sources > 1 {
            return Err(err(
                "set only one of password, password_env and password_file".into(),
            ));
        }
        let password = if let Some(p) = &cfg.password {
            Some(p.clone())
        } else if let Some(var) = &cfg.password_env {
            match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(Secret::new(v)),
                _ => {
                    return Err(err(format!(
                        "password_env names {var}, but that environment variable is not set or empty"
                    )));
                }
            }
        } else if let Some(path) = &cfg.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| err(format!("cannot read password_file {}: {e}", path.display())))?;
            Some(Secret::new(text.trim_end_matches(['\r', '\n'])))
        } else {
            None
        };
        match (&cfg.identity_token, password, &cfg.username) {
            (Some(token), _, user) => Ok(Some(Credentials::IdentityToken {
                username: user.clone(),
                token: token.clone(),
            })),
            (None, Some(password), Some(user)) => Ok(Some(Credentials::Basic {
                username: user.clone(),
                password,
            })),
            (None, Some(_), None) => Err(err("a password is set but no username".into())),
            (None, None, Some(_)) => Err(err(
                "a username is set but no password, password_env or password_file".into(),
            )),
            (None, None, None) => Ok(None),
        }
    }

    /// Look a registry up in a Docker `config.json`: `auths` entries
    /// (`auth`, `username`/`password`, `identitytoken`), then `credHelpers`
    /// and `credsStore` (running `docker-credential-<name> get`).
    pub fn from_docker_config(path: &Path, registry: &str) -> Result<Option<Credentials>> {
        let err = |detail: String| Error::Config {
            host: registry.to_string(),
            detail,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(err(format!(
                    "cannot read Docker config {}: {e}",
                    path.display()
                )));
            }
        };
        let cfg: DockerConfig = serde_json::from_str(&text).map_err(|e| {
            err(format!(
                "Docker config {} is not valid JSON: {e}",
                path.display()
            ))
        })?;
        let keys = docker_config_keys(registry);
        for (key, entry) in &cfg.auths {
            if !keys.iter().any(|k| normalise_key(key) == *k) {
                continue;
            }
            if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
                return Ok(Some(Credentials::IdentityToken {
                    username: entry.username.clone(),
                    token: Secret::new(token.clone()),
                }));
            }
            if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        err(format!(
                            "Docker config {}: auths entry for {key} has an undecodable auth field",
                            path.display()
                        ))
                    })?;
                let (user, pass) = decoded.split_once(':').ok_or_else(|| {
                    err(format!(
                        "Docker config {}: auths entry for {key} is not user:password",
                        path.display()
                    ))
                })?;
                return Ok(Some(Credentials::Basic {
                    username: user.to_string(),
                    password: Secret::new(pass),
                }));
            }
            if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
                return Ok(Some(Credentials::Basic {
                    username: u.clone(),
                    password: Secret::new(p.clone()),
                }));
            }
        }
        let helper = keys
            .iter()
            .find_map(|k| {
                cfg.cred_helpers
                    .iter()
                    .find(|(h, _)| normalise_key(h) == *k)
                    .map(|(_, v)| v.clone())
            })
            .or_else(|| cfg.creds_store.clone().filter(|s| !s.is_empty()));
        match helper {
            Some(name) => run_credential_helper(&name, registry),
            None => Ok(None),
        }
    }
}

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// Keys a registry may be filed under in a Docker config.
fn docker_config_keys(registry: &str) -> Vec<String> {
    if registry == super::reference::DOCKER_HUB {
        vec![
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![registry.to_string()]
    }
}

/// `https://index.docker.io/v1/` -> `index.docker.io`.
fn normalise_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    k.split('/').next().unwrap_or(k).to_string()
}

fn run_credential_helper(name: &str, registry: &str) -> Result<Option<Credentials>> {
    let err = |detail: String| Error::Config {
        host: registry.to_string(),
        detail,
    };
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(err(format!("credential helper name {name:?} is invalid")));
    }
    let server = if registry == super::reference::DOCKER_HUB {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    };
    let program = format!("docker-credential-{name}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("cannot run credential helper {program}: {e}; install it or remove it from the Docker config")))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("credential helper {program} failed: {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout);
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        return Err(err(format!(
            "credential helper {program} exited with {}",
            out.status
        )));
    }
    #[derive(Deserialize)]
    struct HelperOut {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let h: HelperOut = serde_json::from_slice(&out.stdout).map_err(|_| {
        err(format!(
            "credential helper {program} printed something that is not its JSON answer"
        ))
    })?;
    if h.username == "<token>" {
        Ok(Some(Credentials::IdentityToken {
            username: None,
            token: Secret::new(h.secret),
        }))
    } else {
        Ok(Some(Credentials::Basic {
            username: h.username,
            password: Secret::new(h.secret),
        }))
    }
}

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
        let lifetime = Duration::from_secs(self.expires_in.unwrap_or(60).max(1))
            .min(super::limits::MAX_TOKEN_LIFETIME);
        let now = Instant::now();
        Ok(Token {
            value: Secret::new(value),
            refresh_at: now.checked_add(lifetime.mul_f64(0.9)).unwrap_or(now),
        })
    }
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
            assert!(t.refresh_at <= Instant::now() + super::super::limits::MAX_TOKEN_LIFETIME);
        }
    }

    #[test]
    fn scopes_are_sets() {
        let a = Scopes::push("t/x").and(Scopes::pull("s/y"));
        let b = Scopes::pull("s/y").and(Scopes::push("t/x"));
        assert_eq!(a, b);
        assert_eq!(a.iter().count(), 2);
    }

    #[test]
    fn credentials_from_config_and_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let cfg = RegistryConfig {
            host: "r.example".into(),
            username: Some("u".into()),
            password_file: Some(pw),
            ..Default::default()
        };
        let c = Credentials::from_config(&cfg).unwrap().unwrap();
        let Credentials::Basic { username, password } = &c else {
            panic!()
        };
        assert_eq!((username.as_str(), password.expose()), ("u", "s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));

        let missing = RegistryConfig {
            host: "r.example".into(),
            username: Some("u".into()),
            password_env: Some("REGMIRROR_TEST_SURELY_UNSET".into()),
            ..Default::default()
        };
        let e = Credentials::from_config(&missing).unwrap_err().to_string();
        assert!(e.contains("REGMIRROR_TEST_SURELY_UNSET"), "{e}");

        let dc = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("hub-user:hub-pass");
        std::fs::write(
            &dc,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"ghcr.io":{{"identitytoken":"refresh"}}}}}}"#),
        )
        .unwrap();
        let Some(Credentials::Basic { username, password }) =
            Credentials::from_docker_config(&dc, "docker.io").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (username.as_str(), password.expose()),
            ("hub-user", "hub-pass")
        );
        assert!(matches!(
            Credentials::from_docker_config(&dc, "ghcr.io").unwrap(),
            Some(Credentials::IdentityToken { .. })
        ));
        assert!(
            Credentials::from_docker_config(&dc, "quay.io")
                .unwrap()
                .is_none()
        );
    }
}
