//! The credentials of one registry, and those its `[[registry]]` table
//! configures.

use std::fmt;

use crate::registry::config::{RegistryConfig, Secret};
use crate::registry::error::{Error, Result};

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
        let optional = cfg.credentials_optional == Some(true);
        let password = if let Some(p) = &cfg.password {
            Some(p.clone())
        } else if let Some(var) = &cfg.password_env {
            match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(Secret::new(v)),
                _ if optional => {
                    warn_absent(&cfg.host, &format!("environment variable {var}"));
                    return Ok(None);
                }
                _ => {
                    return Err(err(format!(
                        "password_env names {var}, but that environment variable is not set or \
                         empty (set credentials_optional = true to use the registry anonymously \
                         without it)"
                    )));
                }
            }
        } else if let Some(path) = &cfg.password_file {
            match std::fs::read_to_string(path) {
                Ok(text) => Some(Secret::new(text.trim_end_matches(['\r', '\n']))),
                Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => {
                    warn_absent(&cfg.host, &format!("password_file {}", path.display()));
                    return Ok(None);
                }
                Err(e) => {
                    return Err(err(format!(
                        "cannot read password_file {}: {e}",
                        path.display()
                    )));
                }
            }
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
}

/// Warn once per process that an optional credential is absent.
fn warn_absent(host: &str, what: &str) {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let key = format!("{host}\0{what}");
    let first = WARNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key);
    if first {
        tracing::warn!(registry = %host, missing = %what, "optional credentials are absent: using this registry anonymously (credentials_optional = true)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_optional_credentials_mean_anonymous() {
        let mut cfg = RegistryConfig {
            host: "r.example".into(),
            username: Some("u".into()),
            password_env: Some("REGMIRROR_TEST_UNSET_VARIABLE_4711".into()),
            ..Default::default()
        };
        let e = Credentials::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("REGMIRROR_TEST_UNSET_VARIABLE_4711"), "{e}");
        cfg.credentials_optional = Some(true);
        assert!(Credentials::from_config(&cfg).unwrap().is_none());
        cfg.password_env = None;
        cfg.password_file = Some("/nonexistent/regmirror/password".into());
        assert!(Credentials::from_config(&cfg).unwrap().is_none());
        cfg.credentials_optional = None;
        let e = Credentials::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("password_file"), "{e}");
    }
}
