//! Tests of reference parsing, layout references included.

use std::path::PathBuf;

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
fn layout_references() {
    let r = p("oci:some/dir");
    let l = r.layout().unwrap();
    assert!(!l.archive);
    assert_eq!(l.path, PathBuf::from("some/dir"));
    assert!(l.absolute.is_absolute() && l.absolute.ends_with("some/dir"));
    assert_eq!((r.repository(), r.tag(), r.digest()), ("", None, None));
    assert_eq!(r.to_string(), "oci:some/dir");
    assert_eq!(r.clone().or_latest(), r);
    assert!(r.registry().starts_with("oci:/"));

    let r = p("oci:dir:v1.2");
    assert_eq!((r.repository(), r.tag()), ("", Some("v1.2")));
    assert_eq!(r.layout_ref_name().as_deref(), Some("v1.2"));
    assert_eq!(r.to_string(), "oci:dir:v1.2");

    let r = p("oci-archive:/tmp/x.tar:docker.io/library/nginx:1.27");
    assert!(r.layout().unwrap().archive);
    assert_eq!(r.repository(), "docker.io/library/nginx");
    assert_eq!(r.tag(), Some("1.27"));
    assert_eq!(r.name(), "oci-archive:/tmp/x.tar:docker.io/library/nginx");
    assert_eq!(
        r.layout_ref_name().as_deref(),
        Some("docker.io/library/nginx:1.27")
    );
    assert_eq!(
        r.to_string(),
        "oci-archive:/tmp/x.tar:docker.io/library/nginx:1.27"
    );
    // A REF that is a valid tag is a tag, even when it looks like a name.
    assert_eq!(
        (p("oci:d:nginx").repository(), p("oci:d:nginx").tag()),
        ("", Some("nginx"))
    );
    // Kept as written, not normalised to docker.io/library/...
    let r = p("oci:d:nginx:1");
    assert_eq!((r.repository(), r.tag()), ("nginx", Some("1")));
    let r = p("oci:d:localhost:5000/team/app");
    assert_eq!((r.repository(), r.tag()), ("localhost:5000/team/app", None));

    let r = p(&format!("oci:d:@{D}"));
    assert_eq!((r.repository(), r.tag()), ("", None));
    assert_eq!(r.digest().unwrap().to_string(), D);
    assert_eq!(r.to_string(), format!("oci:d:@{D}"));
    assert_eq!(p(&r.to_string()), r);

    let t = r.with_tag("x").unwrap();
    assert!(t.is_layout() && t.digest().is_none());
    assert_eq!(t.to_string(), "oci:d:x");
    let named = t.in_layout("ghcr.io/o/app").unwrap().with_tag("2").unwrap();
    assert_eq!(named.to_string(), "oci:d:ghcr.io/o/app:2");
    assert!(t.in_layout("Bad Name").is_none());
    assert_eq!(named.registry(), r.registry());
}

#[test]
fn layout_reference_errors_and_registry_compatibility() {
    for bad in [
        "oci:",
        "oci::tag",
        "oci:d:",
        "oci:d:a:b:c",
        "oci:d:a/B:1",
        "oci:d:@sha256:abc",
        "oci:d:x@md5:1",
        "oci-archive:",
    ] {
        assert!(
            matches!(Reference::parse(bad), Err(ReferenceError::BadLayout { .. })),
            "{bad}: {:?}",
            Reference::parse(bad)
        );
    }
    // A registry host named `oci` with a port keeps its meaning.
    let r = p("oci:5000/app:1");
    assert!(!r.is_layout());
    assert_eq!((r.registry(), r.repository()), ("oci:5000", "app"));
    assert!(!p("oci-archive:443/a").is_layout());
    assert!(Reference::new_repository("oci:/x", "a").is_err());
    assert_eq!(split_ref_name("1.0"), Some(("", Some("1.0"))));
    assert_eq!(split_ref_name("a/b:1"), Some(("a/b", Some("1"))));
    assert_eq!(split_ref_name("h:5000/a"), Some(("h:5000/a", None)));
    assert_eq!(split_ref_name("../x:1"), None);
    assert_eq!(split_ref_name("a/b:1+x"), None);
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
