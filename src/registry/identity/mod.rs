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
//! | `ecr` | `AWS` | the decoded `GetAuthorizationToken` answer |
//! | `acr` | `00000000-0000-0000-0000-000000000000` | the ACR refresh token of `/oauth2/exchange` |
//! | `gar` | `oauth2accesstoken` | an OAuth2 access token (Application Default Credentials) |
//!
//! Lifetime: an issued credential is kept until shortly before its
//! `expires_at` (or until the registry refuses it once with 401), then
//! issued again; nothing is written to disk.

pub mod acr;
pub mod gar;
mod oauth;

use std::fmt;
use std::time::SystemTime;

use futures_util::future::BoxFuture;

use crate::registry::config::Secret;
use crate::registry::error::Result;

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
}
