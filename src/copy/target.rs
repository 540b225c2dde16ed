//! Where an image goes: a target given as a registry alone, a repository, or
//! a full reference.

use crate::registry::Reference;
use crate::registry::reference::{Location, ReferenceError};

/// Why a target cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not a reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The target names a digest.
    #[error(
        "target {0:?} names a digest: a copy keeps the source's digest, so give a registry, \
         a repository or repository:tag"
    )]
    HasDigest(String),
    /// A layout target for an image that has no tag.
    #[error(
        "target {0:?} is an image layout and the source has no tag: give the target one \
         (oci:DIR:TAG); an untagged image is not listed in index.json"
    )]
    LayoutNeedsTag(String),
    /// A registry alone as the target of a layout image without a repository name.
    #[error(
        "source {0} has no repository name in its layout: give the target a repository \
         (REGISTRY/REPOSITORY[:TAG])"
    )]
    NoRepository(String),
}

/// True when `input` names a registry host only (`localhost:5000`,
/// `registry.example.com`, `127.0.0.1:5000`), not an image: no `/`, and the
/// part before any `:` is `localhost`, contains a `.`, or is a bracketed IPv6
/// address. `nginx:1` stays an image on Docker Hub.
pub fn is_registry_only(input: &str) -> bool {
    let input = input.strip_suffix('/').unwrap_or(input);
    if input.is_empty() || input.contains('/') || input.contains('@') {
        return false;
    }
    if input.starts_with('[') {
        return true;
    }
    let host = input.split(':').next().unwrap_or("");
    host == "localhost" || host.contains('.')
}

/// The reference an image from `source` is copied to, given a user's
/// `target`:
/// - a registry alone keeps the source's repository path and tag
///   (`localhost:5000` → `localhost:5000/library/nginx:latest`);
/// - a repository without tag gets the source's tag, or no tag at all when
///   the source was given by digest only (the copy is pushed by digest);
/// - a repository with a tag is used as is.
pub fn resolve_target(source: &Reference, target: &str) -> Result<Reference, TargetError> {
    let source_ref_tag = source.tag().map(str::to_string);
    let base = if is_registry_only(target) {
        let host = target.strip_suffix('/').unwrap_or(target);
        Reference::new_repository(host, &registry_path(source)?)?
    } else {
        let t = Reference::parse(target)?;
        if t.digest().is_some() {
            return Err(TargetError::HasDigest(target.to_string()));
        }
        if t.tag().is_some() {
            return Ok(t);
        }
        t
    };
    Ok(match source_ref_tag {
        Some(tag) => base.with_tag(&tag)?,
        None if source.digest().is_some() && matches!(base.location(), Location::Layout(_)) => {
            return Err(TargetError::LayoutNeedsTag(target.to_string()));
        }
        None if source.digest().is_some() => base.repository_only(),
        None => base.with_tag("latest")?,
    })
}

/// The repository path a source keeps under a registry-only target. A
/// layout's repository names are full references (`docker.io/library/nginx`):
/// their registry is dropped, as for a registry source.
fn registry_path(source: &Reference) -> Result<String, TargetError> {
    if let Location::Registry(_) = source.location() {
        return Ok(source.repository().to_string());
    }
    if source.repository().is_empty() {
        return Err(TargetError::NoRepository(source.to_string()));
    }
    Ok(Reference::parse_repository(source.repository())?
        .repository()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn registry_only_keeps_the_path() {
        let t = resolve_target(&r("nginx").or_latest(), "localhost:5000").unwrap();
        assert_eq!(t.to_string(), "localhost:5000/library/nginx:latest");
        let t = resolve_target(&r("ghcr.io/o/app:v1"), "127.0.0.1:5000/").unwrap();
        assert_eq!(t.to_string(), "127.0.0.1:5000/o/app:v1");
        let t = resolve_target(&r(&format!("ghcr.io/o/app@{D}")), "registry.example.com").unwrap();
        assert_eq!(t.to_string(), "registry.example.com/o/app");
        assert_eq!(t.tag(), None);
        assert_eq!(t.digest(), None);
    }

    #[test]
    fn layouts_as_source_and_target() {
        // A layout target without REF gets the source's tag as its ref.name.
        let t = resolve_target(&r("ghcr.io/o/app:v1"), "oci:out").unwrap();
        assert_eq!(t.to_string(), "oci:out:v1");
        assert_eq!(t.layout_ref_name().as_deref(), Some("v1"));
        let t = resolve_target(&r("ghcr.io/o/app:v1"), "oci:out:ghcr.io/o/app").unwrap();
        assert_eq!(t.layout_ref_name().as_deref(), Some("ghcr.io/o/app:v1"));
        assert!(matches!(
            resolve_target(&r(&format!("ghcr.io/o/app@{D}")), "oci:out"),
            Err(TargetError::LayoutNeedsTag(_))
        ));
        // A registry alone: a named layout repository keeps its path, not its host.
        let t = resolve_target(&r("oci:in:docker.io/library/nginx:1"), "localhost:5000").unwrap();
        assert_eq!(t.to_string(), "localhost:5000/library/nginx:1");
        assert!(matches!(
            resolve_target(&r("oci:in:1"), "localhost:5000"),
            Err(TargetError::NoRepository(_))
        ));
        let t = resolve_target(&r("oci:in:1"), "localhost:5000/team/app").unwrap();
        assert_eq!(t.to_string(), "localhost:5000/team/app:1");
    }

    #[test]
    fn repository_gets_source_tag() {
        let t = resolve_target(&r("localhost:1/a/b:7"), "localhost:2/c").unwrap();
        assert_eq!(t.to_string(), "localhost:2/c:7");
        let t = resolve_target(&r(&format!("localhost:1/a@{D}")), "localhost:2/c").unwrap();
        assert_eq!(t.to_string(), "localhost:2/c");
        let t = resolve_target(&r(&format!("localhost:1/a:v@{D}")), "localhost:2/c").unwrap();
        assert_eq!(t.to_string(), "localhost:2/c:v");
        let t = resolve_target(&r("localhost:1/a:7"), "localhost:2/c:other").unwrap();
        assert_eq!(t.to_string(), "localhost:2/c:other");
        let t = resolve_target(&r("localhost:1/a"), "localhost:2/c").unwrap();
        assert_eq!(t.to_string(), "localhost:2/c:latest");
    }

    #[test]
    fn bad_targets() {
        assert!(matches!(
            resolve_target(&r("a:1"), &format!("localhost:2/c@{D}")),
            Err(TargetError::HasDigest(_))
        ));
        assert!(matches!(
            resolve_target(&r("a:1"), "localhost:2/C"),
            Err(TargetError::Reference(_))
        ));
        assert!(matches!(
            resolve_target(&r("a:1"), ""),
            Err(TargetError::Reference(_))
        ));
        assert!(!is_registry_only("nginx:1"));
        assert!(!is_registry_only("localhost:5000/x"));
        assert!(is_registry_only("localhost"));
        assert!(is_registry_only("[::1]:5000"));
    }
}
