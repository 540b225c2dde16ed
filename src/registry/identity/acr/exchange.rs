//! The exchange of an Entra access token for an ACR refresh token
//! (`POST /oauth2/exchange`, form `grant_type=access_token`, `service`,
//! `tenant`, `access_token`), as ACR's AAD-OAuth protocol describes it.

use std::time::{Duration, SystemTime};

use url::Url;

use super::ACR_USERNAME;
use crate::registry::config::Secret;
use crate::registry::error::{Error, Result};
use crate::registry::identity::IssuedCredential;
use crate::registry::identity::oauth::{Endpoint, jwt_exp};

/// How long an ACR refresh token lives when its `exp` cannot be read
/// (ACR documents three hours).
pub(super) const DEFAULT_LIFETIME: Duration = Duration::from_secs(3 * 3600);

/// Exchange `aad_token` at `base`'s `/oauth2/exchange` for the registry
/// `service`; the refresh token as a credential, valid until its `exp`.
pub(super) async fn refresh_token(
    client: &reqwest::Client,
    base: &Url,
    service: &str,
    tenant: Option<&str>,
    aad_token: &str,
) -> Result<IssuedCredential> {
    let url = base.join("/oauth2/exchange").map_err(|e| Error::Config {
        host: service.to_string(),
        detail: format!("cannot form the /oauth2/exchange URL: {e}"),
    })?;
    let url = url.to_string();
    let ep = Endpoint {
        what: "ACR token exchange",
        url: &url,
        target: service,
    };
    let mut form = vec![
        ("grant_type", "access_token"),
        ("service", service),
        ("access_token", aad_token),
    ];
    if let Some(t) = tenant {
        form.push(("tenant", t));
    }
    let answer = ep.post_form(client, &form, &[]).await?;
    let refresh = ep.field(&answer, "refresh_token")?;
    let expires_at = jwt_exp(&refresh).or_else(|| SystemTime::now().checked_add(DEFAULT_LIFETIME));
    Ok(IssuedCredential {
        username: ACR_USERNAME.to_string(),
        password: Secret::new(refresh),
        expires_at,
    })
}
