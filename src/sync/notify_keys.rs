//! `[[notify]]` tables of the config file, validated into
//! [`NotifySink`]s: one name each, exactly one of `url`, `url_file`,
//! `url_env`, at most one of `secret_file` and `secret_env` (a secret is
//! never written in the config), and a `mirrors` filter naming mirrors of
//! the file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::config_error::{ConfigError, Ctx};
use super::model::notify::{
    DEFAULT_NOTIFY_TIMEOUT, NotifyAuth, NotifyFormat, NotifyOn, NotifySink, SecretValue,
};

/// One `[[notify]]` table, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    name: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    url_file: Option<PathBuf>,
    url_env: Option<String>,
    format: Option<Spanned<String>>,
    on: Option<Spanned<String>>,
    auth: Option<Spanned<String>>,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
    mirrors: Option<Vec<Spanned<String>>>,
    timeout_seconds: Option<Spanned<f64>>,
}

/// Every `[[notify]]` table: the valid sinks and the problems of the rest.
/// `mirrors`: the names of the file's mirrors.
pub(super) fn validate_notify(
    ctx: &Ctx<'_>,
    raw: Vec<Spanned<RawNotify>>,
    mirrors: &HashSet<String>,
) -> (Vec<NotifySink>, Vec<ConfigError>) {
    let mut sinks: Vec<NotifySink> = Vec::new();
    let mut problems = Vec::new();
    for (i, table) in raw.into_iter().enumerate() {
        let span = table.span();
        match validate_sink(ctx, i + 1, table.into_inner(), mirrors) {
            Ok(s) if sinks.iter().any(|o| o.name == s.name) => problems.push(ctx.err(
                Some(span),
                format!("notify[{}].name", i + 1),
                format!(
                    "duplicate notify name {:?}: each [[notify]] needs a name of its own",
                    s.name
                ),
            )),
            Ok(s) => sinks.push(s),
            Err(e) => problems.push(e),
        }
    }
    (sinks, problems)
}

/// One `[[notify]]` table (`n`: its number in the file, from 1).
fn validate_sink(
    ctx: &Ctx<'_>,
    n: usize,
    raw: RawNotify,
    mirrors: &HashSet<String>,
) -> Result<NotifySink, ConfigError> {
    let key = |k: &str| format!("notify[{n}].{k}");
    let name = name_of(ctx, n, &raw)?;
    let url = url_of(ctx, n, &raw)?;
    let format = choice(
        ctx,
        &key("format"),
        raw.format.as_ref(),
        &NotifyFormat::NAMES,
        NotifyFormat::parse,
    )?
    .unwrap_or(NotifyFormat::CloudEvents);
    let on = choice(
        ctx,
        &key("on"),
        raw.on.as_ref(),
        &NotifyOn::NAMES,
        NotifyOn::parse,
    )?
    .unwrap_or(NotifyOn::Always);
    let secret = secret_of(ctx, n, &raw)?;
    let mut names = Vec::new();
    for m in raw.mirrors.iter().flatten() {
        if !mirrors.contains(m.get_ref()) {
            return Err(ctx.err(
                Some(m.span()),
                key("mirrors"),
                format!("{:?} is not the name of a mirror of this file", m.get_ref()),
            ));
        }
        names.push(m.get_ref().clone());
    }
    let timeout = match &raw.timeout_seconds {
        Some(t) => crate::registry::limits::check_seconds(*t.get_ref())
            .map_err(|m| ctx.err(Some(t.span()), key("timeout_seconds"), m))?,
        None => DEFAULT_NOTIFY_TIMEOUT,
    };
    Ok(NotifySink {
        name,
        url,
        format,
        on,
        secret,
        mirrors: names,
        timeout,
    })
}

/// `name`: present, 1 to 64 letters, digits, `-` or `_`.
fn name_of(ctx: &Ctx<'_>, n: usize, raw: &RawNotify) -> Result<String, ConfigError> {
    let key = format!("notify[{n}].name");
    let Some(name) = raw.name.as_ref() else {
        return Err(ctx.err(
            None,
            key,
            "missing: every [[notify]] needs a name (letters, digits, '-', '_'), the sink label of its metric",
        ));
    };
    let text = name.get_ref();
    let valid = !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(ctx.err(
            Some(name.span()),
            key,
            format!("{text:?} is not a usable name: use 1 to 64 letters, digits, '-' or '_'"),
        ));
    }
    Ok(text.clone())
}

/// The secret and its `auth`: at most one of `secret_file` and
/// `secret_env`; `auth` only with one (bearer by default).
fn secret_of(
    ctx: &Ctx<'_>,
    n: usize,
    raw: &RawNotify,
) -> Result<Option<(NotifyAuth, SecretValue)>, ConfigError> {
    let key = |k: &str| format!("notify[{n}].{k}");
    let auth = choice(
        ctx,
        &key("auth"),
        raw.auth.as_ref(),
        &NotifyAuth::NAMES,
        NotifyAuth::parse,
    )?;
    let secret = match (&raw.secret_file, &raw.secret_env) {
        (Some(_), Some(_)) => {
            return Err(ctx.err(
                None,
                key("secret_file"),
                "set secret_file or secret_env, not both",
            ));
        }
        (Some(f), None) => Some(SecretValue::File(relative_to(ctx.file, f))),
        (None, Some(v)) => Some(SecretValue::Env(v.clone())),
        (None, None) => None,
    };
    let secret = match (secret, auth) {
        (Some(s), a) => Some((a.unwrap_or(NotifyAuth::Bearer), s)),
        (None, Some(_)) => {
            return Err(ctx.err(
                raw.auth.as_ref().map(|a| a.span()),
                key("auth"),
                "auth needs a secret: set secret_file or secret_env",
            ));
        }
        (None, None) => None,
    };
    Ok(secret)
}

/// Exactly one of `url`, `url_file`, `url_env`; a written `url` is an
/// `http` or `https` URL.
fn url_of(ctx: &Ctx<'_>, n: usize, raw: &RawNotify) -> Result<SecretValue, ConfigError> {
    let key = format!("notify[{n}].url");
    let given = [
        raw.url.is_some(),
        raw.url_file.is_some(),
        raw.url_env.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ctx.err(
            raw.url.as_ref().map(|u| u.span()),
            key,
            "set exactly one of url, url_file and url_env (a webhook URL that embeds a token, \
             as Slack's and Teams' do, belongs in a file or variable)",
        ));
    }
    if let Some(u) = &raw.url {
        let ok = url::Url::parse(u.get_ref())
            .ok()
            .is_some_and(|p| matches!(p.scheme(), "http" | "https") && p.host().is_some());
        if !ok {
            return Err(ctx.err(
                Some(u.span()),
                key,
                "not an http:// or https:// URL with a host",
            ));
        }
        return Ok(SecretValue::Plain(u.get_ref().clone()));
    }
    Ok(match &raw.url_file {
        Some(f) => SecretValue::File(relative_to(ctx.file, f)),
        None => SecretValue::Env(raw.url_env.clone().unwrap_or_default()),
    })
}

/// The value of a key that takes one of `names`, or `None` when unset.
fn choice<T>(
    ctx: &Ctx<'_>,
    key: &str,
    value: Option<&Spanned<String>>,
    names: &[&str],
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, ConfigError> {
    let Some(v) = value else { return Ok(None) };
    parse(v.get_ref()).map(Some).ok_or_else(|| {
        ctx.err(
            Some(v.span()),
            key,
            format!("{:?} is not one of {}", v.get_ref(), names.join(", ")),
        )
    })
}

/// `path`, relative to the config file's directory when relative.
fn relative_to(config: &Path, path: &Path) -> PathBuf {
    match config.parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}
