//! Service-account impersonation with the IAM Service Account Credentials
//! API: `POST …/serviceAccounts/EMAIL:generateAccessToken` with another
//! credential's access token as bearer and a JSON body of `scope`,
//! `lifetime` (`"3600s"`) and the `delegates` of a delegation chain,
//! answered with `accessToken` and `expireTime` (RFC 3339).
//!
//! Used by an `external_account` that names a
//! `service_account_impersonation_url` (its federated STS token is the
//! bearer; `service_account_impersonation.token_lifetime_seconds` the
//! lifetime) and by gcloud's `impersonated_service_account` file
//! (`source_credentials`, a service-account key or gcloud user credentials,
//! give the bearer; `delegates` the chain).

use std::time::SystemTime;

use serde_json::{Value, json};

use super::adc::{self, file_field};
use super::{CLOUD_PLATFORM_SCOPE, Ctx, Token};
use crate::registry::error::{Error, Op, Result};
use crate::registry::identity::oauth::{Endpoint, require_https_or_loopback};

/// Lifetime asked for when the file names none (Google's default: an hour).
const DEFAULT_LIFETIME_SECS: u64 = 3600;

/// The service account's access token from `url` (a
/// `:generateAccessToken` URL) for the bearer token `source`, living
/// `lifetime_secs` (default an hour), through `delegates`.
pub(super) async fn generate(
    ctx: &Ctx<'_>,
    url: &str,
    source: &str,
    lifetime_secs: Option<u64>,
    delegates: &[String],
) -> Result<Token> {
    require_https_or_loopback(url, "service_account_impersonation_url", ctx.target)?;
    let ep = Endpoint {
        what: "Google IAM credentials endpoint",
        url,
        target: ctx.target,
    };
    let mut body = json!({
        "scope": [CLOUD_PLATFORM_SCOPE],
        "lifetime": format!("{}s", lifetime_secs.unwrap_or(DEFAULT_LIFETIME_SECS)),
    });
    if !delegates.is_empty() {
        body["delegates"] = json!(delegates);
    }
    let answer = ep.post_json(ctx.client, source, &body).await?;
    let token = ep.field(&answer, "accessToken")?;
    let expiry = answer
        .get("expireTime")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(SystemTime::from);
    Ok((token, expiry))
}

/// The service account an impersonation URL names
/// (`…/serviceAccounts/EMAIL:generateAccessToken`).
pub(super) fn email_of(url: &str) -> Option<&str> {
    let end = url.find(":generateAccessToken")?;
    let start = url[..end].rfind('/')? + 1;
    Some(&url[start..end]).filter(|e| !e.is_empty())
}

/// gcloud's `impersonated_service_account` file: the token of its
/// `source_credentials`, exchanged at its `service_account_impersonation_url`.
pub(super) async fn from_file(ctx: &Ctx<'_>, file: &Value) -> Result<Token> {
    let url = file_field(file, "service_account_impersonation_url", ctx.target)?;
    let source = file.get("source_credentials").ok_or_else(|| Error::Auth {
        op: Op::Token,
        target: ctx.target.to_string(),
        detail: "missing \"source_credentials\"".into(),
    })?;
    let (bearer, _) = match source.get("type").and_then(Value::as_str) {
        Some("service_account") => adc::service_account(ctx, source).await?,
        Some("authorized_user") => adc::authorized_user(ctx, source).await?,
        other => {
            return Err(Error::Auth {
                op: Op::Token,
                target: ctx.target.to_string(),
                detail: format!(
                    "source_credentials has type {}; supported: service_account, \
                     authorized_user",
                    other.map_or("(none)".to_string(), |t| format!("{t:?}"))
                ),
            });
        }
    };
    let delegates = delegates_of(file, ctx.target)?;
    generate(ctx, url, &bearer, None, &delegates).await
}

/// The `delegates` of a file: a list of service-account names.
fn delegates_of(file: &Value, target: &str) -> Result<Vec<String>> {
    let bad = || Error::Auth {
        op: Op::Token,
        target: target.to_string(),
        detail: "\"delegates\" must be a list of service-account names".into(),
    };
    match file.get("delegates") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|d| d.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_email_of_an_impersonation_url() {
        let url = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/\
                   mirror@p.iam.gserviceaccount.com:generateAccessToken";
        assert_eq!(email_of(url), Some("mirror@p.iam.gserviceaccount.com"));
        assert_eq!(email_of("https://example.com/token"), None);
        assert_eq!(email_of("https://x/:generateAccessToken"), None);
    }

    #[test]
    fn delegates_are_a_list_of_names() {
        let t = "r";
        assert!(delegates_of(&json!({}), t).unwrap().is_empty());
        assert_eq!(
            delegates_of(&json!({"delegates": ["projects/-/serviceAccounts/a@b"]}), t).unwrap(),
            vec!["projects/-/serviceAccounts/a@b".to_string()]
        );
        let e = delegates_of(&json!({"delegates": "a"}), t).unwrap_err();
        assert!(e.to_string().contains("delegates"), "{e}");
    }
}
