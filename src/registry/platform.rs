//! Platforms: the `platform` object of index entries and image configs, and
//! `os/arch[/variant]` selectors given by users.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The `platform` object of an index entry (also the platform fields of an
/// image config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, …).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (`linux`, `windows`, …).
    #[serde(default)]
    pub os: String,
    /// OS version (Windows builds).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Required OS features.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant (`v7`, `v8`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// True for buildx's attestation entries (`unknown/unknown`).
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        if let Some(v) = &self.os_version {
            write!(f, " ({v})")?;
        }
        Ok(())
    }
}

/// A user's platform selector: `os/arch` or `os/arch/variant`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlatformSpec {
    /// Operating system.
    pub os: String,
    /// Architecture.
    pub architecture: String,
    /// Variant; `None` matches the architecture's default variant or any when none is default.
    pub variant: Option<String>,
}

/// A selector that is not `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "platform {0:?} is invalid: expected os/arch or os/arch/variant, e.g. linux/amd64 or linux/arm/v7"
)]
pub struct PlatformSpecError(pub String);

impl FromStr for PlatformSpec {
    type Err = PlatformSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(PlatformSpecError(s.to_string()));
        }
        Ok(PlatformSpec {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The variant an architecture has when none is written (containerd's rules).
fn default_variant(arch: &str) -> Option<&'static str> {
    match arch {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    }
}

impl PlatformSpec {
    /// True when `p` is the platform this selector names. A selector without
    /// a variant matches the architecture's default variant (`linux/arm64`
    /// matches `v8` or none; `linux/arm` matches `v7` or none); for an
    /// architecture without variants it matches any.
    pub fn matches(&self, p: &Platform) -> bool {
        if !self.os.eq_ignore_ascii_case(&p.os)
            || !self.architecture.eq_ignore_ascii_case(&p.architecture)
        {
            return false;
        }
        let have = p.variant.as_deref().or(default_variant(&p.architecture));
        match (&self.variant, default_variant(&self.architecture)) {
            (Some(want), _) => have.is_some_and(|h| h.eq_ignore_ascii_case(want)),
            (None, Some(def)) => have == Some(def),
            (None, None) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plat(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn parses_and_matches() {
        let amd: PlatformSpec = "linux/amd64".parse().unwrap();
        assert!(amd.matches(&plat("linux", "amd64", None)));
        assert!(!amd.matches(&plat("linux", "arm64", None)));
        assert!(!amd.matches(&plat("windows", "amd64", None)));
        let arm64: PlatformSpec = "linux/arm64".parse().unwrap();
        assert!(arm64.matches(&plat("linux", "arm64", Some("v8"))));
        assert!(arm64.matches(&plat("linux", "arm64", None)));
        let armv7: PlatformSpec = "linux/arm/v7".parse().unwrap();
        assert!(armv7.matches(&plat("linux", "arm", Some("v7"))));
        assert!(armv7.matches(&plat("linux", "arm", None)));
        assert!(!armv7.matches(&plat("linux", "arm", Some("v6"))));
        let arm: PlatformSpec = "linux/arm".parse().unwrap();
        assert!(!arm.matches(&plat("linux", "arm", Some("v6"))));
        assert_eq!(armv7.to_string(), "linux/arm/v7");
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            assert!(bad.parse::<PlatformSpec>().is_err(), "{bad}");
        }
    }
}
