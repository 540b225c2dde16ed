//! Rules about how an image reference was *written*, shared by the config
//! file and the command line: a registry host given where a repository was
//! expected, a port out of range, a Docker Hub short name.
//!
//! [`Reference::parse`] follows Docker's grammar, under which
//! `127.0.0.1:5201` is the repository `docker.io/library/127.0.0.1` with tag
//! `5201`: legal, but never what a user meant.

use crate::registry::Reference;

/// True when `text` names a registry host and nothing else
/// (`127.0.0.1:5201`, `registry.example.com`, `localhost`, `[::1]:5000`).
pub fn is_registry_only(text: &str) -> bool {
    let t = text.trim();
    if t.is_empty() || t.contains('/') || t.contains('@') {
        return false;
    }
    if t.starts_with('[') || t == "localhost" || t.starts_with("localhost:") {
        return true;
    }
    // `name:tag` never has a dot before the colon (Docker Hub official
    // images have none); `host.tld[:port]` and `127.0.0.1:5201` do.
    let name = t.split_once(':').map_or(t, |(n, _)| n);
    name.contains('.')
}

/// An error when `text` names a registry but no repository.
pub fn registry_only_error(text: &str) -> Option<String> {
    is_registry_only(text).then(|| {
        format!(
            "{text:?} names a registry but no repository: add the repository path, e.g. \"{}/team/app:1.0\"",
            text.trim()
        )
    })
}

/// True when `text` starts with an explicit registry host (`ghcr.io/…`,
/// `localhost:5000/…`); false for Docker Hub short names (`nginx`,
/// `library/nginx`, `org/app:1.0`).
pub fn names_registry(text: &str) -> bool {
    match text.trim().split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

/// An error when the reference's registry has a port outside 1..=65535.
pub fn port_error(reference: &Reference) -> Option<String> {
    let host = reference.registry_host()?;
    let port = match host.strip_prefix('[') {
        Some(rest) => rest.split_once("]:").map(|(_, p)| p),
        None => host.rsplit_once(':').map(|(_, p)| p),
    }?;
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => None,
        _ => Some(format!(
            "registry {host:?}: port {port} is out of range: expected 1 to 65535"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_only() {
        for t in [
            "127.0.0.1:5201",
            "registry.example.com",
            "registry.example.com:5000",
            "localhost",
            "localhost:5000",
            "[::1]:5000",
        ] {
            assert!(is_registry_only(t), "{t}");
            assert!(registry_only_error(t).unwrap().contains("no repository"));
        }
        for t in [
            "nginx",
            "nginx:1.27",
            "library/nginx",
            "127.0.0.1:5201/app",
            "app@sha256:abc",
        ] {
            assert!(!is_registry_only(t), "{t}");
        }
    }

    #[test]
    fn explicit_registry() {
        assert!(names_registry("ghcr.io/org/app"));
        assert!(names_registry("localhost:5000/app"));
        assert!(names_registry("localhost/app"));
        assert!(!names_registry("nginx"));
        assert!(!names_registry("library/nginx:1"));
        assert!(!names_registry("org/app"));
    }

    #[test]
    fn ports() {
        let r = |s: &str| Reference::parse(s).unwrap();
        assert!(
            port_error(&r("127.0.0.1:99999/x"))
                .unwrap()
                .contains("99999")
        );
        assert!(port_error(&r("127.0.0.1:0/x")).is_some());
        assert!(port_error(&r("127.0.0.1:5000/x")).is_none());
        assert!(port_error(&r("ghcr.io/x")).is_none());
        assert!(port_error(&r("[::1]:5000/x")).is_none());
    }
}
