//! Keyless signatures checked twice: by `regmirror` (a mirror's signature
//! policy, through the binary against real registries) and by an
//! independent Sigstore verifier, sigstore-python's `sigstore verify
//! identity --offline` (PyPI `sigstore`, installed by scripts/test.sh). Both
//! must agree on every case: the correct signature accepted, and a wrong
//! identity, a wrong OIDC issuer, an untrusted CA, a broken signed entry
//! timestamp, a certificate expired at signing time and a certificate
//! without SCT refused. This shows the test Sigstore's material
//! (`common::sigstore`, `common::sct`) is real Sigstore material, not only
//! what regmirror expects.
//!
//! The same signature is written twice: in cosign's legacy layout (the
//! `.sig` tag regmirror reads) and as a Sigstore bundle
//! (`application/vnd.dev.sigstore.bundle+json;version=0.2`,
//! sigstore/protobuf-specs `sigstore_bundle.proto`). sigstore-python 4
//! requires an inclusion proof with a checkpoint in every bundle, so the
//! entry is given a one-leaf RFC 6962 tree: the root is the leaf hash
//! SHA-256(0x00 || body), the proof path is empty, and the checkpoint is a
//! note signed by the test log key. Its trust configuration is a
//! `ClientTrustConfig` (`sigstore_trustroot.proto`) holding the test
//! Sigstore's `trusted_root.json`.
//!
//! Also here: the SCT checks alone, through the binary (missing SCT, SCT of
//! an unknown CT log, SCT of another certificate, SCT dated outside its CT
//! log's validity, the only CT log's key unusable), and a trusted root
//! without CT logs, which regmirror
//! takes without requiring SCTs (and sigstore-python refuses).

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common;
use crate::policy::{config_dir, digest_at, image, only_image, push_sig, sync_with};
use crate::policy_keyless::{Setup, WORKFLOW, exact};
use common::Pusher;
use common::sct::Sct;
use common::sigstore::{
    GITHUB_ISSUER, KeylessCert, KeylessSignature, Tamper, TestSigstore, layer_of,
};

/// The image every refused case signs (the same digest each time).
const NEW: &str = "keyless-new";

/// A signature of the image `NEW` made with `cert`, logged at `T0 + time`.
fn signed(s: &Setup, cert: &KeylessCert, time: i64, tamper: Tamper) -> KeylessSignature {
    let digest = image(NEW).digest().to_string();
    s.sigstore
        .keyless_signature(cert, &s.reference(), &digest, time, tamper)
}

/// Moves `v1` at the source to the image `NEW` signed by `layer`, syncs,
/// and checks the image was copied and the target tag moved.
async fn copied(s: &Setup, layer: common::Blob) {
    let new = image(NEW);
    common::push(&s.src, "app", "v1", new.clone())
        .await
        .unwrap();
    push_sig(
        &Pusher::for_registry(&s.src),
        "app",
        new.digest(),
        vec![layer],
    )
    .await;
    let (code, report, stderr) = sync_with(&s.config, &s.text).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(only_image(&report)["result"], "copied", "{report:#}");
    assert_eq!(
        digest_at(&s.dst, "app", "v1").await.as_deref(),
        Some(new.digest())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_a_valid_sct_is_rejected() {
    let s = Setup::mirrored(&exact()).await;
    for (sct, says) in [
        (Sct::Missing, "carries no signed certificate timestamp"),
        (Sct::UnknownLog, "which the trusted root does not list"),
        (
            Sct::OtherCertificate,
            "it was issued for another certificate",
        ),
    ] {
        let cert = s.sigstore.issue_with_sct(WORKFLOW, GITHUB_ISSUER, 0, sct);
        let sig = signed(&s, &cert, 60, Tamper::None);
        s.held_back(|_| layer_of(&cert, &sig), "untrusted_certificate", says)
            .await;
    }
    // A valid SCT, dated after its CT log's validity ended.
    let mut root = s.sigstore.trusted_root();
    root["ctlogs"][0]["publicKey"]["validFor"]["end"] = json!("2023-12-31T00:00:00Z");
    let path = config_dir(&s.config).join("trusted_root.json");
    std::fs::write(&path, root.to_string()).unwrap();
    let cert = s.sigstore.issue(WORKFLOW, GITHUB_ISSUER, 0);
    let sig = signed(&s, &cert, 60, Tamper::None);
    s.held_back(
        |_| layer_of(&cert, &sig),
        "untrusted_certificate",
        "is dated when that CT log was not valid",
    )
    .await;
    // The only CT log's key cannot be used: SCTs are still required.
    let mut root = s.sigstore.trusted_root();
    root["ctlogs"][0]["publicKey"]["rawBytes"] = json!("AAAA");
    std::fs::write(&path, root.to_string()).unwrap();
    s.held_back(
        |_| layer_of(&cert, &sig),
        "untrusted_certificate",
        "ctlogs[0].publicKey: its public key cannot be read",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_root_without_ct_logs_does_not_require_scts() {
    let s = Setup::mirrored(&exact()).await;
    let mut root = s.sigstore.trusted_root();
    root["ctlogs"] = json!([]);
    let path = config_dir(&s.config).join("trusted_root.json");
    std::fs::write(&path, root.to_string()).unwrap();
    let cert = s
        .sigstore
        .issue_with_sct(WORKFLOW, GITHUB_ISSUER, 0, Sct::Missing);
    let sig = signed(&s, &cert, 60, Tamper::None);
    copied(&s, layer_of(&cert, &sig)).await;
    // sigstore-python does not take a trusted root without CT logs at all.
    if let Some(tool) = sigstore_python() {
        let dir = tempfile::tempdir().unwrap();
        let (accepted, said) = sigstore_verify(tool, dir.path(), (&s.sigstore, root), &cert, &sig);
        assert!(
            !accepted,
            "sigstore-python accepted a trusted root without CT logs: {said}"
        );
        assert!(
            said.contains("CTFE keys not found in trusted root"),
            "sigstore-python said {said}"
        );
    }
}

/// The `sigstore` command, or `None` (after saying so) when it is not
/// installed outside CI; in CI (`CI` set) a missing one fails the test.
pub(crate) fn sigstore_python() -> Option<&'static str> {
    let found = Command::new("sigstore")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("sigstore");
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "sigstore-python (the `sigstore` command) is missing in CI: scripts/test.sh installs it"
    );
    eprintln!("skipped: the `sigstore` command is not installed (pip install sigstore==4.5.1)");
    None
}

/// The Sigstore bundle (v0.2) of `sig` by `cert`, logged in `sigstore`'s
/// log as the only leaf of a one-leaf tree.
fn bundle(sigstore: &TestSigstore, cert: &KeylessCert, sig: &KeylessSignature) -> Value {
    use sha2::Digest as _;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let e = &sig.entry;
    let body = base64::engine::general_purpose::STANDARD
        .decode(&e.body)
        .unwrap();
    let leaf_hash = sha2::Sha256::digest([&[0u8][..], &body].concat());
    json!({
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "verificationMaterial": {
            "x509CertificateChain": {"certificates": [{"rawBytes": b64(&cert.der)}]},
            "tlogEntries": [{
                "logIndex": e.log_index.to_string(),
                "logId": {"keyId": b64(&e.log_id)},
                "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"},
                "integratedTime": e.integrated_time.to_string(),
                "inclusionPromise": {"signedEntryTimestamp": b64(&e.set)},
                "inclusionProof": {
                    "logIndex": "0",
                    "rootHash": b64(&leaf_hash),
                    "treeSize": "1",
                    "hashes": [],
                    "checkpoint": {"envelope": sigstore.checkpoint(1, &leaf_hash)}
                },
                "canonicalizedBody": e.body
            }]
        },
        "messageSignature": {
            "messageDigest": {
                "algorithm": "SHA2_256",
                "digest": b64(&sha2::Sha256::digest(&sig.payload))
            },
            "signature": b64(&sig.signature)
        }
    })
}

/// The client trust configuration of `trusted_root`, with a signing
/// configuration naming no service (verification only).
fn trust_config(trusted_root: Value) -> Value {
    json!({
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": trusted_root,
        "signingConfig": {
            "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
            "caUrls": [], "oidcUrls": [], "rekorTlogUrls": [], "tsaUrls": [],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaConfig": {"selector": "ANY"}
        }
    })
}

/// Runs `sigstore verify identity --offline` on `sig` (logged in
/// `sigstore`'s log) for `WORKFLOW` from GitHub Actions, trusting
/// `trusted_root`: whether it accepted, and what it said.
fn sigstore_verify(
    tool: &str,
    dir: &Path,
    (sigstore, trusted_root): (&TestSigstore, Value),
    cert: &KeylessCert,
    sig: &KeylessSignature,
) -> (bool, String) {
    let bundle = bundle(sigstore, cert, sig);
    verify_bundle(tool, dir, trusted_root, &bundle, &sig.payload)
}

/// Runs `sigstore verify identity --offline` on `bundle` for `artifact`
/// (its bytes), expecting `WORKFLOW` from GitHub Actions and trusting
/// `trusted_root`, with its files in `dir`: whether it accepted, and what
/// it said (on one line).
pub(crate) fn verify_bundle(
    tool: &str,
    dir: &Path,
    trusted_root: Value,
    bundle: &Value,
    artifact: &[u8],
) -> (bool, String) {
    let (payload, bundle_path, config) = (
        dir.join("payload.json"),
        dir.join("payload.sigstore.json"),
        dir.join("trust_config.json"),
    );
    std::fs::write(&payload, artifact).unwrap();
    std::fs::write(&bundle_path, bundle.to_string()).unwrap();
    std::fs::write(&config, trust_config(trusted_root).to_string()).unwrap();
    let out = Command::new(tool)
        .arg("--trust-config")
        .arg(&config)
        .args(["verify", "identity", "--offline", "--bundle"])
        .arg(&bundle_path)
        .args([
            "--cert-identity",
            WORKFLOW,
            "--cert-oidc-issuer",
            GITHUB_ISSUER,
        ])
        .arg(&payload)
        .env("HOME", dir)
        .env("COLUMNS", "1000")
        .output()
        .expect("running sigstore");
    // Rich wraps its lines at the terminal's width: one line per message.
    let said = format!(
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .split_whitespace()
    .collect::<Vec<_>>()
    .join(" ");
    (out.status.success(), said)
}

/// A signature both verifiers must refuse: its certificate, when it was
/// logged (seconds after `T0`), what is broken in its log entry, and what
/// each verifier says (regmirror's rejection reason and words, then
/// sigstore-python's words).
struct Refused {
    case: &'static str,
    cert: KeylessCert,
    time: i64,
    tamper: Tamper,
    reason: &'static str,
    says: &'static str,
    python_says: &'static str,
}

impl Refused {
    fn new(
        case: &'static str,
        cert: KeylessCert,
        (time, tamper): (i64, Tamper),
        reason: &'static str,
        says: &'static str,
        python_says: &'static str,
    ) -> Refused {
        Refused {
            case,
            cert,
            time,
            tamper,
            reason,
            says,
            python_says,
        }
    }
}

/// The cases both verifiers must refuse, with certificates of `s`'s test
/// Sigstore (and of `rogue`, another CA).
fn refused_cases(s: &Setup, rogue: &TestSigstore) -> Vec<Refused> {
    let attacker = "https://github.com/attacker/app/.github/workflows/release.yaml@refs/heads/main";
    let issue = |san: &str, issuer: &str| s.sigstore.issue(san, issuer, 0);
    let with_sct = |sct: Sct| s.sigstore.issue_with_sct(WORKFLOW, GITHUB_ISSUER, 0, sct);
    let case = Refused::new;
    let ok = (60, Tamper::None);
    let sct_failed = "failed to verify SCT on signing certificate: SCT verify failed";
    vec![
        case(
            "another identity",
            issue(attacker, GITHUB_ISSUER),
            ok,
            "identity_mismatch",
            "attacker",
            "Certificate's SANs do not match",
        ),
        case(
            "another OIDC issuer",
            issue(WORKFLOW, "https://accounts.google.com"),
            ok,
            "identity_mismatch",
            "issuer https://accounts.google.com",
            "Certificate's OIDCIssuer does not match (got 'https://accounts.google.com'",
        ),
        case(
            "an untrusted CA",
            rogue.issue(WORKFLOW, GITHUB_ISSUER, 0),
            ok,
            "untrusted_certificate",
            "not issued by a certificate authority of the trusted root",
            "failed to build timestamp certificate chain: validation failed: candidates exhausted",
        ),
        case(
            "a broken signed entry timestamp",
            issue(WORKFLOW, GITHUB_ISSUER),
            (60, Tamper::Set),
            "log_proof_invalid",
            "signed entry timestamp does not verify",
            "SET: invalid inclusion promise",
        ),
        case(
            "a certificate expired at signing time",
            issue(WORKFLOW, GITHUB_ISSUER),
            (3600, Tamper::None),
            "certificate_expired",
            "its certificate is valid from",
            "cert is not valid at validation time",
        ),
        case(
            "a certificate without SCT",
            with_sct(Sct::Missing),
            ok,
            "untrusted_certificate",
            "carries no signed certificate timestamp",
            "Certificate does not contain a signed certificate timestamp extension",
        ),
        case(
            "an SCT of an unknown CT log",
            with_sct(Sct::UnknownLog),
            ok,
            "untrusted_certificate",
            "which the trusted root does not list",
            sct_failed,
        ),
        case(
            "an SCT of another certificate",
            with_sct(Sct::OtherCertificate),
            ok,
            "untrusted_certificate",
            "it was issued for another certificate",
            sct_failed,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstore_python_and_regmirror_agree_on_keyless_signatures() {
    let Some(tool) = sigstore_python() else {
        return;
    };
    let s = Setup::mirrored(&exact()).await;
    let dir = tempfile::tempdir().unwrap();
    let verify = |cert: &KeylessCert, sig: &KeylessSignature| {
        sigstore_verify(
            tool,
            dir.path(),
            (&s.sigstore, s.sigstore.trusted_root()),
            cert,
            sig,
        )
    };
    for c in refused_cases(&s, &TestSigstore::new("rogue")) {
        let sig = signed(&s, &c.cert, c.time, c.tamper);
        let (accepted, said) = verify(&c.cert, &sig);
        assert!(!accepted, "sigstore-python accepted {}: {said}", c.case);
        assert!(
            said.contains(c.python_says),
            "{}: sigstore-python said {said}",
            c.case
        );
        s.held_back(|_| layer_of(&c.cert, &sig), c.reason, c.says)
            .await;
    }

    // The correct signature: accepted by both, and the tag moves.
    let cert = s.sigstore.issue(WORKFLOW, GITHUB_ISSUER, 0);
    let sig = signed(&s, &cert, 60, Tamper::None);
    let (accepted, said) = verify(&cert, &sig);
    assert!(
        accepted,
        "sigstore-python refused the correct signature: {said}"
    );
    copied(&s, layer_of(&cert, &sig)).await;
}
