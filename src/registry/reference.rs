//! Image references, parsed and normalised the way Docker does.
//!
//! `nginx` is `docker.io/library/nginx:latest`; `docker.io` is served at
//! `registry-1.docker.io`; `host:port/ns/repo:tag`, `repo@sha256:…` and
//! `repo:tag@sha256:…` are all accepted. Every part is checked against the
//! distribution-spec grammar and an error says exactly which part is wrong.

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

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
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
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
}

impl Reference {
    /// Parse a reference, keeping whether a tag or digest was given.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let input_s = input.to_string();
        if input.is_empty() {
            return Err(ReferenceError::Empty);
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
        // Split off the registry host.
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
                input: input_s,
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
            registry,
            repository: path,
            tag: tag.map(str::to_string),
            digest,
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
    pub fn new_repository(registry: &str, repository: &str) -> Result<Reference, ReferenceError> {
        Reference::parse_repository(&format!("{registry}/{repository}"))
    }

    /// This reference with `latest` as its tag when it has neither tag nor digest.
    pub fn or_latest(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some("latest".to_string());
        }
        self
    }

    /// Registry host as written in references (`docker.io`, `host:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host that serves the registry API (`registry-1.docker.io` for `docker.io`).
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
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
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same reference without its digest: the tag alone when there is
    /// one (already validated), else the repository alone.
    pub fn without_digest(&self) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: self.tag.clone(),
            digest: None,
        }
    }

    /// The same repository with this digest and no tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The same repository with neither tag nor digest.
    pub fn repository_only(&self) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: None,
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
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
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
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
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_normalisation() {
        let r = p("nginx").or_latest();
        assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(p("docker.io/nginx").repository(), "library/nginx");
        assert_eq!(
            p("index.docker.io/nginx:1").to_string(),
            "docker.io/library/nginx:1"
        );
        assert_eq!(p("bitnami/redis").to_string(), "docker.io/bitnami/redis");
    }

    #[test]
    fn hosts_ports_and_localhost() {
        let r = p("localhost:5000/a");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("localhost:5000", "a", None)
        );
        let r = p("localhost/a:b");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("localhost", "a", Some("b"))
        );
        let r = p("registry.example.com:5000/ns/repo:1.2.3");
        assert_eq!(r.registry(), "registry.example.com:5000");
        assert_eq!(r.repository(), "ns/repo");
        assert_eq!(r.tag(), Some("1.2.3"));
        assert_eq!(p("[::1]:5000/x").registry(), "[::1]:5000");
        assert!(is_loopback_host("127.0.0.1:5000"));
        assert!(is_loopback_host("127.8.9.1"));
        assert!(is_loopback_host("localhost:80"));
        assert!(is_loopback_host("[::1]:5000"));
        assert!(!is_loopback_host("registry.example.com"));
        assert!(!is_loopback_host("10.0.0.1:5000"));
    }

    #[test]
    fn digests_and_tags() {
        let r = p(&format!("repo@{D}"));
        assert_eq!(r.digest().unwrap().to_string(), D);
        assert_eq!(r.tag(), None);
        assert_eq!(r.manifest_reference(), D);
        let r = p(&format!("ghcr.io/o/repo:v1@{D}"));
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.to_string(), format!("ghcr.io/o/repo:v1@{D}"));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(
            Reference::parse("Nginx"),
            Err(ReferenceError::BadHost { .. })
                | Err(ReferenceError::Uppercase { .. })
                | Err(ReferenceError::BadComponent { .. })
        ));
        assert!(matches!(
            Reference::parse("example.com/Foo"),
            Err(ReferenceError::Uppercase { .. })
        ));
        assert!(matches!(
            Reference::parse("a//b"),
            Err(ReferenceError::BadComponent { .. })
        ));
        assert!(matches!(
            Reference::parse("a/"),
            Err(ReferenceError::BadComponent { .. })
        ));
        assert!(matches!(
            Reference::parse("a-/b"),
            Err(ReferenceError::BadComponent { .. })
        ));
        assert!(matches!(
            Reference::parse("a:"),
            Err(ReferenceError::BadTag { .. })
        ));
        assert!(matches!(
            Reference::parse("a:-x"),
            Err(ReferenceError::BadTag { .. })
        ));
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(matches!(
            Reference::parse(&long_tag),
            Err(ReferenceError::BadTag { .. })
        ));
        assert!(matches!(
            Reference::parse("a@sha256:abc"),
            Err(ReferenceError::BadDigest { .. })
        ));
        assert!(matches!(
            Reference::parse("a@md5:abc"),
            Err(ReferenceError::BadDigest { .. })
        ));
        assert!(matches!(
            Reference::parse("a@"),
            Err(ReferenceError::BadDigest { .. })
        ));
        assert!(matches!(
            Reference::parse("host:port/a"),
            Err(ReferenceError::BadHost { .. })
        ));
        assert!(matches!(
            Reference::parse("-bad.com/a"),
            Err(ReferenceError::BadHost { .. })
        ));
        let long = format!("example.com/{}", "a".repeat(250));
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::TooLong { .. })
        ));
        assert!(matches!(
            Reference::parse_repository("nginx:1"),
            Err(ReferenceError::UnexpectedTag { .. })
        ));
    }

    #[test]
    fn separators() {
        assert!(valid_component("a.b_c__d---e"));
        assert!(!valid_component("a___b"));
        assert!(!valid_component("_a"));
        assert!(!valid_component("a."));
        let e = Reference::parse("example.com/ok/Bad_")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lowercase"), "{e}");
    }
}
