//! The `gar` identity provider against a loopback play of Google's
//! documented protocols (no cloud is reachable from the tests, so each
//! endpoint is a fake that the overrides Google's own libraries honour
//! point at):
//! - the GCE/GKE metadata server's default service-account token
//!   (`GCE_METADATA_HOST`, header `Metadata-Flavor: Google`);
//! - a service-account key file whose `token_uri` receives an RS256 JWT
//!   signed with the key (JWT-bearer grant, RFC 7523), checked by the fake
//!   with the key's public half (the key is made by `openssl` in the test);
//! - Artifact Registry's token flow (Basic `oauth2accesstoken:<access token>`
//!   at `/v2/token`) in front of a real `docker-registry` that only ever sees
//!   requests with a token the fake issued;
//! - workload identity federation (`external_account` files) with Google's
//!   STS, service-account impersonation with the IAM credentials API, and
//!   the AWS instance metadata (see `common::google_federation`), with
//!   subject tokens from an executable (Google's "executable-sourced
//!   credentials": a shell script in the test) and from AWS (a signed
//!   `GetCallerIdentity` request the fake STS checks with the test's
//!   secret): `identity_gar_federation`.

use std::time::{Duration, SystemTime};

use regmirror::registry::identity::IdentityProvider as _;
use regmirror::registry::identity::gar::{GAR_USERNAME, GarProvider, GoogleCredentials};

use crate::common::cloud_fakes::{GarFake, GoogleFake, rsa_key_pair};
use crate::common::registry::{RegistryOptions, TestRegistry};

pub const EMAIL: &str = "mirror@example-project.iam.gserviceaccount.com";

/// The registry token the fake GAR grants for `password`.
pub async fn registry_token(gar: &GarFake, password: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .get(format!(
            "http://{}/v2/token?scope=repository:p/r/app:pull,push",
            gar.gate.host()
        ))
        .basic_auth(GAR_USERNAME, Some(password))
        .send()
        .await
        .expect("the fake GAR answers")
        .status()
}

/// GKE workload identity / Compute Engine: the metadata server's token,
/// with the answer's `expires_in` as expiry.
#[tokio::test(flavor = "multi_thread")]
async fn the_metadata_server_token_is_the_password_of_oauth2accesstoken() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let google = GoogleFake::start(None, EMAIL).await;
    google.set_lifetime(Duration::from_secs(300));
    let gar = GarFake::start(&reg.base_url(), &google).await;
    let host = google.host().to_string();
    let creds = GoogleCredentials::from_vars(
        move |k| (k == "GCE_METADATA_HOST").then(|| host.clone()),
        |_| false,
    );
    let p = GarProvider::new(gar.gate.host(), creds, reqwest::Client::new());
    assert_eq!(p.name(), "gar");
    assert!(p.describe().contains(google.host()), "{}", p.describe());
    let cred = p.issue().await.expect("issue from the metadata server");
    assert_eq!(cred.username, GAR_USERNAME);
    let left = cred
        .expires_at
        .expect("expires_in")
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        left <= Duration::from_secs(300) && left >= Duration::from_secs(290),
        "{left:?}"
    );
    assert_eq!(registry_token(&gar, cred.password.expose()).await, 200);
    assert_eq!(registry_token(&gar, "ya29.not-issued").await, 401);
    assert_eq!(google.metadata_requests(), 1);
}

/// A service-account key file (GOOGLE_APPLICATION_CREDENTIALS): an RS256
/// assertion signed with its key, sent to its `token_uri`; a key the
/// endpoint does not know is refused with the endpoint's words.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_account_key_signs_an_assertion_for_its_token_uri() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = rsa_key_pair(dir.path());
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let google = GoogleFake::start(Some(&public), EMAIL).await;
    let gar = GarFake::start(&reg.base_url(), &google).await;
    let key_file = dir.path().join("sa.json");
    let key = serde_json::json!({
        "type": "service_account",
        "project_id": "example-project",
        "private_key_id": "0123456789abcdef",
        "private_key": private,
        "client_email": EMAIL,
        "client_id": "100000000000000000000",
        "token_uri": google.token_uri(),
    });
    std::fs::write(&key_file, key.to_string()).unwrap();
    let path = key_file.display().to_string();
    let creds = GoogleCredentials::from_vars(
        move |k| (k == "GOOGLE_APPLICATION_CREDENTIALS").then(|| path.clone()),
        |_| false,
    );
    let p = GarProvider::new(gar.gate.host(), creds, reqwest::Client::new());
    assert!(p.describe().contains("sa.json"), "{}", p.describe());
    let cred = p.issue().await.expect("issue with a service-account key");
    assert_eq!(registry_token(&gar, cred.password.expose()).await, 200);
    assert_eq!(google.key_grants(), 1);

    // Another key under the same name: the endpoint refuses the signature.
    let other = tempfile::tempdir().unwrap();
    let (wrong, _) = rsa_key_pair(other.path());
    let mut key = key;
    key["private_key"] = serde_json::Value::String(wrong.clone());
    std::fs::write(&key_file, key.to_string()).unwrap();
    let e = p.issue().await.unwrap_err().to_string();
    assert!(
        e.contains("Google token endpoint") && e.contains("invalid_grant"),
        "{e}"
    );
    assert!(!e.contains("PRIVATE KEY"), "{e}");
}

/// `serve` mirrors a multi-arch image into a GAR-like target with GKE
/// workload identity only (the metadata server at `GCE_METADATA_HOST`, no
/// password anywhere). Access tokens live 2 s and every run is 2 s apart,
/// so later runs meet an expired token: a tag pushed afterwards still
/// arrives, with a new token from the metadata server, no restart.
#[tokio::test(flavor = "multi_thread")]
async fn serve_mirrors_into_gar_with_the_metadata_server_across_token_expiry() {
    use crate::common::{Format, ImageSet, Pusher, push};
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let v1 = ImageSet::multi_arch(
        "app/v1",
        &["linux/amd64", "linux/arm64"],
        false,
        Format::Oci,
    );
    push(&src, "team/app", "v1", v1.to_node()).await.unwrap();
    let google = GoogleFake::start(None, EMAIL).await;
    google.set_lifetime(Duration::from_secs(2));
    let gar = GarFake::start(&dst.base_url(), &google).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[registry]]\nhost = \"{gate}\"\nauth = \"gar\"\n\n\
             [[mirror]]\nname = \"app\"\nsource = \"{src}/team/app\"\n\
             target = \"{gate}/project/repo/app\"\nschedule = \"*/2 * * * * *\"\n",
            gate = gar.gate.host(),
            src = src.host()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("serve.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env("HOME", dir.path())
        .env("GCE_METADATA_HOST", google.host())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning regmirror serve");
    let reader = Pusher::for_registry(&dst);
    let wait = async |tag: &str, want: &str| {
        for _ in 0..150 {
            if crate::common::verify::graph_problems(&reader, "project/repo/app", tag, want)
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
    let first = google.metadata_requests();
    // Past the token's lifetime, a new upstream tag is still mirrored.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v2 = ImageSet::multi_arch(
        "app/v2",
        &["linux/amd64", "linux/arm64"],
        false,
        Format::Oci,
    );
    push(&src, "team/app", "v2", v2.to_node()).await.unwrap();
    wait("v2", v2.digest()).await;
    assert!(
        google.metadata_requests() > first,
        "a new token was fetched after the first expired ({} then {})",
        first,
        google.metadata_requests()
    );
    let _ = child.start_kill();
}

/// `sync` mirrors a multi-arch image into a GAR-like target with a
/// service-account key file only (`GOOGLE_APPLICATION_CREDENTIALS`, its
/// `token_uri` on the fake). Access tokens live 2 s and registry tokens 1 s
/// while every registry request is held 150 ms, so both expire in the
/// middle of the copy: the run must sign a new assertion for a new access
/// token and finish with every manifest and blob in place.
#[tokio::test(flavor = "multi_thread")]
async fn sync_mirrors_into_gar_with_a_key_file_only_across_token_expiry() {
    use crate::common::{Format, ImageSet, Pusher, push, regmirror_isolated};
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = rsa_key_pair(dir.path());
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch(
        "app/1.0",
        &["linux/amd64", "linux/arm64", "linux/arm/v7"],
        false,
        Format::Oci,
    );
    push(&src, "team/app", "1.0", set.to_node()).await.unwrap();
    let google = GoogleFake::start(Some(&public), EMAIL).await;
    google.set_lifetime(Duration::from_secs(2));
    let gar = GarFake::start(&dst.base_url(), &google).await;
    gar.gate.set_bearer_lifetime(Duration::from_secs(1));
    gar.gate.set_delay(Duration::from_millis(150));
    let key_file = dir.path().join("sa.json");
    let key = serde_json::json!({
        "type": "service_account",
        "private_key_id": "0123456789abcdef",
        "private_key": private,
        "client_email": EMAIL,
        "token_uri": google.token_uri(),
    });
    std::fs::write(&key_file, key.to_string()).unwrap();
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\nconcurrency = 1\n\n[[registry]]\nhost = \"{gate}\"\nauth = \"gar\"\n\n\
             [[mirror]]\nsource = \"{src}/team/app\"\ntarget = \"{gate}/project/repo/app\"\n\
             tags = [\"1.0\"]\n",
            gate = gar.gate.host(),
            src = src.host()
        ),
    )
    .unwrap();
    let run = regmirror_isolated(
        &["sync", "--config", config.to_str().unwrap()],
        &[("GOOGLE_APPLICATION_CREDENTIALS", key_file.to_str().unwrap())],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let problems = crate::common::verify::graph_problems(
        &Pusher::for_registry(&dst),
        "project/repo/app",
        "1.0",
        set.digest(),
    )
    .await;
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        google.key_grants() >= 2,
        "the access token expired mid-run and was renewed: {} grants, log:\n{}",
        google.key_grants(),
        run.stderr
    );
    assert!(gar.gate.token_grants() >= 2, "registry tokens were renewed");
}
