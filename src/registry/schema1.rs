//! Docker image manifest schema 1 (`application/vnd.docker.distribution.
//! manifest.v1+json`, and `…v1+prettyjws` when signed), the format Docker
//! replaced with schema 2 in 2016 and stopped pulling in Docker 20.10 (see
//! docs.docker.com "Deprecated features": "Pushing and pulling with image
//! manifest v2 schema 1"). Old repositories still serve tags in it.
//! regmirror does not copy it: such a tag is recognised by its media type
//! before its bytes are checked (a signed manifest's digest covers its
//! payload only, not the bytes served) and reported as not copied.

/// Media type of an unsigned schema 1 manifest.
pub const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Media type of a signed (JWS) schema 1 manifest.
pub const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// True for the two schema 1 media types.
pub fn is_schema1(media_type: &str) -> bool {
    media_type == SCHEMA1 || media_type == SCHEMA1_SIGNED
}

/// Why a schema 1 manifest is not copied, and what to do.
pub fn not_copied_detail(media_type: &str) -> String {
    format!(
        "the registry serves a Docker schema 1 manifest ({media_type}), a format Docker \
         deprecated in 2016 and no longer pulls; regmirror does not copy schema 1 images (a \
         mirror reports such a tag as unsupported and goes on: it is not a failure). Push the \
         image again in a current format (`skopeo copy` converts it to schema 2, under a new \
         digest)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_media_types_are_schema1() {
        assert!(is_schema1(SCHEMA1) && is_schema1(SCHEMA1_SIGNED));
        assert!(!is_schema1(
            "application/vnd.docker.distribution.manifest.v2+json"
        ));
        assert!(not_copied_detail(SCHEMA1_SIGNED).contains("prettyjws"));
    }
}
