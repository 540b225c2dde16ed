//! The `policy` table of `[defaults]` and `[[mirror]]`: the signatures an
//! image must carry before it is written at the target (see
//! [`crate::copy::policy`]).
//!
//! ```toml
//! [mirror.policy]
//! require = "any"            # or "all"
//! keys = ["keys/cosign.pub"] # PEM public keys, relative to the config file
//! ```
//!
//! A mirror's table replaces the defaults' whole; a mirror without one
//! follows `[defaults.policy]`, and without either has no policy. Key files
//! are read when the config is loaded, so a missing or unreadable key is a
//! config error naming the key.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::config_error::{ConfigError, Ctx};
use crate::copy::policy::{Policy, Require, TrustedKey};

/// The table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    require: Option<Spanned<String>>,
    keys: Option<Spanned<Vec<Spanned<String>>>>,
}

/// The policy of mirror `n` (1-based), whose unset table is the defaults'.
pub(super) fn of_mirror(
    ctx: &Ctx<'_>,
    n: usize,
    raw: Option<&Spanned<RawPolicy>>,
    defaults: &super::model::Defaults,
) -> Result<Option<Arc<Policy>>, ConfigError> {
    resolve(ctx, &format!("mirror[{n}]"), raw, defaults.policy.as_ref())
}

/// The policy of a table (`prefix`: `defaults` or `mirror[N]`): its own
/// when it has a `policy` table, else `base` (the defaults').
pub(super) fn resolve(
    ctx: &Ctx<'_>,
    prefix: &str,
    raw: Option<&Spanned<RawPolicy>>,
    base: Option<&Arc<Policy>>,
) -> Result<Option<Arc<Policy>>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(base.cloned());
    };
    table(ctx, prefix, raw.get_ref(), raw.span()).map(Some)
}

/// A policy file of its own (`import --verify --policy FILE`): the keys of
/// a `policy` table at the top level, key files relative to it.
pub fn load_file(path: &Path) -> Result<Arc<Policy>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        key: None,
        message: format!("cannot read the policy file: {e}"),
    })?;
    let ctx = Ctx {
        file: path,
        text: &text,
    };
    let raw: RawPolicy = toml::from_str(&text).map_err(|e| {
        ctx.err(
            e.span(),
            "policy",
            format!(
                "{}; expected require = \"any\" and keys = [\"cosign.pub\"]",
                e.message()
            ),
        )
    })?;
    table(&ctx, "policy", &raw, 0..0)
}

/// One policy table; `span`: where it is, for a missing `keys`.
fn table(
    ctx: &Ctx<'_>,
    prefix: &str,
    raw: &RawPolicy,
    span: std::ops::Range<usize>,
) -> Result<Arc<Policy>, ConfigError> {
    let require = match &raw.require {
        Some(r) => Require::parse(r.get_ref()).ok_or_else(|| {
            ctx.err(
                Some(r.span()),
                format!("{prefix}.policy.require"),
                format!(
                    "{:?} is not a requirement: expected \"any\" (one trusted key must have \
                     signed) or \"all\" (every key must have)",
                    r.get_ref()
                ),
            )
        })?,
        None => Require::Any,
    };
    let key = format!("{prefix}.policy.keys");
    let Some(list) = raw.keys.as_ref().filter(|k| !k.get_ref().is_empty()) else {
        let span = raw.keys.as_ref().map_or(span, Spanned::span);
        return Err(ctx.err(
            Some(span),
            key,
            "a policy needs at least one public key: keys = [\"cosign.pub\"] (PEM files, \
             relative to the config file)",
        ));
    };
    let dir = ctx.file.parent().unwrap_or(Path::new("."));
    let mut keys = Vec::new();
    for k in list.get_ref() {
        let path = dir.join(k.get_ref());
        let trusted = TrustedKey::load(&path, k.get_ref())
            .map_err(|e| ctx.err(Some(k.span()), key.clone(), e))?;
        keys.push(trusted);
    }
    Ok(Arc::new(Policy { require, keys }))
}
