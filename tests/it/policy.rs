//! A mirror's signature policy, through the `regmirror` binary against real
//! registries (distribution: `.sig` tags and fallback indexes; ferro: the
//! referrers API): an image that fails it is not written and its target tag
//! does not move; one that passes is copied.
//!
//! Signatures are made outside regmirror, in cosign's key-based format
//! (see `common::cosign`): ECDSA P-256 by the harness's signer, RSA
//! (PKCS#1 v1.5 over SHA-256, cosign's default for RSA keys) by the
//! `openssl` CLI, Ed25519 by `ring`. Key files are PEM public keys as
//! `cosign public-key` and `openssl pkey -pubout` write them.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use crate::common;
use crate::sync_run::{ConfigFile, sync_json};
use common::cosign::{
    CosignKey, SIGNATURE_ANNOTATION, SIMPLE_SIGNING, sig_tag, sign_digest, signature_layer,
    signature_manifest, simple_signing_payload, verify_signed,
};
use common::ferro::FerroRegistry;
use common::image::artifact_for;
use common::{
    Blob, Format, Image, ImageSet, Node, Pusher, RegistryOptions, TestRegistry, push, regmirror,
};

/// The artifact type cosign gives a signature stored as a referrer
/// (`cosign sign --registry-referrers-mode oci-1-1`).
const COSIGN_SIG_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A signer outside regmirror: the harness's P-256 key, an Ed25519 key
/// (ring) or an RSA key (the `openssl` CLI, files in a temp dir).
enum Signer {
    Ecdsa(CosignKey),
    Ed25519(ring::signature::Ed25519KeyPair),
    /// The directory holding the private key `sa-key.pem`, and the public PEM.
    Rsa(tempfile::TempDir, String),
}

impl Signer {
    fn ecdsa(seed: &str) -> Signer {
        Signer::Ecdsa(CosignKey::from_seed(seed))
    }

    fn ed25519() -> Signer {
        let rng = ring::rand::SystemRandom::new();
        let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("an Ed25519 key");
        Signer::Ed25519(ring::signature::Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap())
    }

    fn rsa() -> Signer {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, public) = common::cloud_fakes::rsa_key_pair(dir.path());
        Signer::Rsa(dir, public)
    }

    /// The public key, PEM (SubjectPublicKeyInfo).
    fn public_pem(&self) -> String {
        match self {
            Signer::Ecdsa(k) => k.public_pem(),
            Signer::Ed25519(k) => {
                use ring::signature::KeyPair as _;
                // SubjectPublicKeyInfo of Ed25519 (RFC 8410): a fixed prefix.
                let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03];
                der.extend_from_slice(&[0x21, 0x00]);
                der.extend_from_slice(k.public_key().as_ref());
                format!(
                    "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                    b64(&der)
                )
            }
            Signer::Rsa(_, public) => public.clone(),
        }
    }

    /// base64 of the signature of `payload`, as cosign stores it.
    fn sign(&self, payload: &[u8]) -> String {
        match self {
            Signer::Ecdsa(k) => k.sign(payload),
            Signer::Ed25519(k) => b64(k.sign(payload).as_ref()),
            Signer::Rsa(dir, _) => {
                let input = dir.path().join("payload.json");
                std::fs::write(&input, payload).unwrap();
                let key = dir.path().join("sa-key.pem");
                b64(&openssl(&[
                    "dgst",
                    "-sha256",
                    "-sign",
                    key.to_str().unwrap(),
                    input.to_str().unwrap(),
                ]))
            }
        }
    }

    /// A simple signing layer for `digest` signed by this key.
    fn layer(&self, docker_reference: &str, digest: &str) -> Blob {
        let payload = simple_signing_payload(docker_reference, digest);
        let mut layer = Blob::new(SIMPLE_SIGNING, payload.clone());
        layer
            .annotations
            .push((SIGNATURE_ANNOTATION.to_string(), self.sign(&payload)));
        layer
    }

    /// `cosign sign --key`: a signature of `digest` under its `.sig` tag in `repo`.
    async fn sign_image(&self, reg: &TestRegistry, repo: &str, digest: &str) {
        let layer = self.layer(&format!("{}/{repo}", reg.host()), digest);
        push_sig(&Pusher::for_registry(reg), repo, digest, vec![layer]).await;
    }
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Pushes a `.sig` manifest with `layers` for `digest`.
pub(crate) async fn push_sig(pusher: &Pusher, repo: &str, digest: &str, layers: Vec<Blob>) {
    pusher
        .push_node(
            repo,
            &Node::Image(signature_manifest(layers)),
            Some(&sig_tag(digest)),
        )
        .await
        .expect("pushing a signature");
}

/// Writes the public keys of `signers` into `dir` as key1.pub, key2.pub, …
/// and returns those names.
fn keys_in(dir: &Path, signers: &[&Signer]) -> Vec<String> {
    signers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let name = format!("key{}.pub", i + 1);
            std::fs::write(dir.join(&name), s.public_pem()).unwrap();
            name
        })
        .collect()
}

/// One mirror of `src/app:v1` into `dst/app` with a policy over `keys`.
fn policy_config(src: &TestRegistry, dst: &str, keys: &[String], require: &str) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
    format!(
        "[[mirror]]\nname = \"signed\"\nsource = \"{}/app:v1\"\ntarget = \"{dst}/app\"\n\
         [mirror.policy]\nrequire = \"{require}\"\nkeys = [{}]\n",
        src.host(),
        keys.join(", ")
    )
}

/// Runs `sync` with `text` as the config (key files beside it).
pub(crate) async fn sync_with(config: &ConfigFile, text: &str) -> (i32, Value, String) {
    let path = config.write(text);
    sync_json(&path, &[]).await
}

pub(crate) fn config_dir(config: &ConfigFile) -> PathBuf {
    config
        .write("")
        .parent()
        .expect("the config has a directory")
        .to_path_buf()
}

/// The digest `repo:tag` serves at `reg`, or `None` when it has no such tag.
pub(crate) async fn digest_at(reg: &TestRegistry, repo: &str, tag: &str) -> Option<String> {
    let pusher = Pusher::for_registry(reg);
    if !pusher.manifest_exists(repo, tag).await.unwrap() {
        return None;
    }
    let (_, bytes) = pusher.get_manifest(repo, tag).await.unwrap();
    Some(common::sha256_digest(&bytes))
}

pub(crate) fn only_image(report: &Value) -> &Value {
    let images = report["images"].as_array().expect("images");
    assert_eq!(images.len(), 1, "{report:#}");
    &images[0]
}

pub(crate) fn image(seed: &str) -> Image {
    ImageSet::image(seed, "linux/amd64", Format::Oci)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_image_is_rejected_and_the_target_keeps_its_digest() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let signer = Signer::ecdsa("policy upstream key");
    let config = ConfigFile::new();
    let keys = keys_in(&config_dir(&config), &[&signer]);
    let text = policy_config(&src, &dst.host(), &keys, "any");

    // A signed v1 is mirrored.
    let old = image("policy-old");
    push(&src, "app", "v1", old.clone()).await.unwrap();
    signer.sign_image(&src, "app", old.digest()).await;
    let (code, report, stderr) = sync_with(&config, &text).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(only_image(&report)["result"], "copied", "{report:#}");
    let old_digest = old.digest().to_string();
    assert_eq!(digest_at(&dst, "app", "v1").await, Some(old_digest.clone()));
    // The harness's own verifier accepts the mirrored image's signature.
    let Signer::Ecdsa(key) = &signer else {
        unreachable!("an ECDSA signer")
    };
    verify_signed(&Pusher::for_registry(&dst), "app", "v1", &key.public(), 1)
        .await
        .expect("the mirrored signature verifies independently");

    // Upstream moves v1 to an unsigned image: held back.
    let new = image("policy-new-unsigned");
    push(&src, "app", "v1", new.clone()).await.unwrap();
    let (code, report, stderr) = sync_with(&config, &text).await;
    let img = only_image(&report);
    assert_eq!(code, 1, "every image failed: exit 1\n{report:#}\n{stderr}");
    assert_eq!(img["result"], "rejected", "{report:#}");
    assert_eq!(img["rejection"], "no_signature", "{report:#}");
    assert_eq!(report["totals"]["rejected"], 1, "{report:#}");
    let error = img["error"].as_str().unwrap();
    assert!(
        error.contains("no cosign signature") && error.contains(new.digest()),
        "the error names what is missing and where: {error}"
    );
    assert_eq!(
        digest_at(&dst, "app", "v1").await,
        Some(old_digest),
        "the target tag did not move"
    );
    let dst_pusher = Pusher::for_registry(&dst);
    assert!(
        !dst_pusher
            .manifest_exists("app", new.digest())
            .await
            .unwrap(),
        "nothing of the rejected image was written"
    );
    // The base layer is shared with the old image (already there).
    let own = new
        .layers
        .iter()
        .chain([&new.config])
        .filter(|b| !old.layers.iter().any(|o| o.digest == b.digest));
    for layer in own {
        assert!(
            !dst_pusher.blob_exists("app", &layer.digest).await.unwrap(),
            "blob {} of the rejected image was written",
            layer.digest
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_by_another_key_is_rejected() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let trusted = Signer::ecdsa("policy trusted key");
    let other = Signer::ecdsa("policy someone else's key");
    let config = ConfigFile::new();
    let keys = keys_in(&config_dir(&config), &[&trusted]);
    let img = image("policy-wrong-key");
    push(&src, "app", "v1", img.clone()).await.unwrap();
    other.sign_image(&src, "app", img.digest()).await;

    let (code, report, _) =
        sync_with(&config, &policy_config(&src, &dst.host(), &keys, "any")).await;
    let r = only_image(&report);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(r["result"], "rejected", "{report:#}");
    assert_eq!(r["rejection"], "wrong_key", "{report:#}");
    assert!(
        r["error"].as_str().unwrap().contains("key1.pub"),
        "{report:#}"
    );
    assert_eq!(
        digest_at(&dst, "app", "v1").await,
        None,
        "nothing was tagged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_of_another_digest_is_rejected() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let signer = Signer::ecdsa("policy replaced signature key");
    let config = ConfigFile::new();
    let keys = keys_in(&config_dir(&config), &[&signer]);
    // A genuine signature of another image, put under this image's .sig
    // tag (a signature replaced upstream).
    let signed = image("policy-signed-elsewhere");
    let img = image("policy-replaced-signature");
    push(&src, "app", "v1", img.clone()).await.unwrap();
    let layer = signer.layer(&format!("{}/app", src.host()), signed.digest());
    push_sig(
        &Pusher::for_registry(&src),
        "app",
        img.digest(),
        vec![layer],
    )
    .await;

    let (code, report, _) =
        sync_with(&config, &policy_config(&src, &dst.host(), &keys, "any")).await;
    let r = only_image(&report);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(r["result"], "rejected", "{report:#}");
    assert_eq!(r["rejection"], "digest_mismatch", "{report:#}");
    assert!(
        r["error"].as_str().unwrap().contains(signed.digest()),
        "the error names the digest the signature is for: {report:#}"
    );
    assert_eq!(
        digest_at(&dst, "app", "v1").await,
        None,
        "nothing was tagged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ed25519_signed_images_are_written_and_all_needs_every_key() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let rsa = Signer::rsa();
    let ed = Signer::ed25519();
    let config = ConfigFile::new();
    let keys = keys_in(&config_dir(&config), &[&rsa, &ed]);
    let img = image("policy-rsa-signed");
    push(&src, "app", "v1", img.clone()).await.unwrap();
    rsa.sign_image(&src, "app", img.digest()).await;

    // require = "all": the Ed25519 signature is missing.
    let (code, report, _) =
        sync_with(&config, &policy_config(&src, &dst.host(), &keys, "all")).await;
    let r = only_image(&report);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(r["rejection"], "wrong_key", "{report:#}");
    assert!(
        r["error"].as_str().unwrap().contains("key2.pub"),
        "{report:#}"
    );
    assert_eq!(digest_at(&dst, "app", "v1").await, None);

    // require = "any": the RSA signature is enough.
    let (code, report, stderr) =
        sync_with(&config, &policy_config(&src, &dst.host(), &keys, "any")).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(only_image(&report)["result"], "copied", "{report:#}");
    assert_eq!(
        digest_at(&dst, "app", "v1").await.as_deref(),
        Some(img.digest())
    );

    // Both signatures (appended to the .sig tag, as cosign does): "all" passes.
    let img2 = image("policy-both-signed");
    push(&src, "app", "v1", img2.clone()).await.unwrap();
    let r = format!("{}/app", src.host());
    let layers = vec![rsa.layer(&r, img2.digest()), ed.layer(&r, img2.digest())];
    push_sig(&Pusher::for_registry(&src), "app", img2.digest(), layers).await;
    let (code, report, stderr) =
        sync_with(&config, &policy_config(&src, &dst.host(), &keys, "all")).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(
        digest_at(&dst, "app", "v1").await.as_deref(),
        Some(img2.digest())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_passes_signed_as_a_whole_or_per_platform() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let signer = Signer::ecdsa("policy index key");
    let config = ConfigFile::new();
    let keys = keys_in(&config_dir(&config), &[&signer]);
    let text = policy_config(&src, &dst.host(), &keys, "any");
    let pusher = Pusher::for_registry(&src);

    // Per platform: every child signed, the index not.
    let per_platform = ImageSet::multi_arch(
        "policy-per-platform",
        &["linux/amd64", "linux/arm64"],
        false,
        Format::Oci,
    );
    push(&src, "app", "v1", per_platform.clone()).await.unwrap();
    let children = per_platform.images();
    signer.sign_image(&src, "app", children[0].digest()).await;
    // One platform unsigned: rejected, naming that platform's digest.
    let (code, report, _) = sync_with(&config, &text).await;
    let r = only_image(&report);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(r["rejection"], "no_signature", "{report:#}");
    assert!(
        r["error"].as_str().unwrap().contains(children[1].digest()),
        "{report:#}"
    );
    assert_eq!(digest_at(&dst, "app", "v1").await, None);
    signer.sign_image(&src, "app", children[1].digest()).await;
    let (code, report, stderr) = sync_with(&config, &text).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(
        digest_at(&dst, "app", "v1").await.as_deref(),
        Some(per_platform.digest())
    );

    // As a whole: only the index signed (that covers its children).
    let whole = ImageSet::multi_arch(
        "policy-whole-index",
        &["linux/amd64", "linux/arm64"],
        false,
        Format::Oci,
    );
    push(&src, "app", "v1", whole.clone()).await.unwrap();
    let docker_ref = format!("{}/app", src.host());
    let key = match &signer {
        Signer::Ecdsa(k) => k,
        _ => unreachable!("an ECDSA signer"),
    };
    sign_digest(&pusher, "app", &docker_ref, whole.digest(), key)
        .await
        .unwrap();
    let (code, report, stderr) = sync_with(&config, &text).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(
        digest_at(&dst, "app", "v1").await.as_deref(),
        Some(whole.digest())
    );
}

/// A mirror of `src_host/app:v1` (where `img` is, signed only by a cosign
/// referrer made with `pusher`) into `dst`: the policy finds the signature.
async fn referrer_signature_counts(
    src_host: &str,
    pusher: &Pusher,
    dst: &TestRegistry,
    seed: &str,
) {
    let key = CosignKey::from_seed(seed);
    let config = ConfigFile::new();
    let dir = config_dir(&config);
    std::fs::write(dir.join("cosign.pub"), key.public_pem()).unwrap();
    let img = image(seed);
    pusher
        .push_node("app", &Node::Image(img.clone()), Some("v1"))
        .await
        .unwrap();
    let layer = signature_layer(&key, &format!("{src_host}/app"), img.digest());
    let sig = artifact_for(&img.manifest, COSIGN_SIG_TYPE, layer);
    common::artifacts::push_referrer(pusher, "app", &sig)
        .await
        .unwrap();
    let text = format!(
        "[[mirror]]\nsource = \"{src_host}/app:v1\"\ntarget = \"{}/app\"\n\
         [mirror.policy]\nkeys = [\"cosign.pub\"]\n",
        dst.host()
    );
    let (code, report, stderr) = sync_with(&config, &text).await;
    assert_eq!(code, 0, "{seed}: {report:#}\n{stderr}");
    assert_eq!(only_image(&report)["result"], "copied", "{report:#}");
    assert_eq!(
        digest_at(dst, "app", "v1").await.as_deref(),
        Some(img.digest())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_stored_as_a_referrer_counts() {
    // ferro-oci-server lists it through the referrers API.
    let ferro = FerroRegistry::start().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    referrer_signature_counts(&ferro.host(), &ferro.pusher(), &dst, "policy referrer api").await;
    // distribution has no referrers API: the fallback index lists it.
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let pusher = Pusher::for_registry(&src);
    referrer_signature_counts(&src.host(), &pusher, &dst, "policy referrer fallback").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_verify_refuses_an_unsigned_image_and_copies_a_signed_one() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let signer = Signer::ed25519();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cosign.pub");
    std::fs::write(&key, signer.public_pem()).unwrap();
    let img = image("policy-import");
    push(&src, "app", "v1", img.clone()).await.unwrap();
    let source = format!("{}/app:v1", src.host());
    let target = format!("{}/app:v1", dst.host());
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["import", &source, &target, "--output", "json", "--verify"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let key_arg = key.to_str().unwrap();

    let run = regmirror(
        &args(&["--verify-key", key_arg])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).expect("a JSON report");
    let problems = crate::sync_run::schema_problems(&report);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(report["images"][0]["result"], "rejected", "{report:#}");
    assert_eq!(
        report["images"][0]["rejection"], "no_signature",
        "{report:#}"
    );
    assert_eq!(digest_at(&dst, "app", "v1").await, None, "nothing written");

    // Signed now; the policy given as a file this time.
    signer.sign_image(&src, "app", img.digest()).await;
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "require = \"any\"\nkeys = [\"cosign.pub\"]\n").unwrap();
    let run = regmirror(
        &args(&["--policy", policy.to_str().unwrap()])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        digest_at(&dst, "app", "v1").await.as_deref(),
        Some(img.digest())
    );

    // --verify without keys is a usage error, before any registry is asked.
    let run = regmirror(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--verify-key"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_key_that_cannot_be_read_is_a_config_error() {
    let config = ConfigFile::new();
    let dir = config_dir(&config);
    std::fs::write(
        dir.join("private.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    for (keys, says) in [
        (
            "[\"missing.pub\"]",
            "cannot read the public key missing.pub",
        ),
        ("[\"private.pem\"]", "never a private key"),
        ("[]", "at least one public key"),
    ] {
        let path = config.write(&format!(
            "[[mirror]]\nsource = \"127.0.0.1:1/app:v1\"\ntarget = \"127.0.0.1:2/app\"\n\
             [mirror.policy]\nkeys = {keys}\n"
        ));
        let run = regmirror(&["sync", "--config", path.to_str().unwrap()]).await;
        assert_eq!(run.code, 2, "{keys}: {}", run.stderr);
        assert!(
            run.stderr.contains(says) && run.stderr.contains("mirror[1].policy.keys"),
            "{keys}: {}",
            run.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_are_counted_in_the_metrics() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let signer = Signer::ecdsa("policy metrics key");
    let config = ConfigFile::new();
    let dir = config_dir(&config);
    let keys = keys_in(&dir, &[&signer]);
    push(&src, "app", "v1", image("policy-metrics"))
        .await
        .unwrap();
    let path = config.write(&policy_config(&src, &dst.host(), &keys, "any"));
    let metrics = dir.join("metrics.prom");
    let run = regmirror(&[
        "sync",
        "--config",
        path.to_str().unwrap(),
        "--metrics-file",
        metrics.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout.contains("1 rejected by the signature policy"),
        "the text summary counts it: {}",
        run.stdout
    );
    let text = std::fs::read_to_string(&metrics).expect("the metrics file");
    assert!(
        text.lines()
            .any(|l| l.starts_with("regmirror_images_total{")
                && l.contains("mirror=\"signed\"")
                && l.contains("result=\"rejected\"")
                && l.ends_with(" 1")),
        "{text}"
    );
}

/// `backup` with `force` and a policy: the policy is judged before the
/// backup is written, so an image it rejects leaves no backup tag and the
/// target tag where it was; an accepted one is backed up as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_image_leaves_no_backup_tag() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let signer = Signer::ecdsa("policy backup key");
    let config = ConfigFile::new();
    let keys = keys_in(&config_dir(&config), &[&signer]);
    let text = format!(
        "[[mirror]]\nname = \"signed\"\nsource = \"{}/app:v1\"\ntarget = \"{}/app\"\n\
         force = true\nbackup = \"{{tag}}-prev\"\n[mirror.policy]\nkeys = [{:?}]\n",
        src.host(),
        dst.host(),
        keys[0]
    );
    let old = image("policy-backup-old");
    push(&src, "app", "v1", old.clone()).await.unwrap();
    signer.sign_image(&src, "app", old.digest()).await;
    let (code, report, stderr) = sync_with(&config, &text).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(only_image(&report)["result"], "copied", "{report:#}");

    // Upstream moves v1 to an unsigned image: rejected, and no backup.
    let new = image("policy-backup-new");
    push(&src, "app", "v1", new.clone()).await.unwrap();
    let (code, report, stderr) = sync_with(&config, &text).await;
    let img = only_image(&report);
    assert_eq!(code, 1, "{report:#}\n{stderr}");
    assert_eq!(img["result"], "rejected", "{report:#}");
    assert!(img["backup_tag"].is_null(), "{report:#}");
    assert_eq!(report["totals"]["backups"], 0, "{report:#}");
    assert_eq!(
        digest_at(&dst, "app", "v1-prev").await,
        None,
        "a backup tag was written"
    );
    assert_eq!(
        digest_at(&dst, "app", "v1").await.as_deref(),
        Some(old.digest()),
        "the target tag did not move"
    );

    // Signed upstream: copied, with the old digest backed up.
    signer.sign_image(&src, "app", new.digest()).await;
    let (code, report, stderr) = sync_with(&config, &text).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(only_image(&report)["result"], "copied", "{report:#}");
    assert_eq!(only_image(&report)["backup_tag"], "v1-prev", "{report:#}");
    assert_eq!(
        digest_at(&dst, "app", "v1-prev").await.as_deref(),
        Some(old.digest())
    );
    assert_eq!(
        digest_at(&dst, "app", "v1").await.as_deref(),
        Some(new.digest())
    );
}
