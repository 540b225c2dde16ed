//! Layout references: `oci:PATH[:REF]` and `oci-archive:PATH[:REF]`, and
//! the names (`ref.name`) of images inside a layout.

use std::path::PathBuf;

use super::{Location, Reference, ReferenceError, valid_tag};
use crate::registry::digest::Digest;

/// Where an `oci:` or `oci-archive:` reference points.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct LayoutLocation {
    /// True for `oci-archive:` (a tar of a layout).
    pub archive: bool,
    /// The path as written.
    pub path: PathBuf,
    /// The path made absolute against the working directory at parse time.
    pub absolute: PathBuf,
    /// `oci:` or `oci-archive:` + the absolute path: what tells this place
    /// apart from every other one (see [`Reference::registry`]).
    key: String,
}

impl LayoutLocation {
    /// `oci` or `oci-archive`.
    pub fn transport(&self) -> &'static str {
        if self.archive { "oci-archive" } else { "oci" }
    }

    /// `oci:` or `oci-archive:` + the absolute path.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// The transport prefix of a layout reference: `(archive, rest)`. A port
/// after `oci:` followed by `/` or the end keeps the old registry meaning.
pub(super) fn layout_prefix(input: &str) -> Option<(bool, &str)> {
    let (archive, rest) = if let Some(rest) = input.strip_prefix("oci-archive:") {
        (true, rest)
    } else {
        (false, input.strip_prefix("oci:")?)
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && rest[digits..].starts_with('/') {
        return None;
    }
    Some((archive, rest))
}

/// `PATH[:REF]` after `oci:` / `oci-archive:`. PATH is everything up to the
/// first `:` (so it cannot contain one). REF is `TAG`, `NAME[:TAG]`, any of
/// those with `@DIGEST`, or `@DIGEST` alone; NAME follows the registry
/// reference grammar and is kept as written.
pub(super) fn parse_layout(
    input: &str,
    archive: bool,
    rest: &str,
) -> Result<Reference, ReferenceError> {
    let bad = |detail: String| ReferenceError::BadLayout {
        input: input.to_string(),
        detail,
    };
    let (path, reference) = match rest.split_once(':') {
        Some((p, r)) => (p, Some(r)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(bad(
            "the path is empty: write oci:DIR[:TAG] or oci-archive:FILE.tar[:TAG]".into(),
        ));
    }
    if path.contains('\0') {
        return Err(bad("the path contains a NUL byte".into()));
    }
    let path = PathBuf::from(path);
    let absolute = std::path::absolute(&path)
        .map_err(|e| bad(format!("the path cannot be made absolute: {e}")))?;
    let prefix = if archive { "oci-archive" } else { "oci" };
    let key = format!("{prefix}:{}", absolute.display());
    let (repository, tag, digest) = match reference {
        None => (String::new(), None, None),
        Some(r) => parse_layout_ref(r).map_err(bad)?,
    };
    Ok(Reference {
        location: Location::Layout(LayoutLocation {
            archive,
            path,
            absolute,
            key,
        }),
        repository,
        tag,
        digest,
    })
}

type LayoutRef = (String, Option<String>, Option<Digest>);

/// Split the REF of a layout reference into (name, tag, digest).
fn parse_layout_ref(r: &str) -> Result<LayoutRef, String> {
    if r.is_empty() {
        return Err("nothing follows the ':' after the path: add a tag, or drop the ':'".into());
    }
    let (rest, digest) = match r.split_once('@') {
        Some((rest, d)) => (rest, Some(d.parse::<Digest>().map_err(|e| e.to_string())?)),
        None => (r, None),
    };
    if rest.is_empty() {
        return Ok((String::new(), None, digest));
    }
    if valid_tag(rest) {
        return Ok((String::new(), Some(rest.to_string()), digest));
    }
    let (name, tag) = split_ref_name(rest).ok_or_else(|| {
        format!(
            "{:?} is neither a tag nor a valid reference name (registry/repository:tag)",
            crate::registry::escape::shown(rest)
        )
    })?;
    Ok((name.to_string(), tag.map(str::to_string), digest))
}

/// Split an `org.opencontainers.image.ref.name` value into (name, tag): a
/// valid tag alone is `("", Some(tag))`; otherwise `name[:tag]` where name
/// is a valid reference name (kept as written). `None` when it is neither.
pub fn split_ref_name(s: &str) -> Option<(&str, Option<&str>)> {
    if valid_tag(s) {
        return Some(("", Some(s)));
    }
    let last_slash = s.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match s[last_slash..].rfind(':') {
        Some(i) => (&s[..last_slash + i], Some(&s[last_slash + i + 1..])),
        None => (s, None),
    };
    if tag.is_some_and(|t| !valid_tag(t)) || !valid_layout_name(name) {
        return None;
    }
    Some((name, tag))
}

/// True when `name` can name a repository inside a layout: it parses as a
/// registry repository name (host optional), without tag or digest.
pub fn valid_layout_name(name: &str) -> bool {
    !name.is_empty()
        && layout_prefix(name).is_none()
        && super::transport::strip_docker(name).is_none()
        && !name.contains('@')
        && Reference::parse_repository(name).is_ok()
        && !name.rsplit('/').next().unwrap_or("").contains(':')
}
