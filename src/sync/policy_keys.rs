//! The `policy` table of `[defaults]` and `[[mirror]]`: the signatures an
//! image must carry before it is written at the target (see
//! [`crate::copy::policy`]).
//!
//! ```toml
//! [mirror.policy]
//! require = "any"            # or "all"
//! keys = ["keys/cosign.pub"] # PEM public keys, relative to the config file
//! trusted_root = "trusted_root.json"   # for keyless identities
//!
//! [[mirror.policy.identities]]
//! issuer = "https://token.actions.githubusercontent.com"
//! identity = "https://github.com/org/repo/.github/workflows/release.yaml@refs/heads/main"
//! # or identity_regexp = "https://github.com/org/.*"
//! ```
//!
//! A mirror's table replaces the defaults' whole; a mirror without one
//! follows `[defaults.policy]`, and without either has no policy. Key and
//! trusted root files are read when the config is loaded, so a missing or
//! unreadable one is a config error naming it.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::config_error::{ConfigError, Ctx};
use crate::copy::policy::{
    Identity, Policy, Require, Source, SourceKind, Sources, TrustedKey, TrustedRoot,
};

/// The table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    require: Option<Spanned<String>>,
    keys: Option<Spanned<Vec<Spanned<String>>>>,
    trusted_root: Option<Spanned<String>>,
    identities: Option<Spanned<Vec<Spanned<RawIdentity>>>>,
}

/// One `[[policy.identities]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// The OIDC issuer.
    pub issuer: String,
    /// The certificate SAN, exactly.
    pub identity: Option<String>,
    /// A regular expression the whole SAN matches.
    pub identity_regexp: Option<String>,
}

impl RawIdentity {
    /// The identity; `Err` says what is wrong with it.
    pub fn resolve(&self) -> Result<Identity, String> {
        if self.issuer.is_empty() {
            return Err("issuer is empty: give the OIDC issuer URL, e.g. \
                        https://token.actions.githubusercontent.com"
                .to_string());
        }
        match (&self.identity, &self.identity_regexp) {
            (Some(i), None) => Ok(Identity::exact(&self.issuer, i)),
            (None, Some(r)) => Identity::regex(&self.issuer, r).map_err(|e| {
                format!("identity_regexp {e}; the expression must match the whole SAN")
            }),
            _ => Err("set exactly one of identity (the certificate SAN) and \
                      identity_regexp (an expression the whole SAN matches)"
                .to_string()),
        }
    }
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
                "{}; expected require = \"any\" and keys = [\"cosign.pub\"], or \
                 trusted_root and [[identities]]",
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
                    "{:?} is not a requirement: expected \"any\" (one trusted key or identity \
                     must have signed) or \"all\" (every one must have)",
                    r.get_ref()
                ),
            )
        })?,
        None => Require::Any,
    };
    let keys = keys(ctx, prefix, raw)?;
    let (identities, trusted_root) = keyless(ctx, prefix, raw)?;
    if keys.is_empty() && identities.is_empty() {
        let span = raw.keys.as_ref().map_or(span, Spanned::span);
        return Err(ctx.err(
            Some(span),
            format!("{prefix}.policy.keys"),
            "a policy needs at least one public key: keys = [\"cosign.pub\"] (PEM files, \
             relative to the config file), or keyless identities ([[policy.identities]] with \
             trusted_root)",
        ));
    }
    let dir = ctx.file.parent().unwrap_or(Path::new("."));
    let source = |name: &Spanned<String>, kind| Source {
        path: dir.join(name.get_ref()),
        name: name.get_ref().clone(),
        kind,
    };
    let mut files: Vec<Source> = raw
        .keys
        .iter()
        .flat_map(|l| l.get_ref())
        .map(|k| source(k, SourceKind::Key))
        .collect();
    files.extend(
        raw.trusted_root
            .iter()
            .map(|t| source(t, SourceKind::TrustedRoot)),
    );
    Ok(Arc::new(Policy {
        require,
        keys,
        identities,
        trusted_root,
        sources: Some(Arc::new(Sources::new(files))),
    }))
}

/// The key files of a table, read.
fn keys(ctx: &Ctx<'_>, prefix: &str, raw: &RawPolicy) -> Result<Vec<TrustedKey>, ConfigError> {
    let key = format!("{prefix}.policy.keys");
    let dir = ctx.file.parent().unwrap_or(Path::new("."));
    let mut keys = Vec::new();
    for k in raw.keys.iter().flat_map(|l| l.get_ref()) {
        let path = dir.join(k.get_ref());
        let trusted = TrustedKey::load(&path, k.get_ref())
            .map_err(|e| ctx.err(Some(k.span()), key.clone(), e))?;
        keys.push(trusted);
    }
    Ok(keys)
}

/// The identities of a table and its trusted root, read.
fn keyless(
    ctx: &Ctx<'_>,
    prefix: &str,
    raw: &RawPolicy,
) -> Result<(Vec<Identity>, Option<Arc<TrustedRoot>>), ConfigError> {
    let key = format!("{prefix}.policy.identities");
    let mut identities = Vec::new();
    for (n, i) in raw.identities.iter().flat_map(|l| l.get_ref()).enumerate() {
        let identity = i
            .get_ref()
            .resolve()
            .map_err(|e| ctx.err(Some(i.span()), format!("{key}[{}]", n + 1), e))?;
        identities.push(identity);
    }
    let root = match &raw.trusted_root {
        Some(t) => {
            let path = ctx
                .file
                .parent()
                .unwrap_or(Path::new("."))
                .join(t.get_ref());
            let root = TrustedRoot::load(&path, t.get_ref())
                .map_err(|e| ctx.err(Some(t.span()), format!("{prefix}.policy.trusted_root"), e))?;
            Some(Arc::new(root))
        }
        None if !identities.is_empty() => {
            let span = raw.identities.as_ref().map(Spanned::span);
            return Err(ctx.err(
                span,
                key,
                "keyless identities need a trusted root to check certificates and log \
                 entries against: trusted_root = \"trusted_root.json\" (see `cosign \
                 trusted-root create`)",
            ));
        }
        None => None,
    };
    Ok((identities, root))
}

/// The keyless identity of `import --verify`'s cosign-style flags
/// (`--certificate-oidc-issuer`, `--certificate-identity` or
/// `--certificate-identity-regexp`, `--trusted-root`); none when no
/// identity flag is given.
pub fn keyless_flags(
    issuer: Option<&str>,
    identity: Option<&str>,
    identity_regexp: Option<&str>,
    trusted_root: Option<&Path>,
) -> Result<(Vec<Identity>, Option<Arc<TrustedRoot>>), String> {
    if identity.is_none() && identity_regexp.is_none() {
        return Ok((Vec::new(), None));
    }
    let raw = RawIdentity {
        issuer: issuer.unwrap_or_default().to_string(),
        identity: identity.map(str::to_string),
        identity_regexp: identity_regexp.map(str::to_string),
    };
    let identity = raw
        .resolve()
        .map_err(|e| format!("--certificate-identity: {e}"))?;
    let path = trusted_root.ok_or("--certificate-identity needs --trusted-root FILE")?;
    let root = TrustedRoot::load(path, &path.display().to_string())?;
    Ok((vec![identity], Some(Arc::new(root))))
}
