//! A mirror's `target` or `targets` keys, with `@group` entries of
//! `targets` replaced by the targets of `[defaults.target_groups]`: the
//! target texts to validate one by one, each with where it was written.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::config_error::{ConfigError, Ctx};

/// One target as written, before validation.
pub(super) struct TargetText {
    /// The text (a registry host, or a repository with an optional tag).
    pub text: String,
    /// Where an error about it points: the entry of `targets` (a group's
    /// entry points at the `@group` entry that named it), or `target`.
    pub span: Range<usize>,
    /// The key errors name: `target` or `targets`.
    pub key: &'static str,
}

/// Mirror `n`'s targets as written: `target`, or each entry of `targets`
/// (a `@name` entry stands for every target of group `name`); exactly one
/// of the two keys, at least one target, none twice.
pub(super) fn target_texts(
    ctx: &Ctx<'_>,
    n: usize,
    target: Option<&Spanned<String>>,
    targets: Option<&Spanned<Vec<Spanned<String>>>>,
    groups: &BTreeMap<String, Vec<String>>,
    fallback: Range<usize>,
) -> Result<Vec<TargetText>, ConfigError> {
    let err = |span: Range<usize>, key: &str, msg: String| {
        ctx.err(Some(span), format!("mirror[{n}].{key}"), msg)
    };
    let list = match (target, targets) {
        (Some(_), Some(l)) => {
            return Err(err(
                l.span(),
                "targets",
                "set either target (one target) or targets (several), not both".to_string(),
            ));
        }
        (None, None) => {
            return Err(err(
                fallback,
                "target",
                "missing field `target`: set target = \"registry.example.com/mirror/app\", or \
                 targets = [...] for several"
                    .to_string(),
            ));
        }
        (Some(t), None) => {
            return Ok(vec![TargetText {
                text: t.get_ref().clone(),
                span: t.span(),
                key: "target",
            }]);
        }
        (None, Some(l)) => l,
    };
    let mut out: Vec<TargetText> = Vec::new();
    for entry in list.get_ref() {
        for text in expand(entry, groups).map_err(|m| err(entry.span(), "targets", m))? {
            let trimmed = text.trim().to_string();
            if out.iter().any(|o| o.text.trim() == trimmed) {
                return Err(err(
                    entry.span(),
                    "targets",
                    format!("target {trimmed:?} is listed twice: list each target once"),
                ));
            }
            out.push(TargetText {
                text,
                span: entry.span(),
                key: "targets",
            });
        }
    }
    if out.is_empty() {
        return Err(err(
            list.span(),
            "targets",
            "targets is empty: list at least one target repository".to_string(),
        ));
    }
    Ok(out)
}

/// One entry of `targets`: itself, or the targets of the group it names.
fn expand(
    entry: &Spanned<String>,
    groups: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>, String> {
    let text = entry.get_ref();
    let Some(name) = text.trim().strip_prefix('@') else {
        return Ok(vec![text.clone()]);
    };
    match groups.get(name) {
        Some(list) => Ok(list.clone()),
        None => {
            let known: Vec<String> = groups.keys().map(|k| format!("@{k}")).collect();
            Err(format!(
                "no target group {name:?}: define it in [defaults.target_groups] (e.g. {name} = \
                 [\"registry-a.example.com/mirror\", \"registry-b.example.com/mirror\"]); known \
                 groups: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        }
    }
}

/// `[defaults.target_groups]`: each group a non-empty list, named by
/// letters, digits, `-` and `_`.
pub(super) fn groups(
    ctx: &Ctx<'_>,
    raw: Option<&BTreeMap<String, Spanned<Vec<String>>>>,
) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, list) in raw.into_iter().flatten() {
        let key = format!("defaults.target_groups.{name}");
        let good_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !good_name {
            return Err(ctx.err(
                Some(list.span()),
                key,
                "a target group's name uses letters, digits, '-' and '_' only",
            ));
        }
        if list.get_ref().is_empty() {
            return Err(ctx.err(
                Some(list.span()),
                key,
                "a target group lists at least one target",
            ));
        }
        if list.get_ref().iter().any(|t| t.trim().starts_with('@')) {
            return Err(ctx.err(
                Some(list.span()),
                key,
                "a target group lists targets, not other groups",
            ));
        }
        out.insert(name.clone(), list.get_ref().clone());
    }
    Ok(out)
}
