//! `create_repositories` for registries that refuse a push into what does
//! not exist without a `NAME_UNKNOWN` to react to, so regmirror creates it
//! before the first push of a run, through the binary (`sync`, `serve`):
//!
//! - Harbor: the project (first path component), with Harbor's API v2.0 and
//!   the registry's own basic credentials;
//! - Artifact Registry: the Docker repository `PROJECT/REPOSITORY`, with the
//!   Artifact Registry API v1 and the `gar` identity's access token.
//!
//! Neither runs here: `common::repo_apis` plays each documented API (its
//! module documentation cites the sources) in front of a real
//! `docker-registry`.

use std::time::Duration;

use crate::common;

use common::cloud_fakes::{GarFake, GoogleFake};
use common::repo_apis::{ArtifactRegistryApi, HarborFake};
use common::{Format, ImageSet, Pusher, RegistryOptions, TestRegistry, push, regmirror_isolated};

const HARBOR_USER: &str = "robot$mirror";
const HARBOR_PASSWORD: &str = "Harbor-secret-12345";
const EMAIL: &str = "mirror@example-project.iam.gserviceaccount.com";

async fn sync(config: &std::path::Path, envs: &[(&str, &str)]) -> (i32, serde_json::Value, String) {
    let run = regmirror_isolated(
        &[
            "sync",
            "--config",
            config.to_str().unwrap(),
            "--output",
            "json",
        ],
        envs,
    )
    .await;
    let json = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr));
    (run.code, json, run.stderr)
}

/// Harbor refuses a push into a project that does not exist; with
/// `create_repositories = true` the project is created (private) before the
/// first push, once per run for two images into it, listed in the report,
/// and found by the next run without a second creation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_projects_are_created_before_the_first_push() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch(
        "harbor",
        &["linux/amd64", "linux/arm64"],
        false,
        Format::Oci,
    );
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    push(&src, "team/tool", "v1", set.to_node()).await.unwrap();
    let harbor = HarborFake::start(&dst.base_url(), HARBOR_USER, HARBOR_PASSWORD).await;
    let dir = tempfile::tempdir().unwrap();
    let config = |extra: &str| {
        let path = dir.path().join("mirror.toml");
        std::fs::write(
            &path,
            format!(
                "[[registry]]\nhost = \"{h}\"\nusername = \"{HARBOR_USER}\"\n\
                 password_env = \"HARBOR_PASSWORD\"\n{extra}\n\
                 [[mirror]]\nsource = \"{s}/team/app:v1\"\ntarget = \"{h}/mirrored/app\"\n\n\
                 [[mirror]]\nsource = \"{s}/team/tool:v1\"\ntarget = \"{h}/mirrored/tool\"\n",
                h = harbor.gate.host(),
                s = src.host()
            ),
        )
        .unwrap();
        path
    };
    let envs = [("HARBOR_PASSWORD", HARBOR_PASSWORD)];

    // Not opted in: the push is refused, nothing is created.
    let (code, report, stderr) = sync(&config(""), &envs).await;
    assert_ne!(code, 0, "{report:#}\n{stderr}");
    assert!(harbor.created().is_empty());

    let (code, report, stderr) = sync(&config("create_repositories = true"), &envs).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["totals"]["copied"], 2, "{report:#}");
    assert_eq!(
        report["created_repositories"],
        serde_json::json!([format!("{}/mirrored", harbor.gate.host())]),
        "{report:#}"
    );
    let created = harbor.created();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["project_name"], "mirrored");
    assert_eq!(created[0]["metadata"]["public"], "false");
    let reader = Pusher::for_registry(&dst);
    for repo in ["mirrored/app", "mirrored/tool"] {
        let problems = common::verify::graph_problems(&reader, repo, "v1", set.digest()).await;
        assert!(problems.is_empty(), "{repo}: {problems:?}");
    }

    // The next run finds the project: nothing created, nothing reported.
    let heads = harbor.heads();
    let newer = ImageSet::multi_arch("harbor2", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/app", "v1", newer.to_node()).await.unwrap();
    let (code, report, stderr) = sync(&config("create_repositories = true"), &envs).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert!(report.get("created_repositories").is_none(), "{report:#}");
    assert_eq!(harbor.created().len(), 1);
    assert!(harbor.heads() > heads, "the project was looked up again");
}

/// Harbor's answer when the user may not create projects (403 under
/// `project_creation_restriction = adminonly`) reaches the report with
/// Harbor's own words and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harbor_refusal_names_the_api_and_the_fix() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("harbor3", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    let harbor = HarborFake::start(&dst.base_url(), HARBOR_USER, HARBOR_PASSWORD).await;
    harbor.add_user_without_project_creation("someone-else", HARBOR_PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mirror.toml");
    std::fs::write(
        &path,
        format!(
            "[[registry]]\nhost = \"{h}\"\nusername = \"someone-else\"\n\
             password_env = \"HARBOR_PASSWORD\"\ncreate_repositories = true\n\n\
             [[mirror]]\nsource = \"{s}/team/app:v1\"\ntarget = \"{h}/mirrored/app\"\n",
            h = harbor.gate.host(),
            s = src.host()
        ),
    )
    .unwrap();
    let (code, report, stderr) = sync(&path, &[("HARBOR_PASSWORD", HARBOR_PASSWORD)]).await;
    assert_ne!(code, 0, "{report:#}");
    let text = format!("{report}\n{stderr}");
    assert!(
        text.contains("Harbor project mirrored")
            && text.contains("HTTP 403")
            && text.contains("Only system admin can create project")
            && text.contains("may create projects"),
        "{text}"
    );
    assert!(!text.contains(HARBOR_PASSWORD), "{text}");
    assert!(harbor.created().is_empty());
}

/// Artifact Registry with GKE workload identity only (the metadata server):
/// without the repository the push is denied ("or it may not exist"); with
/// `create_repositories = true` the repository is created through the API
/// (`repositoryId`, `format: DOCKER`, the operation followed to `done`),
/// reported, and found by the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_registry_repositories_are_created_before_the_first_push() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("ar", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    let google = GoogleFake::start(None, EMAIL).await;
    let gar = GarFake::start(&dst.base_url(), &google).await;
    let api = ArtifactRegistryApi::start("europe-west1", &google).await;
    gar.gate.set_guard(api.registry_guard());
    let dir = tempfile::tempdir().unwrap();
    let config = |extra: &str| {
        let path = dir.path().join("mirror.toml");
        std::fs::write(
            &path,
            format!(
                "[[registry]]\nhost = \"{g}\"\nauth = \"gar\"\n{extra}\n\
                 [[mirror]]\nsource = \"{s}/team/app:v1\"\n\
                 target = \"{g}/example-project/mirrored/app\"\n",
                g = gar.gate.host(),
                s = src.host()
            ),
        )
        .unwrap();
        path
    };
    let envs = [
        ("GCE_METADATA_HOST", google.host()),
        (
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_ARTIFACTREGISTRY",
            api.base_url(),
        ),
    ];

    let (code, report, stderr) = sync(&config(""), &envs).await;
    assert_ne!(code, 0, "{report:#}\n{stderr}");
    assert!(
        report.to_string().contains("or it may not exist"),
        "{report:#}"
    );
    assert!(api.created().is_empty());

    let opted = "create_repositories = true\nrepository_location = \"europe-west1\"\n";
    let (code, report, stderr) = sync(&config(opted), &envs).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["totals"]["copied"], 1, "{report:#}");
    assert_eq!(
        report["created_repositories"],
        serde_json::json!([format!("{}/example-project/mirrored", gar.gate.host())]),
        "{report:#}"
    );
    let created = api.created();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].0, "example-project/mirrored");
    assert_eq!(created[0].1["format"], "DOCKER");
    let problems = common::verify::graph_problems(
        &Pusher::for_registry(&dst),
        "example-project/mirrored/app",
        "v1",
        set.digest(),
    )
    .await;
    assert!(problems.is_empty(), "{problems:?}");

    // The next run (a new upstream image) finds the repository.
    let gets = api.gets();
    let newer = ImageSet::multi_arch("ar2", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/app", "v1", newer.to_node()).await.unwrap();
    let (code, report, stderr) = sync(&config(opted), &envs).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert!(report.get("created_repositories").is_none(), "{report:#}");
    assert_eq!(api.created().len(), 1);
    assert!(api.gets() > gets);

    // Without a location (the host names none): the error says which key.
    let third = ImageSet::multi_arch("ar3", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/app", "v1", third.to_node()).await.unwrap();
    let (code, report, _) = sync(&config("create_repositories = true\n"), &envs).await;
    assert_ne!(code, 0);
    assert!(
        report.to_string().contains("repository_location"),
        "{report:#}"
    );
}

/// `serve` creates the Harbor project of a mirror whose project is missing
/// at its first run, and the image arrives; no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_creates_the_harbor_project_of_a_new_mirror() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch(
        "harbor4",
        &["linux/amd64", "linux/arm64"],
        false,
        Format::Oci,
    );
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    let harbor = HarborFake::start(&dst.base_url(), HARBOR_USER, HARBOR_PASSWORD).await;
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
             [[registry]]\nhost = \"{h}\"\nusername = \"{HARBOR_USER}\"\n\
             password_env = \"HARBOR_PASSWORD\"\ncreate_repositories = true\n\n\
             [[mirror]]\nname = \"app\"\nsource = \"{s}/team/app\"\n\
             target = \"{h}/served/app\"\nschedule = \"*/2 * * * * *\"\n",
            h = harbor.gate.host(),
            s = src.host()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("serve.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .env("HOME", dir.path())
        .env("HARBOR_PASSWORD", HARBOR_PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning regmirror serve");
    let reader = Pusher::for_registry(&dst);
    let mut arrived = false;
    for _ in 0..150 {
        if common::verify::graph_problems(&reader, "served/app", "v1", set.digest())
            .await
            .is_empty()
        {
            arrived = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.start_kill();
    assert!(
        arrived,
        "served/app:v1 never arrived; serve log:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    let created = harbor.created();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["project_name"], "served");
}

/// A registry without a cloud identity that is not Harbor (here the real
/// `docker-registry`) answers Harbor's project API with 404: the image
/// fails with an error that says what `create_repositories` did there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_repositories_on_a_registry_that_is_not_harbor_says_so() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("plain", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mirror.toml");
    std::fs::write(
        &path,
        format!(
            "[[registry]]\nhost = \"{d}\"\ncreate_repositories = true\n\n\
             [[mirror]]\nsource = \"{s}/team/app:v1\"\ntarget = \"{d}/mirrored/app\"\n",
            d = dst.host(),
            s = src.host()
        ),
    )
    .unwrap();
    let (code, report, _) = sync(&path, &[]).await;
    assert_ne!(code, 0, "{report:#}");
    let text = report.to_string();
    assert!(
        text.contains("is this registry Harbor?") && text.contains("HTTP 404"),
        "{report:#}"
    );
}
