//! Sigstore bundles made with the test Sigstore of `sigstore`, as
//! `cosign sign --new-bundle-format` attaches them to an image: an OCI
//! referrer whose `artifactType` and one layer are
//! `application/vnd.dev.sigstore.bundle.v0.3+json` (cosign
//! `specs/BUNDLE_SPEC.md`), the layer being the bundle JSON
//! (sigstore/protobuf-specs `protos/sigstore_bundle.proto`):
//!
//! - `messageSignature`: the leaf key's signature over the image manifest's
//!   bytes, `messageDigest` their SHA-256, logged as a `hashedrekord`;
//! - `dsseEnvelope`: an in-toto Statement (`https://in-toto.io/Statement/v1`)
//!   of predicate `https://sigstore.dev/cosign/sign/v1` whose subject is
//!   the image digest, signed over the DSSE pre-authentication encoding
//!   (DSSE `protocol.md`), logged as a `dsse` 0.0.1 entry (`payloadHash`,
//!   `signatures[].signature` and `.verifier`).
//!
//! Each log entry carries its SET and an inclusion proof in a real
//! RFC 6962 tree of [`TREE_SIZE`] entries (the other leaves are other
//! entries' bodies), with a checkpoint (a signed note: origin, size,
//! base64 root, then `— <origin> base64(key hint || signature)`, the key
//! hint being the first four bytes of the log ID) signed by the log key.
//! The Merkle tree is computed here from RFC 6962 section 2.1 (MTH and
//! PATH), independently of regmirror's verifier.

use serde_json::{Value, json};

use super::cosign::CosignKey;
use super::image::{Blob, Image, artifact_for};
use super::push::Pusher;
use super::sigstore::{KeylessCert, T0, Tamper, TestSigstore, b64, hex, sha256};

/// The bundle media type cosign v3 writes.
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The predicate type of a cosign image signature in a DSSE bundle.
pub const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// How many entries the test log's tree has.
pub const TREE_SIZE: usize = 6;
/// Where the bundle's entry is in the tree.
pub const TREE_INDEX: usize = 4;
/// The global index the entries are logged at.
const LOG_INDEX: i64 = 4242;

/// What to break in a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// Nothing: a correct bundle.
    Nothing,
    /// One sibling hash of the inclusion proof changed.
    ProofSibling,
    /// The checkpoint signed by another log's key.
    CheckpointKey,
    /// A genuine checkpoint of another tree (one entry more).
    CheckpointRoot,
    /// The entry (body, SET, proof, checkpoint) of another signature.
    ReplayedBody,
    /// No SET: an inclusion proof only, so no trusted signing time.
    ProofOnly,
    /// Correct, but padded to more than 1 MiB (an unknown field).
    Oversized,
    /// Correct, but the checkpoint's signature line names the key with the
    /// whole origin, spaces included, which a note's key name may not have.
    SpacedKeyName,
}

/// A bundle to make: signed by `cert`, logged in `log` at `T0 + time`.
pub struct Make<'a> {
    pub log: &'a TestSigstore,
    pub cert: &'a KeylessCert,
    pub time: i64,
    pub broken: Broken,
}

/// The RFC 6962 hash of a tree of `leaves` (MTH).
fn tree_hash(leaves: &[Vec<u8>]) -> Vec<u8> {
    if leaves.len() == 1 {
        return sha256(&[&[0u8][..], &leaves[0]].concat());
    }
    let k = split(leaves.len());
    let (l, r) = (tree_hash(&leaves[..k]), tree_hash(&leaves[k..]));
    sha256(&[&[1u8][..], &l, &r].concat())
}

/// The largest power of two below `n` (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The RFC 6962 audit path of leaf `m` (PATH).
fn audit_path(m: usize, leaves: &[Vec<u8>]) -> Vec<Vec<u8>> {
    if leaves.len() == 1 {
        return Vec::new();
    }
    let k = split(leaves.len());
    if m < k {
        let mut p = audit_path(m, &leaves[..k]);
        p.push(tree_hash(&leaves[k..]));
        p
    } else {
        let mut p = audit_path(m - k, &leaves[k..]);
        p.push(tree_hash(&leaves[..k]));
        p
    }
}

/// A checkpoint of a tree of `size` with `root`, signed by `signer`. The
/// signature line names the key `rekor.test`, without spaces, as a signed
/// note's key names are (golang.org/x/mod/sumdb/note) and as Rekor writes
/// them (`— rekor.sigstore.dev <base64>` under the origin
/// `rekor.sigstore.dev - <tree ID>`).
fn checkpoint(signer: &TestSigstore, size: usize, root: &[u8]) -> String {
    let origin = "rekor.test - 1193050959916656506";
    let body = format!("{origin}\n{size}\n{}\n", b64(root));
    let mut blob = signer.log_id()[..4].to_vec();
    blob.extend_from_slice(&signer.log_sign(body.as_bytes()));
    format!("{body}\n\u{2014} rekor.test {}\n", b64(&blob))
}

/// The bundle's `tlogEntries[0]` for `body` (base64) of `kind`.
fn tlog_entry(m: &Make<'_>, kind: &str, body: &str) -> Value {
    let time = T0 + m.time;
    let signed = format!(
        "{{\"body\":\"{body}\",\"integratedTime\":{time},\"logID\":\"{}\",\"logIndex\":{LOG_INDEX}}}",
        hex(&m.log.log_id())
    );
    let set = m.log.log_sign(signed.as_bytes());
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).unwrap();
    let mut leaves: Vec<Vec<u8>> = (0..TREE_SIZE + 1)
        .map(|i| format!("{{\"another entry\":{i}}}").into_bytes())
        .collect();
    leaves[TREE_INDEX] = raw;
    let tree = &leaves[..TREE_SIZE];
    let root = tree_hash(tree);
    let mut hashes = audit_path(TREE_INDEX, tree);
    let note = match m.broken {
        Broken::CheckpointKey => checkpoint(&TestSigstore::new("another log"), TREE_SIZE, &root),
        Broken::CheckpointRoot => checkpoint(m.log, TREE_SIZE + 1, &tree_hash(&leaves)),
        Broken::SpacedKeyName => checkpoint(m.log, TREE_SIZE, &root).replace(
            "\u{2014} rekor.test ",
            "\u{2014} rekor.test - 1193050959916656506 ",
        ),
        _ => checkpoint(m.log, TREE_SIZE, &root),
    };
    if m.broken == Broken::ProofSibling {
        hashes[1][0] ^= 1;
    }
    let mut entry = json!({
        "logIndex": LOG_INDEX.to_string(),
        "logId": {"keyId": b64(&m.log.log_id())},
        "kindVersion": {"kind": kind, "version": "0.0.1"},
        "integratedTime": time.to_string(),
        "inclusionPromise": {"signedEntryTimestamp": b64(&set)},
        "inclusionProof": {
            "logIndex": TREE_INDEX.to_string(),
            "rootHash": b64(&root),
            "treeSize": TREE_SIZE.to_string(),
            "hashes": hashes.iter().map(|h| b64(h)).collect::<Vec<_>>(),
            "checkpoint": {"envelope": note}
        },
        "canonicalizedBody": body
    });
    if m.broken == Broken::ProofOnly {
        entry.as_object_mut().unwrap().remove("inclusionPromise");
    }
    entry
}

fn bundle(m: &Make<'_>, entry: Value, content: (&str, Value)) -> Value {
    let mut b = json!({
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {
            "certificate": {"rawBytes": b64(&m.cert.der)},
            "tlogEntries": [entry]
        }
    });
    b[content.0] = content.1;
    if m.broken == Broken::Oversized {
        b["padding"] = json!("x".repeat(1024 * 1024));
    }
    b
}

/// A v0.3 `messageSignature` bundle of the manifest `manifest` (its bytes).
pub fn message_bundle(m: &Make<'_>, manifest: &[u8]) -> Value {
    let signature = m.cert.sign(manifest);
    let digest = sha256(manifest);
    let tamper = if m.broken == Broken::ReplayedBody {
        Tamper::ReplayedEntry
    } else {
        Tamper::None
    };
    let e = m
        .log
        .log_entry(&hex(&digest), &signature, m.cert, m.time, tamper);
    let content = json!({
        "messageDigest": {"algorithm": "SHA2_256", "digest": b64(&digest)},
        "signature": b64(&signature)
    });
    bundle(
        m,
        tlog_entry(m, "hashedrekord", &e.body),
        ("messageSignature", content),
    )
}

/// The DSSE pre-authentication encoding.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let head = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    );
    [head.as_bytes(), payload].concat()
}

/// The payload type of an in-toto Statement.
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// cosign's signature statement naming `digest` of `name`, as JSON bytes.
fn statement(name: &str, digest: &str) -> Vec<u8> {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
        "predicateType": SIGN_PREDICATE,
        "predicate": {}
    });
    serde_json::to_vec(&statement).unwrap()
}

/// A key-signed v0.3 DSSE bundle (`cosign sign --key … --new-bundle-format`
/// without a transparency log: `verificationMaterial.publicKey` is a hint
/// only) of cosign's signature statement naming `digest` of `name`.
pub fn key_dsse_bundle(key: &CosignKey, name: &str, digest: &str) -> Value {
    let payload = statement(name, digest);
    json!({
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {"publicKey": {"hint": "cosign.pub"}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": b64(&payload),
            "payloadType": IN_TOTO,
            "signatures": [{"sig": key.sign(&pae(IN_TOTO, &payload)), "keyid": ""}]
        }
    })
}

/// A v0.3 `dsseEnvelope` bundle: cosign's signature statement naming
/// `digest` (`sha256:<hex>`) of `name`.
pub fn dsse_bundle(m: &Make<'_>, name: &str, digest: &str) -> Value {
    let payload = statement(name, digest);
    let payload_type = IN_TOTO;
    let signature = m.cert.sign(&pae(payload_type, &payload));
    let recorded = if m.broken == Broken::ReplayedBody {
        m.cert.sign(&pae(payload_type, b"another statement"))
    } else {
        signature.clone()
    };
    let envelope = json!({
        "payload": b64(&payload),
        "payloadType": payload_type,
        "signatures": [{"sig": b64(&signature), "keyid": ""}]
    });
    let body = json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": hex(&sha256(envelope.to_string().as_bytes()))},
            "payloadHash": {"algorithm": "sha256", "value": hex(&sha256(&payload))},
            "signatures": [{"signature": b64(&recorded), "verifier": b64(m.cert.pem.as_bytes())}]
        }
    });
    let body = b64(&serde_json::to_vec(&body).unwrap());
    bundle(m, tlog_entry(m, "dsse", &body), ("dsseEnvelope", envelope))
}

/// The referrer cosign attaches to `subject` for `bundle`.
pub fn bundle_referrer(subject: &Image, bundle: &Value) -> Image {
    let layer = Blob::new(BUNDLE_V03, serde_json::to_vec(bundle).unwrap());
    artifact_for(&subject.manifest, BUNDLE_V03, layer)
}

/// Pushes `bundle` as a referrer of `subject` in `repo` (the referrers API
/// where the registry has it, else the fallback tag).
pub async fn push_bundle(pusher: &Pusher, repo: &str, subject: &Image, bundle: &Value) {
    super::artifacts::push_referrer(pusher, repo, &bundle_referrer(subject, bundle))
        .await
        .expect("pushing a bundle referrer");
}
