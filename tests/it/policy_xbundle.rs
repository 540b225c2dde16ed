//! Sigstore bundles (v0.3, as `cosign sign --new-bundle-format` attaches
//! them) checked twice: the SAME bundle is attached as a referrer and
//! judged by `regmirror` through a mirror's signature policy, and given to
//! an independent Sigstore verifier, sigstore-python's `sigstore verify
//! identity --offline` (PyPI `sigstore` 4.5.1, installed by
//! scripts/test.sh), with the image manifest's bytes as the artifact: a
//! `messageSignature` bundle's `messageDigest` is their SHA-256, a DSSE
//! bundle's in-toto subject is the image digest.
//!
//! Both must accept the correct bundle of each kind and refuse each broken
//! one the test Sigstore can make (`common::sigstore_bundle`): another
//! identity, an untrusted CA, a bundle for another image, a tampered
//! inclusion proof sibling, a checkpoint signed by another key, a
//! checkpoint of another tree, a replayed log entry and an entry without
//! signed entry timestamp. The test CA and log are used because no real
//! Fulcio or Rekor is reachable offline and only a test log can make
//! broken proofs and checkpoints.

use crate::common;
use crate::policy::{digest_at, only_image, sync_with};
use crate::policy_bundle::{Kind, Setup};
use crate::policy_keyless::WORKFLOW;
use crate::policy_xcheck::{sigstore_python, verify_bundle};
use common::sigstore::{GITHUB_ISSUER, KeylessCert, TestSigstore};
use common::sigstore_bundle::Broken;

/// A bundle both verifiers must refuse: its certificate, what is broken,
/// whether it signs the mirror's previous image instead of the new one,
/// regmirror's rejection reason and words, and sigstore-python's words for
/// a `messageSignature` bundle and for a DSSE one.
struct Refused {
    seed: &'static str,
    cert: KeylessCert,
    broken: Broken,
    other_image: bool,
    reason: &'static str,
    says: &'static str,
    python_says: [&'static str; 2],
}

impl Refused {
    fn new(
        seed: &'static str,
        cert: KeylessCert,
        broken: Broken,
        reason: &'static str,
        says: &'static str,
        python_says: [&'static str; 2],
    ) -> Refused {
        Refused {
            seed,
            cert,
            broken,
            other_image: false,
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
    let good = || s.sigstore.issue(WORKFLOW, GITHUB_ISSUER, 0);
    let case = Refused::new;
    let both = |said| [said; 2];
    let mut cases = vec![
        case(
            "x-identity",
            s.sigstore.issue(attacker, GITHUB_ISSUER, 0),
            Broken::Nothing,
            "identity_mismatch",
            "attacker",
            both("Certificate's SANs do not match"),
        ),
        case(
            "x-ca",
            rogue.issue(WORKFLOW, GITHUB_ISSUER, 0),
            Broken::Nothing,
            "untrusted_certificate",
            "not issued by a certificate authority of the trusted root",
            both(
                "failed to build timestamp certificate chain: validation failed: candidates exhausted",
            ),
        ),
        Refused {
            other_image: true,
            ..case(
                "x-digest",
                good(),
                Broken::Nothing,
                "digest_mismatch",
                "",
                [
                    "Bundle message digest mismatch",
                    "in-toto statement has no subject for digest",
                ],
            )
        },
    ];
    cases.extend(log_proof_cases(s));
    cases
}

/// The cases whose log entry is broken, signed by `s`'s trusted identity.
fn log_proof_cases(s: &Setup) -> Vec<Refused> {
    let both = |said| [said; 2];
    let replayed = [
        "transparency log entry is inconsistent with other materials",
        "log entry signatures do not match bundle",
    ];
    let log_proofs = [
        (
            "x-sibling",
            Broken::ProofSibling,
            "does not lead to the tree's root hash",
            both("inclusion proof contains invalid root hash"),
        ),
        (
            "x-cpkey",
            Broken::CheckpointKey,
            "checkpoint is not signed by the key of the log",
            both("checkpoint: Signature not found for log ID"),
        ),
        (
            // A signed note's key name has no spaces
            // (golang.org/x/mod/sumdb/note): the right signature under the
            // name `rekor.test - 1193050959916656506` is no signature.
            "x-spaced",
            Broken::SpacedKeyName,
            "checkpoint is not signed by the key of the log",
            both("checkpoint: Signature not found for log ID"),
        ),
        (
            "x-cproot",
            Broken::CheckpointRoot,
            "checkpoint is for another tree",
            both("Inclusion proof contains invalid root hash signature"),
        ),
        (
            "x-replay",
            Broken::ReplayedBody,
            "records another signature",
            replayed,
        ),
        (
            "x-proofonly",
            Broken::ProofOnly,
            "no signed entry timestamp",
            both("bundle must contain an inclusion promise or signed timestamp(s)"),
        ),
    ];
    log_proofs
        .into_iter()
        .map(|(seed, broken, says, python_says)| {
            let cert = s.sigstore.issue(WORKFLOW, GITHUB_ISSUER, 0);
            Refused::new(seed, cert, broken, "log_proof_invalid", says, python_says)
        })
        .collect()
}

/// Each refused bundle, then a correct one, judged by both verifiers.
async fn both_judge(referrers_api: bool, kind: Kind) {
    let Some(tool) = sigstore_python() else {
        return;
    };
    let s = Setup::mirrored(referrers_api, kind).await;
    let dir = tempfile::tempdir().unwrap();
    let python = |bundle: &serde_json::Value, manifest: &[u8]| {
        verify_bundle(
            tool,
            dir.path(),
            s.sigstore.trusted_root(),
            bundle,
            manifest,
        )
    };
    let which = usize::from(kind == Kind::Dsse);
    for c in refused_cases(&s, &TestSigstore::new("rogue")) {
        let naming = c.other_image.then_some(s.old_digest.as_str());
        let (img, bundle) = s.push_with(c.seed, &c.cert, c.broken, naming).await;
        let (accepted, said) = python(&bundle, &img.manifest.bytes);
        assert!(!accepted, "sigstore-python accepted {}: {said}", c.seed);
        assert!(
            said.contains(c.python_says[which]),
            "{}: sigstore-python said {said}",
            c.seed
        );
        let says = if c.other_image { &s.old_digest } else { c.says };
        s.held_back(&img, c.reason, says).await;
    }

    // The correct bundle: accepted by both, and the tag moves.
    let cert = s.sigstore.issue(WORKFLOW, GITHUB_ISSUER, 0);
    let (img, bundle) = s.push_with("x-good", &cert, Broken::Nothing, None).await;
    let (accepted, said) = python(&bundle, &img.manifest.bytes);
    assert!(
        accepted,
        "sigstore-python refused the correct bundle: {said}"
    );
    copied(&s, img.digest()).await;
}

/// Syncs `s`'s mirror and checks its image, `digest`, was copied and the
/// target tag moved to it.
async fn copied(s: &Setup, digest: &str) {
    let (code, report, stderr) = sync_with(&s.config, &s.text).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(only_image(&report)["result"], "copied", "{report:#}");
    assert_eq!(
        digest_at(&s.dst, "app", "v1").await.as_deref(),
        Some(digest)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstore_python_and_regmirror_agree_on_message_signature_bundles() {
    both_judge(true, Kind::Message).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstore_python_and_regmirror_agree_on_dsse_bundles() {
    both_judge(false, Kind::Dsse).await;
}
