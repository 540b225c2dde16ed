//! The referrer keys of `[defaults]` and `[[mirror]]`: `referrers`,
//! `referrer_types`, `exclude_referrer_types`, `cosign_tags`.

use std::ops::Range;

use toml::Spanned;

use crate::copy::ReferrerOptions;

/// The keys as written in one table.
#[derive(Debug, Default)]
pub(super) struct Keys<'a> {
    pub referrers: Option<bool>,
    pub referrer_types: Option<&'a [Spanned<String>]>,
    pub exclude_referrer_types: Option<&'a [Spanned<String>]>,
    pub cosign_tags: Option<bool>,
}

/// The options of a table whose unset keys come from `base` (the
/// defaults'). `cosign_tags` unset follows `referrers`.
/// `Err((key, span, message))` for a bad artifact type.
pub(super) fn resolve(
    base: &ReferrerOptions,
    prefix: &str,
    keys: &Keys<'_>,
) -> Result<ReferrerOptions, (String, Range<usize>, String)> {
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
    })
}

/// Artifact types are media types: `type/subtype`, no spaces.
fn artifact_types(
    prefix: &str,
    key: &str,
    list: &[Spanned<String>],
) -> Result<Vec<String>, (String, Range<usize>, String)> {
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
}
