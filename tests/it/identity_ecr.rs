//! Amazon ECR with identity only. No ECR runs here, so the protocol is
//! played on loopback (see `common::moto`): moto answers the AWS APIs the
//! SDK calls (`GetAuthorizationToken`), reached through `AWS_ENDPOINT_URL`
//! with fake static keys; a proxy in front of a real `docker-registry` plays
//! ECR's registry API (basic auth `AWS:<issued password>` only,
//! `NAME_UNKNOWN` for repositories never created, `TAG_INVALID` for an
//! immutable tag, an issued password that expires). No registry password is
//! configured anywhere.

use crate::common;

use common::moto::{EcrFake, Moto};
use common::{Format, ImageSet, Pusher, RegistryOptions, TestRegistry, push, regmirror_isolated};

struct Env {
    moto: Moto,
    src: TestRegistry,
    dst: TestRegistry,
    fake: EcrFake,
    dir: tempfile::TempDir,
    index_digest: String,
}

async fn env() -> Env {
    let moto = Moto::start().await;
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("ecr", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    let index_digest = set.digest().to_string();
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    let fake = EcrFake::start(&moto, &dst).await;
    Env {
        moto,
        src,
        dst,
        fake,
        dir: tempfile::tempdir().unwrap(),
        index_digest,
    }
}

impl Env {
    /// A config mirroring `team/app:v1` into `target_repo` on the fake, with
    /// `auth = "ecr"` and no credentials.
    fn config(&self, target_repo: &str, extra_registry: &str) -> std::path::PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("{}.toml", target_repo.replace('/', "_")));
        std::fs::write(
            &path,
            format!(
                "[[registry]]\nhost = \"{f}\"\nauth = \"ecr\"\n{extra_registry}\n\
                 [[mirror]]\nsource = \"{s}/team/app:v1\"\ntarget = \"{f}/{target_repo}\"\n",
                f = self.fake.host(),
                s = self.src.host()
            ),
        )
        .unwrap();
        path
    }

    async fn sync(&self, config: &std::path::Path) -> (i32, serde_json::Value, String) {
        let envs = self.moto.env();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = regmirror_isolated(
            &[
                "sync",
                "--config",
                config.to_str().unwrap(),
                "--output",
                "json",
            ],
            &envs,
        )
        .await;
        let json = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr));
        (run.code, json, run.stderr)
    }
}

/// Documented behaviour: ECR takes basic auth with user `AWS` and the
/// password of `GetAuthorizationToken`; the password expires (12 h), and a
/// client asks for a new one. Here it expires after a few requests, in the
/// middle of the copy of a multi-arch image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_only_mirror_survives_a_token_expiry() {
    let e = env().await;
    e.moto.create_repository("mirror/app", false).await;
    e.fake.expire_after(6);
    let config = e.config("mirror/app", "");
    let (code, report, stderr) = e.sync(&config).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["totals"]["copied"], 1, "{report:#}");
    assert!(e.fake.refused_expired() >= 1, "the password never expired");
    assert!(
        e.moto.token_calls() >= 2,
        "no new GetAuthorizationToken after the expiry ({} calls)",
        e.moto.token_calls()
    );
    let dst = Pusher::for_registry(&e.dst);
    assert!(dst.manifest_exists("mirror/app", "v1").await.unwrap());
    assert!(
        dst.manifest_exists("mirror/app", &e.index_digest)
            .await
            .unwrap()
    );

    // `auth check` names the provider and where its identity comes from.
    let envs = e.moto.env();
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = regmirror_isolated(
        &[
            "auth",
            "check",
            &e.fake.host(),
            "--config",
            config.to_str().unwrap(),
        ],
        &envs,
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("identity provider ecr") && run.stdout.contains("access keys"),
        "{}",
        run.stdout
    );
}

/// Documented behaviour: ECR refuses a push into a repository that was never
/// created with `NAME_UNKNOWN` (created with `CreateRepository` when asked),
/// and a tag of an `IMMUTABLE` repository that
/// already exists with `TAG_INVALID` ("… cannot be overwritten because the
/// tag is immutable"): the latter is a conflict, not a failure to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_repository_and_immutable_tag() {
    let e = env().await;
    let (code, report, stderr) = e.sync(&e.config("mirror/missing", "")).await;
    assert_ne!(code, 0, "{report:#}\n{stderr}");
    let text = report.to_string();
    assert!(
        text.contains("NAME_UNKNOWN") || text.contains("does not exist"),
        "{report:#}"
    );

    // Opted in: the repository is created in ECR (moto), with the settings
    // asked for, and the image pushed; the report lists it.
    let config = e.config(
        "mirror/missing",
        "create_repositories = true\nrepository_scan_on_push = true\n",
    );
    let (code, report, stderr) = e.sync(&config).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["totals"]["copied"], 1, "{report:#}");
    assert_eq!(
        report["created_repositories"],
        serde_json::json!([format!("{}/mirror/missing", e.fake.host())]),
        "{report:#}"
    );
    let (status, described) = e
        .moto
        .ecr(
            "DescribeRepositories",
            serde_json::json!({"repositoryNames": ["mirror/missing"]}),
        )
        .await;
    assert_eq!(status, 200, "{described}");
    assert_eq!(
        described["repositories"][0]["imageScanningConfiguration"]["scanOnPush"], true,
        "{described}"
    );
    // The next run finds it: nothing created.
    let (code, report, _) = e.sync(&config).await;
    assert_eq!(code, 0, "{report:#}");
    assert!(report.get("created_repositories").is_none(), "{report:#}");

    e.moto.create_repository("mirror/fixed", true).await;
    let other = ImageSet::multi_arch("other", &["linux/amd64"], false, Format::Oci);
    push(&e.dst, "mirror/fixed", "v1", other.to_node())
        .await
        .unwrap();
    let (code, report, stderr) = e.sync(&e.config("mirror/fixed", "")).await;
    assert_eq!(report["totals"]["conflict"], 1, "{report:#}\n{stderr}");
    assert_eq!(report["totals"]["failed"], 0, "{report:#}\n{stderr}");
    assert!(report.to_string().contains("immutable"), "{report:#}");
    assert_ne!(code, 0);

    // `import --force` cannot move it either: exit 4, the reason given.
    let config = e.config("mirror/fixed", "");
    let envs = e.moto.env();
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = regmirror_isolated(
        &[
            "import",
            &format!("{}/team/app:v1", e.src.host()),
            &format!("{}/mirror/fixed:v1", e.fake.host()),
            "--force",
            "--config",
            config.to_str().unwrap(),
        ],
        &envs,
    )
    .await;
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("immutable"), "{}", run.stderr);
}

/// `serve` mirrors a multi-arch image into the ECR-like target with identity
/// only (AWS access keys for `GetAuthorizationToken`, no registry password
/// anywhere). Between two runs the issued password expires: the next run is
/// refused, asks for a new password and mirrors the tag pushed meanwhile,
/// with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_mirrors_into_ecr_with_identity_only_across_token_expiry() {
    let e = env().await;
    e.moto.create_repository("mirror/app", false).await;
    let port = common::serve::free_port();
    let config = e.dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[registry]]\nhost = \"{f}\"\nauth = \"ecr\"\n\n\
             [[mirror]]\nname = \"app\"\nsource = \"{s}/team/app\"\n\
             target = \"{f}/mirror/app\"\nschedule = \"*/2 * * * * *\"\n",
            f = e.fake.host(),
            s = e.src.host()
        ),
    )
    .unwrap();
    let log_path = e.dir.path().join("serve.log");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"));
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true);
    for k in common::cli::CREDENTIAL_ENV {
        cmd.env_remove(k);
    }
    cmd.env("HOME", e.dir.path()).envs(e.moto.env());
    let mut child = cmd.spawn().expect("spawning regmirror serve");
    let reader = Pusher::for_registry(&e.dst);
    let wait = async |tag: &str, want: &str| {
        for _ in 0..150 {
            if common::verify::graph_problems(&reader, "mirror/app", tag, want)
                .await
                .is_empty()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        panic!(
            "{tag} never arrived; serve log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    };
    wait("v1", &e.index_digest).await;
    let first = e.moto.token_calls();
    // The password expires at the next run's first request.
    e.fake.expire_after(1);
    let v2 = ImageSet::multi_arch(
        "ecr/v2",
        &["linux/amd64", "linux/arm64"],
        false,
        Format::Oci,
    );
    push(&e.src, "team/app", "v2", v2.to_node()).await.unwrap();
    wait("v2", v2.digest()).await;
    assert!(e.fake.refused_expired() >= 1, "the password never expired");
    assert!(
        e.moto.token_calls() > first,
        "no new GetAuthorizationToken after the expiry ({first} then {})",
        e.moto.token_calls()
    );
    let _ = child.start_kill();
}

/// ECR Public (`auth = "ecr-public"`): `ecr-public:GetAuthorizationToken`
/// in `us-east-1` through the AWS SDK with the default credential chain
/// (here access keys from the environment; the fake checks the request is
/// signed with them for `ecr-public` in `us-east-1`), the decoded
/// `AWS:<password>` presented to the registry's token flow. Passwords live
/// 2 s while each registry request is held 150 ms, so one expires during
/// the copy of a multi-arch image: the registry refuses it, a new one is
/// asked for, and the copy completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_public_identity_only_across_a_password_expiry() {
    use common::ecr_public::EcrPublicFake;
    use std::time::Duration;
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch(
        "ecrpub",
        &["linux/amd64", "linux/arm64", "linux/arm/v7"],
        false,
        Format::Oci,
    );
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    let fake = EcrPublicFake::start(&dst.base_url(), "AKIDECRPUBLICTEST").await;
    fake.set_lifetime(Duration::from_secs(2));
    fake.gate.set_delay(Duration::from_millis(150));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\nconcurrency = 1\n\n[[registry]]\nhost = \"{g}\"\nauth = \"ecr-public\"\n\n\
             [[mirror]]\nsource = \"{s}/team/app:v1\"\ntarget = \"{g}/alias/app\"\n",
            g = fake.gate.host(),
            s = src.host()
        ),
    )
    .unwrap();
    let envs = [
        ("AWS_ACCESS_KEY_ID", "AKIDECRPUBLICTEST"),
        ("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-key"),
        ("AWS_ENDPOINT_URL_ECR_PUBLIC", fake.api_url()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let run = regmirror_isolated(&["sync", "--config", config.to_str().unwrap()], &envs).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let problems = common::verify::graph_problems(
        &Pusher::for_registry(&dst),
        "alias/app",
        "v1",
        set.digest(),
    )
    .await;
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        fake.token_calls() >= 2,
        "the password expired mid-run and a new one was asked for ({} calls)\n{}",
        fake.token_calls(),
        run.stderr
    );

    let run = regmirror_isolated(
        &[
            "auth",
            "check",
            fake.gate.host(),
            "--config",
            config.to_str().unwrap(),
        ],
        &envs,
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("identity provider ecr-public")
            && run.stdout.contains("region us-east-1"),
        "{}",
        run.stdout
    );
}
