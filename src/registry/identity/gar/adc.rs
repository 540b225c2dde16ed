//! Google credentials files: a service-account key (a JWT signed with the
//! key, exchanged at the key's `token_uri` with the JWT-bearer grant of
//! RFC 7523) and gcloud user credentials (`authorized_user`, the
//! `refresh_token` grant), also the `source_credentials` of an
//! `impersonated_service_account`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{CLOUD_PLATFORM_SCOPE, Ctx, Token};
use crate::registry::error::{Error, Op, Result};
use crate::registry::identity::oauth::{Endpoint, expires_in, require_https_or_loopback};

/// Google's OAuth2 token endpoint, for files that name none.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Lifetime asked for in a service-account JWT (Google's maximum).
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// The string field `name` of a credentials file.
pub(super) fn file_field<'a>(file: &'a Value, name: &str, target: &str) -> Result<&'a str> {
    file.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Auth {
            op: Op::Token,
            target: target.to_string(),
            detail: format!("missing \"{name}\""),
        })
}

/// A service-account key: sign a JWT with its private key, exchange it.
pub(super) async fn service_account(ctx: &Ctx<'_>, file: &Value) -> Result<Token> {
    let (client, target) = (ctx.client, ctx.target);
    let email = file_field(file, "client_email", target)?;
    let pem = file_field(file, "private_key", target)?;
    let token_uri = file
        .get("token_uri")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_TOKEN_URI);
    require_https_or_loopback(token_uri, "the key's token_uri", target)?;
    let key_id = file.get("private_key_id").and_then(Value::as_str);
    let assertion = sign_assertion(email, pem, key_id, token_uri).map_err(|why| Error::Auth {
        op: Op::Token,
        target: target.to_string(),
        detail: format!("cannot sign with the service-account key of {email}: {why}"),
    })?;
    let ep = Endpoint {
        what: "Google token endpoint",
        url: token_uri,
        target,
    };
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", assertion.as_str()),
    ];
    let answer = ep.post_form(client, &form, &[]).await?;
    Ok((ep.field(&answer, "access_token")?, expires_in(&answer)))
}

/// The RS256 JWT a service account presents to `token_uri`.
fn sign_assertion(
    email: &str,
    pem: &str,
    key_id: Option<&str>,
    token_uri: &str,
) -> std::result::Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let claims = serde_json::json!({
        "iss": email,
        "scope": CLOUD_PLATFORM_SCOPE,
        "aud": token_uri,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = key_id.map(str::to_string);
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|e| format!("private_key is not an RSA PEM key ({e})"))?;
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())
}

/// gcloud user credentials: the `refresh_token` grant.
pub(super) async fn authorized_user(ctx: &Ctx<'_>, file: &Value) -> Result<Token> {
    let (client, target) = (ctx.client, ctx.target);
    let client_id = file_field(file, "client_id", target)?;
    let client_secret = file_field(file, "client_secret", target)?;
    let refresh = file_field(file, "refresh_token", target)?;
    let token_uri = file
        .get("token_uri")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_TOKEN_URI);
    require_https_or_loopback(token_uri, "the file's token_uri", target)?;
    let ep = Endpoint {
        what: "Google token endpoint",
        url: token_uri,
        target,
    };
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", client_id),
        ("client_secret", client_secret),
        ("refresh_token", refresh),
    ];
    let answer = ep.post_form(client, &form, &[]).await?;
    Ok((ep.field(&answer, "access_token")?, expires_in(&answer)))
}
