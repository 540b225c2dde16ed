//! Transport prefixes as skopeo and containers/image write them:
//! `docker://HOST/REPO:TAG` is a registry reference like `HOST/REPO:TAG`;
//! the transports regmirror does not read (`containers-storage:`,
//! `docker-daemon:`, `docker-archive:`, `dir:`, …) are refused with the
//! command that turns their images into an OCI layout it does read.

use super::ReferenceError;

/// The prefix skopeo uses for a registry reference.
pub(super) const DOCKER_TRANSPORT: &str = "docker://";

/// containers/image transports that are not registries or OCI layouts.
const OTHER_TRANSPORTS: [&str; 7] = [
    "containers-storage",
    "docker-daemon",
    "docker-archive",
    "dir",
    "sif",
    "ostree",
    "tarball",
];

/// The registry reference after a `docker://` prefix, if there is one.
pub(super) fn strip_docker(input: &str) -> Option<&str> {
    input.strip_prefix(DOCKER_TRANSPORT)
}

/// The error for a reference written with a transport regmirror does not
/// read, or `None`. `dir:5000/app` (a host named `dir` with a port) stays a
/// registry reference, as `oci:5000/app` does.
pub(super) fn refused_transport(input: &str) -> Option<ReferenceError> {
    let (transport, rest) = input.split_once(':')?;
    if !OTHER_TRANSPORTS.contains(&transport) {
        return None;
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && (rest[digits..].starts_with('/') || rest.len() == digits) {
        return None;
    }
    Some(ReferenceError::UnsupportedTransport {
        input: input.to_string(),
        transport: transport.to_string(),
    })
}

/// What to run instead, for [`ReferenceError::UnsupportedTransport`].
pub(super) fn conversion_hint(input: &str, transport: &str) -> String {
    let shown = crate::registry::escape::shown(input);
    let save = match transport {
        "containers-storage" => " (or `podman save --format oci-archive -o IMAGE.tar IMAGE`)",
        _ => "",
    };
    format!(
        "regmirror reads registries (HOST/REPO:TAG, also written docker://HOST/REPO:TAG) and \
         OCI image layouts (oci:DIR[:REF], oci-archive:FILE.tar[:REF]); turn the image into an \
         OCI archive first with `skopeo copy {shown} oci-archive:IMAGE.tar`{save} and use \
         oci-archive:IMAGE.tar"
    )
}

#[cfg(test)]
mod tests {
    use super::super::Reference;
    use super::*;

    #[test]
    fn docker_transport_is_a_registry_reference() {
        let r = Reference::parse("docker://localhost:5000/team/app:v1").unwrap();
        assert_eq!(r.to_string(), "localhost:5000/team/app:v1");
        let r = Reference::parse("docker://nginx").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/nginx");
        assert!(Reference::parse("docker://").is_err());
        let e = Reference::parse("docker://oci:/tmp/x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("oci:"), "{e}");
    }

    #[test]
    fn other_transports_are_refused_with_a_pointer_to_oci() {
        for input in [
            "containers-storage:localhost/app:1",
            "docker-daemon:app:1",
            "docker-archive:/tmp/app.tar",
            "dir:/tmp/app",
            "sif:/tmp/app.sif",
        ] {
            let e = Reference::parse(input).unwrap_err();
            assert!(
                matches!(e, ReferenceError::UnsupportedTransport { .. }),
                "{input}: {e:?}"
            );
            let text = e.to_string();
            assert!(text.contains("oci-archive:IMAGE.tar"), "{text}");
            assert!(text.contains(&format!("skopeo copy {input}")), "{text}");
        }
        // A host called `dir` with a port is still a registry.
        assert_eq!(
            Reference::parse("dir:5000/app:1").unwrap().to_string(),
            "dir:5000/app:1"
        );
    }
}
