//! Self-tests of the integration-test harness in `tests/it/common/`.

use crate::common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use common::image::{self, artifact_for};
use common::proxy::InjectedFault;
use common::*;

fn jwt_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("JWT payload is base64url");
    serde_json::from_slice(&bytes).expect("JWT payload is JSON")
}

async fn status_of(req: reqwest::RequestBuilder) -> u16 {
    req.send()
        .await
        .expect("request to a loopback test server")
        .status()
        .as_u16()
}

#[test]
fn layers_are_deterministic_and_shareable() {
    let a = Blob::layer(Format::Oci, "seed-a", 4096);
    let a2 = Blob::layer(Format::Oci, "seed-a", 4096);
    let b = Blob::layer(Format::Oci, "seed-b", 4096);
    assert_eq!(a, a2);
    assert_ne!(a.digest, b.digest);
    assert_eq!(a.data.len(), 4096);
    assert_eq!(a.digest, sha256_digest(&a.data));

    let one = ImageSet::multi_arch("one", &["linux/amd64", "linux/arm64/v8"], true, Format::Oci);
    let again = ImageSet::multi_arch("one", &["linux/amd64", "linux/arm64/v8"], true, Format::Oci);
    let two = ImageSet::multi_arch("two", &["linux/amd64", "linux/arm64/v8"], true, Format::Oci);
    assert_eq!(one.digest(), again.digest());
    assert_ne!(one.digest(), two.digest());
    assert_eq!(one.digest(), sha256_digest(one.bytes()));
    // Base layers are shared between image sets of the same platform.
    let base_one = &one.image_for("linux/amd64").unwrap().layers[0];
    let base_two = &two.image_for("linux/amd64").unwrap().layers[0];
    assert_eq!(base_one.digest, base_two.digest);
    assert_ne!(
        one.image_for("linux/amd64").unwrap().layers[1].digest,
        two.image_for("linux/amd64").unwrap().layers[1].digest
    );

    let idx = one.manifest.json();
    let entries = idx["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(idx["mediaType"], image::OCI_INDEX);
    assert_eq!(entries[1]["platform"]["variant"], "v8");
    let att = &entries[2];
    assert_eq!(att["platform"]["os"], "unknown");
    assert_eq!(att["platform"]["architecture"], "unknown");
    assert_eq!(
        att["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        att["annotations"]["vnd.docker.reference.digest"],
        one.images()[0].digest()
    );
    let att_manifest = one.attestations()[0].manifest.json();
    assert_eq!(att_manifest["config"]["mediaType"], image::OCI_CONFIG);
    assert_eq!(att_manifest["layers"][0]["mediaType"], image::IN_TOTO);
    // Push order: every child before the index.
    let order = one.manifests_in_push_order();
    assert_eq!(order.last().unwrap().digest, one.digest());
    assert_eq!(order.len(), 5);

    let docker = ImageSet::multi_arch("one", &["linux/amd64"], false, Format::Docker);
    assert_eq!(docker.manifest.json()["mediaType"], image::DOCKER_LIST);
    assert_eq!(
        docker.images()[0].manifest.json()["mediaType"],
        image::DOCKER_MANIFEST
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_registry_answers_and_logs_requests() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    assert!(reg.base_url().starts_with("http://127.0.0.1:"));
    assert_eq!(reg.host(), format!("127.0.0.1:{}", reg.port()));
    assert!(reg.credentials().is_none());
    let c = reg.http_client();
    assert_eq!(
        status_of(c.get(format!("{}/v2/", reg.base_url()))).await,
        200
    );
    assert_eq!(
        status_of(c.get(format!("{}/v2/nothing/manifests/latest", reg.base_url()))).await,
        404
    );
    // The access log is written after the response; poll briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    while reg.access_log_count("GET", "/v2/nothing/manifests/") == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reg.access_log_count("GET", "/v2/nothing/manifests/"), 1);
    assert!(reg.log_path().exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_process_dies_on_drop() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let url = format!("{}/v2/", reg.base_url());
    assert_eq!(status_of(reg.http_client().get(&url)).await, 200);
    let pid = reg.pid().expect("a started registry has a process");
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists());
    drop(reg);
    // Drop kills and reaps the process, so its /proc entry is gone.
    assert!(!proc_dir.exists(), "registry process {pid} survived drop");
}

#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_registry_requires_credentials() {
    let reg = TestRegistry::start(RegistryOptions::htpasswd("alice", "s3cret")).await;
    let c = reg.http_client();
    let url = format!("{}/v2/", reg.base_url());
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Basic"), "{challenge}");
    assert_eq!(
        status_of(c.get(&url).basic_auth("alice", Some("s3cret"))).await,
        200
    );
    assert_eq!(
        status_of(c.get(&url).basic_auth("alice", Some("wrong"))).await,
        401
    );
    assert_eq!(
        reg.credentials(),
        Some(("alice".to_string(), "s3cret".to_string()))
    );
    // Secrets stay out of Debug output.
    let debug = format!(
        "{:?} {:?} {:?}",
        reg,
        reg.options(),
        Pusher::for_registry(&reg)
    );
    assert!(
        debug.contains("alice") && !debug.contains("s3cret"),
        "{debug}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_registry_flow_get_and_oauth() {
    let issuer = TokenIssuer::start(TokenIssuerOptions::default()).await;
    let reg = TestRegistry::start(RegistryOptions::token(&issuer)).await;
    let c = reg.http_client();
    let url = format!("{}/v2/", reg.base_url());
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains(&issuer.realm()), "{challenge}");
    assert!(challenge.contains(issuer.service()), "{challenge}");

    let (user, pass) = issuer.credentials().unwrap();
    let token_url = format!(
        "{}?service={}&scope=repository:team/app:pull,push&scope=repository:other:pull",
        issuer.realm(),
        issuer.service()
    );
    // Wrong password and anonymous (no anonymous_pull) are rejected.
    assert_eq!(
        status_of(c.get(&token_url).basic_auth(&user, Some("nope"))).await,
        401
    );
    assert_eq!(status_of(c.get(&token_url)).await, 401);
    let resp = c
        .get(&token_url)
        .basic_auth(&user, Some(&pass))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["access_token"], body["token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].is_string());
    let claims = jwt_claims(&token);
    assert_eq!(claims["aud"], issuer.service());
    assert_eq!(claims["iss"], issuer.issuer_name());
    assert_eq!(claims["sub"], user.as_str());
    assert_eq!(claims["access"][0]["name"], "team/app");
    assert_eq!(
        claims["access"][0]["actions"],
        serde_json::json!(["pull", "push"])
    );
    assert_eq!(issuer.token_requests(), 3);
    assert_eq!(issuer.rejected_requests(), 2);
    assert_eq!(
        issuer.requested_scopes()[..2],
        [
            "repository:team/app:pull,push".to_string(),
            "repository:other:pull".to_string()
        ]
    );
    // The registry accepts the issued token.
    assert_eq!(status_of(c.get(&url).bearer_auth(&token)).await, 200);
    assert_eq!(
        status_of(
            c.get(format!("{}/v2/team/app/tags/list", reg.base_url()))
                .bearer_auth(&token)
        )
        .await,
        404,
        "authorized request on an empty repository should be 404 NAME_UNKNOWN"
    );
    // A forged token (signed by another CA) is refused.
    let other = TokenIssuer::start(TokenIssuerOptions::default()).await;
    let forged = other.mint(&["repository:team/app:pull"]);
    assert_eq!(status_of(c.get(&url).bearer_auth(&forged)).await, 401);

    // OAuth2 password grant with offline access returns a refresh token…
    let form = format!(
        "grant_type=password&service={}&client_id=regmirror&access_type=offline&scope=repository%3Ateam%2Fapp%3Apull&username={user}&password={pass}",
        issuer.service()
    );
    let resp = c
        .post(issuer.realm())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["refresh_token"], issuer.refresh_token());
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(status_of(c.get(&url).bearer_auth(access)).await, 200);
    // …which the refresh_token grant accepts; a wrong one or wrong password is 401.
    let refresh_form = |rt: &str| {
        format!(
            "grant_type=refresh_token&service={}&client_id=regmirror&scope=repository%3Ateam%2Fapp%3Apull&refresh_token={rt}",
            issuer.service()
        )
    };
    let post = |body: String| {
        c.post(issuer.realm())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let resp = post(refresh_form(issuer.refresh_token()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(
        jwt_claims(body["access_token"].as_str().unwrap())["access"][0]["actions"],
        serde_json::json!(["pull"])
    );
    assert_eq!(status_of(post(refresh_form("bogus"))).await, 401);
    assert_eq!(
        status_of(post(format!(
            "grant_type=password&service=x&username={user}&password=wrong"
        )))
        .await,
        401
    );
    assert_eq!(
        status_of(post("grant_type=client_credentials".to_string())).await,
        400
    );
    let debug = format!("{issuer:?} {:?}", reg.options());
    assert!(
        !debug.contains(&pass) && !debug.contains(issuer.refresh_token()),
        "{debug}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_anonymous_pull_grants_pull_only() {
    let issuer = TokenIssuer::start(TokenIssuerOptions {
        anonymous_pull: true,
        ..TokenIssuerOptions::default()
    })
    .await;
    let reg = TestRegistry::start(RegistryOptions::token(&issuer)).await;
    let img = ImageSet::multi_arch("anon", &["linux/amd64"], false, Format::Oci);
    push(&reg, "pub/app", "v1", &img).await.unwrap();

    let c = reg.http_client();
    let resp = c
        .get(format!(
            "{}?service={}&scope=repository:pub/app:pull,push",
            issuer.realm(),
            issuer.service()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let token = body["token"].as_str().unwrap();
    assert_eq!(
        jwt_claims(token)["access"][0]["actions"],
        serde_json::json!(["pull"])
    );
    let manifest_url = format!("{}/v2/pub/app/manifests/v1", reg.base_url());
    let resp = c
        .get(&manifest_url)
        .header("accept", image::OCI_INDEX)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.unwrap(), img.bytes());
    // Pushing with a pull-only token is refused.
    let upload = format!("{}/v2/pub/app/blobs/uploads/", reg.base_url());
    assert_eq!(status_of(c.post(&upload).bearer_auth(token)).await, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_lifetime_is_enforced_by_the_registry() {
    let issuer = TokenIssuer::start(TokenIssuerOptions {
        lifetime: Duration::from_secs(2),
        ..TokenIssuerOptions::default()
    })
    .await;
    let reg = TestRegistry::start(RegistryOptions::token(&issuer)).await;
    let c = reg.http_client();
    let url = format!("{}/v2/", reg.base_url());
    let token = issuer.mint(&["repository:x:pull"]);
    assert_eq!(status_of(c.get(&url).bearer_auth(&token)).await, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        status_of(c.get(&url).bearer_auth(&token)).await,
        401,
        "token should be expired for the registry after its lifetime"
    );
    let fresh = issuer.mint(&["repository:x:pull"]);
    assert_eq!(status_of(c.get(&url).bearer_auth(&fresh)).await, 200);
    assert_eq!(
        issuer.token_requests(),
        0,
        "mint does not count as a request"
    );
}

async fn assert_all_present(reg: &TestRegistry, repo: &str, tag: &str, set: &MultiArch) {
    // Independent check by skopeo: the tag resolves to the expected bytes.
    assert_eq!(
        skopeo_raw_digest(reg, &format!("{repo}:{tag}"))
            .await
            .unwrap(),
        set.digest()
    );
    let pusher = Pusher::for_registry(reg);
    let (ct, bytes) = pusher.get_manifest(repo, tag).await.unwrap();
    assert_eq!(ct, set.manifest.media_type);
    assert_eq!(&bytes, set.bytes());
    for m in set.manifests_in_push_order() {
        let (ct, bytes) = pusher.get_manifest(repo, &m.digest).await.unwrap();
        assert_eq!(ct, m.media_type);
        assert_eq!(bytes, m.bytes);
    }
    for b in set.blobs() {
        assert!(
            pusher.blob_exists(repo, &b.digest).await.unwrap(),
            "{}",
            b.digest
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn push_oci_multi_arch_with_basic_auth() {
    let reg = TestRegistry::start(RegistryOptions::htpasswd("bob", "pw")).await;
    let set = ImageSet::multi_arch(
        "basic",
        &["linux/amd64", "linux/arm64/v8", "linux/arm/v7"],
        true,
        Format::Oci,
    );
    push(&reg, "lib/app", "1.0", &set).await.unwrap();
    assert_all_present(&reg, "lib/app", "1.0", &set).await;
    // Child digest through skopeo as well.
    let child = set.image_for("linux/arm/v7").unwrap();
    assert_eq!(
        skopeo_raw_digest(&reg, &format!("lib/app@{}", child.digest()))
            .await
            .unwrap(),
        child.digest()
    );
    assert_eq!(
        Pusher::for_registry(&reg).tags("lib/app").await.unwrap(),
        vec!["1.0".to_string()]
    );
    // Wrong credentials fail with a message naming the registry.
    let bad = Pusher::new(
        &reg.base_url(),
        PushAuth::Basic {
            user: "bob".into(),
            password: "bad".into(),
        },
        None,
    );
    let err = bad
        .push_node("lib/app", &Node::from(&set), Some("2.0"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("401"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn push_docker_list_with_attestations_via_token_auth() {
    let issuer = TokenIssuer::start(TokenIssuerOptions::default()).await;
    let reg = TestRegistry::start(RegistryOptions::token(&issuer)).await;
    let set = ImageSet::multi_arch(
        "docker",
        &["linux/amd64", "linux/arm64"],
        true,
        Format::Docker,
    );
    push(&reg, "team/svc", "stable", &set).await.unwrap();
    let before = issuer.token_requests();
    assert_all_present(&reg, "team/svc", "stable", &set).await;
    // skopeo went through the issuer with basic credentials.
    assert!(issuer.token_requests() > before);
    assert!(
        issuer
            .requested_scopes()
            .iter()
            .any(|s| s == "repository:team/svc:pull"),
        "{:?}",
        issuer.requested_scopes()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_index_artifact_and_foreign_layer() {
    let reg = TestRegistry::start(
        RegistryOptions::anonymous()
            .with_foreign_layers()
            .with_delete(),
    )
    .await;
    let win = ImageBuilder::new(Format::Docker)
        .platform_value(Platform::parse("windows/amd64").with_os_version("10.0.20348.2113"))
        .foreign_layer("win/base", 4096, "https://example.invalid/win-base.tar.gz")
        .random_layer("win/app", 512)
        .build();
    assert_eq!(
        win.pushable_blobs().len(),
        2,
        "config + app layer, not the foreign one"
    );
    let inner = IndexBuilder::new(Format::Oci)
        .image(ImageSet::image("nested", "linux/amd64", Format::Oci))
        .build();
    let sig = artifact_for(
        &inner.manifest,
        "application/vnd.example.signature.v1",
        Blob::random("application/vnd.example.signature.v1+json", "sig", 128),
    );
    let outer = IndexBuilder::new(Format::Oci)
        .nested(inner.clone())
        .image(ImageSet::image("nested", "linux/arm64", Format::Oci))
        .build();
    push(&reg, "nest/app", "v1", &outer).await.unwrap();
    push(&reg, "nest/app", "sig", &sig).await.unwrap();
    push(&reg, "win/app", "ltsc2022", &win).await.unwrap();

    let pusher = Pusher::for_registry(&reg);
    let (ct, bytes) = pusher
        .get_manifest("nest/app", inner.digest())
        .await
        .unwrap();
    assert_eq!(ct, image::OCI_INDEX);
    assert_eq!(&bytes, inner.bytes());
    let (_, sig_bytes) = pusher.get_manifest("nest/app", "sig").await.unwrap();
    let sig_json: serde_json::Value = serde_json::from_slice(&sig_bytes).unwrap();
    assert_eq!(sig_json["subject"]["digest"], inner.digest());
    assert_eq!(sig_json["config"]["mediaType"], image::OCI_EMPTY);
    assert_eq!(
        skopeo_raw_digest(&reg, "win/app:ltsc2022").await.unwrap(),
        win.digest()
    );
    let foreign = &win.layers[0];
    assert!(
        !pusher
            .blob_exists("win/app", &foreign.digest)
            .await
            .unwrap()
    );

    // Without allow_foreign_layers the same manifest is refused (distribution
    // 2.8 answers 500 with MANIFEST_BLOB_UNKNOWN for the foreign layer).
    let strict = TestRegistry::start(RegistryOptions::anonymous()).await;
    let err = push(&strict, "win/app", "ltsc2022", &win)
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&foreign.digest) && msg.contains("MANIFEST_BLOB_UNKNOWN"),
        "{msg}"
    );

    // delete_enabled: manifests can be deleted by digest.
    let c = reg.http_client();
    let del = format!("{}/v2/nest/app/manifests/{}", reg.base_url(), sig.digest());
    assert_eq!(status_of(c.delete(&del)).await, 202);
    let img = ImageSet::image("del", "linux/amd64", Format::Oci);
    push(&strict, "d/app", "v1", &img).await.unwrap();
    let del = format!("{}/v2/d/app/manifests/{}", strict.base_url(), img.digest());
    assert_eq!(status_of(c.delete(&del)).await, 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_copies_oci_layout_preserving_digests() {
    let reg = TestRegistry::start(RegistryOptions::htpasswd("u", "p")).await;
    let set = ImageSet::multi_arch("layout", &["linux/amd64", "linux/s390x"], true, Format::Oci);
    let dir = tempfile::tempdir().unwrap();
    write_oci_layout(dir.path(), &Node::from(&set), "v3").unwrap();
    assert!(dir.path().join("oci-layout").exists());
    skopeo_copy_all(
        &SkopeoLoc::oci(dir.path(), "v3"),
        &SkopeoLoc::registry(&reg, "from/layout:v3"),
    )
    .await
    .unwrap();
    assert_all_present(&reg, "from/layout", "v3", &set).await;
    // And registry to registry.
    let other = TestRegistry::start(RegistryOptions::anonymous()).await;
    skopeo_copy_all(
        &SkopeoLoc::registry(&reg, "from/layout:v3"),
        &SkopeoLoc::registry(&other, "copy/layout:v3"),
    )
    .await
    .unwrap();
    assert_eq!(
        skopeo_raw_digest(&other, "copy/layout:v3").await.unwrap(),
        set.digest()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_registry_is_reached_with_its_ca() {
    let reg = TestRegistry::start(RegistryOptions::htpasswd("t", "lspw").with_tls()).await;
    assert!(reg.base_url().starts_with("https://127.0.0.1:"));
    let ca_path = reg.ca_pem_path().unwrap();
    let ca = std::fs::read(&ca_path).unwrap();
    let c = common::http_client(Some(&ca));
    let url = format!("{}/v2/", reg.base_url());
    assert_eq!(
        status_of(c.get(&url).basic_auth("t", Some("lspw"))).await,
        200
    );
    let untrusting = common::http_client(None);
    assert!(
        untrusting.get(&url).send().await.is_err(),
        "TLS without the test CA must fail"
    );
    let set = ImageSet::multi_arch("tls", &["linux/amd64"], false, Format::Oci);
    push(&reg, "secure/app", "v1", &set).await.unwrap();
    assert_eq!(
        skopeo_raw_digest(&reg, "secure/app:v1").await.unwrap(),
        set.digest()
    );
    // A plain-HTTP proxy can front the TLS registry.
    let proxy = TestProxy::start(&reg.base_url(), FaultPlan::none()).await;
    let (_, bytes) = Pusher::via(&proxy.base_url(), &reg)
        .get_manifest("secure/app", "v1")
        .await
        .unwrap();
    assert_eq!(&bytes, set.bytes());
    assert_eq!(proxy.count("GET", "/v2/secure/app/manifests/v1"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_counts_and_forwards_uploads() {
    let reg = TestRegistry::start(RegistryOptions::htpasswd("p", "q")).await;
    let proxy = TestProxy::start(&reg.base_url(), FaultPlan::none()).await;
    let set = ImageSet::multi_arch(
        "proxied",
        &["linux/amd64", "linux/arm64"],
        false,
        Format::Oci,
    );
    let via = Pusher::via(&proxy.base_url(), &reg);
    via.push_node("p/app", &Node::from(&set), Some("v1"))
        .await
        .unwrap();
    let blobs = set.blobs().len();
    assert_eq!(proxy.count("POST", "/v2/p/app/blobs/uploads/"), blobs);
    assert_eq!(proxy.count("PUT", "/v2/p/app/blobs/uploads/"), blobs);
    assert_eq!(proxy.count("HEAD", "/v2/p/app/blobs/"), blobs);
    // Two children by digest, index by digest, index by tag.
    assert_eq!(proxy.count("PUT", "/v2/p/app/manifests/"), 4);
    assert_eq!(proxy.count_matching("PUT", r"^/v2/p/app/manifests/v1$"), 1);
    assert_eq!(proxy.requests().len(), 3 * blobs + 4);
    // The data really landed upstream.
    assert_all_present(&reg, "p/app", "v1", &set).await;
    proxy.reset();
    assert!(proxy.requests().is_empty());
    // HEAD through the proxy keeps Content-Length.
    let c = common::http_client(None);
    let resp = c
        .head(format!("{}/v2/p/app/manifests/v1", proxy.base_url()))
        .basic_auth("p", Some("q"))
        .header("accept", image::OCI_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["docker-content-digest"], set.digest());
    assert_eq!(
        resp.headers()["content-length"],
        set.bytes().len().to_string().as_str()
    );
    assert_eq!(proxy.count("HEAD", "/v2/p/app/manifests/v1"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_injects_each_fault_kind() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let big = ImageBuilder::new(Format::Oci)
        .platform("linux/amd64")
        .random_layer("big", 256 * 1024)
        .build();
    push(&reg, "f/app", "v1", &big).await.unwrap();
    let layer = &big.layers[0];
    let blob_path = format!("/v2/f/app/blobs/{}", layer.digest);
    let plan = FaultPlan::seeded(7)
        .nth("GET", "^/v2/$", 1, Fault::Status(503))
        .nth("GET", "^/v2/$", 2, Fault::Status(500))
        .nth(
            "GET",
            "^/v2/$",
            3,
            Fault::TooManyRequests {
                retry_after_secs: 2,
            },
        )
        .nth("GET", "^/v2/f/app/blobs/", 1, Fault::DropMidBody)
        .nth("GET", "^/v2/f/app/blobs/", 2, Fault::CorruptBody)
        .nth(
            "GET",
            "^/v2/f/app/blobs/",
            3,
            Fault::Stall(Duration::from_millis(700)),
        );
    let proxy = TestProxy::start(&reg.base_url(), plan).await;
    let c = common::http_client(None);
    let v2 = format!("{}/v2/", proxy.base_url());
    assert_eq!(status_of(c.get(&v2)).await, 503);
    assert_eq!(status_of(c.get(&v2)).await, 500);
    let resp = c.get(&v2).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(status_of(c.get(&v2)).await, 200, "faults are one-shot");

    let blob_url = format!("{}{}", proxy.base_url(), blob_path);
    // Drop mid-body: headers arrive with the full length, the body does not.
    let resp = c.get(&blob_url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.content_length(), Some(layer.size() as u64));
    assert!(resp.bytes().await.is_err(), "body should be cut short");
    // Corrupt: same length, different digest.
    let resp = c.get(&blob_url).send().await.unwrap();
    assert_eq!(resp.content_length(), Some(layer.size() as u64));
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), layer.size());
    assert_ne!(sha256_digest(&body), layer.digest);
    let diffs = body
        .iter()
        .zip(layer.data.iter())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(diffs, 1);
    // Stall: delayed but intact.
    let t0 = Instant::now();
    let body = c
        .get(&blob_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(700));
    assert_eq!(sha256_digest(&body), layer.digest);
    // Clean afterwards.
    let body = c
        .get(&blob_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_digest(&body), layer.digest);

    let kinds: Vec<Fault> = proxy.injected().into_iter().map(|f| f.fault).collect();
    assert_eq!(kinds.len(), 6);
    assert_eq!(
        proxy.injected()[3],
        InjectedFault {
            method: "GET".into(),
            path: blob_path.clone(),
            fault: Fault::DropMidBody
        }
    );

    // Probability faults are deterministic for a seed.
    let a = probability_outcomes(&reg, 42).await;
    assert_eq!(a, probability_outcomes(&reg, 42).await);
    assert!(a.contains(&503) && a.contains(&200), "{a:?}");
}

async fn probability_outcomes(reg: &TestRegistry, seed: u64) -> Vec<u16> {
    let proxy = TestProxy::start(
        &reg.base_url(),
        FaultPlan::seeded(seed).probability(Some("GET"), "^/v2/$", 0.5, Fault::Status(503)),
    )
    .await;
    let c = common::http_client(None);
    let mut v = Vec::new();
    for _ in 0..16 {
        v.push(status_of(c.get(format!("{}/v2/", proxy.base_url()))).await);
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_faults_block_uploads() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let img = ImageSet::image("blocked", "linux/amd64", Format::Oci);
    let proxy = TestProxy::start(
        &reg.base_url(),
        FaultPlan::none().always("PUT", "^/v2/b/app/blobs/uploads/", Fault::Status(500)),
    )
    .await;
    let err = Pusher::via(&proxy.base_url(), &reg)
        .push_node("b/app", &Node::from(&img), Some("v1"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("500"), "{err:#}");
    assert!(
        !Pusher::for_registry(&reg)
            .manifest_exists("b/app", "v1")
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_server_serves_the_given_router() {
    let fake = FakeServer::start_with(|base| {
        let next = format!("<{base}/v2/r/tags/list?n=1&last=a>; rel=\"next\"");
        Router::new().route(
            "/v2/r/tags/list",
            get(move || async move {
                (
                    [
                        ("link", next.clone()),
                        ("content-type", "application/json".to_string()),
                    ],
                    r#"{"name":"r","tags":["a"]}"#,
                )
            }),
        )
    })
    .await;
    let resp = common::http_client(None)
        .get(format!("{}/v2/r/tags/list", fake.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let link = resp.headers()["link"].to_str().unwrap().to_string();
    assert!(
        link.starts_with(&format!("<{}/v2/r/tags/list", fake.base_url())),
        "{link}"
    );
    assert_eq!(resp.text().await.unwrap(), r#"{"name":"r","tags":["a"]}"#);
}
