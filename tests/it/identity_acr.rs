//! The `acr` identity provider against a loopback play of Azure's documented
//! protocols (no cloud is reachable from the tests, so each endpoint is a
//! fake that the overrides Azure's own SDKs honour point at):
//! - Microsoft Entra ID's client credentials grant at
//!   `{AZURE_AUTHORITY_HOST}/{tenant}/oauth2/v2.0/token`, with workload
//!   identity's federated token file as client assertion or a client secret;
//! - the managed identity endpoint of the instance metadata service
//!   (`AZURE_POD_IDENTITY_AUTHORITY_HOST`);
//! - ACR's `POST /oauth2/exchange` (Entra token -> ACR refresh token, a JWT
//!   whose `exp` is its expiry) and `/oauth2/token`, in front of a real
//!   `docker-registry` that only ever sees requests with a token the fake
//!   ACR issued.

use std::time::{Duration, SystemTime};

use regmirror::registry::identity::IdentityProvider as _;
use regmirror::registry::identity::acr::{ACR_USERNAME, AcrProvider, AzureIdentity};

use crate::common::cloud_fakes::{AcrFake, EntraFake};
use crate::common::registry::{RegistryOptions, TestRegistry};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "11111111-2222-3333-4444-555555555555";

fn workload_vars(entra: &EntraFake, token_file: &std::path::Path) -> AzureIdentity {
    let authority = entra.base_url().to_string();
    let file = token_file.display().to_string();
    AzureIdentity::from_vars(move |k| match k {
        "AZURE_TENANT_ID" => Some(TENANT.into()),
        "AZURE_CLIENT_ID" => Some(CLIENT.into()),
        "AZURE_FEDERATED_TOKEN_FILE" => Some(file.clone()),
        "AZURE_AUTHORITY_HOST" => Some(authority.clone()),
        _ => None,
    })
}

/// The registry token the fake ACR grants for `password` (GET with Basic
/// `00000000-…:<refresh token>`, as Docker and regmirror's token flow send it).
async fn registry_token(acr: &AcrFake, password: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .get(format!(
            "http://{}/oauth2/token?service={}&scope=repository:app:pull,push",
            acr.gate.host(),
            acr.gate.host()
        ))
        .basic_auth(ACR_USERNAME, Some(password))
        .send()
        .await
        .expect("the fake ACR answers")
        .status()
}

/// Workload identity (AKS): the federated token file is the client
/// assertion; the Entra token is exchanged for a refresh token whose JWT
/// `exp` is the credential's expiry; the file is read again at every issue,
/// so a token the kubelet rotated is used.
#[tokio::test(flavor = "multi_thread")]
async fn workload_identity_exchanges_the_federated_token_for_an_acr_refresh_token() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let entra = EntraFake::start(TENANT, CLIENT, "federated-1", None).await;
    let acr = AcrFake::start(&reg.base_url(), &entra).await;
    acr.set_refresh_lifetime(Duration::from_secs(600));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, "federated-1\n").unwrap();
    let base = format!("http://{}", acr.gate.host());
    let p = AcrProvider::new(&base, workload_vars(&entra, &file), reqwest::Client::new()).unwrap();
    assert_eq!(p.name(), "acr");
    assert!(
        p.describe().contains("azure-identity-token"),
        "{}",
        p.describe()
    );

    let cred = p.issue().await.expect("issue with workload identity");
    assert_eq!(cred.username, ACR_USERNAME);
    let exp = cred.expires_at.expect("an expiry from the JWT exp");
    let left = exp.duration_since(SystemTime::now()).unwrap();
    assert!(
        left <= Duration::from_secs(600) && left >= Duration::from_secs(590),
        "{left:?}"
    );
    assert_eq!(registry_token(&acr, cred.password.expose()).await, 200);
    assert_eq!(registry_token(&acr, "not-issued").await, 401);
    assert_eq!(acr.exchanges(), 1);

    // The kubelet rotated the projected token: the new file content is sent.
    entra.rotate_federated_token("federated-2");
    std::fs::write(&file, "federated-2").unwrap();
    let again = p.issue().await.expect("issue after rotation");
    assert_ne!(again.password.expose(), cred.password.expose());
    assert_eq!(acr.exchanges(), 2);
}

/// Managed identity (VM, AKS node): the metadata service's token endpoint
/// with `Metadata: true` and the resource without `/.default`.
#[tokio::test(flavor = "multi_thread")]
async fn managed_identity_uses_the_metadata_service() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let entra = EntraFake::start(TENANT, CLIENT, "unused", None).await;
    let acr = AcrFake::start(&reg.base_url(), &entra).await;
    let imds = entra.base_url().to_string();
    let id = AzureIdentity::from_vars(move |k| {
        (k == "AZURE_POD_IDENTITY_AUTHORITY_HOST").then(|| imds.clone())
    });
    let base = format!("http://{}", acr.gate.host());
    let p = AcrProvider::new(&base, id, reqwest::Client::new()).unwrap();
    assert!(
        p.describe().contains("managed identity"),
        "{}",
        p.describe()
    );
    let cred = p.issue().await.expect("issue with managed identity");
    assert_eq!(registry_token(&acr, cred.password.expose()).await, 200);
}

/// A service principal with a client secret; a refused secret fails with
/// Entra's own words and the endpoint, never the secret.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_principal_secret_and_its_refusal() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let entra = EntraFake::start(TENANT, CLIENT, "unused", Some("right-secret")).await;
    let acr = AcrFake::start(&reg.base_url(), &entra).await;
    let base = format!("http://{}", acr.gate.host());
    let with_secret = |secret: &'static str| {
        let authority = entra.base_url().to_string();
        AzureIdentity::from_vars(move |k| match k {
            "AZURE_TENANT_ID" => Some(TENANT.into()),
            "AZURE_CLIENT_ID" => Some(CLIENT.into()),
            "AZURE_CLIENT_SECRET" => Some(secret.into()),
            "AZURE_AUTHORITY_HOST" => Some(authority.clone()),
            _ => None,
        })
    };
    let p = AcrProvider::new(&base, with_secret("right-secret"), reqwest::Client::new()).unwrap();
    let cred = p.issue().await.expect("issue with a client secret");
    assert_eq!(registry_token(&acr, cred.password.expose()).await, 200);

    let p = AcrProvider::new(&base, with_secret("wrong-secret"), reqwest::Client::new()).unwrap();
    let e = p.issue().await.unwrap_err();
    let text = e.to_string();
    assert_eq!(
        e.kind(),
        regmirror::registry::ErrorKind::AuthRefused,
        "{text}"
    );
    assert!(
        text.contains("Entra ID token endpoint") && text.contains("AADSTS700024"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret"), "{text}");
    assert_eq!(acr.exchanges(), 1);
}

/// `sync` mirrors a multi-arch image into an ACR-like target with workload
/// identity only: the config names no password, only `auth = "acr"`, and the
/// environment is what Azure's workload identity webhook injects. Refresh
/// tokens live 2 s and registry tokens 1 s while every registry request is
/// held 150 ms, so both expire in the middle of the copy: the run must get
/// a new refresh token (a second exchange) and finish with every manifest
/// and blob in place.
#[tokio::test(flavor = "multi_thread")]
async fn sync_mirrors_into_acr_with_workload_identity_only_across_token_expiry() {
    use crate::common::{Format, ImageSet, Pusher, push, regmirror_isolated};
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch(
        "app/1.0",
        &["linux/amd64", "linux/arm64", "linux/arm/v7"],
        false,
        Format::Oci,
    );
    push(&src, "team/app", "1.0", set.to_node()).await.unwrap();
    let entra = EntraFake::start(TENANT, CLIENT, "federated-1", None).await;
    let acr = AcrFake::start(&dst.base_url(), &entra).await;
    acr.set_refresh_lifetime(Duration::from_secs(2));
    acr.gate.set_bearer_lifetime(Duration::from_secs(1));
    acr.gate.set_delay(Duration::from_millis(150));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "federated-1").unwrap();
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\nconcurrency = 1\n\n[[registry]]\nhost = \"{gate}\"\nauth = \"acr\"\n\n\
             [[mirror]]\nsource = \"{src}/team/app\"\ntarget = \"{gate}/mirror/app\"\ntags = [\"1.0\"]\n",
            gate = acr.gate.host(),
            src = src.host()
        ),
    )
    .unwrap();
    let run = regmirror_isolated(
        &["sync", "--config", config.to_str().unwrap()],
        &[
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", CLIENT),
            ("AZURE_FEDERATED_TOKEN_FILE", token_file.to_str().unwrap()),
            ("AZURE_AUTHORITY_HOST", entra.base_url()),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let problems = crate::common::verify::graph_problems(
        &Pusher::for_registry(&dst),
        "mirror/app",
        "1.0",
        set.digest(),
    )
    .await;
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        acr.exchanges() >= 2,
        "the refresh token expired mid-run and was renewed: {} exchanges, {} stale tokens, log:\n{}",
        acr.exchanges(),
        acr.gate.stale_bearers(),
        run.stderr
    );
    assert!(acr.gate.token_grants() >= 2, "registry tokens were renewed");
}

/// `serve` mirrors a multi-arch image into an ACR-like target with workload
/// identity only (the federated token file the webhook injects, no password
/// anywhere). Refresh tokens live 2 s and runs are 2 s apart, so a later run
/// meets an expired refresh token: a tag pushed afterwards still arrives,
/// with a new exchange, no restart.
#[tokio::test(flavor = "multi_thread")]
async fn serve_mirrors_into_acr_with_workload_identity_across_token_expiry() {
    use crate::common::{Format, ImageSet, Pusher, push};
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let arches = ["linux/amd64", "linux/arm64"];
    let v1 = ImageSet::multi_arch("app/v1", &arches, false, Format::Oci);
    push(&src, "team/app", "v1", v1.to_node()).await.unwrap();
    let entra = EntraFake::start(TENANT, CLIENT, "federated-1", None).await;
    let acr = AcrFake::start(&dst.base_url(), &entra).await;
    acr.set_refresh_lifetime(Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "federated-1").unwrap();
    let port = crate::common::serve::free_port();
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[registry]]\nhost = \"{gate}\"\nauth = \"acr\"\n\n\
             [[mirror]]\nname = \"app\"\nsource = \"{src}/team/app\"\n\
             target = \"{gate}/mirror/app\"\nschedule = \"*/2 * * * * *\"\n",
            gate = acr.gate.host(),
            src = src.host()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("serve.log");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"));
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true);
    for k in crate::common::cli::CREDENTIAL_ENV {
        cmd.env_remove(k);
    }
    cmd.env("HOME", dir.path())
        .env_remove("AZURE_CLIENT_SECRET")
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", CLIENT)
        .env("AZURE_FEDERATED_TOKEN_FILE", &token_file)
        .env("AZURE_AUTHORITY_HOST", entra.base_url());
    let mut child = cmd.spawn().expect("spawning regmirror serve");
    let reader = Pusher::for_registry(&dst);
    let wait = async |tag: &str, want: &str| {
        for _ in 0..150 {
            if crate::common::verify::graph_problems(&reader, "mirror/app", tag, want)
                .await
                .is_empty()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "{tag} never arrived; serve log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    };
    wait("v1", v1.digest()).await;
    let first = acr.exchanges();
    // Past the refresh token's lifetime, a new upstream tag is still mirrored.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v2 = ImageSet::multi_arch("app/v2", &arches, false, Format::Oci);
    push(&src, "team/app", "v2", v2.to_node()).await.unwrap();
    wait("v2", v2.digest()).await;
    assert!(
        acr.exchanges() > first,
        "a new refresh token was exchanged after the first expired ({first} then {})",
        acr.exchanges()
    );
    let _ = child.start_kill();
}

/// A service principal's certificate (`AZURE_CLIENT_CERTIFICATE_PATH`, a PEM
/// file with the private key and the certificate, as the Azure SDKs read
/// it): `sync` presents a client assertion signed RS256 with the key and
/// naming the certificate by its `x5t#S256` thumbprint, as Entra ID
/// documents certificate credentials; the fake Entra checks the signature
/// with the registered certificate. A certificate Entra does not know is
/// refused with Entra's words, and the key never reaches the output.
#[tokio::test(flavor = "multi_thread")]
async fn sync_with_a_service_principal_certificate() {
    use crate::common::{Format, ImageSet, Pusher, push, regmirror_isolated};
    use base64::Engine as _;
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let make_cert = |name: &str| {
        let key = dir.path().join(format!("{name}.key"));
        let cert = dir.path().join(format!("{name}.crt"));
        let ok = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=regmirror-test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "openssl could not make a certificate");
        let key = std::fs::read_to_string(key).unwrap();
        let cert = std::fs::read_to_string(cert).unwrap();
        let combined = dir.path().join(format!("{name}.pem"));
        std::fs::write(&combined, format!("{key}{cert}")).unwrap();
        (combined, cert)
    };
    let (pem_path, cert_pem) = make_cert("sp");
    let body: String = cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let thumbprint =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der));

    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch(
        "app/cert",
        &["linux/amd64", "linux/arm64"],
        false,
        Format::Oci,
    );
    push(&src, "team/app", "1.0", set.to_node()).await.unwrap();
    let entra = EntraFake::start(TENANT, CLIENT, "unused-federated", None).await;
    entra.register_certificate(&cert_pem, &thumbprint);
    let acr = AcrFake::start(&dst.base_url(), &entra).await;
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[[registry]]\nhost = \"{gate}\"\nauth = \"acr\"\n\n\
             [[mirror]]\nsource = \"{src}/team/app\"\ntarget = \"{gate}/mirror/app\"\ntags = [\"1.0\"]\n",
            gate = acr.gate.host(),
            src = src.host()
        ),
    )
    .unwrap();
    let sync = async |pem: &std::path::Path| {
        regmirror_isolated(
            &["sync", "--config", config.to_str().unwrap()],
            &[
                ("AZURE_TENANT_ID", TENANT),
                ("AZURE_CLIENT_ID", CLIENT),
                ("AZURE_CLIENT_CERTIFICATE_PATH", pem.to_str().unwrap()),
                ("AZURE_AUTHORITY_HOST", entra.base_url()),
            ],
        )
        .await
    };
    let run = sync(&pem_path).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(entra.certificate_grants(), 1);
    let problems = crate::common::verify::graph_problems(
        &Pusher::for_registry(&dst),
        "mirror/app",
        "1.0",
        set.digest(),
    )
    .await;
    assert!(problems.is_empty(), "{problems:?}");

    // Another certificate (another key): refused, with Entra's words.
    let (other, _) = make_cert("other");
    let newer = ImageSet::multi_arch("app/cert2", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/app", "1.0", newer.to_node())
        .await
        .unwrap();
    let run = sync(&other).await;
    assert_ne!(run.code, 0, "{}", run.stdout);
    let text = format!("{}{}", run.stdout, run.stderr);
    assert!(
        text.contains("invalid_client") && text.contains("Entra ID token endpoint"),
        "{text}"
    );
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    assert_eq!(entra.certificate_grants(), 1);
}
