//! The referrers test harness checked on its own, without regmirror: the
//! cosign verifier accepts the harness's signatures and rejects tampered
//! ones; ferro-oci-server indexes referrers itself (`OCI-Subject`) while
//! distribution gets the spec's fallback index; the fake pages its
//! referrer lists and resolves `sha256-<hex>` tags as digests. A harness
//! that could not fail would make the end-to-end tests prove nothing.

use crate::common;

use common::artifacts::{
    PLATFORMS, Recorded, SignedImage, Source, fallback_tag, list_referrers, referrers_api,
};
use common::cosign::{
    CosignKey, SIGNATURE_ANNOTATION, check_layer, sig_tag, signature_layer, signature_manifest,
    simple_signing_payload, verify_image, verify_signed,
};
use common::ferro::{AnyRegistry, FerroRegistry};
use common::referrers_fake::{FakeReferrers, FakeRegistry};
use common::{Node, Pusher, RegistryOptions, TestRegistry};

const SUBJECT: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const OTHER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

#[test]
fn cosign_check_accepts_a_good_signature_and_rejects_each_tampering() {
    let key = CosignKey::from_seed("harness");
    let layer = signature_layer(&key, "127.0.0.1:5000/team/app", SUBJECT);
    let sig = layer.annotations[0].1.clone();
    let public = key.public();
    check_layer(&layer.digest, &layer.data, &sig, SUBJECT, &public).expect("a good signature");

    let other_key = CosignKey::from_seed("somebody else").public();
    let e = check_layer(&layer.digest, &layer.data, &sig, SUBJECT, &other_key).unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");

    let e = check_layer(&layer.digest, &layer.data, &sig, OTHER, &public).unwrap_err();
    assert!(e.to_string().contains("payload names"), "{e}");

    let mut tampered = layer.data.to_vec();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    let e = check_layer(&layer.digest, &tampered, &sig, SUBJECT, &public).unwrap_err();
    assert!(e.to_string().contains("do not hash"), "{e}");

    // A payload rewritten to name another digest, with its digest recomputed,
    // still fails: the signature covers the original bytes.
    let forged = simple_signing_payload("127.0.0.1:5000/team/app", OTHER);
    let forged_digest = common::sha256_digest(&forged);
    let e = check_layer(&forged_digest, &forged, &sig, OTHER, &public).unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");

    let mut der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &sig).unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let flipped = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der);
    assert!(check_layer(&layer.digest, &layer.data, &flipped, SUBJECT, &public).is_err());
    assert!(check_layer(&layer.digest, &layer.data, "not base64!", SUBJECT, &public).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_image_verifies_on_distribution_and_tampered_copies_fail() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let mut img = SignedImage::build("harness-sign");
    let how = img
        .push(AnyRegistry::Distribution(&reg), "team/app", "v1")
        .await
        .unwrap();
    assert_eq!(
        how,
        Recorded::FallbackTag,
        "distribution has no referrers API"
    );
    let pusher = Pusher::for_registry(&reg);
    let public = img.key.public();
    // The index and every child (platform images and buildx attestations).
    assert_eq!(
        img.signed.len(),
        1 + PLATFORMS.len() * 2,
        "{:?}",
        img.signed
    );
    verify_signed(&pusher, "team/app", "v1", &public, 1)
        .await
        .unwrap();
    for d in &img.signed {
        let v = verify_signed(&pusher, "team/app", d, &public, 1)
            .await
            .unwrap();
        assert_eq!(&v.digest, d);
    }
    // Signing again with another key appends a layer under the same tag.
    let second = CosignKey::from_seed("second signer");
    let docker_ref = format!("{}/team/app", reg.host());
    common::cosign::sign_digest(
        &pusher,
        "team/app",
        &docker_ref,
        img.index.digest(),
        &second,
    )
    .await
    .unwrap();
    let v = verify_image(&pusher, "team/app", "v1", &public)
        .await
        .unwrap();
    assert_eq!((v.valid, v.invalid.len()), (1, 1), "{v:?}");
    let v = verify_image(&pusher, "team/app", "v1", &second.public())
        .await
        .unwrap();
    assert_eq!((v.valid, v.invalid.len()), (1, 1), "{v:?}");

    // The signature of one manifest moved onto another does not verify.
    let amd64 = img.child("linux/amd64").digest().to_string();
    let arm64 = img.child("linux/arm64").digest().to_string();
    let (_, amd_sig) = pusher
        .get_manifest("team/app", &sig_tag(&amd64))
        .await
        .unwrap();
    let moved = common::Manifest {
        media_type: common::image::OCI_MANIFEST.to_string(),
        digest: common::sha256_digest(&amd_sig),
        bytes: amd_sig,
    };
    pusher
        .push_manifest("team/app", &sig_tag(&arm64), &moved)
        .await
        .unwrap();
    let e = verify_signed(&pusher, "team/app", &arm64, &public, 1)
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("payload names"), "{e:#}");

    // A signature by a foreign key in the layer annotation does not verify.
    let mut forged = signature_layer(&second, &docker_ref, &amd64);
    forged.annotations = vec![(SIGNATURE_ANNOTATION.to_string(), second.sign(&forged.data))];
    let sig = signature_manifest(vec![forged]);
    pusher
        .push_node("team/app", &Node::Image(sig), Some(&sig_tag(&amd64)))
        .await
        .unwrap();
    let e = verify_signed(&pusher, "team/app", &amd64, &public, 1)
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("does not verify"), "{e:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferro_indexes_referrers_and_distribution_gets_the_fallback_index() {
    let dist = TestRegistry::start(RegistryOptions::anonymous()).await;
    let ferro = FerroRegistry::start().await;
    let mut on_dist = SignedImage::build("harness-both");
    let mut on_ferro = on_dist.clone();
    let a = on_dist
        .push(AnyRegistry::Distribution(&dist), "team/app", "v1")
        .await
        .unwrap();
    let b = on_ferro
        .push(AnyRegistry::Ferro(&ferro), "team/app", "v1")
        .await
        .unwrap();
    assert_eq!((a, b), (Recorded::FallbackTag, Recorded::Api));
    let (pd, pf) = (Pusher::for_registry(&dist), ferro.pusher());
    for r in on_dist.referrers() {
        let subject = common::artifacts::subject_of(&r);
        let ld = list_referrers(&pd, "team/app", &subject).await.unwrap();
        let lf = list_referrers(&pf, "team/app", &subject).await.unwrap();
        assert_eq!(ld.source, Source::FallbackTag);
        assert_eq!(lf.source, Source::Api);
        assert_eq!(ld.keys(), lf.keys(), "same referrers of {subject}");
        assert!(ld.keys().iter().any(|(d, _)| d == r.digest()));
        assert!(
            !pf.manifest_exists("team/app", &fallback_tag(&subject))
                .await
                .unwrap(),
            "no fallback tag is written where the API exists"
        );
    }
    // The API reader sees distribution's 404 as "no API".
    assert!(
        referrers_api(&pd, "team/app", on_dist.index.digest())
            .await
            .unwrap()
            .is_none()
    );
    verify_signed(&pf, "team/app", "v1", &on_ferro.key.public(), 1)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_pages_referrers_filters_on_request_and_resolves_digest_tags() {
    let img = SignedImage::build("harness-fake");
    let index = img.index.to_node();
    let amd = img.child("linux/amd64").manifest.clone();
    let extra: Vec<_> = (0..4)
        .map(|i| common::artifacts::sbom_for(&amd, &format!("extra-{i}")))
        .collect();

    let paged = FakeRegistry::start(FakeReferrers {
        page_size: Some(2),
        apply_filters: false,
        resolve_digest_tags: false,
    })
    .await;
    paged.add_node("team/app", &index, Some("v1"));
    for r in img.referrers().iter().chain(&extra) {
        paged.add_image("team/app", r, None);
    }
    let reader = Pusher::new(&paged.base_url(), common::PushAuth::Anonymous, None);
    let all = referrers_api(&reader, "team/app", &amd.digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all.len(), 5, "one SBOM of the fixture and four extra");
    assert_eq!(
        paged.count("GET", &format!("/v2/team/app/referrers/{}", amd.digest)),
        3
    );
    // The filter is ignored and not confirmed.
    let (_, h, body) = reader
        .get_raw(
            &format!("/v2/team/app/referrers/{}?artifactType=x/none", amd.digest),
            "team/app",
            None,
        )
        .await
        .unwrap();
    assert!(h.get("oci-filters-applied").is_none());
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["manifests"].as_array().unwrap().len(), 2);

    let resolving = FakeRegistry::start(FakeReferrers {
        page_size: None,
        apply_filters: false,
        resolve_digest_tags: true,
    })
    .await;
    resolving.add_node("team/app", &index, Some("v1"));
    let reader = Pusher::new(&resolving.base_url(), common::PushAuth::Anonymous, None);
    let (_, bytes) = reader
        .get_manifest("team/app", &fallback_tag(img.index.digest()))
        .await
        .unwrap();
    assert_eq!(common::sha256_digest(&bytes), img.index.digest());
    assert!(
        referrers_api(&reader, "team/app", img.index.digest())
            .await
            .unwrap()
            .is_none()
    );
}

#[test]
fn dsse_check_accepts_a_good_attestation_and_rejects_tampering() {
    use common::cosign_attach::{attestation_layer, check_envelope};
    let key = CosignKey::from_seed("harness-dsse");
    let layer = attestation_layer(&key, "127.0.0.1:5000/team/app", SUBJECT);
    check_envelope(&layer.data, SUBJECT, &key.public()).expect("a good attestation");
    let e = check_envelope(&layer.data, OTHER, &key.public()).unwrap_err();
    assert!(e.to_string().contains("statement is about"), "{e}");
    let other = CosignKey::from_seed("not the signer").public();
    let e = check_envelope(&layer.data, SUBJECT, &other).unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    // The statement swapped for one about another digest, signature kept.
    let mut env: serde_json::Value = serde_json::from_slice(&layer.data).unwrap();
    let forged = attestation_layer(&key, "127.0.0.1:5000/team/app", OTHER);
    let forged_env: serde_json::Value = serde_json::from_slice(&forged.data).unwrap();
    env["payload"] = forged_env["payload"].clone();
    let bytes = serde_json::to_vec(&env).unwrap();
    let e = check_envelope(&bytes, OTHER, &key.public()).unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
}
