//! The referrer keys of `[defaults]` and `[[mirror]]`: `referrers`,
//! `referrer_types`, `exclude_referrer_types`, `cosign_tags`, and the
//! limits of one image's referrer walk `max_referrers_per_subject`,
//! `max_referrers_per_image`, `max_referrer_depth`.

use std::ops::Range;

use toml::Spanned;

use crate::copy::ReferrerOptions;
use crate::copy::referrers::ReferrerLimits;
use crate::copy::referrers::limits::MAX_LIMIT;

/// A bad key: its full name, where it is, and why.
type KeyError = (String, Range<usize>, String);

/// The keys as written in one table.
#[derive(Debug, Default)]
pub(super) struct Keys<'a> {
    pub referrers: Option<bool>,
    pub referrer_types: Option<&'a [Spanned<String>]>,
    pub exclude_referrer_types: Option<&'a [Spanned<String>]>,
    pub cosign_tags: Option<bool>,
    pub max_referrers_per_subject: Option<&'a Spanned<usize>>,
    pub max_referrers_per_image: Option<&'a Spanned<usize>>,
    pub max_referrer_depth: Option<&'a Spanned<usize>>,
}

/// The options of a table whose unset keys come from `base` (the
/// defaults'). `cosign_tags` unset follows `referrers`.
/// `Err((key, span, message))` for a bad artifact type or limit.
pub(super) fn resolve(
    base: &ReferrerOptions,
    prefix: &str,
    keys: &Keys<'_>,
) -> Result<ReferrerOptions, KeyError> {
    let enabled = keys.referrers.unwrap_or(base.enabled);
    let types = match keys.referrer_types {
        Some(list) => artifact_types(prefix, "referrer_types", list)?,
        None => base.types.clone(),
    };
    let exclude_types = match keys.exclude_referrer_types {
        Some(list) => artifact_types(prefix, "exclude_referrer_types", list)?,
        None => base.exclude_types.clone(),
    };
    let cosign_tags = match (keys.cosign_tags, keys.referrers) {
        (Some(c), _) => c,
        (None, Some(r)) => r,
        (None, None) => base.cosign_tags,
    };
    Ok(ReferrerOptions {
        enabled,
        types,
        exclude_types,
        cosign_tags,
        limits: limits(&base.limits, prefix, keys)?,
    })
}

/// The walk limits of a table whose unset keys come from `base`; each
/// between 1 and [`MAX_LIMIT`].
fn limits(
    base: &ReferrerLimits,
    prefix: &str,
    keys: &Keys<'_>,
) -> Result<ReferrerLimits, KeyError> {
    let one = |key: &str, v: Option<&Spanned<usize>>, default: usize| -> Result<usize, KeyError> {
        let Some(v) = v else {
            return Ok(default);
        };
        let n = *v.get_ref();
        if (1..=MAX_LIMIT).contains(&n) {
            return Ok(n);
        }
        Err((
            format!("{prefix}.{key}"),
            v.span(),
            format!(
                "{n} is out of range: expected 1 to {MAX_LIMIT} (referrers beyond the limit are \
                 left behind, counted and warned about; the limit bounds the work one image may cause)"
            ),
        ))
    };
    Ok(ReferrerLimits {
        per_subject: one(
            "max_referrers_per_subject",
            keys.max_referrers_per_subject,
            base.per_subject,
        )?,
        per_image: one(
            "max_referrers_per_image",
            keys.max_referrers_per_image,
            base.per_image,
        )?,
        depth: one("max_referrer_depth", keys.max_referrer_depth, base.depth)?,
    })
}

/// Artifact types are media types: `type/subtype`, no spaces.
fn artifact_types(
    prefix: &str,
    key: &str,
    list: &[Spanned<String>],
) -> Result<Vec<String>, KeyError> {
    let mut out: Vec<String> = Vec::new();
    for t in list {
        let v = t.get_ref().trim();
        let ok = v
            .split_once('/')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
            && v.len() <= 255
            && v.chars().all(|c| c.is_ascii_graphic());
        if !ok {
            return Err((
                format!("{prefix}.{key}"),
                t.span(),
                format!(
                    "{v:?} is not an artifact type: expected a media type such as \
                     \"application/vnd.dev.cosign.artifact.sig.v1+json\" or \"application/spdx+json\""
                ),
            ));
        }
        if !out.iter().any(|o| o == v) {
            out.push(v.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spanned(v: &str) -> Spanned<String> {
        #[derive(serde::Deserialize)]
        struct T {
            v: Spanned<String>,
        }
        toml::from_str::<T>(&format!("v = {v:?}")).unwrap().v
    }

    #[test]
    fn mirror_keys_override_defaults() {
        let base = ReferrerOptions::all();
        let r = resolve(&base, "mirror[0]", &Keys::default()).unwrap();
        assert_eq!(r, base);
        let off = resolve(
            &base,
            "mirror[0]",
            &Keys {
                referrers: Some(false),
                ..Keys::default()
            },
        )
        .unwrap();
        assert!(!off.enabled && !off.cosign_tags);
        let sigs_only = [spanned("application/vnd.dev.cosign.artifact.sig.v1+json")];
        let r = resolve(
            &base,
            "mirror[0]",
            &Keys {
                referrer_types: Some(&sigs_only),
                cosign_tags: Some(false),
                ..Keys::default()
            },
        )
        .unwrap();
        assert!(r.enabled && !r.cosign_tags);
        assert_eq!(r.types.len(), 1);
        let bad = [spanned("sbom")];
        let (key, _, msg) = resolve(
            &base,
            "defaults",
            &Keys {
                exclude_referrer_types: Some(&bad),
                ..Keys::default()
            },
        )
        .unwrap_err();
        assert_eq!(key, "defaults.exclude_referrer_types");
        assert!(msg.contains("not an artifact type"), "{msg}");
    }

    fn spanned_n(v: usize) -> Spanned<usize> {
        #[derive(serde::Deserialize)]
        struct T {
            v: Spanned<usize>,
        }
        toml::from_str::<T>(&format!("v = {v}")).unwrap().v
    }

    #[test]
    fn walk_limits_are_inherited_set_and_checked() {
        let base = ReferrerOptions::all();
        let r = resolve(&base, "defaults", &Keys::default()).unwrap();
        assert_eq!(r.limits, ReferrerLimits::default());
        let (image, depth) = (spanned_n(1000), spanned_n(2));
        let keys = Keys {
            max_referrers_per_image: Some(&image),
            max_referrer_depth: Some(&depth),
            ..Keys::default()
        };
        let set = resolve(&base, "defaults", &keys).unwrap();
        assert_eq!((set.limits.per_image, set.limits.depth), (1000, 2));
        assert_eq!(
            set.limits.per_subject,
            ReferrerLimits::default().per_subject
        );
        let inherited = resolve(&set, "mirror[0]", &Keys::default()).unwrap();
        assert_eq!(inherited.limits, set.limits);
        let zero = spanned_n(0);
        let keys = Keys {
            max_referrers_per_subject: Some(&zero),
            ..Keys::default()
        };
        let (key, _, msg) = resolve(&base, "mirror[2]", &keys).unwrap_err();
        assert_eq!(key, "mirror[2].max_referrers_per_subject");
        assert!(msg.contains("expected 1 to 100000"), "{msg}");
    }
}
