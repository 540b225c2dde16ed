//! Keyless (Sigstore) signatures in a mirror's signature policy, through
//! the `regmirror` binary against real registries: a signature counts when
//! its Fulcio-like certificate chains to the trusted root, names the
//! policy's identity and issuer, and its transparency log entry checks
//! offline against the trusted root's log key; otherwise the image is
//! rejected with the reason and its target tag stays where it was.
//!
//! The CA, the log key, the `trusted_root.json` and the signatures are made
//! in the test by `common::sigstore` (rcgen, ring): no real Fulcio or Rekor
//! is reachable offline, and a test CA is the only way to make certificates
//! for chosen identities, times and failures.

use std::path::Path;

use serde_json::Value;

use crate::common;
use crate::policy::{config_dir, digest_at, image, only_image, push_sig, sync_with};
use crate::sync_run::ConfigFile;
use common::sigstore::{GITHUB_ISSUER, KeylessCert, Tamper, TestSigstore};
use common::{Blob, Pusher, RegistryOptions, TestRegistry, push, regmirror};

/// Syncs the mirror of `config` (`text`) and checks its one image,
/// `digest`, is rejected for `reason` with `says` and the digest in its
/// error, the report follows its schema, and the target tag `app:v1` at
/// `dst` is still at `old_digest`.
pub(crate) async fn held_back_at(
    config: &ConfigFile,
    text: &str,
    dst: &TestRegistry,
    old_digest: &str,
    digest: &str,
    reason: &str,
    says: &str,
) {
    let (code, report, stderr) = sync_with(config, text).await;
    let got = only_image(&report);
    assert_eq!(code, 1, "{reason}: {report:#}\n{stderr}");
    assert_eq!(got["result"], "rejected", "{report:#}");
    assert_eq!(got["rejection"], reason, "{report:#}");
    let error = got["error"].as_str().unwrap();
    assert!(
        error.contains(says) && error.contains(digest),
        "{reason}: {error}"
    );
    let problems = crate::sync_run::schema_problems(&report);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        digest_at(dst, "app", "v1").await.as_deref(),
        Some(old_digest),
        "{reason}: the target tag did not move"
    );
}

/// The identity the tests' policies trust: a GitHub Actions release workflow.
pub(crate) const WORKFLOW: &str =
    "https://github.com/example/app/.github/workflows/release.yaml@refs/heads/main";

/// Writes `trusted_root.json` of `sigstore` into `dir`.
fn write_root(dir: &Path, sigstore: &TestSigstore) {
    std::fs::write(
        dir.join("trusted_root.json"),
        serde_json::to_vec_pretty(&sigstore.trusted_root()).unwrap(),
    )
    .unwrap();
}

/// One mirror of `src/app:v1` into `dst/app` trusting `WORKFLOW` from GitHub
/// Actions (`identity_line`: `identity = …` or `identity_regexp = …`).
fn keyless_config(src: &TestRegistry, dst: &TestRegistry, identity_line: &str) -> String {
    format!(
        "[[mirror]]\nname = \"keyless\"\nsource = \"{}/app:v1\"\ntarget = \"{}/app\"\n\
         [mirror.policy]\ntrusted_root = \"trusted_root.json\"\n\
         [[mirror.policy.identities]]\nissuer = \"{GITHUB_ISSUER}\"\n{identity_line}\n",
        src.host(),
        dst.host()
    )
}

pub(crate) fn exact() -> String {
    format!("identity = \"{WORKFLOW}\"")
}

/// Pushes `layer` as the `.sig` of `digest` in `src/app`.
async fn sign_with(src: &TestRegistry, digest: &str, layer: Blob) {
    push_sig(&Pusher::for_registry(src), "app", digest, vec![layer]).await;
}

/// The two registries, a config beside the trusted root of a new test
/// Sigstore, and an image `v1` signed correctly and mirrored.
pub(crate) struct Setup {
    pub(crate) src: TestRegistry,
    pub(crate) dst: TestRegistry,
    pub(crate) sigstore: TestSigstore,
    pub(crate) config: ConfigFile,
    pub(crate) text: String,
    pub(crate) old_digest: String,
}

impl Setup {
    pub(crate) async fn mirrored(identity_line: &str) -> Setup {
        let src = TestRegistry::start(RegistryOptions::anonymous()).await;
        let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
        let sigstore = TestSigstore::new("trusted");
        let config = ConfigFile::new();
        write_root(&config_dir(&config), &sigstore);
        let text = keyless_config(&src, &dst, identity_line);
        let old = image("keyless-old");
        push(&src, "app", "v1", old.clone()).await.unwrap();
        let cert = sigstore.issue(WORKFLOW, GITHUB_ISSUER, 0);
        let layer = sigstore.legacy_layer(&cert, &docker_ref(&src), old.digest(), 60, Tamper::None);
        sign_with(&src, old.digest(), layer).await;
        let (code, report, stderr) = sync_with(&config, &text).await;
        assert_eq!(code, 0, "{report:#}\n{stderr}");
        assert_eq!(only_image(&report)["result"], "copied", "{report:#}");
        let old_digest = old.digest().to_string();
        assert_eq!(digest_at(&dst, "app", "v1").await, Some(old_digest.clone()));
        Setup {
            src,
            dst,
            sigstore,
            config,
            text,
            old_digest,
        }
    }

    /// Moves `v1` at the source to a new image signed by `layer_for(new
    /// digest)`, syncs, and checks the image is rejected for `reason` with
    /// `says` in its error, and the target tag did not move.
    pub(crate) async fn held_back(
        &self,
        layer_for: impl FnOnce(&str) -> Blob,
        reason: &str,
        says: &str,
    ) {
        let new = image("keyless-new");
        push(&self.src, "app", "v1", new.clone()).await.unwrap();
        sign_with(&self.src, new.digest(), layer_for(new.digest())).await;
        let (config, text) = (&self.config, self.text.as_str());
        held_back_at(
            config,
            text,
            &self.dst,
            &self.old_digest,
            new.digest(),
            reason,
            says,
        )
        .await;
    }

    pub(crate) fn reference(&self) -> String {
        docker_ref(&self.src)
    }
}

fn docker_ref(src: &TestRegistry) -> String {
    format!("{}/app", src.host())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_signature_by_another_identity_is_rejected() {
    let s = Setup::mirrored(&exact()).await;
    let other = "https://github.com/attacker/app/.github/workflows/release.yaml@refs/heads/main";
    let cert = s.sigstore.issue(other, GITHUB_ISSUER, 0);
    s.held_back(
        |d| {
            s.sigstore
                .legacy_layer(&cert, &s.reference(), d, 60, Tamper::None)
        },
        "identity_mismatch",
        "attacker",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_signature_from_another_oidc_issuer_is_rejected() {
    let s = Setup::mirrored(&exact()).await;
    let cert = s.sigstore.issue(WORKFLOW, "https://accounts.google.com", 0);
    s.held_back(
        |d| {
            s.sigstore
                .legacy_layer(&cert, &s.reference(), d, 60, Tamper::None)
        },
        "identity_mismatch",
        "issuer https://accounts.google.com",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_untrusted_ca_is_rejected() {
    let s = Setup::mirrored(&exact()).await;
    // Same identity, logged in the trusted log, but issued by another CA.
    let rogue = TestSigstore::new("rogue");
    let cert: KeylessCert = rogue.issue(WORKFLOW, GITHUB_ISSUER, 0);
    s.held_back(
        |d| {
            s.sigstore
                .legacy_layer(&cert, &s.reference(), d, 60, Tamper::None)
        },
        "untrusted_certificate",
        "not issued by a certificate authority of the trusted root",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_signed_entry_timestamp_is_rejected() {
    let s = Setup::mirrored(&exact()).await;
    let cert = s.sigstore.issue(WORKFLOW, GITHUB_ISSUER, 0);
    s.held_back(
        |d| {
            s.sigstore
                .legacy_layer(&cert, &s.reference(), d, 60, Tamper::Set)
        },
        "log_proof_invalid",
        "signed entry timestamp does not verify",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_entry_of_another_signature_is_rejected() {
    let s = Setup::mirrored(&exact()).await;
    let cert = s.sigstore.issue(WORKFLOW, GITHUB_ISSUER, 0);
    s.held_back(
        |d| {
            s.sigstore
                .legacy_layer(&cert, &s.reference(), d, 60, Tamper::ReplayedEntry)
        },
        "log_proof_invalid",
        "records another signature",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_logged_after_its_certificate_expired_is_rejected() {
    let s = Setup::mirrored(&exact()).await;
    let cert = s.sigstore.issue(WORKFLOW, GITHUB_ISSUER, 0);
    // Logged an hour after a ten-minute certificate.
    s.held_back(
        |d| {
            s.sigstore
                .legacy_layer(&cert, &s.reference(), d, 3600, Tamper::None)
        },
        "certificate_expired",
        "its certificate is valid from",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_signature_of_another_digest_is_rejected() {
    let s = Setup::mirrored(&exact()).await;
    let cert = s.sigstore.issue(WORKFLOW, GITHUB_ISSUER, 0);
    // The old image's genuine signature, put under the new image's .sig tag.
    let old = s.old_digest.clone();
    s.held_back(
        |_| {
            s.sigstore
                .legacy_layer(&cert, &s.reference(), &old, 60, Tamper::None)
        },
        "digest_mismatch",
        &old,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_regexp_and_an_email_identity_are_accepted() {
    // Setup::mirrored asserts the image signed by WORKFLOW was copied.
    let line = "identity_regexp = \"https://github\\\\.com/example/.*\"";
    let s = Setup::mirrored(line).await;
    // A Google service account (e-mail SAN), as registry.k8s.io signs.
    let text = s
        .text
        .replace(GITHUB_ISSUER, "https://accounts.google.com")
        .replace(
            line,
            "identity = \"krel-trust@k8s-releng-prod.iam.gserviceaccount.com\"",
        );
    let new = image("keyless-email");
    push(&s.src, "app", "v1", new.clone()).await.unwrap();
    let cert = s.sigstore.issue(
        "krel-trust@k8s-releng-prod.iam.gserviceaccount.com",
        "https://accounts.google.com",
        0,
    );
    let layer = s
        .sigstore
        .legacy_layer(&cert, &s.reference(), new.digest(), 30, Tamper::None);
    sign_with(&s.src, new.digest(), layer).await;
    let (code, report, stderr) = sync_with(&s.config, &text).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(only_image(&report)["result"], "copied", "{report:#}");
    assert_eq!(
        digest_at(&s.dst, "app", "v1").await.as_deref(),
        Some(new.digest())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_identities_count_together_under_require_all() {
    let s = Setup::mirrored(&exact()).await;
    let key = common::cosign::CosignKey::from_seed("keyless and key");
    let dir = config_dir(&s.config);
    std::fs::write(dir.join("key1.pub"), key.public_pem()).unwrap();
    let text = s.text.replace(
        "[mirror.policy]\n",
        "[mirror.policy]\nrequire = \"all\"\nkeys = [\"key1.pub\"]\n",
    );
    // The keyless signature alone is not enough with require = "all".
    let new = image("keyless-all");
    push(&s.src, "app", "v1", new.clone()).await.unwrap();
    let cert = s.sigstore.issue(WORKFLOW, GITHUB_ISSUER, 0);
    let keyless = s
        .sigstore
        .legacy_layer(&cert, &s.reference(), new.digest(), 60, Tamper::None);
    sign_with(&s.src, new.digest(), keyless.clone()).await;
    let (code, report, _) = sync_with(&s.config, &text).await;
    let img = only_image(&report);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(img["rejection"], "wrong_key", "{report:#}");
    assert!(
        img["error"].as_str().unwrap().contains("key1.pub"),
        "{report:#}"
    );
    assert_eq!(
        digest_at(&s.dst, "app", "v1").await,
        Some(s.old_digest.clone())
    );
    // Both: the key's and the identity's signatures, in one .sig manifest.
    let keyed = common::cosign::signature_layer(&key, &s.reference(), new.digest());
    push_sig(
        &Pusher::for_registry(&s.src),
        "app",
        new.digest(),
        vec![keyless, keyed],
    )
    .await;
    let (code, report, stderr) = sync_with(&s.config, &text).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(
        digest_at(&s.dst, "app", "v1").await.as_deref(),
        Some(new.digest())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keyless_settings_are_config_errors() {
    let config = ConfigFile::new();
    let dir = config_dir(&config);
    write_root(&dir, &TestSigstore::new("config"));
    let mut no_logs = TestSigstore::new("no logs").trusted_root();
    no_logs["tlogs"] = Value::Array(Vec::new());
    std::fs::write(dir.join("no_logs.json"), no_logs.to_string()).unwrap();
    let identity = format!("[[mirror.policy.identities]]\nissuer = \"{GITHUB_ISSUER}\"\n");
    for (policy, says, key) in [
        (
            format!("trusted_root = \"trusted_root.json\"\n{identity}identity_regexp = \"(\"\n"),
            "is not a regular expression",
            "mirror[1].policy.identities[1]",
        ),
        (
            format!("trusted_root = \"missing.json\"\n{identity}identity = \"x\"\n"),
            "cannot read the trusted root missing.json",
            "mirror[1].policy.trusted_root",
        ),
        (
            format!("trusted_root = \"no_logs.json\"\n{identity}identity = \"x\"\n"),
            "lists no transparency log",
            "mirror[1].policy.trusted_root",
        ),
        (
            format!("{identity}identity = \"x\"\n"),
            "need a trusted root",
            "mirror[1].policy.identities",
        ),
        (
            format!("trusted_root = \"trusted_root.json\"\n{identity}"),
            "set exactly one of identity",
            "mirror[1].policy.identities[1]",
        ),
    ] {
        let path = config.write(&format!(
            "[[mirror]]\nsource = \"127.0.0.1:1/app:v1\"\ntarget = \"127.0.0.1:2/app\"\n\
             [mirror.policy]\n{policy}"
        ));
        let run = regmirror(&["sync", "--config", path.to_str().unwrap()]).await;
        assert_eq!(run.code, 2, "{policy}: {}", run.stderr);
        assert!(
            run.stderr.contains(says) && run.stderr.contains(key),
            "{policy}: {}",
            run.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_verify_takes_cosigns_keyless_flags() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let sigstore = TestSigstore::new("import");
    let dir = tempfile::tempdir().unwrap();
    write_root(dir.path(), &sigstore);
    let root = dir.path().join("trusted_root.json");
    let img = image("keyless-import");
    push(&src, "app", "v1", img.clone()).await.unwrap();
    let cert = sigstore.issue(WORKFLOW, GITHUB_ISSUER, 0);
    let layer = sigstore.legacy_layer(&cert, &docker_ref(&src), img.digest(), 60, Tamper::None);
    sign_with(&src, img.digest(), layer).await;
    let (source, target) = (
        format!("{}/app:v1", src.host()),
        format!("{}/app:v1", dst.host()),
    );
    let run_with = |identity_flag: &'static str, identity: &'static str| {
        let (source, target, root) = (source.clone(), target.clone(), root.clone());
        async move {
            regmirror(&[
                "import",
                &source,
                &target,
                "--output",
                "json",
                "--verify",
                "--certificate-oidc-issuer",
                GITHUB_ISSUER,
                identity_flag,
                identity,
                "--trusted-root",
                root.to_str().unwrap(),
            ])
            .await
        }
    };
    let run = run_with("--certificate-identity", "https://github.com/example/other").await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).expect("a JSON report");
    assert_eq!(
        report["images"][0]["rejection"], "identity_mismatch",
        "{report:#}"
    );
    assert_eq!(digest_at(&dst, "app", "v1").await, None, "nothing written");

    let run = run_with(
        "--certificate-identity-regexp",
        "https://github.com/example/app/.*",
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        digest_at(&dst, "app", "v1").await.as_deref(),
        Some(img.digest())
    );
}

/// A key mounted from a Kubernetes Secret is rotated in place: `serve`
/// reads it again at the next run (no restart, no reload), and a key file
/// that disappears fails the runs with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_file_takes_effect_in_serve_at_the_next_run() {
    use common::cosign::CosignKey;
    use common::serve::{Daemon, free_port};
    use std::time::Duration;
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (old_key, new_key) = (
        CosignKey::from_seed("rotation old"),
        CosignKey::from_seed("rotation new"),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cosign.pub"), old_key.public_pem()).unwrap();
    let img = image("keyless-rotation");
    push(&src, "app", "v1", img.clone()).await.unwrap();
    let layer = common::cosign::signature_layer(&new_key, &docker_ref(&src), img.digest());
    sign_with(&src, img.digest(), layer).await;
    let port = free_port();
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[[mirror]]\nname = \"app\"\n\
             source = \"{}/app:v1\"\ntarget = \"{}/app\"\nschedule = \"* * * * * *\"\n\
             [mirror.policy]\nkeys = [\"cosign.pub\"]\n",
            src.host(),
            dst.host()
        ),
    )
    .unwrap();
    let d = Daemon::start(&config, dir.path(), port);
    d.wait_for(
        "a run rejecting the image",
        Duration::from_secs(30),
        async || d.log().contains("wrong_key") || d.log().contains("none made by cosign.pub"),
    )
    .await;
    assert_eq!(digest_at(&dst, "app", "v1").await, None, "held back");

    // The Secret is updated: the next run trusts the new key.
    std::fs::write(dir.path().join("cosign.pub"), new_key.public_pem()).unwrap();
    d.wait_for("the image mirrored", Duration::from_secs(30), async || {
        digest_at(&dst, "app", "v1").await.as_deref() == Some(img.digest())
    })
    .await;

    // The key file is gone: runs fail naming it, nothing is let through.
    std::fs::remove_file(dir.path().join("cosign.pub")).unwrap();
    let other = image("keyless-rotation-unsigned");
    push(&src, "app", "v1", other.clone()).await.unwrap();
    d.wait_for(
        "a run failing on the missing key",
        Duration::from_secs(30),
        async || {
            d.log()
                .contains("public key cosign.pub cannot be read any more")
        },
    )
    .await;
    assert_eq!(
        digest_at(&dst, "app", "v1").await.as_deref(),
        Some(img.digest())
    );
}
