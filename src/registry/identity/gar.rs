//! Google Artifact Registry and Container Registry through Application
//! Default Credentials: an OAuth2 access token presented as the password of
//! the user `oauth2accesstoken`, as `gcloud auth configure-docker` does.
//!
//! The credentials are found in the order of Google's ADC:
//!
//! 1. the JSON file `GOOGLE_APPLICATION_CREDENTIALS` names;
//! 2. gcloud's `application_default_credentials.json` (under
//!    `CLOUDSDK_CONFIG`, else `~/.config/gcloud`), when it exists;
//! 3. the metadata server (GKE workload identity, Compute Engine), at
//!    `GCE_METADATA_HOST` when set, else `metadata.google.internal`.
//!
//! A credentials file is read again at every issue and may be a
//! service-account key (a JWT signed with its key, exchanged at its
//! `token_uri`), gcloud user credentials (`authorized_user`, a refresh
//! token), an `external_account` (workload identity federation: a subject
//! token from a file, a URL, an executable or AWS, exchanged at Google's
//! STS, optionally for a service account's token) or an
//! `impersonated_service_account` (gcloud's impersonation: a service
//! account's token asked for with the token of `source_credentials`); see
//! [`file`]. The access token's expiry is the answer's `expires_in` (or
//! `expireTime`).
//!
//! With `create_repositories`, the Artifact Registry repository of a push
//! is created first ([`repositories`]).

mod adc;
mod aws;
mod executable;
mod external;
mod file;
mod impersonate;
pub mod repositories;

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;

use super::{IdentityProvider, IssuedCredential, RepositoryCreator, RepositorySettings};
use crate::registry::config::{RegistryConfig, Secret};
use crate::registry::error::{Error, Result};
use crate::registry::identity::oauth::{Endpoint, expires_in};

/// The user name Google's registries expect with an access token.
pub const GAR_USERNAME: &str = "oauth2accesstoken";
/// The OAuth2 scope asked for.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The metadata server's name on Google Cloud.
const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";

/// An access token and when it expires, if stated.
type Token = (String, Option<std::time::SystemTime>);

/// The environment variables read when a credential is issued (the
/// executable source's `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES`, the AWS
/// source's keys and region): the process's, or those a caller gives.
#[derive(Clone)]
pub struct EnvVars(Arc<VarReader>);

/// Reads one environment variable.
type VarReader = dyn Fn(&str) -> Option<String> + Send + Sync;

impl EnvVars {
    /// The process environment, read at each issue.
    pub fn process() -> EnvVars {
        EnvVars(Arc::new(|k| std::env::var(k).ok()))
    }

    /// The variables `get` returns.
    pub fn from_fn(get: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> EnvVars {
        EnvVars(Arc::new(get))
    }

    /// The variable `name`, when set and not blank.
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }
}

impl std::fmt::Debug for EnvVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvVars")
    }
}

/// What issuing a token needs: the HTTP client, the environment, and the
/// registry the token is for (named in errors).
struct Ctx<'a> {
    client: &'a reqwest::Client,
    env: &'a EnvVars,
    target: &'a str,
}

/// Where the access token comes from.
#[derive(Debug, Clone)]
pub enum GoogleCredentials {
    /// A credentials file (service-account key, `authorized_user`, `external_account`).
    File {
        /// The file, read at every issue.
        path: PathBuf,
        /// Which setting named it (for messages).
        origin: &'static str,
    },
    /// The metadata server's default service account.
    Metadata {
        /// `host[:port]` of the metadata server.
        host: String,
    },
}

impl GoogleCredentials {
    /// The credentials that the process environment describes.
    pub fn from_env() -> GoogleCredentials {
        GoogleCredentials::from_vars(|k| std::env::var(k).ok(), |p| p.is_file())
    }

    /// The credentials that the variables `get` returns describe; `exists`
    /// tells whether gcloud's well-known file is there.
    pub fn from_vars(
        get: impl Fn(&str) -> Option<String>,
        exists: impl Fn(&std::path::Path) -> bool,
    ) -> GoogleCredentials {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(path) = var("GOOGLE_APPLICATION_CREDENTIALS") {
            return GoogleCredentials::File {
                path: PathBuf::from(path),
                origin: "GOOGLE_APPLICATION_CREDENTIALS",
            };
        }
        let gcloud_dir = var("CLOUDSDK_CONFIG")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config").join("gcloud")));
        if let Some(dir) = gcloud_dir {
            let path = dir.join("application_default_credentials.json");
            if exists(&path) {
                return GoogleCredentials::File {
                    path,
                    origin: "gcloud application default credentials",
                };
            }
        }
        GoogleCredentials::Metadata {
            host: var("GCE_METADATA_HOST").unwrap_or_else(|| DEFAULT_METADATA_HOST.to_string()),
        }
    }

    /// Where the credentials come from, without secrets.
    pub fn describe(&self) -> String {
        match self {
            GoogleCredentials::File { path, origin } => {
                format!("Google credentials file {} ({origin})", path.display())
            }
            GoogleCredentials::Metadata { host } => {
                format!("Google metadata server {host} (default service account)")
            }
        }
    }
}

/// The `gar` provider for one registry.
#[derive(Debug)]
pub struct GarProvider {
    registry: String,
    credentials: GoogleCredentials,
    client: reqwest::Client,
    env: EnvVars,
    /// Artifact Registry's API for this registry's location, when known.
    repositories: Option<repositories::Repositories>,
}

impl GarProvider {
    /// A provider for `registry` (a host, named in errors) getting tokens
    /// as `credentials` says, with `client`.
    pub fn new(
        registry: impl Into<String>,
        credentials: GoogleCredentials,
        client: reqwest::Client,
    ) -> GarProvider {
        GarProvider {
            registry: registry.into(),
            credentials,
            client,
            env: EnvVars::process(),
            repositories: None,
        }
    }

    /// Read the environment variables of issuing from `env` instead of the
    /// process environment.
    pub fn with_env(mut self, env: EnvVars) -> GarProvider {
        self.env = env;
        self
    }

    /// Create Artifact Registry repositories in `location` through `api`
    /// (`create_repositories`).
    pub fn with_repositories(mut self, api: &str, location: &str) -> GarProvider {
        self.repositories = Some(repositories::Repositories {
            api: api.trim_end_matches('/').to_string(),
            location: location.to_string(),
        });
        self
    }

    async fn issue_now(&self) -> Result<IssuedCredential> {
        let ctx = Ctx {
            client: &self.client,
            env: &self.env,
            target: &self.registry,
        };
        let (token, expires_at) = match &self.credentials {
            GoogleCredentials::File { path, origin } => {
                file::token_from_file(&ctx, path, origin).await?
            }
            GoogleCredentials::Metadata { host } => {
                metadata_token(&self.client, host, &self.registry).await?
            }
        };
        Ok(IssuedCredential {
            username: GAR_USERNAME.to_string(),
            password: Secret::new(token),
            expires_at,
        })
    }
}

/// The default service account's token from the metadata server.
async fn metadata_token(client: &reqwest::Client, host: &str, target: &str) -> Result<Token> {
    let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
    let ep = Endpoint {
        what: "Google metadata server",
        url: &url,
        target,
    };
    let answer = ep.get(client, &[("metadata-flavor", "Google")]).await?;
    Ok((ep.field(&answer, "access_token")?, expires_in(&answer)))
}

/// The `gar` provider of the registry `cfg` describes, with the
/// Application Default Credentials the environment names.
pub fn provider(cfg: &RegistryConfig) -> Result<Arc<dyn IdentityProvider>> {
    let client = super::oauth::client_for(cfg)?;
    let mut p = GarProvider::new(cfg.host.clone(), GoogleCredentials::from_env(), client);
    let location = cfg
        .repository_location
        .clone()
        .or_else(|| repositories::location_of(&cfg.host));
    if let Some(location) = location {
        let api = std::env::var(repositories::API_OVERRIDE_VAR)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| repositories::DEFAULT_API.to_string());
        p = p.with_repositories(&api, &location);
    }
    Ok(Arc::new(p))
}

impl IdentityProvider for GarProvider {
    fn name(&self) -> &'static str {
        "gar"
    }

    fn describe(&self) -> String {
        self.credentials.describe()
    }

    fn issue(&self) -> BoxFuture<'_, Result<IssuedCredential>> {
        self.issue_now().boxed()
    }

    fn repositories(&self) -> Option<&dyn RepositoryCreator> {
        Some(self)
    }
}

impl RepositoryCreator for GarProvider {
    fn before_push(&self) -> bool {
        true
    }

    fn unit_of(&self, repo: &str) -> Result<String> {
        repositories::repository_of(repo).ok_or_else(|| Error::Config {
            host: self.registry.clone(),
            detail: format!(
                "{repo} is not PROJECT/REPOSITORY/IMAGE: Artifact Registry keeps images in a \
                 repository of a project (LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE)"
            ),
        })
    }

    fn create_repository<'a>(
        &'a self,
        unit: &'a str,
        _settings: &'a RepositorySettings,
    ) -> BoxFuture<'a, Result<bool>> {
        async move {
            let Some(api) = &self.repositories else {
                return Err(Error::Config {
                    host: self.registry.clone(),
                    detail: "create_repositories = true needs the Artifact Registry location, \
                             which the host does not name (LOCATION-docker.pkg.dev): set \
                             repository_location in this [[registry]] table"
                        .into(),
                });
            };
            let token = self.issue_now().await?;
            api.ensure(
                &self.client,
                unit,
                token.password.expose(),
                &format!("{}/{unit}", self.registry),
            )
            .await
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
