//! Cloud identity: registry credentials issued by a cloud's identity
//! service (Amazon ECR, Azure Container Registry, Google Artifact Registry)
//! instead of a password kept in a file or a Secret.
//!
//! A provider turns the workload's identity (a web-identity token file, a
//! metadata server, a service principal, …) into a short-lived user name and
//! password that the registry's normal basic or token flow accepts:
//!
//! | provider | user name | password |
//! |---|---|---|
//! | `ecr`, `ecr-public` | `AWS` | the decoded `GetAuthorizationToken` answer |
//! | `acr` | `00000000-0000-0000-0000-000000000000` | the ACR refresh token of `/oauth2/exchange` |
//! | `gar` | `oauth2accesstoken` | an OAuth2 access token (Application Default Credentials) |
//!
//! Lifetime: an issued credential is kept until shortly before its
//! `expires_at` (or until the registry refuses it once with 401), then
//! issued again; nothing is written to disk.

pub mod acr;
pub mod cache;
pub mod ecr;
pub mod gar;
pub mod harbor;
mod oauth;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;

use crate::registry::config::{AuthMode, RegistryConfig, Secret};
use crate::registry::error::{Error, Result};

/// A credential a provider issued, valid until `expires_at`.
#[derive(Clone)]
pub struct IssuedCredential {
    /// User name to present to the registry.
    pub username: String,
    /// Password or token to present with it.
    pub password: Secret,
    /// When the registry stops accepting it; `None`: no stated expiry.
    pub expires_at: Option<SystemTime>,
}

impl fmt::Debug for IssuedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// One cloud identity provider for one registry host.
pub trait IdentityProvider: Send + Sync + fmt::Debug {
    /// The provider's name as written in `[[registry]] auth` (`ecr`, `acr`, `gar`).
    fn name(&self) -> &'static str;
    /// Where the identity comes from, for `auth check`, `check` and error
    /// messages (`web identity token file /var/run/…`, `managed identity`);
    /// never a secret.
    fn describe(&self) -> String;
    /// Ask the identity service for a fresh credential.
    fn issue(&self) -> BoxFuture<'_, Result<IssuedCredential>>;
    /// The cloud API that creates repositories in this registry, when the
    /// provider has one (`create_repositories`).
    fn repositories(&self) -> Option<&dyn RepositoryCreator> {
        None
    }
}

/// Settings of a repository created for a push (`[[registry]]`
/// `repository_*` keys).
#[derive(Debug, Clone, Default)]
pub struct RepositorySettings {
    /// `MUTABLE` or `IMMUTABLE`; unset: the cloud's default (mutable).
    pub tag_mutability: Option<String>,
    /// Scan images on push.
    pub scan_on_push: Option<bool>,
    /// `AES256` or `KMS`.
    pub encryption: Option<String>,
    /// The KMS key, with `KMS`.
    pub kms_key: Option<String>,
}

impl RepositorySettings {
    /// The settings a `[[registry]]` table gives.
    pub fn of(cfg: &RegistryConfig) -> RepositorySettings {
        RepositorySettings {
            tag_mutability: cfg.repository_tag_mutability.clone(),
            scan_on_push: cfg.repository_scan_on_push,
            encryption: cfg.repository_encryption.clone(),
            kms_key: cfg.repository_kms_key.clone(),
        }
    }
}

/// Creates repositories through a cloud API.
pub trait RepositoryCreator: Send + Sync {
    /// `true`: what a push needs is made before the first push of a run
    /// (the registry refuses pushes into what does not exist without a
    /// `NAME_UNKNOWN` to react to); `false`: after a push met `NAME_UNKNOWN`.
    fn before_push(&self) -> bool {
        false
    }
    /// What a push into the registry repository `repo` needs created (ECR:
    /// the repository itself; Artifact Registry: `PROJECT/REPOSITORY`).
    fn unit_of(&self, repo: &str) -> Result<String> {
        Ok(repo.to_string())
    }
    /// Create `name` (a [`Self::unit_of`]); `Ok(false)` when it already existed.
    fn create_repository<'a>(
        &'a self,
        name: &'a str,
        settings: &'a RepositorySettings,
    ) -> BoxFuture<'a, Result<bool>>;
}

/// The provider a host's name makes unambiguous, if any:
/// `*.dkr.ecr.<region>.amazonaws.com[.cn]` -> `ecr`; `public.ecr.aws` -> `ecr-public`;
/// `*.azurecr.io` (and the sovereign `.azurecr.cn`, `.azurecr.us`) -> `acr`;
/// `<region>-docker.pkg.dev`, `gcr.io` and `*.gcr.io` -> `gar`.
pub fn detect(host: &str) -> Option<AuthMode> {
    let h = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let ecr = |h: &str| {
        let rest = h
            .strip_suffix(".amazonaws.com")
            .or_else(|| h.strip_suffix(".amazonaws.com.cn"));
        rest.and_then(|r| r.split_once(".dkr.ecr."))
            .is_some_and(|(account, region)| !account.is_empty() && !region.is_empty())
    };
    if h == "public.ecr.aws" {
        return Some(AuthMode::EcrPublic);
    }
    if ecr(&h) {
        return Some(AuthMode::Ecr);
    }
    if [".azurecr.io", ".azurecr.cn", ".azurecr.us"]
        .iter()
        .any(|s| h.len() > s.len() && h.ends_with(s))
    {
        return Some(AuthMode::Acr);
    }
    if h == "gcr.io"
        || (h.len() > ".gcr.io".len() && h.ends_with(".gcr.io"))
        || (h.len() > "-docker.pkg.dev".len() && h.ends_with("-docker.pkg.dev"))
    {
        return Some(AuthMode::Gar);
    }
    None
}

/// The identity provider chosen for a registry, and whether the config
/// named it.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// The provider.
    pub provider: Arc<dyn IdentityProvider>,
    /// `auth` named it; `false`: chosen from the host name, so a missing
    /// identity falls back to the other credential sources (a public image
    /// on `gcr.io` or `public.ecr.aws` pulls anonymously).
    pub explicit: bool,
}

/// The auth mode of a registry: its `auth` key, else the one its host
/// makes unambiguous when the table names no credentials of its own.
pub fn mode_for(cfg: &RegistryConfig) -> Option<AuthMode> {
    cfg.auth.or_else(|| {
        if cfg.has_static_credentials() {
            None
        } else {
            detect(&cfg.host)
        }
    })
}

/// The identity provider of a registry (see [`mode_for`]); `None` for
/// `basic`, `anonymous` and hosts no provider serves.
pub fn provider_for(cfg: &RegistryConfig) -> Result<Option<Chosen>> {
    let explicit = cfg.auth.is_some();
    let Some(mode) = mode_for(cfg) else {
        return Ok(None);
    };
    if explicit
        && mode != AuthMode::Basic
        && mode != AuthMode::Anonymous
        && cfg.has_static_credentials()
    {
        return Err(Error::Config {
            host: cfg.host.clone(),
            detail: format!(
                "auth = \"{mode}\" takes its credential from the {mode} identity service: remove \
                 username, password, password_env, password_file and identity_token from this \
                 [[registry]] table, or set auth = \"basic\" to use them"
            ),
        });
    }
    match mode {
        AuthMode::Basic | AuthMode::Anonymous => Ok(None),
        AuthMode::Ecr => match ecr::EcrProvider::for_host(&cfg.host) {
            Ok(p) => Ok(Some(Chosen {
                provider: Arc::new(p),
                explicit,
            })),
            Err(e) if explicit => Err(e),
            Err(_) => Ok(None),
        },
        AuthMode::EcrPublic => Ok(Some(Chosen {
            provider: Arc::new(ecr::EcrProvider::public(&cfg.host)),
            explicit,
        })),
        AuthMode::Acr => Ok(Some(Chosen {
            provider: acr::provider(cfg)?,
            explicit,
        })),
        AuthMode::Gar => Ok(Some(Chosen {
            provider: gar::provider(cfg)?,
            explicit,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_name_their_provider() {
        for (host, mode) in [
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                Some(AuthMode::Ecr),
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                Some(AuthMode::Ecr),
            ),
            ("public.ecr.aws", Some(AuthMode::EcrPublic)),
            ("myreg.azurecr.io", Some(AuthMode::Acr)),
            ("myreg.azurecr.us", Some(AuthMode::Acr)),
            ("europe-west1-docker.pkg.dev", Some(AuthMode::Gar)),
            ("gcr.io", Some(AuthMode::Gar)),
            ("eu.gcr.io", Some(AuthMode::Gar)),
            ("azurecr.io", None),
            ("dkr.ecr.eu-west-1.amazonaws.com", None),
            ("evilgcr.io", None),
            ("docker.io", None),
            ("127.0.0.1:5000", None),
        ] {
            assert_eq!(detect(host), mode, "{host}");
        }
    }

    #[test]
    fn static_credentials_win_over_the_host_guess() {
        let mut cfg = RegistryConfig {
            host: "gcr.io".into(),
            ..Default::default()
        };
        assert_eq!(mode_for(&cfg), Some(AuthMode::Gar));
        cfg.username = Some("_json_key".into());
        assert_eq!(mode_for(&cfg), None);
        cfg.auth = Some(AuthMode::Gar);
        let e = provider_for(&cfg).unwrap_err().to_string();
        assert!(e.contains("auth = \"gar\""), "{e}");
    }
}
