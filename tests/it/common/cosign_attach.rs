//! cosign's other legacy tags: `sha256-<hex>.att` (`cosign attest --key`:
//! a DSSE envelope over an in-toto statement, signed with the same P-256
//! key) and `sha256-<hex>.sbom` (`cosign attach sbom`: the SBOM as a layer).
//! Like `.sig`, each is an OCI image manifest whose layers are appended to
//! by later runs, so the tags move.
//!
//! [`verify_attestation`] checks a `.att` tag independently of regmirror:
//! the DSSE signature over the pre-authentication encoding (PAE) must check
//! against the public key, and the statement's subject must be the digest
//! of the manifest the registry serves.

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{DerSignature, VerifyingKey};
use serde_json::{Value, json};

use super::cosign::{CosignKey, legacy_tag, signature_manifest, tag_layers};
use super::image::{Blob, Image, Node};
use super::push::Pusher;

/// Media type of a DSSE envelope layer.
pub const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
/// Media type cosign gives an attached SPDX JSON SBOM.
pub const COSIGN_SPDX_JSON: &str = "text/spdx+json";
const STATEMENT_TYPE: &str = "application/vnd.in-toto+json";
const PREDICATE: &str = "https://slsa.dev/provenance/v1";

/// DSSE's pre-authentication encoding of `body` with `payload_type`.
fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A `.att` layer: a DSSE envelope over a provenance statement for `digest`.
pub fn attestation_layer(key: &CosignKey, docker_reference: &str, digest: &str) -> Blob {
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "predicateType": PREDICATE,
        "subject": [{"name": docker_reference, "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
        "predicate": {"buildDefinition": {"buildType": "https://example.invalid/cosign-attest"}},
    }))
    .expect("serializing a statement");
    let b64 = base64::engine::general_purpose::STANDARD;
    let envelope = json!({
        "payloadType": STATEMENT_TYPE,
        "payload": b64.encode(&statement),
        "signatures": [{"keyid": "", "sig": key.sign(&pae(STATEMENT_TYPE, &statement))}],
    });
    let mut layer = Blob::new(
        DSSE,
        serde_json::to_vec(&envelope).expect("serializing an envelope"),
    );
    layer
        .annotations
        .push(("predicateType".to_string(), PREDICATE.to_string()));
    layer
}

/// Appends `layer` to the manifest under `repo:tag` (creating it) and
/// pushes the result; returns the new manifest.
async fn append_layer(
    pusher: &Pusher,
    repo: &str,
    tag: &str,
    layer: Blob,
) -> anyhow::Result<Image> {
    let mut layers = tag_layers(pusher, repo, tag).await?;
    layers.push(layer);
    let m = signature_manifest(layers);
    pusher
        .push_node(repo, &Node::Image(m.clone()), Some(tag))
        .await
        .with_context(|| format!("pushing {repo}:{tag}"))?;
    Ok(m)
}

/// `cosign attest --key`: appends an attestation of `digest` to its `.att` tag.
pub async fn attest_digest(
    pusher: &Pusher,
    repo: &str,
    docker_reference: &str,
    digest: &str,
    key: &CosignKey,
) -> anyhow::Result<Image> {
    let layer = attestation_layer(key, docker_reference, digest);
    append_layer(pusher, repo, &legacy_tag(digest, "att"), layer).await
}

/// `cosign attach sbom`: an SPDX JSON SBOM of `digest` under its `.sbom` tag.
pub async fn attach_sbom(pusher: &Pusher, repo: &str, digest: &str) -> anyhow::Result<Image> {
    let doc = json!({"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": digest});
    let layer = Blob::new(
        COSIGN_SPDX_JSON,
        serde_json::to_vec(&doc).expect("serializing an SBOM"),
    );
    append_layer(pusher, repo, &legacy_tag(digest, "sbom"), layer).await
}

/// Verifies every DSSE layer under the `.att` tag of the manifest `reference`
/// names in `repo`; returns how many verified, failing on any that does not.
pub async fn verify_attestation(
    pusher: &Pusher,
    repo: &str,
    reference: &str,
    key: &VerifyingKey,
) -> anyhow::Result<usize> {
    let (_, bytes) = pusher.get_manifest(repo, reference).await?;
    let digest = super::sha256_digest(&bytes);
    let tag = legacy_tag(&digest, "att");
    let (_, att) = pusher
        .get_manifest(repo, &tag)
        .await
        .with_context(|| format!("{repo}@{digest} has no attestation tag {tag}"))?;
    let doc: Value = serde_json::from_slice(&att).context("the .att manifest is not JSON")?;
    let mut valid = 0;
    for l in doc["layers"].as_array().into_iter().flatten() {
        if l["mediaType"] != DSSE {
            continue;
        }
        let envelope = pusher
            .get_blob(repo, l["digest"].as_str().unwrap_or_default())
            .await?;
        check_envelope(&envelope, &digest, key).with_context(|| format!("{repo}:{tag}"))?;
        valid += 1;
    }
    Ok(valid)
}

/// One DSSE envelope: every signature verifies over the PAE and the
/// statement's subject is `subject`.
pub fn check_envelope(envelope: &[u8], subject: &str, key: &VerifyingKey) -> anyhow::Result<()> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let env: Value = serde_json::from_slice(envelope).context("envelope is not JSON")?;
    let payload_type = env["payloadType"].as_str().unwrap_or_default();
    let statement = b64
        .decode(env["payload"].as_str().unwrap_or_default())
        .map_err(|e| anyhow!("payload is not base64: {e}"))?;
    let sigs = env["signatures"].as_array().cloned().unwrap_or_default();
    if sigs.is_empty() {
        bail!("the envelope has no signature");
    }
    for s in sigs {
        let der = b64
            .decode(s["sig"].as_str().unwrap_or_default())
            .map_err(|e| anyhow!("signature is not base64: {e}"))?;
        let sig = DerSignature::from_bytes(&der).map_err(|e| anyhow!("not DER: {e}"))?;
        key.verify(&pae(payload_type, &statement), &sig)
            .map_err(|_| anyhow!("the DSSE signature does not verify against the public key"))?;
    }
    let st: Value = serde_json::from_slice(&statement).context("statement is not JSON")?;
    let named = st["subject"][0]["digest"]["sha256"]
        .as_str()
        .unwrap_or_default();
    if format!("sha256:{named}") != subject {
        bail!("the statement is about sha256:{named}, the manifest is {subject}");
    }
    Ok(())
}
