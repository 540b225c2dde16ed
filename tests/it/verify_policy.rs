//! `regmirror verify` judges the signature policy at the target, through
//! the binary against real registries (Debian's `docker-registry`): a
//! key-signed mirror (signed outside regmirror by the harness's cosign
//! signer) satisfies a mirror's `policy` and `--verify-key`; another key is
//! rejected; with the index's and a platform's `.sig` tags deleted at the
//! target the signatures are reported missing and the policy rejected, and
//! `--heal` copies them back so that the policy is satisfied again.

use serde_json::Value;

use crate::common;
use crate::sync_run::schema_problems;
use crate::verify::{assert_code, delete, verify};
use common::artifacts::SignedImage;
use common::cosign::{CosignKey, sig_tag};
use common::{Pusher, RegistryOptions, TestRegistry, regmirror};

/// The only image's entry of a verify document.
fn only(doc: &Value) -> &Value {
    let images = doc["images"].as_array().expect("images");
    assert_eq!(images.len(), 1, "{doc:#}");
    &images[0]
}

/// Fails unless `doc` validates against docs/report.schema.json.
fn assert_schema(doc: &Value) {
    let problems = schema_problems(doc);
    assert!(problems.is_empty(), "{problems:#?}\n{doc:#}");
}

/// The digest of the `.sig` manifest of `digest` at `dst`'s `repo`.
async fn sig_manifest(dst: &TestRegistry, repo: &str, digest: &str) -> String {
    let (_, bytes) = Pusher::for_registry(dst)
        .get_manifest(repo, &sig_tag(digest))
        .await
        .expect("the .sig tag at the target");
    common::sha256_digest(&bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_judges_the_policy_at_the_target_and_heal_restores_signatures() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous().with_delete()).await;
    let mut img = SignedImage::build("verify-policy");
    img.push((&src).into(), "team/app", "v1").await.unwrap();
    let source = format!("{}/team/app:v1", src.host());
    let target = format!("{}/mirror/app:v1", dst.host());
    assert_code(&regmirror(&["import", &source, &target]).await, 0, "import");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cosign.pub");
    std::fs::write(&key, img.key.public_pem()).unwrap();
    let key = key.to_str().unwrap();
    let other = dir.path().join("other.pub");
    std::fs::write(&other, CosignKey::from_seed("someone else").public_pem()).unwrap();
    let other = other.to_str().unwrap();

    // A mirror's policy (config), judged at the target.
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[[mirror]]\nname = \"app\"\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n\
             tags = [\"v1\"]\nreferrers = true\ncosign_tags = true\n\
             [mirror.policy]\nkeys = [\"cosign.pub\"]\n",
            src.host(),
            dst.host()
        ),
    )
    .unwrap();
    let (run, doc) = verify(&["--config", config.to_str().unwrap()]).await;
    assert_code(&run, 0, "verify --config of a signed mirror");
    assert_schema(&doc);
    assert_eq!(only(&doc)["policy"], "satisfied", "{doc:#}");
    assert!(only(&doc)["policy_rejection"].is_null(), "{doc:#}");

    // The one-image form with --verify-key (and its alias --key).
    let (run, doc) = verify(&["--verify-key", key, &source, &target]).await;
    assert_code(&run, 0, "verify --verify-key of a signed mirror");
    assert_eq!(only(&doc)["policy"], "satisfied", "{doc:#}");
    let (run, doc) = verify(&["--key", other, &source, &target]).await;
    assert_code(&run, 1, "verify with a key that signed nothing");
    assert_schema(&doc);
    let image = only(&doc);
    assert_eq!(image["verdict"], "incomplete", "{doc:#}");
    assert_eq!(image["policy"], "rejected", "{doc:#}");
    assert_eq!(image["policy_rejection"]["reason"], "wrong_key", "{doc:#}");
    assert!(
        image["policy_rejection"]["detail"]
            .as_str()
            .unwrap()
            .contains("other.pub"),
        "the detail names the key: {doc:#}"
    );
    assert_eq!(image["findings"].as_array().unwrap().len(), 0, "{doc:#}");
    assert_eq!(doc["totals"]["policy_rejected"], 1, "{doc:#}");

    // The signatures of the index and of the amd64 image deleted at the target.
    let index = img.index.manifest.digest.clone();
    let amd64 = img.child("linux/amd64").digest().to_string();
    let mut deleted = Vec::new();
    for d in [&index, &amd64] {
        let sig = sig_manifest(&dst, "mirror/app", d).await;
        delete(&dst, &format!("/v2/mirror/app/manifests/{sig}")).await;
        deleted.push(sig);
    }
    let (run, doc) = verify(&["--verify-key", key, &source, &target]).await;
    assert_code(&run, 1, "verify after the signatures were deleted");
    assert_schema(&doc);
    let image = only(&doc);
    assert_eq!(image["policy"], "rejected", "{doc:#}");
    assert_eq!(
        image["policy_rejection"]["reason"], "no_signature",
        "{doc:#}"
    );
    let mut missing: Vec<(String, String)> = image["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    missing.sort();
    let mut want: Vec<(String, String)> = deleted
        .iter()
        .map(|d| ("missing_referrer".to_string(), d.clone()))
        .collect();
    want.sort();
    assert_eq!(missing, want, "{doc:#}");

    // --heal copies them back: the policy is satisfied again.
    let (run, doc) = verify(&["--heal", "--verify-key", key, &source, &target]).await;
    assert_code(&run, 0, "verify --heal of the deleted signatures");
    assert_schema(&doc);
    let image = only(&doc);
    assert_eq!(image["verdict"], "complete", "{doc:#}");
    assert_eq!(image["policy"], "satisfied", "{doc:#}");
    assert_eq!(
        image["heal"]["repaired"].as_array().unwrap().len(),
        2,
        "{doc:#}"
    );
    let (run, doc) = verify(&["--verify-key", key, &source, &target]).await;
    assert_code(&run, 0, "verify after healing the signatures");
    assert_eq!(only(&doc)["policy"], "satisfied", "{doc:#}");
    // The harness's own verifier agrees.
    common::cosign::verify_signed(
        &Pusher::for_registry(&dst),
        "mirror/app",
        "v1",
        &img.key.public(),
        1,
    )
    .await
    .expect("the healed signature verifies independently");

    // Policy flags belong to the one-image form.
    let (run, _) = verify(&["--config", config.to_str().unwrap(), "--key", key]).await;
    assert_code(&run, 2, "--key with --config");
    assert!(run.stderr.contains("one-image form"), "{}", run.stderr);
}

/// `serve`'s scheduled audit (`audit_schedule`) judges the mirror's policy
/// at the target too: the same signed mirror counts one in
/// `regmirror_audit_missing` under a policy trusting another key, and none
/// under one trusting the signer's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_audit_counts_a_rejected_policy() {
    use common::serve::{Daemon, free_port, sample};
    use std::time::Duration;
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let mut img = SignedImage::build("audit-policy");
    img.push((&src).into(), "team/app", "v1").await.unwrap();
    let source = format!("{}/team/app:v1", src.host());
    let target = format!("{}/mirror/app:v1", dst.host());
    assert_code(&regmirror(&["import", &source, &target]).await, 0, "import");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cosign.pub"), img.key.public_pem()).unwrap();
    let other = CosignKey::from_seed("someone else").public_pem();
    std::fs::write(dir.path().join("other.pub"), other).unwrap();
    for (key, expected) in [("other.pub", 1.0), ("cosign.pub", 0.0)] {
        let port = free_port();
        let config = dir.path().join(format!("audit-{key}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
                 [[mirror]]\nname = \"app\"\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n\
                 tags = [\"v1\"]\nreferrers = true\ncosign_tags = true\n\
                 schedule = \"0 0 1 1 *\"\naudit_schedule = \"*/2 * * * * *\"\n\
                 [mirror.policy]\nkeys = [\"{key}\"]\n",
                src.host(),
                dst.host()
            ),
        )
        .unwrap();
        let run_dir = dir.path().join(format!("run-{key}"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let serve = Daemon::start(&config, &run_dir, port);
        // The gauge is set just after "audit finished" is logged: once a
        // second audit has finished, the first one's value is in place.
        serve
            .wait_for(
                "two audits with the policy",
                Duration::from_secs(60),
                async || serve.log().matches("audit finished").count() >= 2,
            )
            .await;
        let page = serve.metrics().await;
        let missing = sample(&page, "regmirror_audit_missing", &[("mirror", "app")]);
        assert_eq!(
            missing,
            Some(expected),
            "policy key {key}:\n{page}\n{}",
            serve.log()
        );
        let logged = serve
            .log()
            .contains("the signature policy is not satisfied at the target");
        assert_eq!(logged, expected > 0.0, "policy key {key}:\n{}", serve.log());
    }
}
