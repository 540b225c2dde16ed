//! `external_account` credentials (workload identity federation): a
//! subject token from `credential_source` (a file, or a URL with headers,
//! plain text or JSON with `subject_token_field_name`; an executable,
//! [`super::executable`]; AWS, [`super::aws`]) is exchanged at Google's STS
//! `token_url` (RFC 8693 token exchange); when the file names a
//! `service_account_impersonation_url`, the STS token is exchanged again
//! there for the service account's access token ([`super::impersonate`]).

use serde_json::Value;

use super::adc::file_field;
use super::executable::{self, Exchange};
use super::{CLOUD_PLATFORM_SCOPE, Ctx, Token, aws, impersonate};
use crate::registry::error::{Error, Op, Result};
use crate::registry::identity::oauth::{Endpoint, expires_in, require_https_or_loopback};

/// An access token and its expiry for the `external_account` file `file`.
pub(super) async fn token(ctx: &Ctx<'_>, file: &Value) -> Result<Token> {
    let (client, target) = (ctx.client, ctx.target);
    let audience = file_field(file, "audience", target)?;
    let subject_type = file_field(file, "subject_token_type", target)?;
    let token_url = file_field(file, "token_url", target)?;
    require_https_or_loopback(token_url, "the file's token_url", target)?;
    let source = file
        .get("credential_source")
        .ok_or_else(|| missing("credential_source", target))?;
    let impersonation_url = file
        .get("service_account_impersonation_url")
        .and_then(Value::as_str);
    let exchange = Exchange {
        audience,
        token_type: subject_type,
        impersonated: impersonation_url.and_then(impersonate::email_of),
    };
    let subject = subject_token(ctx, source, &exchange).await?;
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
    match impersonation_url {
        Some(url) => {
            let lifetime = file
                .get("service_account_impersonation")
                .and_then(|o| o.get("token_lifetime_seconds"))
                .and_then(Value::as_u64);
            impersonate::generate(ctx, url, &sts, lifetime, &[]).await
        }
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
async fn subject_token(ctx: &Ctx<'_>, source: &Value, exchange: &Exchange<'_>) -> Result<String> {
    let (client, target) = (ctx.client, ctx.target);
    if let Some(exe) = source.get("executable") {
        return executable::subject_token(ctx, exe, exchange).await;
    }
    if source.get("environment_id").is_some() {
        return aws::subject_token(ctx, source, exchange.audience).await;
    }
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
            detail: "credential_source has none of \"file\", \"url\", \"executable\" and \
                     \"environment_id\" (AWS)"
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
