//! The `gar` provider with `external_account` and
//! `impersonated_service_account` credentials files, against loopback plays
//! of the documented protocols (`common::google_federation`): Google's STS
//! token exchange, the IAM credentials API's `generateAccessToken`, the AWS
//! instance metadata service, and Artifact Registry's token flow in front of
//! a real `docker-registry` (`common::cloud_fakes::GarFake`).
//!
//! The subject-token sources follow Google's auth libraries
//! (google-auth-library, "Executable-sourced credentials" and "Accessing
//! resources from AWS"; AIP-4117 external account credentials):
//! - an executable, run only with `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1`,
//!   told the audience, token type, `INTERACTIVE=0` and output file in
//!   `GOOGLE_EXTERNAL_ACCOUNT_*` variables, answering JSON (`version`,
//!   `success`, `token_type`, `id_token`, `expiration_time`, or `code` and
//!   `message`), its cached `output_file` reused while unexpired, killed
//!   after `timeout_millis`;
//! - AWS (`environment_id = "aws1"`): a `GetCallerIdentity` request signed
//!   with AWS Signature Version 4, keys from `AWS_*` variables or from the
//!   IMDSv2 metadata (`imdsv2_session_token_url`, `region_url`, `url`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regmirror::registry::identity::IdentityProvider as _;
use regmirror::registry::identity::gar::{EnvVars, GarProvider, GoogleCredentials};
use serde_json::{Value, json};

use crate::common::cloud_fakes::{GarFake, GoogleFake, rsa_key_pair};
use crate::common::google_federation::{AWS_TOKEN_TYPE, FederationFake, ID_TOKEN_TYPE};
use crate::common::registry::{RegistryOptions, TestRegistry};
use crate::common::{Format, ImageSet, Pusher, Run, push, regmirror_isolated};
use crate::identity_gar::{EMAIL, registry_token};

const AUDIENCE: &str = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/mirror/providers/ci";
const SERVICE_ACCOUNT: &str = "mirror-writer@example-project.iam.gserviceaccount.com";
const AWS_VERIFY_URL: &str =
    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";

/// A multi-arch image upstream and a GAR-like target behind `google`'s tokens.
struct Target {
    _src: TestRegistry,
    dst: TestRegistry,
    gar: GarFake,
    digest: String,
    config: PathBuf,
}

impl Target {
    async fn start(google: &GoogleFake, dir: &Path) -> Target {
        let src = TestRegistry::start(RegistryOptions::anonymous()).await;
        let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
        let set = ImageSet::multi_arch(
            "fed/1.0",
            &["linux/amd64", "linux/arm64", "linux/arm/v7"],
            false,
            Format::Oci,
        );
        push(&src, "team/app", "1.0", set.to_node()).await.unwrap();
        let gar = GarFake::start(&dst.base_url(), google).await;
        let config = dir.join("mirror.toml");
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
        Target {
            digest: set.digest().to_string(),
            _src: src,
            dst,
            gar,
            config,
        }
    }

    /// `regmirror sync` with the credentials file `creds` and `envs`.
    async fn sync(&self, creds: &Path, envs: &[(&str, &str)]) -> Run {
        let mut all = vec![("GOOGLE_APPLICATION_CREDENTIALS", creds.to_str().unwrap())];
        all.extend_from_slice(envs);
        regmirror_isolated(&["sync", "--config", self.config.to_str().unwrap()], &all).await
    }

    /// What is missing or wrong in the target's copy.
    async fn problems(&self) -> Vec<String> {
        crate::common::verify::graph_problems(
            &Pusher::for_registry(&self.dst),
            "project/repo/app",
            "1.0",
            &self.digest,
        )
        .await
    }
}

/// An `external_account` file for `fed` with `source`, plus `extra` keys.
fn external_account(
    dir: &Path,
    fed: &FederationFake,
    token_type: &str,
    source: Value,
    extra: Value,
) -> PathBuf {
    let mut file = json!({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": token_type,
        "token_url": fed.token_url(),
        "credential_source": source,
    });
    if let (Some(f), Some(e)) = (file.as_object_mut(), extra.as_object()) {
        f.extend(e.clone());
    }
    let path = dir.join("external-account.json");
    std::fs::write(&path, file.to_string()).unwrap();
    path
}

/// A shell script `name` in `dir` with `body`, and the command that runs it.
fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Run through sh: executing a file just written can meet ETXTBSY while
    // another test thread forks.
    format!("/bin/sh {}", path.display())
}

/// A provider reading `creds` with the environment `vars`.
fn provider(gate: &str, creds: &Path, vars: &[(&str, &str)]) -> GarProvider {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let creds = GoogleCredentials::File {
        path: creds.to_path_buf(),
        origin: "GOOGLE_APPLICATION_CREDENTIALS",
    };
    GarProvider::new(gate, creds, reqwest::Client::new()).with_env(EnvVars::from_fn(move |k| {
        vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }))
}

fn far_future() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

/// Executable-sourced credentials through the binary: the program is told
/// what Google's libraries tell it, its OIDC token is exchanged at the STS,
/// and a second run uses the unexpired answer the program left in
/// `output_file` without running it again.
#[tokio::test(flavor = "multi_thread")]
async fn sync_with_an_executable_sourced_credential_and_its_cached_output() {
    let dir = tempfile::tempdir().unwrap();
    let google = GoogleFake::start(None, EMAIL).await;
    let fed = FederationFake::start(&google, AUDIENCE, SERVICE_ACCOUNT).await;
    fed.trust_oidc("oidc.from-the-program");
    let target = Target::start(&google, dir.path()).await;
    let log = dir.path().join("runs.log");
    let output = dir.path().join("token-cache.json");
    let answer = json!({"version": 1, "success": true, "token_type": ID_TOKEN_TYPE,
        "id_token": "oidc.from-the-program", "expiration_time": far_future()});
    let command = script(
        dir.path(),
        "token.sh",
        &format!(
            "echo \"audience=$GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE type=$GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE \
             interactive=$GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE output=$GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE\" >> {log}\n\
             printf '%s' '{answer}' > \"$GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE\"\nprintf '%s\\n' '{answer}'",
            log = log.display()
        ),
    );
    let creds = external_account(
        dir.path(),
        &fed,
        ID_TOKEN_TYPE,
        json!({"executable": {"command": command, "timeout_millis": 10000,
                              "output_file": output.to_str().unwrap()}}),
        json!({}),
    );
    let allow = [("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1")];
    let run = target.sync(&creds, &allow).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let problems = target.problems().await;
    assert!(problems.is_empty(), "{problems:?}");
    let runs = std::fs::read_to_string(&log).expect("the program ran");
    assert_eq!(
        runs.trim(),
        format!(
            "audience={AUDIENCE} type={ID_TOKEN_TYPE} interactive=0 output={}",
            output.display()
        ),
        "what the program was told"
    );
    let grants = fed.sts_grants();
    assert!(grants >= 1);
    assert!(
        !run.stderr.contains("oidc.from-the-program"),
        "{}",
        run.stderr
    );

    // A second run: the program's cached answer is still good.
    let run = target.sync(&creds, &allow).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        fed.sts_grants() > grants,
        "the second run exchanged a token"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        1,
        "the program ran again although its output_file held an unexpired answer"
    );
}

/// Executable-sourced credentials that cannot give a token: not allowed,
/// a failure answer, a failing program, an expired token, a program that
/// outlives `timeout_millis` (killed). Each error names the cause and
/// never the token.
#[tokio::test(flavor = "multi_thread")]
async fn executable_sourced_credentials_that_fail_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let google = GoogleFake::start(None, EMAIL).await;
    let fed = FederationFake::start(&google, AUDIENCE, SERVICE_ACCOUNT).await;
    let allow = [("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1")];
    let issue = async |body: &str, vars: &[(&str, &str)], timeout: u64| {
        let command = script(dir.path(), "p.sh", body);
        let creds = external_account(
            dir.path(),
            &fed,
            ID_TOKEN_TYPE,
            json!({"executable": {"command": command, "timeout_millis": timeout}}),
            json!({}),
        );
        provider("gar.example", &creds, vars)
            .issue()
            .await
            .expect_err("no token")
            .to_string()
    };
    let marker = dir.path().join("ran");
    let e = issue(&format!("touch {}", marker.display()), &[], 5000).await;
    assert!(
        e.contains("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1"),
        "{e}"
    );
    assert!(!marker.exists(), "the program ran without being allowed");

    let e = issue(
        r#"echo '{"version":1,"success":false,"code":"401","message":"Caller not authorized."}'"#,
        &allow,
        5000,
    )
    .await;
    assert!(
        e.contains("code 401") && e.contains("Caller not authorized."),
        "{e}"
    );

    let e = issue("echo 'no identity here' >&2; exit 3", &allow, 5000).await;
    assert!(
        e.contains("exit status: 3") && e.contains("no identity here"),
        "{e}"
    );

    let expired = json!({"version": 1, "success": true, "token_type": ID_TOKEN_TYPE,
        "id_token": "oidc.expired-secret", "expiration_time": 1});
    let e = issue(&format!("echo '{expired}'"), &allow, 5000).await;
    assert!(
        e.contains("expiration_time") && !e.contains("oidc.expired-secret"),
        "{e}"
    );

    let e = issue("echo 1", &allow, 1000).await;
    assert!(e.contains("timeout_millis") && e.contains("5000"), "{e}");

    let pid_file = dir.path().join("pid");
    let e = issue(
        &format!("echo $$ > {}\nexec sleep 60", pid_file.display()),
        &allow,
        5000,
    )
    .await;
    assert!(
        e.contains("did not finish within 5000 ms") && e.contains("killed"),
        "{e}"
    );
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    let mut alive = true;
    for _ in 0..50 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting to be reaped: killed either way.
        if stat.is_empty() || stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')) {
            alive = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!alive, "the program {pid} outlived its timeout");
    assert_eq!(fed.sts_grants(), 0);
}

/// AWS through the binary with the instance metadata only: an IMDSv2
/// session token, the region from the availability zone, the role's
/// temporary keys, a `GetCallerIdentity` request signed with them (and
/// their session token) that Google's STS accepts.
#[tokio::test(flavor = "multi_thread")]
async fn sync_from_aws_with_the_instance_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let google = GoogleFake::start(None, EMAIL).await;
    let fed = FederationFake::start(&google, AUDIENCE, SERVICE_ACCOUNT).await;
    let target = Target::start(&google, dir.path()).await;
    let imds = fed.imds_base();
    let creds = external_account(
        dir.path(),
        &fed,
        AWS_TOKEN_TYPE,
        json!({"environment_id": "aws1",
               "region_url": format!("{imds}/meta-data/placement/availability-zone"),
               "url": format!("{imds}/meta-data/iam/security-credentials"),
               "imdsv2_session_token_url": format!("{imds}/api/token"),
               "regional_cred_verification_url": AWS_VERIFY_URL}),
        json!({}),
    );
    // Blank AWS variables count as unset: the metadata is the only source.
    let blank = [
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("AWS_SESSION_TOKEN", ""),
        ("AWS_REGION", ""),
        ("AWS_DEFAULT_REGION", ""),
    ];
    let run = target.sync(&creds, &blank).await;
    assert_eq!(
        run.code,
        0,
        "{}\n{}\nSTS refusals: {:?}",
        run.stdout,
        run.stderr,
        fed.sts_refusals()
    );
    let problems = target.problems().await;
    assert!(problems.is_empty(), "{problems:?}");
    assert!(fed.aws_grants() >= 1, "{:?}", fed.sts_refusals());
    assert!(fed.imds_session_requests() >= 1);
}

/// AWS keys from the environment: the signature is checked with the known
/// secret; another secret under the same key id is refused by the STS,
/// and the error carries the STS's words, not the secret.
#[tokio::test(flavor = "multi_thread")]
async fn aws_keys_from_the_environment_sign_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let google = GoogleFake::start(None, EMAIL).await;
    let fed = FederationFake::start(&google, AUDIENCE, SERVICE_ACCOUNT).await;
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let gar = GarFake::start(&reg.base_url(), &google).await;
    fed.trust_aws_key("AKIDREGMIRRORTEST", "known/test+secret", None);
    let source =
        json!({"environment_id": "aws1", "regional_cred_verification_url": AWS_VERIFY_URL});
    let creds = external_account(dir.path(), &fed, AWS_TOKEN_TYPE, source, json!({}));
    let env = |secret: &'static str| {
        [
            ("AWS_ACCESS_KEY_ID", "AKIDREGMIRRORTEST"),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_REGION", "us-east-2"),
        ]
    };
    let p = provider(gar.gate.host(), &creds, &env("known/test+secret"));
    let cred = p
        .issue()
        .await
        .unwrap_or_else(|e| panic!("{e}; STS: {:?}", fed.sts_refusals()));
    assert_eq!(registry_token(&gar, cred.password.expose()).await, 200);
    assert_eq!((fed.aws_grants(), fed.imds_session_requests()), (1, 0));

    // Temporary keys: the session token is sent and signed; the region may
    // come from AWS_DEFAULT_REGION.
    fed.trust_aws_key(
        "ASIAREGMIRRORTEST",
        "temporary/secret",
        Some("session/token=="),
    );
    let p = provider(
        gar.gate.host(),
        &creds,
        &[
            ("AWS_ACCESS_KEY_ID", "ASIAREGMIRRORTEST"),
            ("AWS_SECRET_ACCESS_KEY", "temporary/secret"),
            ("AWS_SESSION_TOKEN", "session/token=="),
            ("AWS_DEFAULT_REGION", "ap-south-1"),
        ],
    );
    p.issue()
        .await
        .unwrap_or_else(|e| panic!("{e}; STS: {:?}", fed.sts_refusals()));
    assert_eq!(fed.aws_regions(), ["us-east-2", "ap-south-1"]);

    let p = provider(gar.gate.host(), &creds, &env("a-wrong-secret"));
    let e = p.issue().await.unwrap_err().to_string();
    assert!(
        e.contains("Google STS token endpoint")
            && e.contains("invalid_grant")
            && e.contains("signature does not match"),
        "{e}"
    );
    assert!(!e.contains("a-wrong-secret"), "{e}");

    let source =
        json!({"environment_id": "aws2", "regional_cred_verification_url": AWS_VERIFY_URL});
    let creds = external_account(dir.path(), &fed, AWS_TOKEN_TYPE, source, json!({}));
    let e = provider(gar.gate.host(), &creds, &env("known/test+secret"))
        .issue()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("aws2") && e.contains("supported: aws1"), "{e}");
}

/// A URL-sourced subject token in JSON (`format.subject_token_field_name`),
/// fetched with the file's `headers`, exchanged at the STS without
/// impersonation: the STS token is the registry password.
#[tokio::test(flavor = "multi_thread")]
async fn a_url_sourced_subject_token_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let google = GoogleFake::start(None, EMAIL).await;
    let fed = FederationFake::start(&google, AUDIENCE, SERVICE_ACCOUNT).await;
    fed.trust_oidc("oidc.from-a-url");
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let gar = GarFake::start(&reg.base_url(), &google).await;
    let source = |headers: Value| {
        json!({"url": fed.subject_url(), "headers": headers,
               "format": {"type": "json", "subject_token_field_name": "id_token"}})
    };
    let creds = external_account(
        dir.path(),
        &fed,
        ID_TOKEN_TYPE,
        source(json!({"Metadata": "True"})),
        json!({}),
    );
    let cred = provider(gar.gate.host(), &creds, &[])
        .issue()
        .await
        .expect("a token");
    assert_eq!(registry_token(&gar, cred.password.expose()).await, 200);
    assert_eq!(fed.sts_grants(), 1);
    let creds = external_account(
        dir.path(),
        &fed,
        ID_TOKEN_TYPE,
        source(json!({})),
        json!({}),
    );
    let e = provider(gar.gate.host(), &creds, &[])
        .issue()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("subject token URL") && e.contains("HTTP 400"),
        "{e}"
    );
}

/// Workload identity federation with impersonation through the binary: a
/// file-sourced OIDC token exchanged at the STS, whose token is good only
/// for `generateAccessToken` (the registry accepts the service account's
/// tokens only), with the file's `token_lifetime_seconds`. Access tokens live
/// 2 s and registry tokens 1 s while every request is held 150 ms, so the
/// impersonated token expires mid-run and is asked for again.
#[tokio::test(flavor = "multi_thread")]
async fn sync_with_federation_and_impersonation_across_token_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let google = GoogleFake::start(None, EMAIL).await;
    google.set_lifetime(Duration::from_secs(2));
    let fed = FederationFake::start(&google, AUDIENCE, SERVICE_ACCOUNT).await;
    fed.require_impersonation();
    fed.trust_oidc("oidc.kubelet-projected");
    let target = Target::start(&google, dir.path()).await;
    target.gar.gate.set_bearer_lifetime(Duration::from_secs(1));
    target.gar.gate.set_delay(Duration::from_millis(150));
    let token_file = dir.path().join("oidc-token");
    std::fs::write(&token_file, "oidc.kubelet-projected\n").unwrap();
    let creds = external_account(
        dir.path(),
        &fed,
        "urn:ietf:params:oauth:token-type:jwt",
        json!({"file": token_file.to_str().unwrap()}),
        json!({"service_account_impersonation_url": fed.impersonation_url(),
               "service_account_impersonation": {"token_lifetime_seconds": 600}}),
    );
    let run = target.sync(&creds, &[]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let problems = target.problems().await;
    assert!(problems.is_empty(), "{problems:?}");
    let calls = fed.impersonations();
    assert!(
        calls.len() >= 2,
        "the impersonated token expired mid-run and was renewed: {} calls, log:\n{}",
        calls.len(),
        run.stderr
    );
    assert_eq!(calls[0]["lifetime"], "600s");
    assert_eq!(
        calls[0]["scope"],
        json!(["https://www.googleapis.com/auth/cloud-platform"])
    );
    assert!(fed.sts_grants() >= 2);
}

/// gcloud's `impersonated_service_account` file: its service-account key
/// signs for a source token, which is the bearer of `generateAccessToken`
/// with the file's `delegates`; the registry gets the impersonated token.
/// An unsupported source type is named.
#[tokio::test(flavor = "multi_thread")]
async fn an_impersonated_service_account_file() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = rsa_key_pair(dir.path());
    let google = GoogleFake::start(Some(&public), EMAIL).await;
    let fed = FederationFake::start(&google, AUDIENCE, SERVICE_ACCOUNT).await;
    let target = Target::start(&google, dir.path()).await;
    let delegate = "projects/-/serviceAccounts/chain@example-project.iam.gserviceaccount.com";
    let mut file = json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": fed.impersonation_url(),
        "delegates": [delegate],
        "source_credentials": {
            "type": "service_account",
            "private_key_id": "0123456789abcdef",
            "private_key": private,
            "client_email": EMAIL,
            "token_uri": google.token_uri(),
        },
    });
    let creds = dir.path().join("impersonated.json");
    std::fs::write(&creds, file.to_string()).unwrap();

    let cred = provider(target.gar.gate.host(), &creds, &[])
        .issue()
        .await
        .expect("impersonated");
    assert!(
        fed.is_impersonated(cred.password.expose()),
        "the registry password is the service account's token"
    );
    assert_eq!(
        google.key_grants(),
        1,
        "the key signed for the source token"
    );
    let body = &fed.impersonations()[0];
    assert_eq!(body["delegates"], json!([delegate]));
    assert_eq!(body["lifetime"], "3600s");

    let run = target.sync(&creds, &[]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let problems = target.problems().await;
    assert!(problems.is_empty(), "{problems:?}");
    assert!(fed.impersonations().len() >= 2);

    // gcloud user credentials as the source: the refresh-token grant.
    google.register_user("client-1.apps", "client-secret", "1//refresh");
    let user = json!({"type": "authorized_user", "client_id": "client-1.apps",
        "client_secret": "client-secret", "refresh_token": "1//refresh",
        "token_uri": google.token_uri()});
    file["source_credentials"] = user;
    std::fs::write(&creds, file.to_string()).unwrap();
    let cred = provider(target.gar.gate.host(), &creds, &[])
        .issue()
        .await
        .expect("impersonated");
    assert!(fed.is_impersonated(cred.password.expose()));
    assert_eq!(google.user_grants(), 1);

    file["source_credentials"]["type"] = json!("external_account");
    std::fs::write(&creds, file.to_string()).unwrap();
    let e = provider("gar.example", &creds, &[])
        .issue()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("source_credentials") && e.contains("supported: service_account"),
        "{e}"
    );
}
