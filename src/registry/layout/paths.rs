//! Hostile-input checks of layout names: every path is built from a digest
//! that parsed strictly, and every `ref.name` written follows the
//! annotation grammar of the image-layout spec.

use std::path::PathBuf;

use crate::registry::digest::Digest;

/// `blobs/<alg>/<hex>` for a digest. [`Digest`] only parses `sha256:` + 64
/// or `sha512:` + 128 lowercase hex characters, so the result never holds
/// `/`, `..` or anything but those characters.
pub fn blob_relative_path(d: &Digest) -> PathBuf {
    let text = d.to_string();
    let (alg, hex) = text.split_once(':').expect("a digest has an algorithm");
    debug_assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    PathBuf::from("blobs").join(alg).join(hex)
}

/// Check a `org.opencontainers.image.ref.name` value against the spec's
/// grammar: components of `[A-Za-z0-9]+` joined by one of `-._:@+` or `--`,
/// separated by `/`; at most 512 bytes.
pub fn check_ref_name(name: &str) -> Result<(), String> {
    let shown = crate::registry::escape::shown(name);
    if name.is_empty() || name.len() > 512 {
        return Err(format!(
            "reference name {shown:?} must be 1 to 512 characters"
        ));
    }
    for component in name.split('/') {
        if !valid_component(component.as_bytes()) {
            return Err(format!(
                "reference name {shown:?}: component {:?} breaks the image-layout grammar \
                 (letters and digits joined by one of - . _ : @ + or --)",
                crate::registry::escape::shown(component)
            ));
        }
    }
    Ok(())
}

fn valid_component(b: &[u8]) -> bool {
    let sep = |x: u8| matches!(x, b'-' | b'.' | b'_' | b':' | b'@' | b'+');
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && b[i].is_ascii_alphanumeric() {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        if b[i..].starts_with(b"--") {
            i += 2;
        } else if sep(b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_come_from_digests_only() {
        let d = Digest::sha256_of(b"x");
        let p = blob_relative_path(&d);
        assert_eq!(p, PathBuf::from(format!("blobs/sha256/{}", d.hex())));
        for bad in [
            "sha256:../../etc/passwd",
            "sha256:/abs",
            "../x:abc",
            "sha256:ABCDEF",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ref_name_grammar() {
        for ok in [
            "1.0",
            "docker.io/library/nginx:1.27",
            "a--b",
            "v1+build",
            "x@y",
        ] {
            assert!(check_ref_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a//b", "/abs", "a/", "-a", "a b", "a\nb", "ü"] {
            assert!(check_ref_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_ref_name(&"a".repeat(513)).is_err());
    }
}
