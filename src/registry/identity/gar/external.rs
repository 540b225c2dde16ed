//! `external_account` credentials (workload identity federation): a
//! subject token read from `credential_source` (a file, or a URL with
//! headers; plain text or JSON with `subject_token_field_name`) is exchanged
//! at Google's STS `token_url` (RFC 8693 token exchange); when the file names
//! a `service_account_impersonation_url`, the STS token is exchanged again
//! there for the service account's access token.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::CLOUD_PLATFORM_SCOPE;
use super::adc::file_field;
use crate::registry::error::{Error, Op, Result};
use crate::registry::identity::oauth::{Endpoint, expires_in, require_https_or_loopback};

/// An access token and its expiry for the `external_account` file `file`.
pub(super) async fn token(
    client: &reqwest::Client,
    file: &Value,
    target: &str,
) -> Result<(String, Option<SystemTime>)> {
    let audience = file_field(file, "audience", target)?;
    let subject_type = file_field(file, "subject_token_type", target)?;
    let token_url = file_field(file, "token_url", target)?;
    require_https_or_loopback(token_url, "the file's token_url", target)?;
    let source = file
        .get("credential_source")
        .ok_or_else(|| missing("credential_source", target))?;
    let subject = subject_token(client, source, target).await?;
    let ep = Endpoint {
        what: "Google STS token endpoint",
        url: token_url,
        target,
    };
    let form = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("audience", audience),
        ("scope", CLOUD_PLATFORM_SCOPE),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("subject_token_type", subject_type),
        ("subject_token", subject.as_str()),
    ];
    let answer = ep.post_form(client, &form, &[]).await?;
    let sts = ep.field(&answer, "access_token")?;
    match file
        .get("service_account_impersonation_url")
        .and_then(Value::as_str)
    {
        Some(url) => impersonate(client, url, &sts, target).await,
        None => Ok((sts, expires_in(&answer))),
    }
}

fn missing(name: &str, target: &str) -> Error {
    Error::Auth {
        op: Op::Token,
        target: target.to_string(),
        detail: format!("missing \"{name}\""),
    }
}

/// The subject token of `credential_source`.
async fn subject_token(client: &reqwest::Client, source: &Value, target: &str) -> Result<String> {
    let raw = if let Some(path) = source.get("file").and_then(Value::as_str) {
        std::fs::read_to_string(path).map_err(|e| Error::Auth {
            op: Op::Token,
            target: target.to_string(),
            detail: format!(
                "cannot read the subject token file {path} (credential_source.file): {e}"
            ),
        })?
    } else if let Some(url) = source.get("url").and_then(Value::as_str) {
        url_subject(client, url, source.get("headers"), target).await?
    } else {
        return Err(Error::Auth {
            op: Op::Token,
            target: target.to_string(),
            detail: "credential_source has neither \"file\" nor \"url\"; executable and AWS \
                     sources are not supported"
                .into(),
        });
    };
    let format = source.get("format");
    match format.and_then(|f| f.get("type")).and_then(Value::as_str) {
        Some("json") => {
            let field = format
                .and_then(|f| f.get("subject_token_field_name"))
                .and_then(Value::as_str)
                .ok_or_else(|| missing("format.subject_token_field_name", target))?;
            let v: Value = serde_json::from_str(&raw).map_err(|e| Error::Auth {
                op: Op::Token,
                target: target.to_string(),
                detail: format!("the subject token source is not JSON: {e}"),
            })?;
            v.get(field)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| missing(field, target))
        }
        _ => Ok(raw.trim().to_string()),
    }
}

/// A subject token served as text by `url`, with `headers`.
async fn url_subject(
    client: &reqwest::Client,
    url: &str,
    headers: Option<&Value>,
    target: &str,
) -> Result<String> {
    let mut req = client.get(url).timeout(std::time::Duration::from_secs(30));
    if let Some(Value::Object(h)) = headers {
        for (k, v) in h {
            if let Some(v) = v.as_str() {
                req = req.header(k.as_str(), v);
            }
        }
    }
    let fail = |detail: String| Error::Auth {
        op: Op::Token,
        target: target.to_string(),
        detail: format!("subject token URL {url}: {detail}"),
    };
    let resp = req
        .send()
        .await
        .map_err(|e| fail(e.without_url().to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("answered HTTP {}", resp.status().as_u16())));
    }
    resp.text()
        .await
        .map_err(|e| fail(e.without_url().to_string()))
}

/// The service account's access token for the STS token `sts`.
async fn impersonate(
    client: &reqwest::Client,
    url: &str,
    sts: &str,
    target: &str,
) -> Result<(String, Option<SystemTime>)> {
    require_https_or_loopback(url, "the file's service_account_impersonation_url", target)?;
    let ep = Endpoint {
        what: "Google IAM credentials endpoint",
        url,
        target,
    };
    let answer = ep
        .post_json(client, sts, &json!({"scope": [CLOUD_PLATFORM_SCOPE]}))
        .await?;
    let token = ep.field(&answer, "accessToken")?;
    let expiry = answer
        .get("expireTime")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(SystemTime::from);
    Ok((token, expiry))
}
