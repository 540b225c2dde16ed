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
}
