//! References as a skopeo user types them (`docker://HOST/REPO:TAG`, on the
//! command line and in a config; other skopeo transports refused with a
//! pointer to `oci:`/`oci-archive:`), and the hints of TLS failures: plain
//! HTTP spoken to an HTTPS registry, an untrusted CA, HTTPS spoken to a
//! plain-HTTP registry, and a refused basic-auth user named (never the
//! password).

use crate::common;

use common::{Format, ImageSet, RegistryOptions, TestRegistry, push, regmirror_isolated};

async fn registry_with_app(opts: RegistryOptions) -> TestRegistry {
    let reg = TestRegistry::start(opts).await;
    let set = ImageSet::multi_arch("hints", &["linux/amd64"], false, Format::Oci);
    push(&reg, "team/app", "v1", set.to_node()).await.unwrap();
    reg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_transport_references_work_on_the_command_line_and_in_a_config() {
    let src = registry_with_app(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (s, d) = (src.host(), dst.host());
    let run = regmirror_isolated(&["tags", &format!("docker://{s}/team/app")], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "v1");

    let run = regmirror_isolated(
        &[
            "import",
            &format!("docker://{s}/team/app:v1"),
            &format!("docker://{d}/cli/app"),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = regmirror_isolated(&["tags", &format!("{d}/cli/app")], &[]).await;
    assert_eq!(run.stdout.trim(), "v1", "{}", run.stderr);

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mirror.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mirror]]\nsource = \"docker://{s}/team/app:v1\"\ntarget = \"docker://{d}/cfg/app\"\n"
        ),
    )
    .unwrap();
    let run = regmirror_isolated(&["sync", "--config", cfg.to_str().unwrap()], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = regmirror_isolated(&["tags", &format!("{d}/cfg/app")], &[]).await;
    assert_eq!(run.stdout.trim(), "v1", "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_skopeo_transports_are_refused_with_a_pointer_to_oci() {
    for reference in [
        "docker-archive:/tmp/app.tar",
        "containers-storage:localhost/app:1",
        "dir:/tmp/app",
        "docker-daemon:app:1",
    ] {
        let run = regmirror_isolated(&["import", reference, "oci:/tmp/never-written"], &[]).await;
        assert_eq!(run.code, 2, "{reference}: {}", run.stderr);
        assert!(
            run.stderr.contains("transport is not supported")
                && run
                    .stderr
                    .contains(&format!("skopeo copy {reference} oci-archive:"))
                && run.stderr.contains("oci:DIR"),
            "{reference}: {}",
            run.stderr
        );
    }
    assert!(!std::path::Path::new("/tmp/never-written").exists());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mirror.toml");
    std::fs::write(
        &cfg,
        "[[mirror]]\nsource = \"docker-archive:/tmp/app.tar\"\ntarget = \"127.0.0.1:1/m/app\"\n",
    )
    .unwrap();
    let run = regmirror_isolated(&["check", "--config", cfg.to_str().unwrap()], &[]).await;
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("docker-archive: transport is not supported"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_an_https_registry_names_the_flags() {
    let reg = registry_with_app(RegistryOptions::anonymous().with_tls()).await;
    let host = reg.host();
    let repo = format!("{host}/team/app");
    // A loopback host is spoken to in plain HTTP by default; the Go
    // registry answers HTTP 400 with its own words.
    let run = regmirror_isolated(&["tags", &repo], &[]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    for needle in [
        "Client sent an HTTP request to an HTTPS server",
        &format!("--https {host}"),
        &format!("--ca-file {host}=PATH"),
        "tls = \"verify\"",
    ] {
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
    }
    // Following the hint: --https without the CA is refused on the
    // certificate, and the hint names --ca-file.
    let run = regmirror_isolated(&["tags", "--https", &host, &repo], &[]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("CA regmirror does not trust")
            && run.stderr.contains(&format!("--ca-file {host}=PATH")),
        "{}",
        run.stderr
    );
    // With the CA it works.
    let ca = format!("{host}={}", reg.ca_pem_path().unwrap().display());
    let run = regmirror_isolated(&["tags", "--ca-file", &ca, &repo], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_plain_http_registry_names_plain_http() {
    let reg = registry_with_app(RegistryOptions::anonymous()).await;
    let host = reg.host();
    let run = regmirror_isolated(
        &["tags", "--https", &host, &format!("{host}/team/app")],
        &[],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("--plain-http {host}"))
            && run.stderr.contains("tls = \"plain-http\""),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_basic_auth_user_is_named_never_the_password() {
    const PASSWORD: &str = "right-horse-battery";
    const WRONG: &str = "wrong-staple-4711";
    let reg = registry_with_app(RegistryOptions::htpasswd("alice", PASSWORD)).await;
    let host = reg.host();
    let run = regmirror_isolated(
        &[
            "tags",
            "--username",
            &format!("{host}=alice"),
            "--password-env",
            &format!("{host}=REGMIRROR_TEST_PW"),
            &format!("{host}/team/app"),
        ],
        &[("REGMIRROR_TEST_PW", WRONG)],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("refused the credentials of user \"alice\""),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(WRONG) && !run.stdout.contains(WRONG));
}
