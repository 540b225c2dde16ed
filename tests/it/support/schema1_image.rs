//! A real Docker schema 1 image in a real registry: gzip layers pushed as
//! blobs, then a signed schema 1 manifest pushed to a docker-registry that
//! runs with `compatibility.schema1.enabled` (distribution 2.8 refuses
//! schema 1 pushes otherwise, and verifies the signature of those it takes).
//!
//! The signature follows libtrust's "pretty" JWS, which distribution's
//! `manifest/schema1` verifies: the payload is the manifest without its
//! `signatures`; the protected header gives `formatLength` (the bytes of the
//! manifest kept before `signatures`) and `formatTail` (the closing bytes
//! after them, base64url); the signature is ES256 (raw r||s, base64url) over
//! `protected + "." + base64url(payload)`, and the header's JWK carries a
//! `kid` computed as libtrust does (SHA-256 of the key's DER
//! SubjectPublicKeyInfo, first 240 bits, base32 without padding, in groups
//! of four joined by `:`).

use std::io::Write as _;

use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use serde_json::{Value, json};

use crate::common::image::ustar;
use crate::common::{self, Blob, Pusher, TestRegistry};

/// What was pushed.
pub struct Schema1Image {
    /// The manifest's digest as the registry names it (of its payload).
    pub digest: String,
    /// The uncompressed digest of each non-empty layer, base first.
    pub diff_ids: Vec<String>,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// RFC 4648 base32, unpadded.
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in data {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// `payload` (JSON ending in `\n}`) with a libtrust pretty signature added.
fn sign(payload: &str) -> String {
    use sha2::Digest as _;
    let key = SigningKey::from_slice(&[7u8; 32]).expect("a valid P-256 scalar");
    let public = key.verifying_key();
    let der = public.to_public_key_der().expect("SPKI DER");
    let id = base32(&sha2::Sha256::digest(der.as_bytes())[..30]);
    let kid: Vec<&str> = (0..id.len() / 4).map(|i| &id[i * 4..i * 4 + 4]).collect();
    let point = public.to_encoded_point(false);
    let length = payload.len() - 2;
    let protected = b64(json!({
        "formatLength": length,
        "formatTail": b64(&payload.as_bytes()[length..]),
        "time": "2016-01-03T00:00:00Z"
    })
    .to_string()
    .as_bytes());
    let signature: Signature =
        key.sign(format!("{protected}.{}", b64(payload.as_bytes())).as_bytes());
    let signatures = json!([{
        "header": {
            "jwk": {
                "crv": "P-256",
                "kid": kid.join(":"),
                "kty": "EC",
                "x": b64(point.x().unwrap()),
                "y": b64(point.y().unwrap()),
            },
            "alg": "ES256"
        },
        "signature": b64(&signature.to_bytes()),
        "protected": protected
    }]);
    format!(
        "{},\n  \"signatures\": {}{}",
        &payload[..length],
        serde_json::to_string_pretty(&signatures).unwrap(),
        &payload[length..]
    )
}

/// Pushes `repo:tag`: two file layers (`/hello`, then `/etc/motd`) and an
/// empty `throwaway` layer on top, as `docker build` wrote a `CMD` step.
pub async fn push_schema1(reg: &TestRegistry, repo: &str, tag: &str) -> Schema1Image {
    let tars = [
        ustar(&[("hello", b"hi\n")]),
        ustar(&[("etc/motd", b"converted\n")]),
        vec![0u8; 1024],
    ];
    let pusher = Pusher::for_registry(reg);
    let mut sums = Vec::new();
    for tar in &tars {
        let blob = Blob::new("application/octet-stream", gzip(tar));
        pusher.push_blob(repo, &blob).await.unwrap();
        sums.push(blob.digest);
    }
    let id = |c: char| c.to_string().repeat(64);
    let v1 = [
        json!({"id": id('a'), "created": "2016-01-01T00:00:00Z",
            "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ADD file:hello in /"]}}),
        json!({"id": id('b'), "parent": id('a'), "created": "2016-01-02T00:00:00Z",
            "container_config": {"Cmd": ["/bin/sh", "-c", "echo converted > /etc/motd && true"]}}),
        json!({"id": id('c'), "parent": id('b'), "created": "2016-01-03T00:00:00Z",
            "architecture": "amd64", "os": "linux", "throwaway": true,
            "config": {"Cmd": ["/hello"], "Env": ["PATH=/bin"]},
            "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) CMD [\"/hello\"]"]}}),
    ];
    let payload = serde_json::to_string_pretty(&json!({
        "schemaVersion": 1,
        "name": repo,
        "tag": tag,
        "architecture": "amd64",
        "fsLayers": sums.iter().rev().map(|d| json!({"blobSum": d})).collect::<Vec<Value>>(),
        "history": v1.iter().rev().map(|c| json!({"v1Compatibility": c.to_string()})).collect::<Vec<Value>>(),
    }))
    .unwrap();
    let resp = reg
        .http_client()
        .put(format!("{}/v2/{repo}/manifests/{tag}", reg.base_url()))
        .header(
            "content-type",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        )
        .body(sign(&payload))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let announced = resp
        .headers()
        .get("docker-content-digest")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(status, 201, "{}", resp.text().await.unwrap_or_default());
    let digest = common::sha256_digest(payload.as_bytes());
    assert_eq!(announced.as_deref(), Some(digest.as_str()));
    Schema1Image {
        digest,
        diff_ids: tars[..2].iter().map(|t| common::sha256_digest(t)).collect(),
    }
}
