//! Manifest walking never panics on any bytes under any media type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmirror::registry::manifest::{self, Manifest, RawManifest};

fuzz_target!(|data: &[u8]| {
    for media_type in [
        manifest::OCI_INDEX,
        manifest::OCI_MANIFEST,
        manifest::DOCKER_LIST,
        manifest::DOCKER_MANIFEST,
        "application/json",
    ] {
        if let Ok(m) = Manifest::parse(media_type, data) {
            for d in m.references() {
                let _ = (d.is_attestation(), d.is_foreign(), d.digest.to_string());
            }
        }
    }
    let raw = RawManifest::new(bytes::Bytes::copy_from_slice(data), None);
    let _ = raw.parse();
    let _ = manifest::sniff_media_type(data);
});
