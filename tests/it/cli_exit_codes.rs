//! Every exit code of the README table, each from a real run of the binary,
//! plus bad input exiting 2 before any request, signals, and closed pipes.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::{
    FakeServer, Format, ImageSet, RegistryOptions, Run, TestRegistry, push,
    regmirror_closed_stdout, regmirror_isolated, regmirror_signalled,
};
use serde_json::Value;

/// A server that counts every request and answers 404 after `delay`.
/// Stands in for a registry that must not be contacted, or a slow one
/// (a real registry cannot be made slow on purpose).
async fn counting_server(delay: Duration) -> (FakeServer, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let router = Router::new().fallback(move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            (
                StatusCode::NOT_FOUND,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#,
            )
                .into_response()
        }
    });
    (FakeServer::start(router).await, hits)
}

/// Arguments, environment, and what stderr must say.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\n{}", run.stdout, run.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_0_when_done_and_4_on_a_tag_conflict() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("codes", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    let other = ImageSet::multi_arch("other", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    push(&dst, "mirror/app", "v1", other.to_node())
        .await
        .unwrap();
    let source = format!("{}/team/app:v1", src.host());

    let run = regmirror_isolated(
        &["import", &source, &format!("{}/fresh/app", dst.host())],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);

    let target = format!("{}/mirror/app:v1", dst.host());
    let run = regmirror_isolated(&["import", &source, &target, "--output", "json"], &[]).await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    let doc = json(&run);
    assert_eq!(doc["result"], "conflict");
    assert_eq!(doc["exit_code"], 4);
    assert_eq!(doc["images"][0]["previous_digest"], other.digest());
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_1_when_the_operation_fails() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let run = regmirror_isolated(
        &[
            "import",
            &format!("{}/team/absent:v1", src.host()),
            &format!("{}/mirror/absent", src.host()),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("team/absent:v1"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_3_when_sync_partly_fails() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("partial", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/ok", "v1", set.to_node()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mirror.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mirror]]\nsource = \"{s}/team/ok:v1\"\ntarget = \"{d}/mirror/ok\"\n\n\
             [[mirror]]\nsource = \"{s}/team/ok:missing\"\ntarget = \"{d}/mirror/ok\"\n",
            s = src.host(),
            d = dst.host()
        ),
    )
    .unwrap();
    let run = regmirror_isolated(&["sync", "--config", cfg.to_str().unwrap()], &[]).await;
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("team/ok:missing"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_2_for_bad_input_before_any_request() {
    let (fake, hits) = counting_server(Duration::ZERO).await;
    let h = fake.host();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let not_json = write("config.json", "{ not json");
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    std::fs::write(home.join(".docker/config.json"), "[[[").unwrap();
    let missing_pw = write(
        "pw.toml",
        &format!(
            "[[registry]]\nhost = \"{h}\"\nusername = \"u\"\npassword_file = \"/nonexistent/pw\"\n\n\
             [[mirror]]\nsource = \"{h}/a:v1\"\ntarget = \"{h}/b\"\n"
        ),
    );
    let registry_only = write(
        "ro.toml",
        &format!("[[mirror]]\nsource = \"127.0.0.1:5201\"\ntarget = \"{h}/b\"\n"),
    );
    let short_name = write(
        "short.toml",
        &format!("[[mirror]]\nsource = \"nginx\"\ntarget = \"{h}/b\"\n"),
    );
    let img = format!("{h}/team/app:v1");
    let repo = format!("{h}/team/app");
    let user_flag = format!("{h}=u");
    let env_flag = format!("{h}=REGMIRROR_TEST_SURELY_UNSET");
    let cases: Vec<Case> = vec![
        (vec!["tags", "127.0.0.1:99999/x"], vec![], "out of range"),
        (
            vec!["import", &img, "127.0.0.1:99999/x"],
            vec![],
            "out of range",
        ),
        (
            vec!["--log-level", "verbose", "tags", &repo],
            vec![],
            "not a level",
        ),
        (
            vec!["tags", "--plain-http", "http://127.0.0.1:5201", &repo],
            vec![],
            "scheme",
        ),
        (
            vec![
                "tags",
                "--username",
                &user_flag,
                "--password-env",
                &env_flag,
                &repo,
            ],
            vec![],
            "REGMIRROR_TEST_SURELY_UNSET",
        ),
        (
            vec!["tags", "--docker-config", "/nonexistent/config.json", &repo],
            vec![],
            "does not exist",
        ),
        (
            vec!["tags", "--docker-config", &not_json, &repo],
            vec![],
            "not valid JSON",
        ),
        (
            vec!["tags", &repo],
            vec![("HOME", home.to_str().unwrap())],
            "not valid JSON",
        ),
        (vec!["inspect", &h], vec![], "no repository"),
        (
            vec!["check", "--config", &missing_pw],
            vec![],
            "password_file",
        ),
        (
            vec!["sync", "--config", &missing_pw],
            vec![],
            "password_file",
        ),
        (
            vec!["sync", "--config", &registry_only],
            vec![],
            "no repository",
        ),
        (vec!["check", "--config", &short_name], vec![], "every tag"),
        (
            vec!["check", "--config", &missing_pw, "--next", "5000"],
            vec![],
            "5000",
        ),
        (
            vec!["inspect", "--platform", "linux", &img],
            vec![],
            "--platform",
        ),
        (
            vec!["import", "--platform", "bogus", &img, &repo],
            vec![],
            "bogus",
        ),
        (vec!["tags", &img], vec![], "not a repository"),
        (
            vec!["index", "create", &img, "--annotation", "novalue", &img],
            vec![],
            "KEY=VALUE",
        ),
        (vec!["auth", "check", "https://ghcr.io"], vec![], "scheme"),
        (vec!["import", &img], vec![], "TARGET"),
        (vec!["frobnicate"], vec![], "frobnicate"),
    ];
    for (args, envs, needle) in &cases {
        let run = regmirror_isolated(args, envs).await;
        assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(needle),
            "{args:?}: stderr does not say {needle:?}: {}",
            run.stderr
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a registry was contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_130_when_sync_is_interrupted_with_a_summary() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("sigint", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/fast", "v1", set.to_node()).await.unwrap();
    let (slow, hits) = counting_server(Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mirror.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mirror]]\nname = \"fast\"\nsource = \"{s}/team/fast:v1\"\ntarget = \"{d}/mirror/fast\"\n\n\
             [[mirror]]\nname = \"slow\"\nsource = \"{slow}/team/slow:v1\"\ntarget = \"{d}/mirror/slow\"\n",
            s = src.host(),
            d = dst.host(),
            slow = slow.host()
        ),
    )
    .unwrap();
    let args = [
        "sync",
        "--config",
        cfg.to_str().unwrap(),
        "--output",
        "json",
    ];
    let run = regmirror_signalled(&args, &[], libc::SIGINT, Duration::from_secs(30), || {
        hits.load(Ordering::SeqCst) > 0
    })
    .await;
    assert_eq!(run.code, 130, "{}\n{}", run.stdout, run.stderr);
    let doc = json(&run);
    assert_eq!(doc["result"], "interrupted", "{doc}");
    assert_eq!(doc["exit_code"], 130);
    assert_eq!(doc["mirrors"].as_array().unwrap().len(), 2, "{doc}");
    assert!(run.stderr.contains("interrupted"), "{}", run.stderr);

    // A one-shot import stops at once, with its report.
    let (hang, hits) = counting_server(Duration::from_secs(300)).await;
    let (from, to) = (
        format!("{}/team/app:v1", hang.host()),
        format!("{}/mirror/app", dst.host()),
    );
    let args = ["import", "--output", "json", &from, &to];
    let run = regmirror_signalled(&args, &[], libc::SIGTERM, Duration::from_secs(30), || {
        hits.load(Ordering::SeqCst) > 0
    })
    .await;
    assert_eq!(run.code, 130, "{}\n{}", run.stdout, run.stderr);
    let doc = json(&run);
    assert_eq!(doc["result"], "interrupted", "{doc}");
    assert_eq!(doc["images"][0]["result"], "cancelled", "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_quietly_with_the_normal_exit_code() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("pipe", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    for t in ["v1", "v2", "v3"] {
        push(&src, "team/app", t, set.to_node()).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mirror.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mirror]]\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n",
            src.host(),
            dst.host()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let image = format!("{}/team/app:v1", src.host());
    let target = format!("{}/mirror/app", dst.host());
    let repo = format!("{}/team/app", src.host());
    let cases: Vec<Vec<&str>> = vec![
        vec!["check", "--config", cfg, "--next", "1000"],
        vec!["sync", "--config", cfg, "--dry-run", "--output", "json"],
        vec!["sync", "--config", cfg, "--dry-run"],
        vec!["import", "--dry-run", &image, &target],
        vec!["import", "--dry-run", "--output", "json", &image, &target],
        vec!["inspect", "--raw", &image],
        vec!["inspect", &image],
        vec!["tags", &repo],
        vec!["completions", "bash"],
        vec!["man"],
        vec!["--help"],
    ];
    for args in cases {
        let run = regmirror_closed_stdout(&args, &[]).await;
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(
            !run.stderr.contains("Broken pipe") && !run.stderr.contains("failed printing"),
            "{args:?}: {}",
            run.stderr
        );
    }
    // The code is the command's own: a conflict still exits 4.
    let other = ImageSet::multi_arch("pipe-other", &["linux/amd64"], false, Format::Oci);
    push(&dst, "mirror/app", "v1", other.to_node())
        .await
        .unwrap();
    let run = regmirror_closed_stdout(&["import", &image, &target], &[]).await;
    assert_eq!(run.code, 4, "{}", run.stderr);
}

/// The one rule, command by command (README "Exit codes"): a mistake found
/// before any registry is contacted exits 2; one found after a registry
/// answered exits 1, in the same message style. `copy` is not a command of
/// this build, and `serve` does not exit once it has contacted a registry
/// (a failed run is a metric and a log line), so it has a start-up case only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_exit_code_rule_for_every_command() {
    let (fake, hits) = counting_server(Duration::ZERO).await;
    let h = fake.host();
    let port = h.rsplit_once(':').unwrap().1.to_string();
    let alias = format!("localhost:{port}");
    let dir = tempfile::tempdir().unwrap();
    let self_mirror = dir.path().join("self.toml");
    std::fs::write(
        &self_mirror,
        format!("[[mirror]]\nsource = \"{h}/team/app:v1\"\ntarget = \"[::1]:{port}/team/app\"\n"),
    )
    .unwrap();
    let self_mirror = self_mirror.to_str().unwrap();
    let img = format!("{h}/team/app:v1");
    let alias_img = format!("{alias}/team/app:v1");
    let pre: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "import",
            vec!["import", &img, &alias_img],
            "is the source itself",
        ),
        (
            "import",
            vec![
                "import",
                "docker.io/library/a:1",
                "registry-1.docker.io:443/library/a:1",
            ],
            "is the source itself",
        ),
        (
            "inspect",
            vec!["inspect", "--platform", "linux", &img],
            "--platform",
        ),
        ("tags", vec!["tags", &img], "not a repository"),
        (
            "index create",
            vec!["index", "create", &alias_img, &img],
            "is the source itself",
        ),
        (
            "check",
            vec!["check", "--config", self_mirror],
            "target is the source itself",
        ),
        (
            "sync",
            vec!["sync", "--config", self_mirror],
            "target is the source itself",
        ),
        (
            "serve",
            vec!["serve", "--config", self_mirror],
            "target is the source itself",
        ),
        (
            "auth check",
            vec!["auth", "check", "https://ghcr.io"],
            "scheme",
        ),
    ];
    for (command, args, needle) in &pre {
        let run = regmirror_isolated(args, &[]).await;
        assert_eq!(
            run.code, 2,
            "{command} {args:?}: {}{}",
            run.stdout, run.stderr
        );
        assert!(
            run.stderr.contains(needle),
            "{command}: no {needle:?} in {}",
            run.stderr
        );
        assert!(
            run.stderr.starts_with("error: "),
            "{command}: {}",
            run.stderr
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a registry was contacted");

    // After contact: a real registry holding an amd64/arm64 index.
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("rule", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    let s = src.host();
    let (img, absent) = (format!("{s}/team/app:v1"), format!("{s}/team/absent:v1"));
    let (copy_to, absent_repo, index) = (
        format!("{s}/mirror/app:v1"),
        format!("{s}/team/absent"),
        format!("{s}/team/idx:v1"),
    );
    let missing = dir.path().join("missing.toml");
    std::fs::write(
        &missing,
        format!("[[mirror]]\nsource = \"{absent}\"\ntarget = \"{s}/mirror/absent\"\n"),
    )
    .unwrap();
    let no_catalog = dir.path().join("catalog.toml");
    std::fs::write(
        &no_catalog,
        format!(
            "[[mirror]]\nsource = \"{h}/team\"\ntarget = \"{s}/mirror\"\nrepositories = [\".*\"]\n"
        ),
    )
    .unwrap();
    let post: Vec<(&str, Vec<&str>, String)> = vec![
        (
            "import",
            vec!["import", "--platform", "linux/s390x", &img, &copy_to],
            "s390x".into(),
        ),
        (
            "inspect",
            vec!["inspect", "--platform", "linux/s390x", &img],
            "no manifest for linux/s390x".into(),
        ),
        ("tags", vec!["tags", &absent_repo], "team/absent".into()),
        (
            "index create",
            vec!["index", "create", &index, &absent],
            "team/absent".into(),
        ),
        (
            "check",
            vec![
                "check",
                "--discover",
                "--no-credentials",
                "--config",
                no_catalog.to_str().unwrap(),
            ],
            "discover".into(),
        ),
        (
            "sync",
            vec!["sync", "--config", missing.to_str().unwrap()],
            "team/absent".into(),
        ),
        ("auth check", vec!["auth", "check", &s], s.clone()),
    ];
    for (command, args, needle) in &post {
        let run = regmirror_isolated(args, &[]).await;
        assert_eq!(
            run.code, 1,
            "{command} {args:?}: {}{}",
            run.stdout, run.stderr
        );
        assert!(
            run.stderr.contains(needle.as_str()) || run.stdout.contains(needle.as_str()),
            "{command}: no {needle:?} in {}{}",
            run.stdout,
            run.stderr
        );
    }
    assert!(
        hits.load(Ordering::SeqCst) > 0,
        "check --discover contacted the catalog"
    );
}
