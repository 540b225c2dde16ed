//! A Google credentials file, read again at every issue and dispatched on
//! its `type`: `service_account` and `authorized_user` ([`super::adc`]),
//! `external_account` ([`super::external`]) and
//! `impersonated_service_account` ([`super::impersonate`]), the types of
//! Google's Application Default Credentials.

use std::path::Path;

use serde_json::Value;

use super::{Ctx, Token, adc, external, impersonate};
use crate::registry::error::{Error, Op, Result};

/// An access token and its expiry from the credentials file at `path`
/// (`origin` names the setting that named it).
pub(super) async fn token_from_file(ctx: &Ctx<'_>, path: &Path, origin: &str) -> Result<Token> {
    let unusable = |why: String| Error::Auth {
        op: Op::Token,
        target: ctx.target.to_string(),
        detail: format!(
            "Google credentials file {} ({origin}) {why}",
            path.display()
        ),
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| unusable(format!("cannot be read: {e}")))?;
    let file: Value =
        serde_json::from_str(&text).map_err(|e| unusable(format!("is not JSON: {e}")))?;
    let issued = match file.get("type").and_then(Value::as_str) {
        Some("service_account") => adc::service_account(ctx, &file).await,
        Some("authorized_user") => adc::authorized_user(ctx, &file).await,
        Some("external_account") => external::token(ctx, &file).await,
        Some("impersonated_service_account") => impersonate::from_file(ctx, &file).await,
        Some(other) => {
            return Err(unusable(format!(
                "has type {other:?}; supported: service_account, authorized_user, \
                 external_account, impersonated_service_account"
            )));
        }
        None => return Err(unusable("has no \"type\"".into())),
    };
    issued.map_err(|e| in_file(e, path))
}

/// Add the file's name to an error about its content.
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
