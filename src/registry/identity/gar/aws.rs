//! `external_account` credentials for workloads on AWS
//! (`credential_source.environment_id = "aws1"`), built as Google documents
//! for workload identity federation with AWS: the subject token is an AWS
//! STS `GetCallerIdentity` request signed with AWS Signature Version 4,
//! never sent to AWS by regmirror (Google's STS sends it to learn the
//! caller), serialized as URL-encoded JSON
//! `{"headers":[{"key":…,"value":…},…],"method":"POST","url":…}` whose
//! headers are `Authorization`, `host`, `x-amz-date`, `x-amz-security-token`
//! (temporary credentials only) and `x-goog-cloud-target-resource` (the
//! file's `audience`, signed too). The URL is the
//! `regional_cred_verification_url` with `{region}` replaced.
//!
//! The region is `AWS_REGION`, else `AWS_DEFAULT_REGION`, else the
//! availability zone `region_url` answers without its last letter. The
//! credentials are `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (with
//! `AWS_SESSION_TOKEN`), else the instance metadata's: the role name `url`
//! answers, then `AccessKeyId`, `SecretAccessKey` and `Token` at
//! `url/ROLE`. With `imdsv2_session_token_url`, an IMDSv2 session token
//! (`PUT` with `X-aws-ec2-metadata-token-ttl-seconds: 300`) goes with each
//! metadata request as `X-aws-ec2-metadata-token`.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use serde_json::{Value, json};

use super::Ctx;
use crate::registry::error::{Error, Op, Result};
use crate::registry::identity::oauth::service_words;

/// Deadline of one request to the instance metadata service.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// AWS keys: access key id, secret, session token.
struct Keys {
    id: String,
    secret: String,
    session_token: Option<String>,
}

/// The serialized, signed `GetCallerIdentity` request for `audience`.
pub(super) async fn subject_token(ctx: &Ctx<'_>, source: &Value, audience: &str) -> Result<String> {
    let fail = |detail: String| Error::Auth {
        op: Op::Token,
        target: ctx.target.to_string(),
        detail,
    };
    let field = |k: &str| {
        source
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let env_id = field("environment_id").unwrap_or_default();
    match env_id.strip_prefix("aws") {
        Some("1") => {}
        Some(v) if v.parse::<u32>().is_ok() => {
            return Err(fail(format!(
                "credential_source.environment_id is {env_id}; supported: aws1"
            )));
        }
        _ => {
            return Err(fail(format!(
                "credential_source.environment_id {env_id:?} is not an AWS environment \
                 (aws1)"
            )));
        }
    }
    let verify_url = field("regional_cred_verification_url").ok_or_else(|| {
        fail("credential_source (AWS) has no \"regional_cred_verification_url\"".into())
    })?;
    let env_region = ctx
        .env
        .get("AWS_REGION")
        .or_else(|| ctx.env.get("AWS_DEFAULT_REGION"));
    let env_keys = match (
        ctx.env.get("AWS_ACCESS_KEY_ID"),
        ctx.env.get("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(id), Some(secret)) => Some(Keys {
            id,
            secret,
            session_token: ctx.env.get("AWS_SESSION_TOKEN"),
        }),
        _ => None,
    };
    let session = match (&env_region, &env_keys, field("imdsv2_session_token_url")) {
        (Some(_), Some(_), _) | (_, _, None) => None,
        (_, _, Some(url)) => Some(imdsv2_session(ctx, url).await?),
    };
    let region = match env_region {
        Some(r) => r,
        None => region_from_metadata(ctx, field("region_url"), session.as_deref()).await?,
    };
    let keys = match env_keys {
        Some(k) => k,
        None => keys_from_metadata(ctx, field("url"), session.as_deref()).await?,
    };
    let url = verify_url.replace("{region}", &region);
    signed_request(&url, &region, &keys, audience).map_err(fail)
}

/// An IMDSv2 session token from `url`.
async fn imdsv2_session(ctx: &Ctx<'_>, url: &str) -> Result<String> {
    let req = ctx
        .client
        .put(url)
        .header("X-aws-ec2-metadata-token-ttl-seconds", "300");
    metadata(ctx, req, "IMDSv2 session token", url).await
}

/// The region of the availability zone `region_url` answers (`us-east-2b`).
async fn region_from_metadata(
    ctx: &Ctx<'_>,
    region_url: Option<&str>,
    session: Option<&str>,
) -> Result<String> {
    let url = region_url.ok_or_else(|| Error::Auth {
        op: Op::Token,
        target: ctx.target.to_string(),
        detail: "cannot tell the AWS region: AWS_REGION and AWS_DEFAULT_REGION are not set \
                 and credential_source has no \"region_url\""
            .into(),
    })?;
    let zone = metadata(
        ctx,
        with_session(ctx.client.get(url), session),
        "region",
        url,
    )
    .await?;
    let zone = zone.trim();
    let mut region = zone.to_string();
    region.pop();
    if region.is_empty() {
        return Err(Error::Auth {
            op: Op::Token,
            target: ctx.target.to_string(),
            detail: format!("AWS metadata region_url {url} answered {zone:?}, not a zone"),
        });
    }
    Ok(region)
}

/// The role's keys from the instance metadata at `url`.
async fn keys_from_metadata(
    ctx: &Ctx<'_>,
    url: Option<&str>,
    session: Option<&str>,
) -> Result<Keys> {
    let fail = |detail: String| Error::Auth {
        op: Op::Token,
        target: ctx.target.to_string(),
        detail,
    };
    let url = url.ok_or_else(|| {
        fail(
            "no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set and \
             credential_source has no \"url\" of the metadata's security credentials"
                .into(),
        )
    })?;
    let role = metadata(
        ctx,
        with_session(ctx.client.get(url), session),
        "role name",
        url,
    )
    .await?;
    let role = role.trim();
    let role_url = format!("{}/{role}", url.trim_end_matches('/'));
    let req =
        with_session(ctx.client.get(&role_url), session).header("content-type", "application/json");
    let text = metadata(ctx, req, "security credentials", &role_url).await?;
    let creds: Value = serde_json::from_str(&text).map_err(|e| {
        fail(format!(
            "AWS metadata security credentials {role_url} answered something that is not \
             JSON ({e})"
        ))
    })?;
    let get = |k: &str| creds.get(k).and_then(Value::as_str).map(str::to_string);
    match (get("AccessKeyId"), get("SecretAccessKey")) {
        (Some(id), Some(secret)) => Ok(Keys {
            id,
            secret,
            session_token: get("Token"),
        }),
        _ => Err(fail(format!(
            "AWS metadata security credentials {role_url} answered without AccessKeyId and \
             SecretAccessKey"
        ))),
    }
}

fn with_session(req: reqwest::RequestBuilder, session: Option<&str>) -> reqwest::RequestBuilder {
    match session {
        Some(s) => req.header("X-aws-ec2-metadata-token", s),
        None => req,
    }
}

/// The text of a metadata answer; `what` and `url` name it in errors.
async fn metadata(
    ctx: &Ctx<'_>,
    req: reqwest::RequestBuilder,
    what: &str,
    url: &str,
) -> Result<String> {
    let resp = req
        .timeout(METADATA_TIMEOUT)
        .send()
        .await
        .map_err(|e| Error::Connection {
            op: Op::Token,
            target: ctx.target.to_string(),
            detail: format!("AWS metadata {what} {url}: {}", e.without_url()),
        })?;
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    if !status.is_success() {
        return Err(Error::Auth {
            op: Op::Token,
            target: ctx.target.to_string(),
            detail: format!(
                "AWS metadata {what} {url} answered HTTP {}{}",
                status.as_u16(),
                service_words(&body)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `POST url` signed for AWS STS in `region` with `keys`, serialized.
fn signed_request(
    url: &str,
    region: &str,
    keys: &Keys,
    audience: &str,
) -> std::result::Result<String, String> {
    let parsed = url::Url::parse(url)
        .map_err(|e| format!("regional_cred_verification_url {url} is not a URL: {e}"))?;
    let host = match parsed.host_str() {
        Some(h) if parsed.scheme() == "https" => h.to_string(),
        _ => {
            return Err(format!(
                "regional_cred_verification_url {url} must be an https URL with a host"
            ));
        }
    };
    let identity = aws_credential_types::Credentials::new(
        keys.id.clone(),
        keys.secret.clone(),
        keys.session_token.clone(),
        None,
        "google-external-account",
    )
    .into();
    let cannot =
        |e: &dyn std::fmt::Display| format!("cannot sign the AWS GetCallerIdentity request: {e}");
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| cannot(&e))?
        .into();
    let headers = [
        ("host", host.as_str()),
        ("x-goog-cloud-target-resource", audience),
    ];
    let request = SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| cannot(&e))?;
    let (instructions, _) = sign(request, &params).map_err(|e| cannot(&e))?.into_parts();
    let mut list: Vec<Value> = instructions
        .headers()
        .map(|(k, v)| {
            let key = if k.eq_ignore_ascii_case("authorization") {
                "Authorization"
            } else {
                k
            };
            json!({"key": key, "value": v})
        })
        .collect();
    for (k, v) in headers {
        list.push(json!({"key": k, "value": v}));
    }
    let serialized = json!({"headers": list, "method": "POST", "url": url});
    Ok(url_encode(&serialized.to_string()))
}

/// Percent-encode all but the unreserved characters and `/` (Python's
/// `urllib.parse.quote`, which Google's libraries use).
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serialized_request_is_signed_and_url_encoded() {
        let keys = Keys {
            id: "AKIDEXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: Some("session+token".into()),
        };
        let url = "https://sts.eu-west-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";
        let audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/aws";
        let token = signed_request(url, "eu-west-1", &keys, audience).unwrap();
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~/%".contains(&b))
        );
        let json: String = url::form_urlencoded::parse(format!("t={token}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["url"], url);
        assert_eq!(v["method"], "POST");
        let header = |k: &str| {
            v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["key"] == k)
                .and_then(|h| h["value"].as_str())
                .map(str::to_string)
        };
        let auth = header("Authorization").expect("Authorization");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                && auth.contains("/eu-west-1/sts/aws4_request")
                && auth.contains("x-goog-cloud-target-resource")
                && auth.contains("x-amz-security-token"),
            "{auth}"
        );
        assert!(!auth.contains("wJalrXUtnFEMI"), "the secret is never sent");
        assert_eq!(
            header("host").as_deref(),
            Some("sts.eu-west-1.amazonaws.com")
        );
        assert_eq!(
            header("x-goog-cloud-target-resource").as_deref(),
            Some(audience)
        );
        assert_eq!(
            header("x-amz-security-token").as_deref(),
            Some("session+token")
        );
        assert_eq!(header("x-amz-date").map(|d| d.len()), Some(16));
        let e = signed_request("http://sts.x", "r", &keys, audience).unwrap_err();
        assert!(e.contains("https"), "{e}");
    }

    #[test]
    fn url_encoding_as_python_quote() {
        assert_eq!(url_encode("a b+/c\"é"), "a%20b%2B/c%22%C3%A9");
    }
}
