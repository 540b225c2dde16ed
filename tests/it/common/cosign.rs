//! cosign's key-based signatures, made and checked by the harness alone.
//!
//! The format is the one `cosign sign --key` writes (with the transparency
//! log off): the signed payload is a "simple signing" JSON document naming
//! the image digest at `critical.image.docker-manifest-digest`; the
//! signature is ECDSA P-256 over SHA-256 of the payload bytes, ASN.1 DER,
//! base64, stored in the `dev.cosignproject.cosign/signature` annotation of
//! the payload's layer (media type
//! `application/vnd.dev.cosign.simplesigning.v1+json`) in an OCI image
//! manifest tagged `sha256-<hex>.sig` beside the image. Further signatures
//! of the same digest are appended as further layers of that manifest, so
//! the tag moves.
//!
//! [`verify_image`] is the independent verifier the tests use on a target:
//! it reads the manifest the target serves, derives its digest from the
//! bytes, reads the `.sig` tag of that digest and checks every signature
//! layer (blob digest, payload digest, ECDSA signature) against a public
//! key. It shares no code with regmirror.

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::EncodePublicKey as _;
use serde_json::{Value, json};

use super::image::{Blob, Image, Index, Manifest, Node, OCI_CONFIG, OCI_MANIFEST};
use super::push::Pusher;

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation holding the base64 DER signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a cosign image signature payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";

/// A P-256 key pair (deterministic from a seed so digests stay stable).
#[derive(Clone)]
pub struct CosignKey {
    signing: SigningKey,
}

impl std::fmt::Debug for CosignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosignKey")
            .field("public", &self.public_pem())
            .finish()
    }
}

impl CosignKey {
    /// The key whose scalar is SHA-256(`seed`) (re-hashed in the negligible
    /// case that is not a valid scalar).
    pub fn from_seed(seed: &str) -> CosignKey {
        use sha2::Digest as _;
        let mut bytes = sha2::Sha256::digest(seed.as_bytes());
        loop {
            if let Ok(signing) = SigningKey::from_bytes(&bytes) {
                return CosignKey { signing };
            }
            bytes = sha2::Sha256::digest(bytes);
        }
    }

    /// The verifying half.
    pub fn public(&self) -> VerifyingKey {
        VerifyingKey::from(&self.signing)
    }

    /// The public key as cosign writes `cosign.pub` (SPKI PEM).
    pub fn public_pem(&self) -> String {
        self.public()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("encoding a P-256 public key as PEM")
    }

    /// base64 of the ASN.1 DER ECDSA-SHA256 signature of `payload`.
    pub fn sign(&self, payload: &[u8]) -> String {
        let sig: DerSignature = self.signing.sign(payload);
        base64::engine::general_purpose::STANDARD.encode(sig.as_bytes())
    }
}

/// The simple-signing payload cosign signs for `digest` of `docker_reference`
/// (`host/repo`, no tag).
pub fn simple_signing_payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": null,
    }))
    .expect("serializing a simple-signing payload")
}

/// `sha256-<hex>.sig` for `digest` (`sha256:<hex>`).
pub fn sig_tag(digest: &str) -> String {
    legacy_tag(digest, "sig")
}

/// `sha256-<hex>.<suffix>` (cosign's `.sig`, `.att`, `.sbom` tags).
pub fn legacy_tag(digest: &str, suffix: &str) -> String {
    format!("{}.{suffix}", digest.replacen(':', "-", 1))
}

/// One signature layer: the payload blob with its signature annotation.
pub fn signature_layer(key: &CosignKey, docker_reference: &str, digest: &str) -> Blob {
    let payload = simple_signing_payload(docker_reference, digest);
    let mut layer = Blob::new(SIMPLE_SIGNING, payload.clone());
    layer
        .annotations
        .push((SIGNATURE_ANNOTATION.to_string(), key.sign(&payload)));
    layer
}

/// The `.sig` manifest holding `layers`, with the config cosign writes
/// (an OCI config whose diff IDs are the layer digests).
pub fn signature_manifest(layers: Vec<Blob>) -> Image {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    let config = Blob::new(
        OCI_CONFIG,
        serde_json::to_vec(&json!({
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {},
        }))
        .expect("serializing a cosign signature config"),
    );
    let manifest = Manifest::from_json(
        OCI_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        }),
    );
    Image {
        manifest,
        config,
        layers,
        platform: None,
        entry_annotations: Vec::new(),
    }
}

/// Signs `digest` in `repo` as `cosign sign --key` does: reads the current
/// `sha256-<hex>.sig` manifest (if any), appends a signature layer unless an
/// identical one is there, and pushes the result under that tag. Returns the
/// new `.sig` manifest.
pub async fn sign_digest(
    pusher: &Pusher,
    repo: &str,
    docker_reference: &str,
    digest: &str,
    key: &CosignKey,
) -> anyhow::Result<Image> {
    let tag = sig_tag(digest);
    let mut layers = tag_layers(pusher, repo, &tag).await?;
    let layer = signature_layer(key, docker_reference, digest);
    if !layers
        .iter()
        .any(|l| l.digest == layer.digest && l.annotations == layer.annotations)
    {
        layers.push(layer);
    }
    let sig = signature_manifest(layers);
    pusher
        .push_node(repo, &Node::Image(sig.clone()), Some(&tag))
        .await
        .with_context(|| format!("pushing the signature {repo}:{tag}"))?;
    Ok(sig)
}

/// `cosign sign --recursive`: the index and every manifest it lists.
/// Returns the digests signed, index first.
pub async fn sign_recursive(
    pusher: &Pusher,
    repo: &str,
    docker_reference: &str,
    index: &Index,
    key: &CosignKey,
) -> anyhow::Result<Vec<String>> {
    let mut digests = vec![index.digest().to_string()];
    digests.extend(index.children.iter().map(|c| c.digest().to_string()));
    for d in &digests {
        sign_digest(pusher, repo, docker_reference, d, key).await?;
    }
    Ok(digests)
}

/// The layers of the manifest at `tag` (a `.sig`, `.att` or `.sbom` tag),
/// blobs and annotations included (empty when the tag does not exist).
pub async fn tag_layers(pusher: &Pusher, repo: &str, tag: &str) -> anyhow::Result<Vec<Blob>> {
    if !pusher.manifest_exists(repo, tag).await? {
        return Ok(Vec::new());
    }
    let (_, bytes) = pusher.get_manifest(repo, tag).await?;
    let doc: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{repo}:{tag} is not JSON"))?;
    let mut out = Vec::new();
    for l in doc["layers"].as_array().into_iter().flatten() {
        let digest = l["digest"].as_str().unwrap_or_default();
        let data = pusher.get_blob(repo, digest).await?;
        let mut blob = Blob::new(l["mediaType"].as_str().unwrap_or_default(), data);
        for (k, v) in l["annotations"].as_object().into_iter().flatten() {
            blob.annotations
                .push((k.clone(), v.as_str().unwrap_or_default().to_string()));
        }
        out.push(blob);
    }
    Ok(out)
}

/// What the verifier found under one `.sig` tag.
#[derive(Debug)]
pub struct Verified {
    /// Digest of the manifest the registry served for the reference.
    pub digest: String,
    /// Signature layers that checked out.
    pub valid: usize,
    /// One line per layer that did not.
    pub invalid: Vec<String>,
}

/// Verifies `reference` (tag or digest) in `repo` against `key`, without
/// regmirror's code: the digest is computed from the served bytes, each
/// simple-signing layer under `sha256-<hex>.sig` must hash to its
/// descriptor, name that digest and carry a signature `key` accepts.
pub async fn verify_image(
    pusher: &Pusher,
    repo: &str,
    reference: &str,
    key: &VerifyingKey,
) -> anyhow::Result<Verified> {
    let (_, bytes) = pusher
        .get_manifest(repo, reference)
        .await
        .with_context(|| format!("reading {repo}:{reference} to verify it"))?;
    let digest = super::sha256_digest(&bytes);
    let tag = sig_tag(&digest);
    let (_, sig_bytes) = pusher
        .get_manifest(repo, &tag)
        .await
        .with_context(|| format!("{repo}@{digest} has no signature tag {tag}"))?;
    let doc: Value = serde_json::from_slice(&sig_bytes).context("the .sig manifest is not JSON")?;
    let mut out = Verified {
        digest: digest.clone(),
        valid: 0,
        invalid: Vec::new(),
    };
    for l in doc["layers"].as_array().into_iter().flatten() {
        if l["mediaType"] != SIMPLE_SIGNING {
            continue;
        }
        let layer_digest = l["digest"].as_str().unwrap_or_default();
        let payload = pusher.get_blob(repo, layer_digest).await?;
        let sig = l["annotations"][SIGNATURE_ANNOTATION]
            .as_str()
            .unwrap_or_default();
        match check_layer(layer_digest, &payload, sig, &digest, key) {
            Ok(()) => out.valid += 1,
            Err(e) => out.invalid.push(format!("{tag} layer {layer_digest}: {e}")),
        }
    }
    Ok(out)
}

/// [`verify_image`], failing unless at least `min` signatures verify and
/// none fails.
pub async fn verify_signed(
    pusher: &Pusher,
    repo: &str,
    reference: &str,
    key: &VerifyingKey,
    min: usize,
) -> anyhow::Result<Verified> {
    let v = verify_image(pusher, repo, reference, key).await?;
    if !v.invalid.is_empty() || v.valid < min {
        bail!(
            "{repo}:{reference} ({}): {} valid signature(s), expected at least {min}; invalid: {:?}",
            v.digest,
            v.valid,
            v.invalid
        );
    }
    Ok(v)
}

/// Checks one signature layer: bytes match the descriptor, the payload
/// names `subject` as a cosign image signature, the signature verifies.
pub fn check_layer(
    layer_digest: &str,
    payload: &[u8],
    signature_b64: &str,
    subject: &str,
    key: &VerifyingKey,
) -> anyhow::Result<()> {
    if super::sha256_digest(payload) != layer_digest {
        bail!("payload bytes do not hash to the layer digest");
    }
    let doc: Value = serde_json::from_slice(payload).context("payload is not JSON")?;
    if doc["critical"]["type"] != PAYLOAD_TYPE {
        bail!(
            "payload type is {}, not {PAYLOAD_TYPE:?}",
            doc["critical"]["type"]
        );
    }
    let named = doc["critical"]["image"]["docker-manifest-digest"]
        .as_str()
        .unwrap_or_default();
    if named != subject {
        bail!("payload names {named:?}, the manifest is {subject}");
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(signature_b64)
        .map_err(|e| anyhow!("signature annotation is not base64: {e}"))?;
    let sig = DerSignature::from_bytes(&der).map_err(|e| anyhow!("signature is not DER: {e}"))?;
    key.verify(payload, &sig)
        .map_err(|_| anyhow!("signature does not verify against the public key"))
}
