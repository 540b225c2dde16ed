//! Entra ID access tokens for the ACR provider: the OAuth2 client
//! credentials grant with a client secret, a certificate's signed client
//! assertion or a federated client assertion (`{authority}/{tenant}/oauth2/v2.0/token`), and the managed
//! identity endpoints (instance metadata service, `IDENTITY_ENDPOINT`).

use super::{AzureIdentity, ManagedEndpoint};
use crate::registry::error::{Error, Result};
use crate::registry::identity::oauth::{Endpoint, require_https_or_loopback};

/// The client assertion type of a federated (workload identity) token.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An Entra access token for `scope`, as `identity` obtains it. `target`
/// (the registry) is named in errors.
pub(super) async fn token(
    client: &reqwest::Client,
    identity: &AzureIdentity,
    scope: &str,
    target: &str,
) -> Result<String> {
    let grant = |authority: &str, tenant_id: &str| token_url(authority, tenant_id, target);
    match identity {
        AzureIdentity::ClientSecret {
            authority,
            tenant_id,
            client_id,
            secret,
        } => {
            let url = grant(authority, tenant_id)?;
            let proof = [("client_secret", secret.expose())];
            client_credentials(client, &url, client_id, &proof, scope, target).await
        }
        AzureIdentity::ClientCertificate {
            authority,
            tenant_id,
            client_id,
            certificate,
        } => {
            let url = grant(authority, tenant_id)?;
            let assertion = certificate_assertion(certificate, client_id, &url, target)?;
            let proof = [
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion.as_str()),
            ];
            client_credentials(client, &url, client_id, &proof, scope, target).await
        }
        AzureIdentity::WorkloadIdentity {
            authority,
            tenant_id,
            client_id,
            token_file,
        } => {
            let assertion = federated_token(token_file, target)?;
            let url = grant(authority, tenant_id)?;
            let proof = [
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion.trim()),
            ];
            client_credentials(client, &url, client_id, &proof, scope, target).await
        }
        AzureIdentity::ManagedIdentity {
            client_id,
            endpoint: managed,
        } => managed_token(client, managed, client_id.as_deref(), scope, target).await,
    }
}

/// The OAuth2 client credentials grant at `url`, the client proven by
/// `proof` (a secret's or an assertion's form fields).
async fn client_credentials(
    client: &reqwest::Client,
    url: &str,
    client_id: &str,
    proof: &[(&str, &str)],
    scope: &str,
    target: &str,
) -> Result<String> {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
    ];
    form.extend_from_slice(proof);
    form.push(("scope", scope));
    let ep = endpoint(url, target);
    let answer = ep.post_form(client, &form, &[]).await?;
    ep.field(&answer, "access_token")
}

/// The signed client assertion of a certificate credential for `url`.
fn certificate_assertion(
    certificate: &std::path::Path,
    client_id: &str,
    url: &str,
    target: &str,
) -> Result<String> {
    super::certificate::assertion(certificate, client_id, url).map_err(|why| Error::Auth {
        op: crate::registry::error::Op::Token,
        target: target.to_string(),
        detail: format!(
            "the certificate file {} (AZURE_CLIENT_CERTIFICATE_PATH) {why}",
            certificate.display()
        ),
    })
}

/// The federated (workload identity) token the kubelet projects into the pod.
fn federated_token(token_file: &std::path::Path, target: &str) -> Result<String> {
    std::fs::read_to_string(token_file).map_err(|e| Error::Auth {
        op: crate::registry::error::Op::Token,
        target: target.to_string(),
        detail: format!(
            "cannot read the federated token file {} (AZURE_FEDERATED_TOKEN_FILE): {e}; \
             is the pod labelled azure.workload.identity/use=true?",
            token_file.display()
        ),
    })
}

fn endpoint<'a>(url: &'a str, target: &'a str) -> Endpoint<'a> {
    Endpoint {
        what: "Entra ID token endpoint",
        url,
        target,
    }
}

/// `{authority}/{tenant}/oauth2/v2.0/token`, refused unless HTTPS (or loopback).
fn token_url(authority: &str, tenant: &str, target: &str) -> Result<String> {
    require_https_or_loopback(authority, "AZURE_AUTHORITY_HOST", target)?;
    Ok(format!("{authority}/{tenant}/oauth2/v2.0/token"))
}

/// A managed identity token: the resource is the scope without `/.default`.
async fn managed_token(
    client: &reqwest::Client,
    managed: &ManagedEndpoint,
    client_id: Option<&str>,
    scope: &str,
    target: &str,
) -> Result<String> {
    let resource = scope.strip_suffix("/.default").unwrap_or(scope);
    let (base, api_version, header) = match managed {
        ManagedEndpoint::Imds { base } => (
            format!("{base}/metadata/identity/oauth2/token"),
            "2018-02-01",
            ("metadata", "true".to_string()),
        ),
        ManagedEndpoint::AppService { endpoint, header } => (
            endpoint.clone(),
            "2019-08-01",
            ("x-identity-header", header.expose().to_string()),
        ),
    };
    let mut url = url::Url::parse(&base).map_err(|e| Error::Config {
        host: target.to_string(),
        detail: format!("managed identity endpoint {base} is not a URL: {e}"),
    })?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("api-version", api_version)
            .append_pair("resource", resource);
        if let Some(id) = client_id {
            q.append_pair("client_id", id);
        }
    }
    let url = url.to_string();
    let ep = Endpoint {
        what: "managed identity endpoint",
        url: &url,
        target,
    };
    let answer = ep.get(client, &[(header.0, header.1.as_str())]).await?;
    ep.field(&answer, "access_token")
}
