//! Credentials are found where docker and podman keep them, in the
//! documented order, and `auth check` / `check` say which source applies
//! without printing a secret. Runs against a real htpasswd registry.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine as _;
use common::{Format, ImageSet, Pusher, RegistryOptions, TestRegistry, push, regmirror_isolated};

const USER: &str = "mirror-bot";
const PASSWORD: &str = "s3cret-Pa55";

fn auth_json(host: &str, user: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#)
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

async fn registry() -> TestRegistry {
    let reg = TestRegistry::start(RegistryOptions::htpasswd(USER, PASSWORD)).await;
    let set = ImageSet::multi_arch("creds", &["linux/amd64"], false, Format::Oci);
    push(&reg, "team/app", "v1", set.to_node()).await.unwrap();
    reg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_locations_are_read_like_docker_and_podman() {
    let reg = registry().await;
    let host = reg.host();
    let repo = format!("{host}/team/app");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = auth_json(&host, USER, PASSWORD);

    // Nothing configured: refused, and the hint names the flags and logins.
    let run = regmirror_isolated(&["tags", &repo], &[]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    for needle in ["--username", "--password-env", "docker login"] {
        assert!(
            run.stderr.contains(needle),
            "hint lacks {needle}: {}",
            run.stderr
        );
    }

    let home = d.join("home");
    // (what, variable, its value, the file it leads to)
    let cases = [
        (
            "~/.docker",
            "HOME",
            home.clone(),
            home.join(".docker/config.json"),
        ),
        (
            "$DOCKER_CONFIG",
            "DOCKER_CONFIG",
            d.join("dc"),
            d.join("dc/config.json"),
        ),
        (
            "$REGISTRY_AUTH_FILE",
            "REGISTRY_AUTH_FILE",
            d.join("auth.json"),
            d.join("auth.json"),
        ),
        (
            "$XDG_RUNTIME_DIR",
            "XDG_RUNTIME_DIR",
            d.join("run"),
            d.join("run/containers/auth.json"),
        ),
        (
            "~/.config/containers",
            "HOME",
            d.join("h2"),
            d.join("h2/.config/containers/auth.json"),
        ),
    ];
    for (what, var, value, file) in &cases {
        write(file, &good);
        let envs = [(*var, value.to_str().unwrap())];
        let run = regmirror_isolated(&["tags", &repo], &envs).await;
        assert_eq!(run.code, 0, "{what}: {}", run.stderr);
        assert_eq!(run.stdout.trim(), "v1", "{what}");
        let run = regmirror_isolated(&["auth", "check", &host], &envs).await;
        assert_eq!(run.code, 0, "{what}: {}", run.stderr);
        assert!(
            run.stdout.contains(&file.display().to_string()),
            "{what}: {}",
            run.stdout
        );
        assert!(run.stdout.contains(USER), "{what}: {}", run.stdout);
        assert!(
            !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
            "{what}: secret printed"
        );
        std::fs::remove_file(file).unwrap();
    }

    // Order: a Docker config comes before the containers auth.json.
    write(
        &home.join(".docker/config.json"),
        &auth_json(&host, USER, "wrong"),
    );
    write(&home.join(".config/containers/auth.json"), &good);
    let envs = [("HOME", home.to_str().unwrap())];
    let run = regmirror_isolated(&["auth", "check", &host], &envs).await;
    assert!(run.stdout.contains(".docker/config.json"), "{}", run.stdout);
    let run = regmirror_isolated(&["tags", &repo], &envs).await;
    assert_eq!(
        run.code, 1,
        "the Docker config's (wrong) entry wins: {}",
        run.stderr
    );

    // An unknown host is anonymous: auth check exits 1 and lists what it searched.
    let run = regmirror_isolated(&["auth", "check", "quay.io"], &envs).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("anonymous") && run.stdout.contains("auth.json"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_win_over_the_config_file_and_helpers_are_run() {
    let reg = registry().await;
    let host = reg.host();
    let repo = format!("{host}/team/app");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mirror.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[registry]]\nhost = \"{host}\"\nusername = \"{USER}\"\npassword = \"wrong\"\n\n\
             [[mirror]]\nsource = \"{host}/team/app:v1\"\ntarget = \"{host}/mirror/app\"\n"
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let run = regmirror_isolated(&["tags", "-c", cfg, &repo], &[]).await;
    assert_eq!(
        run.code, 1,
        "the config's wrong password is used: {}",
        run.stderr
    );
    let flag = format!("{host}=REGMIRROR_TEST_PW");
    let envs = [("REGMIRROR_TEST_PW", PASSWORD)];
    let run = regmirror_isolated(&["tags", "-c", cfg, "--password-env", &flag, &repo], &envs).await;
    assert_eq!(
        run.code, 0,
        "--password-env replaces the config's password: {}",
        run.stderr
    );
    let run = regmirror_isolated(
        &["auth", "check", "-c", cfg, "--password-env", &flag, &host],
        &envs,
    )
    .await;
    assert!(run.stdout.contains("command-line flags"), "{}", run.stdout);
    let run = regmirror_isolated(&["check", "-c", cfg], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains(&format!("{host}: config file [[registry]]")),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("wrong"),
        "check printed a password: {}",
        run.stdout
    );

    // A credential helper named by the Docker config.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-regmirror-test");
    std::fs::write(
        &helper,
        format!("#!/bin/sh\nread server\necho '{{\"ServerURL\":\"'$server'\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n"),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dc = dir.path().join("docker");
    write(
        &dc.join("config.json"),
        &format!(r#"{{"credHelpers":{{"{host}":"regmirror-test"}}}}"#),
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let envs = [
        ("DOCKER_CONFIG", dc.to_str().unwrap()),
        ("PATH", path.as_str()),
    ];
    let run = regmirror_isolated(&["tags", &repo], &envs).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = regmirror_isolated(&["auth", "check", &host], &envs).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("docker-credential-regmirror-test"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(PASSWORD), "{}", run.stdout);
}

/// A password file rotated under a running `serve` (as the kubelet refreshes
/// a mounted Secret) is read again at the next run: a wrong password fails
/// that run with an error naming the file, the right one works again at the
/// run after, with no SIGHUP and no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_a_rotated_password_file_at_the_next_run() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::htpasswd(USER, PASSWORD)).await;
    let set = ImageSet::multi_arch("rotate", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("target-password");
    write(&pw, &format!("{PASSWORD}\n"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("serve.toml");
    write(
        &config,
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[registry]]\nhost = \"{d}\"\nusername = \"{USER}\"\npassword_file = \"{p}\"\n\n\
             [[mirror]]\nname = \"app\"\nsource = \"{s}/team/app\"\ntarget = \"{d}/mirror/app\"\n\
             schedule = \"*/2 * * * * *\"\n",
            d = dst.host(),
            s = src.host(),
            p = pw.display()
        ),
    );
    let log_path = dir.path().join("serve.log");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"));
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true);
    for k in common::cli::CREDENTIAL_ENV {
        cmd.env_remove(k);
    }
    let mut child = cmd.spawn().unwrap();
    let target = Pusher::for_registry(&dst);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let wait = async |what: &str, check: &mut dyn FnMut() -> bool| {
        let start = std::time::Instant::now();
        while !check() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(40),
                "timed out waiting for {what}; log:\n{}",
                log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    let exists = async |tag: &str| {
        target
            .manifest_exists("mirror/app", tag)
            .await
            .unwrap_or(false)
    };
    let start = std::time::Instant::now();
    while !exists("v1").await {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(40),
            "{}",
            log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Rotated to a wrong password: the next run is refused, naming the file.
    write(&pw, "not-the-password\n");
    let file = pw.display().to_string();
    wait("a refusal naming the password file", &mut || {
        let l = log();
        l.contains("refused") && l.contains(&file)
    })
    .await;
    assert!(!log().contains("not-the-password"), "a secret in the log");

    // Rotated back: the run after copies a new tag again, same process.
    write(&pw, &format!("{PASSWORD}\n"));
    push(&src, "team/app", "v2", set.to_node()).await.unwrap();
    let start = std::time::Instant::now();
    while !exists("v2").await {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(40),
            "{}",
            log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(child.try_wait().unwrap().is_none(), "serve kept running");
}
