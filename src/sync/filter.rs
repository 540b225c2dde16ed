//! Tag filters: regexes, a semver requirement and "newest N".
//!
//! Tags such as `1.27` or `v1.2` are not full semver: [`lenient_version`]
//! strips a leading `v`, pads a missing minor or patch with zeros and keeps
//! any `-prerelease` or `+build` suffix. Tags that still do not parse (for
//! example `latest` or `stable`) are dropped by a semver filter and by
//! `latest`.

use regex::Regex;
use semver::{Version, VersionReq};

/// Which listed tags a mirror copies. Filters apply in this order: `include`
/// (any regex matches; none given: every tag), `exclude` (no regex matches),
/// `semver` (the lenient version satisfies the requirement), `latest` (the
/// newest N versions among what is left).
#[derive(Debug, Clone, Default)]
pub struct TagFilter {
    /// Keep tags matching at least one of these; empty keeps every tag.
    pub include: Vec<Regex>,
    /// Drop tags matching any of these.
    pub exclude: Vec<Regex>,
    /// Keep tags whose lenient version satisfies this requirement.
    pub semver: Option<VersionReq>,
    /// Keep only the newest N tags by lenient version.
    pub latest: Option<usize>,
}

impl TagFilter {
    /// True when no filter is set (every tag passes).
    pub fn is_empty(&self) -> bool {
        self.include.is_empty()
            && self.exclude.is_empty()
            && self.semver.is_none()
            && self.latest.is_none()
    }

    /// The tags that pass, without duplicates. With `latest` they come newest
    /// first; otherwise in lexical order.
    pub fn apply(&self, tags: &[String]) -> Vec<String> {
        let mut kept: Vec<&String> = tags
            .iter()
            .filter(|t| self.include.is_empty() || self.include.iter().any(|r| r.is_match(t)))
            .filter(|t| !self.exclude.iter().any(|r| r.is_match(t)))
            .filter(|t| match &self.semver {
                Some(req) => lenient_version(t).is_some_and(|v| req.matches(&v)),
                None => true,
            })
            .collect();
        kept.sort();
        kept.dedup();
        match self.latest {
            Some(n) => {
                let mut versioned: Vec<(Version, &String)> = kept
                    .into_iter()
                    .filter_map(|t| lenient_version(t).map(|v| (v, t)))
                    .collect();
                // Newest first; equal versions (`1.2` and `1.2.0`) by tag text.
                versioned.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
                versioned
                    .into_iter()
                    .take(n)
                    .map(|(_, t)| t.clone())
                    .collect()
            }
            None => kept.into_iter().cloned().collect(),
        }
    }
}

/// Parse a tag as a version leniently: a leading `v` or `V` is dropped and a
/// missing minor or patch becomes `0` (`1.27` is `1.27.0`, `v2` is `2.0.0`,
/// `1.27-alpine` is `1.27.0-alpine`). `None` for anything else.
pub fn lenient_version(tag: &str) -> Option<Version> {
    let t = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
    let split = t.find(['-', '+']).unwrap_or(t.len());
    let (core, suffix) = t.split_at(split);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut padded = parts.join(".");
    for _ in parts.len()..3 {
        padded.push_str(".0");
    }
    padded.push_str(suffix);
    Version::parse(&padded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn re(list: &[&str]) -> Vec<Regex> {
        list.iter().map(|s| Regex::new(s).unwrap()).collect()
    }

    const ALL: &[&str] = &[
        "1.25.0",
        "1.26.1",
        "1.26.2",
        "1.27",
        "1.27.0",
        "1.27.3",
        "1.28.0-rc1",
        "2.0.0",
        "v1.26.5",
        "latest",
        "stable",
        "1.27-alpine",
        "mainline",
    ];

    #[test]
    fn lenient_versions() {
        assert_eq!(lenient_version("1.27"), Some(Version::new(1, 27, 0)));
        assert_eq!(lenient_version("v2"), Some(Version::new(2, 0, 0)));
        assert_eq!(lenient_version("V1.2.3"), Some(Version::new(1, 2, 3)));
        assert_eq!(
            lenient_version("1.27-alpine").unwrap().to_string(),
            "1.27.0-alpine"
        );
        assert_eq!(
            lenient_version("1.2.3+build.5").unwrap().to_string(),
            "1.2.3+build.5"
        );
        for bad in [
            "latest", "", "v", "1..2", "1.2.3.4", "1.x", "01.2.3", "-1", "1.2-",
        ] {
            assert_eq!(lenient_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn empty_filter_keeps_everything_sorted() {
        let f = TagFilter::default();
        assert!(f.is_empty());
        let out = f.apply(&tags(&["b", "a", "b"]));
        assert_eq!(out, tags(&["a", "b"]));
    }

    #[test]
    fn include_is_a_union_of_regexes() {
        let f = TagFilter {
            include: re(&[r"^1\.26\.\d+$", "^latest$"]),
            ..Default::default()
        };
        assert_eq!(f.apply(&tags(ALL)), tags(&["1.26.1", "1.26.2", "latest"]));
    }

    #[test]
    fn exclude_drops_matches() {
        let f = TagFilter {
            exclude: re(&["-rc", "-alpine", "^[a-z]"]),
            ..Default::default()
        };
        assert_eq!(
            f.apply(&tags(ALL)),
            tags(&[
                "1.25.0", "1.26.1", "1.26.2", "1.27", "1.27.0", "1.27.3", "2.0.0"
            ])
        );
    }

    #[test]
    fn semver_requirement_parses_leniently_and_drops_non_versions() {
        let f = TagFilter {
            semver: Some(VersionReq::parse(">=1.26, <2").unwrap()),
            ..Default::default()
        };
        // Prereleases (`-rc1`, `-alpine`) do not satisfy a plain requirement.
        assert_eq!(
            f.apply(&tags(ALL)),
            tags(&["1.26.1", "1.26.2", "1.27", "1.27.0", "1.27.3", "v1.26.5"])
        );
    }

    #[test]
    fn latest_takes_newest_versions_after_other_filters() {
        let f = TagFilter {
            exclude: re(&["-"]),
            latest: Some(3),
            ..Default::default()
        };
        assert_eq!(f.apply(&tags(ALL)), tags(&["2.0.0", "1.27.3", "1.27"]));
        let f = TagFilter {
            include: re(&[r"^1\.26"]),
            latest: Some(10),
            ..Default::default()
        };
        assert_eq!(f.apply(&tags(ALL)), tags(&["1.26.2", "1.26.1"]));
    }

    #[test]
    fn filters_combine() {
        let f = TagFilter {
            include: re(&[r"^v?1\.2[6-9]"]),
            exclude: re(&["-rc"]),
            semver: Some(VersionReq::parse(">=1.25, <2").unwrap()),
            latest: Some(2),
        };
        assert_eq!(f.apply(&tags(ALL)), tags(&["1.27.3", "1.27"]));
    }
}
