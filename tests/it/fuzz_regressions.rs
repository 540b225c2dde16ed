//! Replays every fuzz seed (`tests/fuzz-seeds/<target>/*`) and every saved
//! fuzz finding (`tests/fuzz-regressions/<target>/*`, when present) through
//! the same functions the `cargo fuzz` targets in `fuzz/` call, plus a few
//! hand-written edge cases. Nothing may panic, and results must make sense:
//! an accepted reference prints back to itself, a seed manifest walks to
//! descriptors with valid digests (seeds named `bad-*` must be rejected),
//! seed configs load, and every rejection carries a message.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use regmirror::registry::manifest::{self, Manifest, RawManifest};
use regmirror::registry::{PlatformSpec, Reference};
use regmirror::sync::config::Config;

fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|e| e.expect("listing a fuzz input directory").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (p, data)
        })
        .collect();
    files.sort();
    files
}

fn name(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// What the `reference` fuzz target checks: no panic, and an accepted
/// reference prints to a string that parses to the same reference.
/// Returns whether the input was accepted as a reference or a platform.
fn check_reference(s: &str) -> bool {
    let mut accepted = false;
    match Reference::parse(s) {
        Ok(r) => {
            accepted = true;
            let printed = r.to_string();
            let again = Reference::parse(&printed)
                .unwrap_or_else(|e| panic!("{s:?} printed as {printed:?}, which fails: {e}"));
            assert_eq!(r, again, "{s:?} does not round-trip");
            assert!(!r.api_host().is_empty(), "{s:?}: empty API host");
            let _ = r.manifest_reference();
        }
        Err(e) => assert!(!e.to_string().is_empty(), "{s:?}: empty error"),
    }
    if let Ok(r) = Reference::parse_repository(s) {
        accepted = true;
        assert!(!r.repository().is_empty(), "{s:?}: empty repository");
    }
    if s.parse::<PlatformSpec>().is_ok() {
        accepted = true;
    }
    accepted
}

/// What the `manifest` fuzz target does; returns the descriptor count of the
/// body's own media type, or the error.
fn check_manifest(data: &[u8]) -> Result<usize, String> {
    for media_type in [
        manifest::OCI_INDEX,
        manifest::OCI_MANIFEST,
        manifest::DOCKER_LIST,
        manifest::DOCKER_MANIFEST,
        "application/json",
    ] {
        match Manifest::parse(media_type, data) {
            Ok(m) => {
                for d in m.references() {
                    let _ = (d.is_attestation(), d.is_foreign());
                    let printed = d.digest.to_string();
                    assert_eq!(
                        printed.parse::<regmirror::registry::Digest>().ok().as_ref(),
                        Some(&d.digest),
                        "an accepted descriptor digest {printed} does not round-trip"
                    );
                }
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    let _ = manifest::sniff_media_type(data);
    let raw = RawManifest::new(Bytes::copy_from_slice(data), None);
    assert_eq!(raw.digest, regmirror::registry::Digest::sha256_of(data));
    raw.parse()
        .map(|m| m.references().len())
        .map_err(|e| e.to_string())
}

fn check_config(text: &str) -> Result<Config, String> {
    Config::parse(Path::new("fuzz.toml"), text).map_err(|e| {
        let msg = e.to_string();
        assert!(msg.contains("fuzz.toml"), "the error names the file: {msg}");
        msg
    })
}

#[test]
fn reference_inputs_never_panic_and_round_trip() {
    let seeds = inputs("fuzz-seeds", "reference");
    assert!(!seeds.is_empty(), "no reference seeds found");
    for (path, data) in &seeds {
        let s = std::str::from_utf8(data).expect("reference seeds are UTF-8");
        assert!(
            check_reference(s),
            "seed {} is neither a reference nor a platform",
            name(path)
        );
    }
    for (_, data) in inputs("fuzz-regressions", "reference") {
        if let Ok(s) = std::str::from_utf8(&data) {
            check_reference(s);
        }
    }
    let long_path = "a/".repeat(2000);
    let long_digest = format!("app@sha256:{}", "0".repeat(4096));
    for edge in [
        "",
        ":",
        "@",
        "/",
        "[",
        "[]",
        "[::1]",
        "[::1]:/a",
        "host:/a",
        "host:0/a",
        "host:65536/a",
        "a:b@sha256:",
        "a@sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        "a@sha512:00",
        "A",
        "a/B",
        "a..b",
        "a__b",
        "a___b",
        "a--b",
        "é",
        "a/\u{0}",
        "linux/",
        "/amd64",
        "linux/arm/v7/extra",
        long_path.as_str(),
        long_digest.as_str(),
    ] {
        check_reference(edge);
    }
    // Accepted inputs keep their meaning.
    let r = Reference::parse("localhost:5000/a/b:1.0").unwrap();
    assert_eq!(
        (r.registry(), r.repository(), r.tag()),
        ("localhost:5000", "a/b", Some("1.0"))
    );
    assert!(Reference::parse("a/B").is_err());
}

#[test]
fn manifest_inputs_never_panic_and_walk_sensibly() {
    let seeds = inputs("fuzz-seeds", "manifest");
    assert!(!seeds.is_empty(), "no manifest seeds found");
    for (path, data) in &seeds {
        let result = check_manifest(data);
        if name(path).starts_with("bad-") {
            assert!(result.is_err(), "{} must be rejected", name(path));
        } else {
            let n = result.unwrap_or_else(|e| panic!("seed {} fails: {e}", name(path)));
            assert!(n > 0, "seed {} references nothing", name(path));
        }
    }
    for (_, data) in inputs("fuzz-regressions", "manifest") {
        let _ = check_manifest(&data);
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_obj = format!(
        "{{\"manifests\":{}{}}}",
        "{\"a\":".repeat(5_000),
        "}".repeat(5_000)
    );
    let huge = vec![b' '; manifest::MAX_MANIFEST_BYTES + 1];
    for edge in [
        &b""[..],
        b"null",
        b"{}",
        b"[]",
        b"\"\"",
        b"{\"mediaType\":7}",
        b"{\"manifests\":null}",
        b"{\"manifests\":[{}]}",
        b"{\"config\":{\"digest\":\"sha256:\",\"size\":1,\"mediaType\":\"x\"}}",
        b"{\"config\":{\"digest\":\"sha256:1111111111111111111111111111111111111111111111111111111111111111\",\"size\":18446744073709551616,\"mediaType\":\"x\"}}",
        b"{\"config\":{\"digest\":\"sha256:1111111111111111111111111111111111111111111111111111111111111111\",\"size\":1e3,\"mediaType\":\"x\"}}",
        b"\xff\xfe\x00",
        deep.as_bytes(),
        deep_obj.as_bytes(),
        &huge,
    ] {
        assert!(
            check_manifest(edge).is_err(),
            "{:?} is not a manifest",
            String::from_utf8_lossy(&edge[..edge.len().min(80)])
        );
    }
    assert!(check_manifest(&huge).unwrap_err().contains("4 MiB"));
}

#[test]
fn config_inputs_never_panic_and_seeds_load() {
    let seeds = inputs("fuzz-seeds", "config");
    assert!(!seeds.is_empty(), "no config seeds found");
    for (path, data) in &seeds {
        let text = std::str::from_utf8(data).expect("config seeds are UTF-8");
        let config =
            check_config(text).unwrap_or_else(|e| panic!("seed {} fails: {e}", name(path)));
        assert!(
            !config.mirrors.is_empty(),
            "seed {} has no mirror",
            name(path)
        );
    }
    for (_, data) in inputs("fuzz-regressions", "config") {
        if let Ok(text) = std::str::from_utf8(&data) {
            let _ = check_config(text);
        }
    }
    let m = "[[mirror]]\nsource = \"a.io/x\"\ntarget = \"b.io/x\"\n";
    for edge in [
        String::new(),
        "=".to_string(),
        "[[mirror]]".to_string(),
        "[[mirror]]\nsource = 1\n".to_string(),
        format!("{m}latest = 9223372036854775807\n"),
        format!("[defaults]\nconcurrency = 9223372036854775807\n{m}"),
        format!("[defaults]\njitter_seconds = 18446744073709551615\n{m}"),
        format!("[server]\nshutdown_grace_seconds = -1\n{m}"),
        format!("[server]\nlisten = \"[::1]:99999\"\n{m}"),
        format!("[[registry]]\nhost = \"\"\n{m}"),
        format!("[[registry]]\nhost = \"b.io\"\nrequests_per_second = nan\n{m}"),
        format!("[[registry]]\nhost = \"b.io\"\nrequests_per_second = inf\n{m}"),
        format!("[[registry]]\nhost = \"b.io\"\nchunk_size = 0\n{m}"),
        format!("[[registry]]\nhost = \"b.io\"\nmax_concurrent_requests = 0\n{m}"),
        format!("{m}schedule = \"59 23 31 2 *\"\n"),
        format!("{m}schedule = \"\"\n"),
        format!("{m}include = [\"\\\\\"]\n"),
        format!("{m}include = [\"{}\"]\n", "(".repeat(500)),
        format!("{m}semver = \"\"\n"),
        format!("{m}platforms = [\"\"]\n"),
        format!("[defaults]\ntimezone = \"\"\n{m}"),
    ] {
        let _ = check_config(&edge);
    }
}
