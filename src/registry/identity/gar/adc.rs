//! Google credentials files: a service-account key (a JWT signed with the
//! key, exchanged at the key's `token_uri` with the JWT-bearer grant of
//! RFC 7523) and gcloud user credentials (`authorized_user`, the
//! `refresh_token` grant); `external_account` files go to [`super::external`].

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::CLOUD_PLATFORM_SCOPE;
use crate::registry::error::{Error, Op, Result};
use crate::registry::identity::oauth::{Endpoint, expires_in, require_https_or_loopback};

/// Google's OAuth2 token endpoint, for files that name none.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Lifetime asked for in a service-account JWT (Google's maximum).
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// An access token and its expiry from the credentials file at `path`.
pub(super) async fn token_from_file(
    client: &reqwest::Client,
    path: &Path,
    origin: &str,
    target: &str,
) -> Result<(String, Option<SystemTime>)> {
    let unusable = |why: String| Error::Auth {
        op: Op::Token,
        target: target.to_string(),
        detail: format!(
            "Google credentials file {} ({origin}) {why}",
            path.display()
        ),
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| unusable(format!("cannot be read: {e}")))?;
    let file: Value =
        serde_json::from_str(&text).map_err(|e| unusable(format!("is not JSON: {e}")))?;
    match file.get("type").and_then(Value::as_str) {
        Some("service_account") => service_account(client, &file, target)
            .await
            .map_err(|e| in_file(e, path)),
        Some("authorized_user") => authorized_user(client, &file, target)
            .await
            .map_err(|e| in_file(e, path)),
        Some("external_account") => super::external::token(client, &file, target)
            .await
            .map_err(|e| in_file(e, path)),
        Some(other) => Err(unusable(format!(
            "has type {other:?}; supported: service_account, authorized_user, external_account"
        ))),
        None => Err(unusable("has no \"type\"".into())),
    }
}

/// Add the file's name to a missing-field error.
fn in_file(e: Error, path: &Path) -> Error {
    match e {
        Error::Auth { op, target, detail } if detail.starts_with("missing ") => Error::Auth {
            op,
            target,
            detail: format!("Google credentials file {}: {detail}", path.display()),
        },
        other => other,
    }
}

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
async fn service_account(
    client: &reqwest::Client,
    file: &Value,
    target: &str,
) -> Result<(String, Option<SystemTime>)> {
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
async fn authorized_user(
    client: &reqwest::Client,
    file: &Value,
    target: &str,
) -> Result<(String, Option<SystemTime>)> {
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
