//! The registry client against real registries (Debian's `docker-registry`,
//! CNCF distribution 2.8): anonymous, htpasswd, token auth and TLS, with
//! skopeo as an independent check.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use regmirror::registry::manifest::{DOCKER_LIST, OCI_INDEX};
use regmirror::registry::{
    Client, ClientOptions, Digest, Error, RawManifest, Reference, RegistryConfig, Secret, TlsMode,
};

fn anon_client() -> Client {
    Client::new(ClientOptions::default()).unwrap()
}

fn client_for(reg: &TestRegistry, user: &str, password: &str) -> Client {
    Client::new(ClientOptions {
        registries: vec![RegistryConfig {
            host: reg.host(),
            username: Some(user.into()),
            password: Some(Secret::new(password)),
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap()
}

fn r(reg: &TestRegistry, s: &str) -> Reference {
    Reference::parse(&format!("{}/{s}", reg.host())).unwrap()
}

fn stream_of(data: Bytes) -> regmirror::registry::ByteStream {
    Box::pin(futures_util::stream::once(async move { Ok(data) }))
}

/// Every manifest and blob operation against an anonymous registry.
#[tokio::test(flavor = "multi_thread")]
async fn manifest_and_blob_operations() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let index = ImageSet::multi_arch("ops", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    push(&reg, "src/app", "v1", index.clone()).await.unwrap();
    let client = anon_client();

    // HEAD and GET by tag: the exact bytes, media type and digest served.
    let head = client
        .head_manifest(&r(&reg, "src/app:v1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.digest.unwrap().to_string(), index.digest());
    assert_eq!(head.media_type.as_deref(), Some(OCI_INDEX));
    let m = client.get_manifest(&r(&reg, "src/app:v1")).await.unwrap();
    assert_eq!(m.bytes, *index.bytes());
    assert_eq!(m.media_type, OCI_INDEX);
    assert_eq!(m.digest.to_string(), index.digest());
    assert_eq!(
        m.digest.to_string(),
        skopeo_raw_digest(&reg, "src/app:v1").await.unwrap()
    );

    // GET by digest is verified; a missing manifest is None / MANIFEST_UNKNOWN.
    let by_digest = r(&reg, &format!("src/app@{}", index.digest()));
    assert_eq!(
        client.get_manifest(&by_digest).await.unwrap().bytes,
        *index.bytes()
    );
    assert!(
        client
            .head_manifest(&r(&reg, "src/app:nope"))
            .await
            .unwrap()
            .is_none()
    );
    let err = client
        .get_manifest(&r(&reg, "src/app:nope"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(
        err.codes().iter().any(|c| c.code == "MANIFEST_UNKNOWN"),
        "{err}"
    );
    assert!(err.to_string().contains("src/app:nope"), "{err}");

    // Blobs: HEAD, GET stream, monolithic upload, mount.
    let img = index.image_for("linux/amd64").unwrap();
    let layer = &img.layers[0];
    let ld: Digest = layer.digest.parse().unwrap();
    let repo = r(&reg, "src/app");
    assert_eq!(
        client.head_blob(&repo, &ld).await.unwrap(),
        Some(layer.size() as u64)
    );
    let missing = Digest::sha256_of(b"not there");
    assert_eq!(client.head_blob(&repo, &missing).await.unwrap(), None);
    let reader = client.get_blob(&repo, &ld).await.unwrap();
    use futures_util::StreamExt;
    let got: Vec<Bytes> = reader.stream.map(|c| c.unwrap()).collect().await;
    assert_eq!(got.concat(), layer.data.to_vec());

    let data = Bytes::from(vec![7u8; 300_000]);
    let d = Digest::sha256_of(&data);
    let other = r(&reg, "other/app");
    let session = client.start_upload(&other).await.unwrap();
    client
        .upload_blob(session, &d, data.len() as u64, stream_of(data.clone()))
        .await
        .unwrap();
    assert_eq!(client.head_blob(&other, &d).await.unwrap(), Some(300_000));
    assert!(
        Pusher::for_registry(&reg)
            .blob_exists("other/app", &d.to_string())
            .await
            .unwrap()
    );

    // distribution answers 201 to a mount from a readable repository.
    let third = r(&reg, "third/app");
    assert!(
        client
            .mount_blob(&third, &d, &other)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(client.head_blob(&third, &d).await.unwrap(), Some(300_000));

    // Small blobs in memory, verified on the way back.
    let cfg = Bytes::from_static(b"{\"hello\":\"world\"}");
    let cd = Digest::sha256_of(&cfg);
    client
        .put_blob_bytes(&third, &cd, cfg.clone())
        .await
        .unwrap();
    assert_eq!(client.get_blob_bytes(&third, &cd, 1024).await.unwrap(), cfg);
    let e = client.get_blob_bytes(&third, &cd, 4).await.unwrap_err();
    assert!(e.to_string().contains("limit"), "{e}");

    // PUT the exact bytes elsewhere: children by digest first, then the index by tag.
    let from = r(&reg, "src/app");
    let to = r(&reg, "copy/app");
    for child in index.manifests_in_push_order() {
        let cd: Digest = child.digest.parse().unwrap();
        let raw = client.get_manifest(&from.with_digest(cd)).await.unwrap();
        if let Ok(regmirror::registry::Manifest::Image(im)) = raw.parse() {
            for desc in std::iter::once(&im.config).chain(im.layers.iter()) {
                assert!(
                    client
                        .mount_blob(&to, &desc.digest, &from)
                        .await
                        .unwrap()
                        .is_none()
                );
            }
        }
        if raw.digest.to_string() != index.digest() {
            client.put_manifest(&to, &raw).await.unwrap();
        }
    }
    let pushed = client
        .put_manifest(&to.with_tag("v1").unwrap(), &m)
        .await
        .unwrap();
    assert_eq!(pushed.to_string(), index.digest());
    assert_eq!(
        skopeo_raw_digest(&reg, "copy/app:v1").await.unwrap(),
        index.digest()
    );

    // A manifest whose children are missing is refused by the registry.
    let orphan = RawManifest::new(index.bytes().clone(), Some(OCI_INDEX));
    let e = client
        .put_manifest(&r(&reg, "empty/app:v1"), &orphan)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");

    let mut tags = client.list_tags(&r(&reg, "src/app")).await.unwrap();
    tags.sort();
    assert_eq!(tags, vec!["v1"]);
}

/// Chunked (PATCH) uploads when the registry is configured for them.
#[tokio::test(flavor = "multi_thread")]
async fn chunked_upload() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let client = Client::new(ClientOptions {
        registries: vec![RegistryConfig {
            host: reg.host(),
            chunk_size: Some(64 * 1024),
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
    let data: Bytes = (0..200_000u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let d = Digest::sha256_of(&data);
    let repo = r(&reg, "chunked/app");
    let session = client.start_upload(&repo).await.unwrap();
    // Many small pieces, so chunks are assembled across stream items.
    let pieces: Vec<_> = data
        .chunks(10_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    client
        .upload_blob(
            session,
            &d,
            data.len() as u64,
            Box::pin(futures_util::stream::iter(pieces)),
        )
        .await
        .unwrap();
    assert_eq!(
        client.get_blob_bytes(&repo, &d, 1 << 20).await.unwrap(),
        data
    );
    let log = reg.log();
    assert!(
        reg.access_log_count("PATCH", "/v2/chunked/app/blobs/uploads/") >= 4,
        "{log}"
    );

    // A corrupt stream is never committed: the registry has no such blob afterwards.
    let session = client.start_upload(&repo).await.unwrap();
    let good = Digest::sha256_of(b"expected content");
    let e = client
        .upload_blob(
            session,
            &good,
            16,
            stream_of(Bytes::from_static(b"xxxxxxxxxxxxxxxx")),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");
    assert_eq!(client.head_blob(&repo, &good).await.unwrap(), None);
}

/// Basic auth (htpasswd): no credentials, wrong ones, right ones.
#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_auth() {
    let reg = TestRegistry::start(RegistryOptions::htpasswd("alice", "wonder-pass")).await;
    let index = ImageSet::multi_arch("basic", &["linux/amd64"], false, Format::Docker);
    push(&reg, "team/app", "1", index.clone()).await.unwrap();

    let e = anon_client()
        .get_manifest(&r(&reg, "team/app:1"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Auth { .. }), "{e:?}");
    assert!(e.to_string().contains("requires credentials"), "{e}");

    let e = client_for(&reg, "alice", "wrong-pass")
        .get_manifest(&r(&reg, "team/app:1"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("refused the credentials"), "{e}");
    assert!(!format!("{e} {e:?}").contains("wrong-pass"));

    let c = client_for(&reg, "alice", "wonder-pass");
    let m = c.get_manifest(&r(&reg, "team/app:1")).await.unwrap();
    assert_eq!(m.media_type, DOCKER_LIST);
    assert_eq!(m.digest.to_string(), index.digest());
    assert_eq!(c.list_tags(&r(&reg, "team/app")).await.unwrap(), vec!["1"]);
}

/// Token auth: scopes, caching, mounts asking for two repositories at once,
/// identity (refresh) tokens, refused credentials.
#[tokio::test(flavor = "multi_thread")]
async fn token_auth() {
    let issuer = TokenIssuer::start(TokenIssuerOptions::default()).await;
    let reg = TestRegistry::start(RegistryOptions::token(&issuer)).await;
    let index = ImageSet::multi_arch("tok", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    push(&reg, "src/app", "v1", index.clone()).await.unwrap();
    let (user, pass) = issuer.credentials().unwrap();
    let client = client_for(&reg, &user, &pass);
    issuer.reset_counters();

    for _ in 0..3 {
        let m = client.get_manifest(&r(&reg, "src/app:v1")).await.unwrap();
        assert_eq!(m.digest.to_string(), index.digest());
    }
    // One token for the pull scope, reused.
    assert_eq!(issuer.token_requests(), 1);

    let img = index.image_for("linux/arm64").unwrap();
    let ld: Digest = img.layers[0].digest.parse().unwrap();
    let from = r(&reg, "src/app");
    let to = r(&reg, "dst/app");
    assert!(client.mount_blob(&to, &ld, &from).await.unwrap().is_none());
    let scopes = issuer.requested_scopes();
    assert!(
        scopes
            .iter()
            .any(|s| s.contains("repository:dst/app:pull,push")),
        "{scopes:?}"
    );
    assert!(
        scopes.iter().any(|s| s.contains("repository:src/app:pull")),
        "{scopes:?}"
    );
    assert_eq!(
        client.head_blob(&to, &ld).await.unwrap(),
        Some(img.layers[0].size() as u64)
    );

    // Identity token (Docker's refresh token), no password.
    let refresh = Client::new(ClientOptions {
        registries: vec![RegistryConfig {
            host: reg.host(),
            identity_token: Some(Secret::new(issuer.refresh_token())),
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        refresh
            .get_manifest(&r(&reg, "src/app:v1"))
            .await
            .unwrap()
            .digest
            .to_string(),
        index.digest()
    );

    // Wrong password: one token request, a clear error, no storm.
    issuer.reset_counters();
    let e = client_for(&reg, &user, "not-the-password")
        .get_manifest(&r(&reg, "src/app:v1"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("refused user"), "{e}");
    assert!(!e.to_string().contains("not-the-password"));
    assert_eq!(issuer.token_requests(), 1);
}

/// Tokens that expire mid-run are refreshed without failing requests.
#[tokio::test(flavor = "multi_thread")]
async fn token_expiry_is_refreshed() {
    let issuer = TokenIssuer::start(TokenIssuerOptions {
        lifetime: Duration::from_secs(2),
        ..Default::default()
    })
    .await;
    let reg = TestRegistry::start(RegistryOptions::token(&issuer)).await;
    let index = ImageSet::multi_arch("exp", &["linux/amd64"], false, Format::Oci);
    push(&reg, "app", "v1", index.clone()).await.unwrap();
    let (user, pass) = issuer.credentials().unwrap();
    let client = client_for(&reg, &user, &pass);
    issuer.reset_counters();
    client.get_manifest(&r(&reg, "app:v1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    client.get_manifest(&r(&reg, "app:v1")).await.unwrap();
    assert_eq!(issuer.token_requests(), 2);
}

/// HTTPS with a private CA: trusted through `ca_file`, refused without it,
/// accepted with `skip-verify`.
#[tokio::test(flavor = "multi_thread")]
async fn tls_with_private_ca() {
    let reg = TestRegistry::start(RegistryOptions::anonymous().with_tls()).await;
    let index = ImageSet::multi_arch("tls", &["linux/amd64"], false, Format::Oci);
    push(&reg, "app", "v1", index.clone()).await.unwrap();
    let with = |tls: TlsMode, ca: bool| {
        Client::new(ClientOptions {
            registries: vec![RegistryConfig {
                host: reg.host(),
                tls: Some(tls),
                ca_file: if ca { reg.ca_pem_path() } else { None },
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap()
    };
    let m = with(TlsMode::Verify, true)
        .get_manifest(&r(&reg, "app:v1"))
        .await
        .unwrap();
    assert_eq!(m.digest.to_string(), index.digest());
    // An untrusted certificate fails at once (no retries) and says what to check.
    let e = with(TlsMode::Verify, false)
        .get_manifest(&r(&reg, "app:v1"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Tls { .. }), "{e:?}");
    assert!(e.to_string().contains("ca_file"), "{e}");
    let m = with(TlsMode::SkipVerify, false)
        .get_manifest(&r(&reg, "app:v1"))
        .await
        .unwrap();
    assert_eq!(m.digest.to_string(), index.digest());
}

fn regmirror(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(args)
        .output()
        .expect("run regmirror")
}

/// `regmirror inspect --raw` writes the bytes whose sha256 is the digest
/// skopeo reports, for an OCI index and a Docker manifest list; the table
/// labels attestations; `regmirror tags` lists tags.
#[tokio::test(flavor = "multi_thread")]
async fn inspect_and_tags_commands() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    for (repo, format) in [("oci/app", Format::Oci), ("docker/app", Format::Docker)] {
        let index = ImageSet::multi_arch(repo, &["linux/amd64", "linux/arm/v7"], true, format);
        push(&reg, repo, "1.0", index.clone()).await.unwrap();
        let reference = format!("{}/{repo}:1.0", reg.host());
        let out = regmirror(&["inspect", "--raw", &reference]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let skopeo = skopeo_raw_digest(&reg, &format!("{repo}:1.0"))
            .await
            .unwrap();
        assert_eq!(sha256_digest(&out.stdout), skopeo);
        assert_eq!(skopeo, index.digest());

        let out = regmirror(&["inspect", &reference]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("linux/amd64") && text.contains("linux/arm/v7"),
            "{text}"
        );
        assert_eq!(text.matches("attestation for sha256:").count(), 2, "{text}");
        assert!(text.contains(index.digest()), "{text}");

        let out = regmirror(&["inspect", "--json", &reference]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["manifests"].as_array().unwrap().len(), 4);
    }
    let out = regmirror(&["tags", &format!("{}/oci/app", reg.host())]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1.0\n");

    // Errors: a bad reference is a usage error (2); a missing image fails (1)
    // with a message naming it.
    let out = regmirror(&["inspect", "example.com/a//b"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("component \"\" is invalid"), "{err}");
    // Logs to a pipe carry no terminal colour codes.
    let out = regmirror(&[
        "--log-level",
        "debug",
        "inspect",
        &format!("{}/oci/app:1.0", reg.host()),
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("DEBUG"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
    let missing = format!("{}/oci/app:missing", reg.host());
    let out = regmirror(&["inspect", &missing]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&missing) && err.contains("MANIFEST_UNKNOWN"),
        "{err}"
    );
}

/// Mutual TLS: a registry that requires a client certificate accepts
/// regmirror with `client_cert_file`/`client_key_file` and refuses it without.
#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls() {
    let reg = TestRegistry::start(RegistryOptions::anonymous().with_client_auth()).await;
    let (cert, key) = reg.client_cert_paths().unwrap();
    let with_cert = Client::new(ClientOptions {
        registries: vec![RegistryConfig {
            host: reg.host(),
            tls: Some(TlsMode::Verify),
            ca_file: reg.ca_pem_path(),
            client_cert_file: Some(cert),
            client_key_file: Some(key),
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
    let repo = r(&reg, "mtls/app");
    let data = Bytes::from_static(b"mutual tls blob");
    let d = Digest::sha256_of(&data);
    with_cert
        .put_blob_bytes(&repo, &d, data.clone())
        .await
        .unwrap();
    assert_eq!(
        with_cert.get_blob_bytes(&repo, &d, 1024).await.unwrap(),
        data
    );

    // Without a client certificate the server refuses the handshake (a
    // BadCertificate alert, reported as a TLS error and not retried) or
    // closes the connection, which looks transient: keep the retries short.
    let without = Client::new(ClientOptions {
        registries: vec![RegistryConfig {
            host: reg.host(),
            tls: Some(TlsMode::Verify),
            ca_file: reg.ca_pem_path(),
            ..Default::default()
        }],
        retry: regmirror::registry::RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(10),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let e = without.head_blob(&repo, &d).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Tls { .. } | Error::Connection { .. } | Error::RetriesExhausted { .. }
        ),
        "{e:?}"
    );

    // A certificate without its key is a configuration error, found before any request.
    let half = Client::new(ClientOptions {
        registries: vec![RegistryConfig {
            host: reg.host(),
            client_cert_file: reg.client_cert_paths().map(|p| p.0),
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
    let e = half.check_registry(&reg.host()).unwrap_err();
    assert!(
        e.to_string()
            .contains("client_cert_file and client_key_file go together"),
        "{e}"
    );
}

/// Credentials from a Docker `config.json`: an `auths` entry, and a
/// credential helper (`docker-credential-<name> get`) found on PATH.
#[tokio::test(flavor = "multi_thread")]
async fn docker_config_auths_and_credential_helper() {
    use base64::Engine as _;
    let reg = TestRegistry::start(RegistryOptions::htpasswd("carol", "helper-pass")).await;
    let index = ImageSet::multi_arch("dc", &["linux/amd64"], false, Format::Oci);
    push(&reg, "app", "1", index.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("{}/app:1", reg.host());

    let auth = base64::engine::general_purpose::STANDARD.encode("carol:helper-pass");
    let auths = dir.path().join("auths.json");
    std::fs::write(
        &auths,
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["inspect", "--raw", "--docker-config"])
        .arg(&auths)
        .arg(&reference)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha256_digest(&out.stdout), index.digest());

    // The helper answers only for this registry's server URL.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-regmirrortest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = \"{}\" ] || {{ echo 'credentials not found'; exit 1; }}\n\
             echo '{{\"ServerURL\":\"'$server'\",\"Username\":\"carol\",\"Secret\":\"helper-pass\"}}'\n",
            reg.host()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let helpers = dir.path().join("helpers.json");
    std::fs::write(
        &helpers,
        format!(r#"{{"credHelpers":{{"{}":"regmirrortest"}}}}"#, reg.host()),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["inspect", "--raw", "--docker-config"])
        .arg(&helpers)
        .arg(&reference)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha256_digest(&out.stdout), index.digest());

    // A helper that is not installed is named in the error.
    std::fs::write(
        &helpers,
        format!(r#"{{"credHelpers":{{"{}":"absent"}}}}"#, reg.host()),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["inspect", "--docker-config"])
        .arg(&helpers)
        .arg(&reference)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("docker-credential-absent"), "{err}");
}

/// The issue's acceptance check: for images pushed by skopeo (an OCI index
/// from an OCI layout, and a Docker manifest list copied registry to
/// registry), `regmirror inspect --raw` writes bytes whose sha256 is the
/// digest skopeo reports.
#[tokio::test(flavor = "multi_thread")]
async fn inspect_raw_matches_skopeo_for_images_pushed_by_skopeo() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dir = tempfile::tempdir().unwrap();
    let oci = ImageSet::multi_arch("sk-oci", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    write_oci_layout(dir.path(), &oci.to_node(), "1.0").unwrap();
    skopeo_copy_all(
        &SkopeoLoc::oci(dir.path(), "1.0"),
        &SkopeoLoc::registry(&reg, "sk/oci:1.0"),
    )
    .await
    .unwrap();
    let docker = ImageSet::multi_arch(
        "sk-docker",
        &["linux/amd64", "linux/arm/v7"],
        true,
        Format::Docker,
    );
    push(&reg, "staging/docker", "1.0", docker.clone())
        .await
        .unwrap();
    skopeo_copy_all(
        &SkopeoLoc::registry(&reg, "staging/docker:1.0"),
        &SkopeoLoc::registry(&reg, "sk/docker:1.0"),
    )
    .await
    .unwrap();
    for (repo, expected) in [
        ("sk/oci:1.0", oci.digest()),
        ("sk/docker:1.0", docker.digest()),
    ] {
        let out = regmirror(&["inspect", "--raw", &format!("{}/{repo}", reg.host())]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let skopeo = skopeo_raw_digest(&reg, repo).await.unwrap();
        assert_eq!(sha256_digest(&out.stdout), skopeo, "{repo}");
        assert_eq!(skopeo, expected, "{repo}");
    }
}
