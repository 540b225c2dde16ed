//! Sigstore bundles attached as referrers (`cosign sign
//! --new-bundle-format`) in a mirror's signature policy, through the
//! `regmirror` binary against real registries: ferro-oci-server lists them
//! through the referrers API, distribution through the fallback tag. A
//! bundle counts when its certificate chains to the trusted root and names
//! the policy's identity, what it signs is the image, and its log entry is
//! proven offline (SET, inclusion proof, checkpoint); otherwise the image
//! is rejected with the reason and its target tag stays where it was.
//!
//! The CA, the log key, the Merkle tree and the bundles are made in the
//! test (`common::sigstore`, `common::sigstore_bundle`): no real Fulcio or
//! Rekor is reachable offline, and only a test CA and log can make the
//! broken proofs and checkpoints these tests need.

use serde_json::Value;

use crate::common;
use crate::policy::{config_dir, digest_at, image, only_image, sync_with};
use crate::policy_keyless::held_back_at;
use crate::sync_run::ConfigFile;
use common::ferro::FerroRegistry;
use common::sigstore::{GITHUB_ISSUER, TestSigstore};
use common::sigstore_bundle::{Broken, Make, dsse_bundle, message_bundle, push_bundle};
use common::{Image, Node, Pusher, RegistryOptions, TestRegistry, regmirror};

/// The identity the tests' policies trust.
const WORKFLOW: &str =
    "https://github.com/example/app/.github/workflows/release.yaml@refs/heads/main";

/// Which content the bundles hold.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Message,
    Dsse,
}

/// A source registry (ferro: referrers API, or distribution: fallback
/// tag), a target, the trusted test Sigstore, a config trusting
/// `WORKFLOW`, and `v1` mirrored after a correct bundle was accepted.
pub(crate) struct Setup {
    _ferro: Option<FerroRegistry>,
    _src: Option<TestRegistry>,
    src_host: String,
    pusher: Pusher,
    pub(crate) dst: TestRegistry,
    pub(crate) sigstore: TestSigstore,
    pub(crate) config: ConfigFile,
    pub(crate) text: String,
    pub(crate) old_digest: String,
    kind: Kind,
}

impl Setup {
    pub(crate) async fn mirrored(referrers_api: bool, kind: Kind) -> Setup {
        let (ferro, src, src_host, pusher) = if referrers_api {
            let f = FerroRegistry::start().await;
            let (host, pusher) = (f.host(), f.pusher());
            (Some(f), None, host, pusher)
        } else {
            let r = TestRegistry::start(RegistryOptions::anonymous()).await;
            let (host, pusher) = (r.host(), Pusher::for_registry(&r));
            (None, Some(r), host, pusher)
        };
        let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
        let sigstore = TestSigstore::new("trusted");
        let config = ConfigFile::new();
        std::fs::write(
            config_dir(&config).join("trusted_root.json"),
            sigstore.trusted_root().to_string(),
        )
        .unwrap();
        let text = format!(
            "[[mirror]]\nname = \"bundles\"\nsource = \"{src_host}/app:v1\"\n\
             target = \"{}/app\"\n[mirror.policy]\ntrusted_root = \"trusted_root.json\"\n\
             [[mirror.policy.identities]]\nissuer = \"{GITHUB_ISSUER}\"\nidentity = \"{WORKFLOW}\"\n",
            dst.host()
        );
        let mut s = Setup {
            _ferro: ferro,
            _src: src,
            src_host,
            pusher,
            dst,
            sigstore,
            config,
            text,
            old_digest: String::new(),
            kind,
        };
        let old = s.push_signed("bundle-old", Broken::Nothing, None).await;
        let (code, report, stderr) = sync_with(&s.config, &s.text).await;
        assert_eq!(code, 0, "{report:#}\n{stderr}");
        assert_eq!(only_image(&report)["result"], "copied", "{report:#}");
        s.old_digest = old.digest().to_string();
        assert_eq!(
            digest_at(&s.dst, "app", "v1").await,
            Some(s.old_digest.clone())
        );
        s
    }

    /// Pushes a new image as `v1` with a bundle signed by `WORKFLOW` in the
    /// trusted Sigstore (`broken` as asked); `naming`: the digest the
    /// bundle signs instead of the image's.
    async fn push_signed(&self, seed: &str, broken: Broken, naming: Option<&str>) -> Image {
        let cert = self.sigstore.issue(WORKFLOW, GITHUB_ISSUER, 0);
        self.push_with(seed, &cert, broken, naming).await.0
    }

    /// Pushes a new image as `v1` with a bundle signed by `cert`
    /// (`broken` as asked, naming the image or the digest `naming`):
    /// the image and the bundle.
    pub(crate) async fn push_with(
        &self,
        seed: &str,
        cert: &common::sigstore::KeylessCert,
        broken: Broken,
        naming: Option<&str>,
    ) -> (Image, Value) {
        let img = image(seed);
        self.pusher
            .push_node("app", &Node::Image(img.clone()), Some("v1"))
            .await
            .unwrap();
        let m = Make {
            log: &self.sigstore,
            cert,
            time: 60,
            broken,
        };
        let bundle = match (self.kind, naming) {
            (Kind::Message, None) => message_bundle(&m, &img.manifest.bytes),
            (Kind::Message, Some(_)) => message_bundle(&m, &self.old_manifest()),
            (Kind::Dsse, named) => dsse_bundle(
                &m,
                &format!("{}/app", self.src_host),
                named.unwrap_or(img.digest()),
            ),
        };
        push_bundle(&self.pusher, "app", &img, &bundle).await;
        (img, bundle)
    }

    fn old_manifest(&self) -> Vec<u8> {
        image("bundle-old").manifest.bytes.to_vec()
    }

    /// Syncs `img` (just pushed as `v1`) and checks it is rejected for
    /// `reason` with `says` in its error, the target tag unmoved.
    pub(crate) async fn held_back(&self, img: &Image, reason: &str, says: &str) {
        let (config, text) = (&self.config, self.text.as_str());
        held_back_at(
            config,
            text,
            &self.dst,
            &self.old_digest,
            img.digest(),
            reason,
            says,
        )
        .await;
    }

    /// Each way a bundle can fail: pushed in turn as `v1`, each held back.
    async fn refusals(&self) {
        let other =
            "https://github.com/attacker/app/.github/workflows/release.yaml@refs/heads/main";
        let cert = self.sigstore.issue(other, GITHUB_ISSUER, 0);
        let (img, _) = self
            .push_with("b-identity", &cert, Broken::Nothing, None)
            .await;
        self.held_back(&img, "identity_mismatch", "attacker").await;

        let rogue = TestSigstore::new("rogue");
        let cert = rogue.issue(WORKFLOW, GITHUB_ISSUER, 0);
        let (img, _) = self.push_with("b-ca", &cert, Broken::Nothing, None).await;
        let says = "not issued by a certificate authority of the trusted root";
        self.held_back(&img, "untrusted_certificate", says).await;

        let old = self.old_digest.clone();
        let img = self
            .push_signed("b-digest", Broken::Nothing, Some(&old))
            .await;
        self.held_back(&img, "digest_mismatch", &old).await;

        for (seed, broken, says) in [
            (
                "b-sibling",
                Broken::ProofSibling,
                "does not lead to the tree's root hash",
            ),
            (
                "b-cpkey",
                Broken::CheckpointKey,
                "checkpoint is not signed by the key of the log",
            ),
            (
                "b-cproot",
                Broken::CheckpointRoot,
                "checkpoint is for another tree",
            ),
            (
                "b-replay",
                Broken::ReplayedBody,
                "records another signature",
            ),
            (
                "b-proofonly",
                Broken::ProofOnly,
                "no signed entry timestamp",
            ),
        ] {
            let img = self.push_signed(seed, broken, None).await;
            self.held_back(&img, "log_proof_invalid", says).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_signature_bundles_found_by_the_referrers_api_are_judged() {
    // Setup::mirrored asserts the correctly signed image was copied.
    let s = Setup::mirrored(true, Kind::Message).await;
    s.refusals().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsse_bundles_found_by_the_fallback_tag_are_judged() {
    let s = Setup::mirrored(false, Kind::Dsse).await;
    s.refusals().await;
    // A bundle over 1 MiB is not read.
    let img = s.push_signed("b-oversized", Broken::Oversized, None).await;
    s.held_back(&img, "wrong_key", "more than the 1048576 read")
        .await;
    // A correct bundle again: the tag moves.
    let img = s.push_signed("b-good-again", Broken::Nothing, None).await;
    let (code, report, stderr) = sync_with(&s.config, &s.text).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(
        digest_at(&s.dst, "app", "v1").await.as_deref(),
        Some(img.digest())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_verify_judges_bundles_of_both_kinds() {
    for (api, kind) in [(true, Kind::Dsse), (false, Kind::Message)] {
        let s = Setup::mirrored(api, kind).await;
        let img = s.push_signed("b-import", Broken::Nothing, None).await;
        let root = config_dir(&s.config).join("trusted_root.json");
        let run = |identity: &'static str, target: String| {
            let (source, root) = (format!("{}/app:v1", s.src_host), root.clone());
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
                    "--certificate-identity",
                    identity,
                    "--trusted-root",
                    root.to_str().unwrap(),
                ])
                .await
            }
        };
        let other = "https://github.com/example/other";
        let run_other = run(other, format!("{}/imported:v1", s.dst.host())).await;
        assert_eq!(
            run_other.code, 1,
            "{}\n{}",
            run_other.stdout, run_other.stderr
        );
        let report: Value = serde_json::from_str(&run_other.stdout).expect("a JSON report");
        assert_eq!(
            report["images"][0]["rejection"], "identity_mismatch",
            "{report:#}"
        );
        assert_eq!(
            digest_at(&s.dst, "imported", "v1").await,
            None,
            "nothing written"
        );
        let ok = run(WORKFLOW, format!("{}/imported:v1", s.dst.host())).await;
        assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);
        assert_eq!(
            digest_at(&s.dst, "imported", "v1").await.as_deref(),
            Some(img.digest())
        );
    }
}

/// A key-signed bundle (`publicKey` hint) counts for the policy's key that
/// verifies it, and only when its statement names the image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_signed_bundles_are_judged_by_the_policys_keys() {
    use common::cosign::CosignKey;
    use common::sigstore_bundle::key_dsse_bundle;
    let ferro = FerroRegistry::start().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (key, other_key) = (
        CosignKey::from_seed("bundle key"),
        CosignKey::from_seed("other"),
    );
    let config = ConfigFile::new();
    std::fs::write(config_dir(&config).join("cosign.pub"), key.public_pem()).unwrap();
    let text = format!(
        "[[mirror]]\nsource = \"{}/app:v1\"\ntarget = \"{}/app\"\n\
         [mirror.policy]\nkeys = [\"cosign.pub\"]\n",
        ferro.host(),
        dst.host()
    );
    let name = format!("{}/app", ferro.host());
    let pusher = ferro.pusher();
    let push = async |seed: &str, signer: &CosignKey, naming: Option<&str>| {
        let img = image(seed);
        pusher
            .push_node("app", &Node::Image(img.clone()), Some("v1"))
            .await
            .unwrap();
        let bundle = key_dsse_bundle(signer, &name, naming.unwrap_or(img.digest()));
        push_bundle(&pusher, "app", &img, &bundle).await;
        img
    };
    let good = push("key-bundle-good", &key, None).await;
    let (code, report, stderr) = sync_with(&config, &text).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(
        digest_at(&dst, "app", "v1").await.as_deref(),
        Some(good.digest())
    );
    for (seed, signer, naming, reason) in [
        ("key-bundle-other-key", &other_key, None, "wrong_key"),
        (
            "key-bundle-other-digest",
            &key,
            Some(good.digest()),
            "digest_mismatch",
        ),
    ] {
        let img = push(seed, signer, naming).await;
        let (code, report, _) = sync_with(&config, &text).await;
        let got = only_image(&report);
        assert_eq!(code, 1, "{seed}: {report:#}");
        assert_eq!(got["rejection"], reason, "{report:#}");
        assert!(
            got["error"].as_str().unwrap().contains(img.digest()),
            "{report:#}"
        );
        assert_eq!(
            digest_at(&dst, "app", "v1").await.as_deref(),
            Some(good.digest()),
            "{seed}: the target tag did not move"
        );
    }
}
