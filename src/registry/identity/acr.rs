//! Azure Container Registry through Microsoft Entra ID: an Entra access
//! token for the workload (a service principal's secret, workload identity's
//! federated token file, or managed identity) is exchanged at the registry's
//! `/oauth2/exchange` for an ACR refresh token. That refresh token is the
//! password of the user `00000000-0000-0000-0000-000000000000` in the
//! registry's normal token flow (`/oauth2/token`), as `az acr login` and
//! Docker do.
//!
//! The identity is chosen from the environment in the order of Azure's
//! `DefaultAzureCredential`:
//!
//! 1. `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET`: a
//!    service principal's client secret;
//!    `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_CLIENT_CERTIFICATE_PATH`
//!    (a PEM file with the private key and the certificate): a service
//!    principal's certificate, presented as a signed client assertion;
//! 2. `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_FEDERATED_TOKEN_FILE`:
//!    workload identity (the file, rotated by the kubelet, is read again at
//!    every issue);
//! 3. otherwise managed identity: `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`
//!    (App Service, Container Apps) or the instance metadata service
//!    (`AZURE_POD_IDENTITY_AUTHORITY_HOST` overrides its address), with
//!    `AZURE_CLIENT_ID` choosing a user-assigned identity.
//!
//! `AZURE_AUTHORITY_HOST` names the Entra authority (default
//! `https://login.microsoftonline.com`; sovereign clouds set it).

mod certificate;
mod entra;
mod exchange;

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use url::Url;

use super::{IdentityProvider, IssuedCredential};
use crate::registry::config::{RegistryConfig, Secret};
use crate::registry::error::{Error, Result};

/// The user name ACR expects with a refresh token as password.
pub const ACR_USERNAME: &str = "00000000-0000-0000-0000-000000000000";
/// The Entra scope of tokens that ACR exchanges.
pub const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";
/// Entra ID's public-cloud authority.
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The instance metadata service.
const DEFAULT_IMDS: &str = "http://169.254.169.254";

/// Where the Entra token comes from.
#[derive(Debug, Clone)]
pub enum AzureIdentity {
    /// A service principal with a client secret.
    ClientSecret {
        /// The Entra authority, without a trailing slash.
        authority: String,
        /// Directory (tenant) id.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// The client secret.
        secret: Secret,
    },
    /// A service principal with a certificate (PEM file with its key).
    ClientCertificate {
        /// The Entra authority, without a trailing slash.
        authority: String,
        /// Directory (tenant) id.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// The PEM file holding the private key and the certificate.
        certificate: PathBuf,
    },
    /// Workload identity federation: a Kubernetes service-account token
    /// file presented as a client assertion.
    WorkloadIdentity {
        /// The Entra authority, without a trailing slash.
        authority: String,
        /// Directory (tenant) id.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// The federated token file, read at every issue.
        token_file: PathBuf,
    },
    /// Managed identity (system-assigned, or user-assigned by client id).
    ManagedIdentity {
        /// The user-assigned identity's client id.
        client_id: Option<String>,
        /// Which managed identity endpoint answers.
        endpoint: ManagedEndpoint,
    },
}

/// The endpoint of a managed identity.
#[derive(Debug, Clone)]
pub enum ManagedEndpoint {
    /// The instance metadata service (VMs, AKS nodes).
    Imds {
        /// Its base URL, without a trailing slash.
        base: String,
    },
    /// App Service and Container Apps: `IDENTITY_ENDPOINT` with `IDENTITY_HEADER`.
    AppService {
        /// The full token endpoint URL.
        endpoint: String,
        /// The value of the `X-IDENTITY-HEADER` header.
        header: Secret,
    },
}

impl AzureIdentity {
    /// The identity that the process environment describes.
    pub fn from_env() -> AzureIdentity {
        AzureIdentity::from_vars(|k| std::env::var(k).ok())
    }

    /// The identity that the variables `get` returns describe (see the
    /// module documentation for the order).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> AzureIdentity {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let authority = var("AZURE_AUTHORITY_HOST")
            .unwrap_or_else(|| DEFAULT_AUTHORITY.to_string())
            .trim_end_matches('/')
            .to_string();
        let tenant = var("AZURE_TENANT_ID");
        let client = var("AZURE_CLIENT_ID");
        if let (Some(tenant_id), Some(client_id), Some(secret)) =
            (&tenant, &client, var("AZURE_CLIENT_SECRET"))
        {
            return AzureIdentity::ClientSecret {
                authority,
                tenant_id: tenant_id.clone(),
                client_id: client_id.clone(),
                secret: Secret::new(secret),
            };
        }
        if let (Some(tenant_id), Some(client_id), Some(path)) =
            (&tenant, &client, var("AZURE_CLIENT_CERTIFICATE_PATH"))
        {
            return AzureIdentity::ClientCertificate {
                authority,
                tenant_id: tenant_id.clone(),
                client_id: client_id.clone(),
                certificate: PathBuf::from(path),
            };
        }
        if let (Some(tenant_id), Some(client_id), Some(file)) =
            (&tenant, &client, var("AZURE_FEDERATED_TOKEN_FILE"))
        {
            return AzureIdentity::WorkloadIdentity {
                authority,
                tenant_id: tenant_id.clone(),
                client_id: client_id.clone(),
                token_file: PathBuf::from(file),
            };
        }
        let endpoint = match (var("IDENTITY_ENDPOINT"), var("IDENTITY_HEADER")) {
            (Some(endpoint), Some(header)) => ManagedEndpoint::AppService {
                endpoint,
                header: Secret::new(header),
            },
            _ => ManagedEndpoint::Imds {
                base: var("AZURE_POD_IDENTITY_AUTHORITY_HOST")
                    .unwrap_or_else(|| DEFAULT_IMDS.to_string())
                    .trim_end_matches('/')
                    .to_string(),
            },
        };
        AzureIdentity::ManagedIdentity {
            client_id: client,
            endpoint,
        }
    }

    /// Where the identity comes from, without secrets.
    pub fn describe(&self) -> String {
        match self {
            AzureIdentity::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => format!(
                "Entra ID service principal {client_id} (client secret from AZURE_CLIENT_SECRET, tenant {tenant_id})"
            ),
            AzureIdentity::ClientCertificate {
                tenant_id,
                client_id,
                certificate,
                ..
            } => format!(
                "Entra ID service principal {client_id} (certificate {} from \
                 AZURE_CLIENT_CERTIFICATE_PATH, tenant {tenant_id})",
                certificate.display()
            ),
            AzureIdentity::WorkloadIdentity {
                client_id,
                token_file,
                ..
            } => format!(
                "Entra ID workload identity {client_id} (federated token file {})",
                token_file.display()
            ),
            AzureIdentity::ManagedIdentity {
                client_id,
                endpoint,
            } => {
                let who = match client_id {
                    Some(id) => format!("user-assigned managed identity {id}"),
                    None => "system-assigned managed identity".to_string(),
                };
                match endpoint {
                    ManagedEndpoint::Imds { base } => format!("{who} (metadata service {base})"),
                    ManagedEndpoint::AppService { endpoint, .. } => {
                        format!("{who} (IDENTITY_ENDPOINT {endpoint})")
                    }
                }
            }
        }
    }

    /// The tenant named to `/oauth2/exchange`, when known.
    fn tenant(&self) -> Option<&str> {
        match self {
            AzureIdentity::ClientSecret { tenant_id, .. }
            | AzureIdentity::ClientCertificate { tenant_id, .. }
            | AzureIdentity::WorkloadIdentity { tenant_id, .. } => Some(tenant_id),
            AzureIdentity::ManagedIdentity { .. } => None,
        }
    }
}

/// The `acr` provider for one registry.
#[derive(Debug)]
pub struct AcrProvider {
    base: Url,
    service: String,
    identity: AzureIdentity,
    scope: String,
    client: reqwest::Client,
}

impl AcrProvider {
    /// A provider for the registry at `registry_base` (`https://name.azurecr.io`),
    /// reached with `client`, getting Entra tokens as `identity` says.
    pub fn new(
        registry_base: &str,
        identity: AzureIdentity,
        client: reqwest::Client,
    ) -> Result<AcrProvider> {
        let bad = |detail: String| Error::Config {
            host: registry_base.to_string(),
            detail,
        };
        let base = Url::parse(registry_base)
            .map_err(|e| bad(format!("not a registry URL for the acr provider: {e}")))?;
        let host = base
            .host_str()
            .ok_or_else(|| bad("the acr provider needs a registry host".into()))?;
        let service = match base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        Ok(AcrProvider {
            base,
            service,
            identity,
            scope: ACR_SCOPE.to_string(),
            client,
        })
    }

    /// Ask Entra for tokens of `scope` instead of [`ACR_SCOPE`] (a registry
    /// that still expects Azure Resource Manager tokens takes
    /// `https://management.azure.com/.default`).
    pub fn with_scope(mut self, scope: impl Into<String>) -> AcrProvider {
        self.scope = scope.into();
        self
    }

    async fn issue_now(&self) -> Result<IssuedCredential> {
        let aad = entra::token(&self.client, &self.identity, &self.scope, &self.service).await?;
        exchange::refresh_token(
            &self.client,
            &self.base,
            &self.service,
            self.identity.tenant(),
            &aad,
        )
        .await
    }
}

/// The `acr` provider of the registry `cfg` describes, with the identity
/// the environment names.
pub fn provider(cfg: &RegistryConfig) -> Result<Arc<dyn IdentityProvider>> {
    let client = super::oauth::client_for(cfg)?;
    let base = super::oauth::registry_base(cfg);
    Ok(Arc::new(AcrProvider::new(
        &base,
        AzureIdentity::from_env(),
        client,
    )?))
}

impl IdentityProvider for AcrProvider {
    fn name(&self) -> &'static str {
        "acr"
    }

    fn describe(&self) -> String {
        self.identity.describe()
    }

    fn issue(&self) -> BoxFuture<'_, Result<IssuedCredential>> {
        self.issue_now().boxed()
    }
}

#[cfg(test)]
mod tests;
