//! Image references, parsed and normalised the way Docker does.
//!
//! `nginx` is `docker.io/library/nginx:latest`; `docker.io` is served at
//! `registry-1.docker.io`; `host:port/ns/repo:tag`, `repo@sha256:…` and
//! `repo:tag@sha256:…` are all accepted. Every part is checked against the
//! distribution-spec grammar and an error says exactly which part is wrong.
//!
//! `oci:PATH[:REF]` and `oci-archive:PATH[:REF]` name an OCI image layout
//! directory or a tar of one (see [`crate::registry::layout`] for how REF
//! maps to a repository and tag inside the layout). `oci:` followed by a
//! port and `/` (`oci:5000/app`) stays a registry reference, as before.
//!
//! `docker://HOST/REPO:TAG`, as skopeo writes it, is the registry reference
//! `HOST/REPO:TAG`; skopeo's other transports are refused (see [`transport`]).

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

mod alias;
mod layout;
mod transport;

pub use alias::{canonical_registry, same_registry};
pub use layout::{LayoutLocation, split_ref_name, valid_layout_name};
use layout::{layout_prefix, parse_layout};

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed image reference: registry, repository, and optionally a tag
/// and/or digest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry or layout the images live in.
    location: Location,
    /// For a layout: the name part of `ref.name` (`""` for a bare tag).
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Where a reference's images live; the client picks the transport by it.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Location {
    /// A registry, by its host as written in references (`docker.io`, `host:5000`).
    Registry(String),
    /// An OCI image layout directory (`oci:`) or a tar of one (`oci-archive:`).
    Layout(LayoutLocation),
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty input.
    #[error("image reference is empty")]
    Empty,
    /// A path component breaks the grammar.
    #[error(
        "image reference {input:?}: repository path component {component:?} is invalid: \
         components are lowercase letters and digits, separated by '.', '_', '__' or '-'"
    )]
    BadComponent {
        /// The whole reference.
        input: String,
        /// The offending component.
        component: String,
    },
    /// Upper case in the repository path.
    #[error("image reference {input:?}: repository names must be lowercase")]
    Uppercase {
        /// The whole reference.
        input: String,
    },
    /// A bad registry host.
    #[error("image reference {input:?}: registry host {host:?} is invalid")]
    BadHost {
        /// The whole reference.
        input: String,
        /// The host part.
        host: String,
    },
    /// A bad tag.
    #[error(
        "image reference {input:?}: tag {tag:?} is invalid: tags are 1 to 128 characters of \
         letters, digits, '_', '.' and '-', not starting with '.' or '-'"
    )]
    BadTag {
        /// The whole reference.
        input: String,
        /// The tag part.
        tag: String,
    },
    /// A bad digest.
    #[error("image reference {input:?}: {source}")]
    BadDigest {
        /// The whole reference.
        input: String,
        /// What is wrong with the digest.
        source: DigestError,
    },
    /// Too long a name.
    #[error("image reference {input:?}: repository name is longer than 255 characters")]
    TooLong {
        /// The whole reference.
        input: String,
    },
    /// A tag or digest where none is allowed.
    #[error("{input:?} is a repository, not an image: drop the tag or digest")]
    UnexpectedTag {
        /// The whole reference.
        input: String,
    },
    /// A containers/image transport regmirror does not read (`docker-archive:`, `dir:`, …).
    #[error(
        "image reference {:?}: the {transport}: transport is not supported: {}",
        super::escape::shown(.input),
        transport::conversion_hint(.input, .transport)
    )]
    UnsupportedTransport {
        /// The whole reference.
        input: String,
        /// The transport name, without the ':'.
        transport: String,
    },
    /// An `oci:` or `oci-archive:` reference that cannot be used.
    #[error("layout reference {input:?}: {detail}")]
    BadLayout {
        /// The whole reference.
        input: String,
        /// What is wrong and what to write instead.
        detail: String,
    },
}

impl Reference {
    /// Parse a reference, keeping whether a tag or digest was given.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let input_s = input.to_string();
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if let Some(rest) = transport::strip_docker(input) {
            return Reference::parse_docker(input, rest);
        }
        if let Some((archive, rest)) = layout_prefix(input) {
            return parse_layout(input, archive, rest);
        }
        if let Some(e) = transport::refused_transport(input) {
            return Err(e);
        }
        // Split off a digest.
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                let digest = d
                    .parse::<Digest>()
                    .map_err(|source| ReferenceError::BadDigest {
                        input: input_s.clone(),
                        source,
                    })?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        // Split off a tag: a ':' after the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(ReferenceError::BadTag {
                input: input_s,
                tag: tag.to_string(),
            });
        }
        let (registry, path) = split_host(name, &input_s)?;
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase { input: input_s });
        }
        for component in path.split('/') {
            if !valid_component(component) {
                return Err(ReferenceError::BadComponent {
                    input: input_s,
                    component: component.to_string(),
                });
            }
        }
        if registry.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong { input: input_s });
        }
        Ok(Reference {
            location: Location::Registry(registry),
            repository: path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// `docker://REST`: REST as a registry reference, never a layout.
    fn parse_docker(input: &str, rest: &str) -> Result<Reference, ReferenceError> {
        if layout_prefix(rest).is_some()
            || transport::refused_transport(rest).is_some()
            || transport::strip_docker(rest).is_some()
        {
            return Err(ReferenceError::BadHost {
                input: input.to_string(),
                host: rest.split('/').next().unwrap_or(rest).to_string(),
            });
        }
        Reference::parse(rest)
    }

    /// Where this reference's images live.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Where this reference points when it names a layout or archive.
    pub fn layout(&self) -> Option<&LayoutLocation> {
        match &self.location {
            Location::Layout(l) => Some(l),
            Location::Registry(_) => None,
        }
    }

    /// The registry host; `None` for a layout or archive.
    pub fn registry_host(&self) -> Option<&str> {
        match &self.location {
            Location::Registry(h) => Some(h),
            Location::Layout(_) => None,
        }
    }

    /// True for `oci:` and `oci-archive:` references.
    pub fn is_layout(&self) -> bool {
        matches!(self.location, Location::Layout(_))
    }

    /// The `org.opencontainers.image.ref.name` this layout reference stands
    /// for: the tag alone for the unnamed repository, `repository:tag`
    /// otherwise; `None` without a tag.
    pub fn layout_ref_name(&self) -> Option<String> {
        let tag = self.tag.as_deref()?;
        Some(if self.repository.is_empty() {
            tag.to_string()
        } else {
            format!("{}:{tag}", self.repository)
        })
    }

    /// A reference to `repository` (`""`: the unnamed one) in the same
    /// layout as `self`, with no tag or digest; `None` when `self` is not a
    /// layout reference or the name is invalid.
    pub fn in_layout(&self, repository: &str) -> Option<Reference> {
        self.layout()?;
        if !repository.is_empty() && !valid_layout_name(repository) {
            return None;
        }
        Some(Reference {
            location: self.location.clone(),
            repository: repository.to_string(),
            tag: None,
            digest: None,
        })
    }

    /// Parse a repository: a reference without tag or digest.
    pub fn parse_repository(input: &str) -> Result<Reference, ReferenceError> {
        let r = Reference::parse(input)?;
        if r.tag.is_some() || r.digest.is_some() {
            return Err(ReferenceError::UnexpectedTag {
                input: input.to_string(),
            });
        }
        Ok(r)
    }

    /// A reference to `repository` on `registry` with no tag or digest.
    /// A layout is never a registry here: the result would be another path.
    pub fn new_repository(registry: &str, repository: &str) -> Result<Reference, ReferenceError> {
        let input = format!("{registry}/{repository}");
        if layout_prefix(registry).is_some() {
            return Err(ReferenceError::BadLayout {
                input,
                detail: "an image layout is not a registry host".into(),
            });
        }
        Reference::parse_repository(&input)
    }

    /// This reference with `latest` as its tag when it has neither tag nor digest.
    /// A layout reference is left as is: with no REF it reads as the layout's
    /// only image.
    pub fn or_latest(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() && !self.is_layout() {
            self.tag = Some("latest".to_string());
        }
        self
    }

    /// Registry host as written in references (`docker.io`, `host:5000`);
    /// for a layout, its [`LayoutLocation::key`]. A key that tells places
    /// apart (in maps, in reports); what kind of place it is comes from
    /// [`Reference::location`], never from this string.
    pub fn registry(&self) -> &str {
        match &self.location {
            Location::Registry(h) => h,
            Location::Layout(l) => l.key(),
        }
    }

    /// The host that serves the registry API (`registry-1.docker.io` for `docker.io`).
    pub fn api_host(&self) -> &str {
        api_host(self.registry())
    }

    /// Repository path (`library/nginx`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to put in `/v2/<name>/manifests/<reference>`: the digest when
    /// there is one, else the tag, else `latest`.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The same repository with this tag and no digest. The tag is checked
    /// against the distribution-spec grammar (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`):
    /// tags from a registry's listing are untrusted and end up in URLs.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::BadTag {
                input: format!("{}:{}", self.name(), super::escape::shown(tag)),
                tag: super::escape::shown(tag),
            });
        }
        Ok(Reference {
            location: self.location.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same reference without its digest: the tag alone when there is
    /// one (already validated), else the repository alone.
    pub fn without_digest(&self) -> Reference {
        Reference {
            location: self.location.clone(),
            repository: self.repository.clone(),
            tag: self.tag.clone(),
            digest: None,
        }
    }

    /// The same repository with this digest and no tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            location: self.location.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The same repository with neither tag nor digest.
    pub fn repository_only(&self) -> Reference {
        Reference {
            location: self.location.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: None,
        }
    }

    /// `registry/repository`, without tag or digest; for a layout
    /// `oci:PATH` or `oci:PATH:repository`.
    pub fn name(&self) -> String {
        match &self.location {
            Location::Layout(l) if self.repository.is_empty() => {
                format!("{}:{}", l.transport(), l.path.display())
            }
            Location::Layout(l) => {
                format!("{}:{}:{}", l.transport(), l.path.display(), self.repository)
            }
            Location::Registry(h) => format!("{h}/{}", self.repository),
        }
    }
}

/// Split the registry host off a reference's name (Docker Hub when the
/// first component is not a host), normalised; Docker Hub's official
/// images get their `library/` prefix.
fn split_host(name: &str, input: &str) -> Result<(String, String), ReferenceError> {
    let (registry, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    if !valid_host(&registry) {
        return Err(ReferenceError::BadHost {
            input: input.to_string(),
            host: registry,
        });
    }
    let registry = match registry.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => registry,
    };
    let path = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    Ok((registry, path))
}

/// The host serving the registry API for a registry name.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

/// True for hosts Docker talks to over plain HTTP by default: localhost,
/// 127.0.0.0/8 and ::1, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let h = strip_port(host);
    if h == "localhost" || h == "[::1]" || h == "::1" {
        return true;
    }
    h.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.find(']') {
            Some(i) => &host[..i + 2],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // separator
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == b.len() {
            return false;
        }
    }
}

/// True when `t` is a valid tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

fn valid_host(h: &str) -> bool {
    if h.is_empty() {
        return false;
    }
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return false;
        };
        let ip = &rest[..end];
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(p) => ("ipv6", Some(p)),
            None if after.is_empty() => ("ipv6", None),
            None => return false,
        }
    } else {
        match h.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    host.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
    })
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Layout(l) => {
                write!(f, "{}:{}", l.transport(), l.path.display())?;
                if self.repository.is_empty() && self.tag.is_none() && self.digest.is_none() {
                    return Ok(());
                }
                write!(f, ":{}", self.repository)?;
            }
            Location::Registry(h) => write!(f, "{h}/{}", self.repository)?,
        }
        match &self.tag {
            Some(t) if self.is_layout() && self.repository.is_empty() => write!(f, "{t}")?,
            Some(t) => write!(f, ":{t}")?,
            None => {}
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

#[cfg(test)]
mod tests;
