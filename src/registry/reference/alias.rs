//! Whether two registry names reach the same registry: Docker Hub's
//! names (`docker.io`, `index.docker.io`, `registry-1.docker.io`,
//! `registry.hub.docker.com`), the loopback names of one port (`localhost`,
//! `127.0.0.1`, `[::1]`), a default port written or not (`:443`, `:80`),
//! and letter case. Guards such as "the target is the source itself" use
//! it so that an alias cannot defeat them.

use super::Reference;

/// The registry `name` reaches, one spelling per registry.
pub fn canonical_registry(name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    let (host, port) = split_port(&name);
    let port = port.filter(|p| *p != "443" && *p != "80");
    let host = match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io"
        }
        "localhost" | "127.0.0.1" | "[::1]" | "::1" | "[0:0:0:0:0:0:0:1]" => "localhost",
        h => h,
    };
    match port {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// True when the two registry names reach the same registry.
pub fn same_registry(a: &str, b: &str) -> bool {
    canonical_registry(a) == canonical_registry(b)
}

impl Reference {
    /// True when `self` and `other` name the same repository of the same
    /// registry (aliases resolved, see [`canonical_registry`]), or the same
    /// repository of the same layout.
    pub fn same_repository(&self, other: &Reference) -> bool {
        if self.repository() != other.repository() {
            return false;
        }
        match (self.is_layout(), other.is_layout()) {
            (false, false) => same_registry(self.registry(), other.registry()),
            (true, true) => self.registry() == other.registry(),
            _ => false,
        }
    }
}

/// `host:port` split at the port (`[::1]:5000`, `a.io:443`); no port: `None`.
fn split_port(name: &str) -> (&str, Option<&str>) {
    if name.starts_with('[') {
        return match name.split_once("]:") {
            Some((h, p)) => (&name[..=h.len()], Some(p)),
            None => (name, None),
        };
    }
    match name.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (name, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_one_registry() {
        for (a, b) in [
            ("localhost:5000", "127.0.0.1:5000"),
            ("localhost:5000", "[::1]:5000"),
            ("LOCALHOST:5000", "127.0.0.1:5000"),
            ("docker.io", "index.docker.io"),
            ("docker.io", "registry-1.docker.io:443"),
            ("ghcr.io", "ghcr.io:443"),
            ("registry.example.com:80", "registry.example.com"),
        ] {
            assert!(same_registry(a, b), "{a} {b}");
        }
        for (a, b) in [
            ("localhost:5000", "localhost:5001"),
            ("127.0.0.1:5000", "127.0.0.2:5000"),
            ("ghcr.io", "quay.io"),
            ("a.io:5000", "a.io"),
        ] {
            assert!(!same_registry(a, b), "{a} {b}");
        }
    }

    #[test]
    fn same_repository_resolves_the_registry() {
        let a = Reference::parse("localhost:5000/team/app:v1").unwrap();
        let b = Reference::parse("127.0.0.1:5000/team/app").unwrap();
        let c = Reference::parse("127.0.0.1:5000/team/other").unwrap();
        assert!(a.same_repository(&b));
        assert!(!a.same_repository(&c));
    }
}
