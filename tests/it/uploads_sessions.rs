//! Upload sessions as registries other than distribution 2.8 run them:
//! `Warning` headers (logged once), `Location` answers as absolute URLs and
//! as paths, abandoned sessions cancelled with `DELETE`, the per-registry
//! upload settings, and Harbor recognised by its token challenge.
//!
//! distribution accepts every upload shape and sends neither warnings nor
//! relative locations, so a `RulesProxy` (`common::rules`) in front of a
//! real `docker-registry` plays those answers and counts the requests.

use crate::common;

use common::rules::Locations;
use common::{
    Format, ImageBuilder, Index, IndexBuilder, RegistryOptions, Rules, RulesProxy, TestRegistry,
    TokenIssuer, TokenIssuerOptions, push, regmirror, regmirror_env, skopeo_raw_digest,
};

const MIB: usize = 1024 * 1024;
const REPO: &str = "team/app";
const TAG: &str = "v1";

fn one_layer_index(seed: &str, layer: usize) -> Index {
    let image = ImageBuilder::new(Format::Oci)
        .platform("linux/amd64")
        .random_layer(seed, layer)
        .build();
    IndexBuilder::new(Format::Oci).image(image).build()
}

/// Source and target registries, the target behind a proxy playing
/// `rules`, and `REPO:TAG` pushed to the source.
async fn setup(
    rules: Rules,
    seed: &str,
    layer: usize,
) -> (TestRegistry, TestRegistry, RulesProxy, Index) {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let proxy = RulesProxy::start(&dst.base_url(), rules).await;
    let index = one_layer_index(seed, layer);
    push(&src, REPO, TAG, index.to_node()).await.unwrap();
    (src, dst, proxy, index)
}

/// `regmirror import` of `REPO:TAG` from `src` to `dst_host`, with the
/// `[[registry]]` text `registry` (if any) in a config file.
async fn import(src: &TestRegistry, dst_host: &str, registry: Option<&str>) -> common::cli::Run {
    let dir = tempfile::tempdir().unwrap();
    let source = format!("{}/{REPO}:{TAG}", src.host());
    let target = format!("{dst_host}/{REPO}:{TAG}");
    match registry {
        None => regmirror(&["import", &source, &target]).await,
        Some(text) => {
            let config = dir.path().join("regmirror.toml");
            std::fs::write(&config, text).unwrap();
            let config = config.to_str().unwrap();
            regmirror(&["import", "--config", config, &source, &target]).await
        }
    }
}

async fn assert_arrived(dst: &TestRegistry, index: &Index) {
    let d = skopeo_raw_digest(dst, &format!("{REPO}:{TAG}")).await;
    assert_eq!(d.ok().as_deref(), Some(index.digest()));
}

fn count(proxy: &RulesProxy, method: &str) -> usize {
    proxy
        .requests()
        .iter()
        .filter(|(m, p)| m == method && p.contains("/blobs/uploads/"))
        .count()
}

/// A `Warning: 299` header on every answer is logged once, at warn level,
/// for the many requests of one copy.
#[tokio::test(flavor = "multi_thread")]
async fn registry_warning_is_logged_once() {
    let (src, dst, proxy, index) = setup(Rules::Plain, "warning", 2 * MIB).await;
    proxy.warn("this registry is read-only from 2027-01-01");
    let run = import(&src, &proxy.host(), None).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(proxy.requests().len() > 3, "{:?}", proxy.requests());
    let logged = run
        .stderr
        .lines()
        .filter(|l| l.contains("this registry is read-only from 2027-01-01"))
        .collect::<Vec<_>>();
    assert_eq!(logged.len(), 1, "{}", run.stderr);
    assert!(logged[0].contains("WARN"), "{}", logged[0]);
    assert_arrived(&dst, &index).await;
}

/// A chunked copy (the nginx 1 MiB rule makes it chunked) succeeds whether
/// the registry's upload `Location` is an absolute URL (what distribution
/// sends) or a path.
#[tokio::test(flavor = "multi_thread")]
async fn chunked_copy_takes_absolute_and_relative_locations() {
    for style in [Locations::Absolute, Locations::Relative] {
        let (src, dst, proxy, index) =
            setup(Rules::Nginx, &format!("loc/{style:?}"), 5 * MIB).await;
        proxy.locations(style);
        let run = import(&src, &proxy.host(), None).await;
        assert_eq!(run.code, 0, "{style:?}: {}", run.stderr);
        assert!(
            count(&proxy, "PATCH") >= 5,
            "{style:?}: {:?}",
            proxy.requests()
        );
        assert_arrived(&dst, &index).await;
    }
}

/// A monolithic `PUT` that fails is not retried in its session: the
/// session is cancelled with `DELETE` and the blob sent again in a new one.
#[tokio::test(flavor = "multi_thread")]
async fn failed_upload_session_is_deleted() {
    let (src, dst, proxy, index) = setup(Rules::Plain, "delete", 2 * MIB).await;
    proxy.fail_body_puts(1);
    let run = import(&src, &proxy.host(), None).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(proxy.refusals().len(), 1, "{:?}", proxy.refusals());
    assert!(count(&proxy, "DELETE") >= 1, "{:?}", proxy.requests());
    assert_arrived(&dst, &index).await;
}

/// `upload_mode = "chunked"` with `max_chunk_size` is honoured: a 5 MiB
/// layer goes up in 1 MiB parts into a registry that takes anything.
#[tokio::test(flavor = "multi_thread")]
async fn upload_mode_setting_forces_chunked_uploads() {
    let (src, dst, proxy, index) = setup(Rules::Plain, "mode", 5 * MIB).await;
    let text = format!(
        "[[registry]]\nhost = \"{}\"\nupload_mode = \"chunked\"\nmax_chunk_size = {MIB}\n",
        proxy.host()
    );
    let run = import(&src, &proxy.host(), Some(&text)).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(count(&proxy, "PATCH") >= 5, "{:?}", proxy.requests());
    assert_arrived(&dst, &index).await;
}

/// Bad upload settings are config errors that name the key; `check` shows
/// good ones in the profile line.
#[tokio::test]
async fn upload_settings_are_checked_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirror.toml");
    let mirror = "[[mirror]]\nsource = \"ghcr.io/team/app\"\n\
                  target = \"registry.example.com/team/app\"\ntags = [\"v1\"]\n\n";
    for (bad, key) in [
        ("upload_mode = \"sideways\"", "upload_mode"),
        ("max_chunk_size = 0", "max_chunk_size"),
        ("max_chunk_size = 134217728", "max_chunk_size"),
        (
            "min_chunk_size = 8388608\nmax_body_size = 1048576",
            "min_chunk_size",
        ),
    ] {
        let text = format!("{mirror}[[registry]]\nhost = \"registry.example.com\"\n{bad}\n");
        std::fs::write(&config, text).unwrap();
        let cfg = config.to_str().unwrap();
        let run =
            common::regmirror_isolated(&["check", "--no-credentials", "--config", cfg], &[]).await;
        assert_ne!(run.code, 0, "{bad}: {}", run.stdout);
        assert!(run.stderr.contains(key), "{bad}: {}", run.stderr);
    }
    let text = format!(
        "{mirror}[[registry]]\nhost = \"registry.example.com\"\nupload_mode = \"chunked\"\n\
         max_body_size = 4194304\nmin_chunk_size = 1048576\nchunk_size = 2097152\n"
    );
    std::fs::write(&config, text).unwrap();
    let cfg = config.to_str().unwrap();
    let run =
        common::regmirror_isolated(&["check", "--no-credentials", "--config", cfg], &[]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "registry.example.com: generic (chunked uploads, bodies up to 4 MiB, parts of at \
             least 1 MiB, 2 MiB parts when chunked)"
        ),
        "{}",
        run.stdout
    );
}

/// A registry whose token challenge names Harbor's token service
/// (`service="harbor-registry"`) gets Harbor's upload profile.
#[tokio::test(flavor = "multi_thread")]
async fn harbor_is_recognised_by_its_challenge() {
    let issuer = TokenIssuer::start(TokenIssuerOptions {
        service: "harbor-registry".to_string(),
        ..TokenIssuerOptions::default()
    })
    .await;
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::token(&issuer)).await;
    let index = one_layer_index("harbor", MIB);
    push(&src, REPO, TAG, index.to_node()).await.unwrap();
    let (source, target) = (
        format!("{}/{REPO}:{TAG}", src.host()),
        format!("{}/{REPO}:{TAG}", dst.host()),
    );
    let (user, pass) = TokenIssuerOptions::default().user.unwrap();
    let (user_flag, pass_flag) = (
        format!("{}={user}", dst.host()),
        format!("{}=REGMIRROR_TEST_PW", dst.host()),
    );
    let run = regmirror_env(
        &[
            "--log-level",
            "regmirror=debug",
            "import",
            "--username",
            &user_flag,
            "--password-env",
            &pass_flag,
            &source,
            &target,
        ],
        &[("REGMIRROR_TEST_PW", pass.as_str())],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("upload profile chosen from the token challenge")
            && run.stderr.contains("Harbor ("),
        "{}",
        run.stderr
    );
}

/// An upload whose future is dropped mid-transfer (cancellation, shutdown)
/// has its session deleted from a task on the runtime.
#[tokio::test(flavor = "multi_thread")]
async fn dropped_upload_session_is_deleted() {
    use regmirror::registry::{Client, ClientOptions, Digest, Reference};
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let proxy = RulesProxy::start(&dst.base_url(), Rules::Plain).await;
    let client = Client::new(ClientOptions::default()).unwrap();
    let repo: Reference = format!("{}/{REPO}:{TAG}", proxy.host()).parse().unwrap();
    let session = client.start_upload(&repo).await.unwrap();
    let digest = Digest::sha256_of(b"never sent");
    // A body that never ends: the PUT waits for it until dropped.
    let body = Box::pin(futures_util::stream::pending());
    let upload = client.upload_blob(session, &digest, 10, body);
    let waited = tokio::time::timeout(std::time::Duration::from_millis(500), upload).await;
    assert!(waited.is_err(), "the upload should still be running");
    let mut deleted = 0;
    for _ in 0..100 {
        deleted = count(&proxy, "DELETE");
        if deleted > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(deleted, 1, "{:?}", proxy.requests());
}

/// A chunked upload that gives up (the ECR rules refuse its 1 MiB parts at
/// completion; `chunk_size` forced them) cancels its session with `DELETE`.
#[tokio::test(flavor = "multi_thread")]
async fn chunked_upload_that_gives_up_deletes_its_session() {
    let (src, _dst, proxy, _index) = setup(Rules::Ecr, "give-up", 3 * MIB).await;
    proxy.create_repository(REPO);
    let text = format!(
        "[[registry]]\nhost = \"{}\"\nchunk_size = {MIB}\n",
        proxy.host()
    );
    let run = import(&src, &proxy.host(), Some(&text)).await;
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("at least 5MB"), "{}", run.stderr);
    let commits = proxy
        .refusals()
        .iter()
        .filter(|r| r.method == "PUT" && r.status == 400)
        .count();
    assert!(commits >= 1, "{:?}", proxy.refusals());
    assert!(count(&proxy, "DELETE") >= commits, "{:?}", proxy.requests());
}
