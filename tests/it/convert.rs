//! `regmirror config convert`: the published examples of skopeo sync
//! (skopeo-sync(1)) and regsync (regclient docs/regsync.md), kept under
//! tests/fixtures/convert/, convert into configs `regmirror check` accepts,
//! with a `# convert:` comment for each setting that does not map; and a
//! loopback version of the skopeo example mirrors, through `regmirror sync`,
//! the same images `skopeo sync` itself copies from the same YAML.

use crate::common;
use crate::sync_run;

use std::path::{Path, PathBuf};

use common::{Format, ImageSet, Node, RegistryOptions, TestRegistry, regmirror};
use sync_run::{push_tags, tags};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/convert")
        .join(name)
}

/// Convert `args` into a file; returns the file and the converted text.
async fn convert(dir: &Path, args: &[&str]) -> (PathBuf, String) {
    let out = dir.join("converted.toml");
    let mut all = vec!["config", "convert"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", out.to_str().unwrap()]);
    let run = regmirror(&all).await;
    assert_eq!(run.code, 0, "{all:?}: {}", run.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    (out, text)
}

/// `regmirror check` of `path`. The examples name credential files of
/// their authors' machines, so credentials are not resolved here.
async fn check(path: &Path) {
    let run = regmirror(&["check", "--no-credentials", "-c", path.to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}

#[tokio::test]
async fn the_skopeo_sync_example_converts_into_a_config_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixture("skopeo-sync.yml");
    let (path, text) = convert(
        dir.path(),
        &[
            "--from",
            "skopeo",
            "--target",
            "my-registry.local.lan/repo",
            fixture.to_str().unwrap(),
        ],
    )
    .await;
    check(&path).await;
    for want in [
        "source = \"registry.example.com/busybox\"\ntarget = \"my-registry.local.lan/repo/busybox\"\n",
        "tags = [\"1.0\", \"2.0\"]",
        "source = \"registry.example.com/redis@sha256:0000000000000000000000000000000011111111111111111111111111111111\"",
        "include = ['^1\\.13\\.[12]-alpine-perl$']",
        "semver = \">= 3.12.0\"",
        "target = \"my-registry.local.lan/repo/coreos/etcd\"\ntags = [\"latest\"]",
        "username = \"john\"",
        "tls = \"skip-verify\"",
        "# convert: skopeo cert-dir \"/home/john/certs\"",
    ] {
        assert!(text.contains(want), "lacks {want:?}:\n{text}");
    }
    let config = regmirror::sync::Config::parse(&path, &text).unwrap();
    assert_eq!(config.mirrors.len(), 6, "{text}");

    // --scoped keeps the source host in the path, as skopeo's --scoped does.
    let (_, scoped) = convert(
        dir.path(),
        &[
            "--from",
            "skopeo",
            "--scoped",
            "--target",
            "my-registry.local.lan",
            fixture.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        scoped.contains("target = \"my-registry.local.lan/quay.io/coreos/etcd\""),
        "{scoped}"
    );

    // skopeo takes the destination on its command line: required here.
    let run = regmirror(&[
        "config",
        "convert",
        "--from",
        "skopeo",
        fixture.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--target DEST"), "{}", run.stderr);
}

#[tokio::test]
async fn the_regsync_example_converts_with_comments_for_what_does_not_map() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixture("regsync.yml");
    let (path, text) = convert(
        dir.path(),
        &["--from", "regsync", fixture.to_str().unwrap()],
    )
    .await;
    check(&path).await;
    for want in [
        "concurrency = 2",
        "host = \"localhost:5000\"\ntls = \"plain-http\"",
        "password_file = \"/var/run/secrets/hub_token\"",
        "pull_budget_floor = 100",
        // type image with interval and a {{.Ref.Tag}} backup.
        "source = \"busybox:latest\"\ntarget = \"localhost:5000/library/busybox:latest\"\nschedule = \"0 * * * *\"",
        "backup = \"backup-{tag}\"",
        // type repository: allow/deny are bound to the whole tag.
        "source = \"docker.io/library/alpine\"",
        "include = [\"^(?:latest)$\", \"^(?:edge)$\", \"^(?:3)$\", '^(?:3.\\d+)$']",
        "exclude = [\"^(?:3.0)$\"]",
        "schedule = \"15 01 * * *\"",
        // What does not map is said, never dropped.
        "# convert: user \"{{env \\\"HUB_USER\\\"}}\" is a template",
        "# convert: backup \"{{$t := time.Now}}",
        "# convert: left out, sync entry 3: regmirror reads \"localreg:5000\"",
        "# source = \"localreg:5000\"",
    ] {
        assert!(text.contains(want), "lacks {want:?}:\n{text}");
    }
    let config = regmirror::sync::Config::parse(&path, &text).unwrap();
    assert_eq!(config.mirrors.len(), 2, "{text}");
    let alpine = &config.mirrors[1];
    let listed: Vec<String> = ["latest", "edge", "3", "3.18", "3.0", "3.18-rc", "2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match &alpine.selection {
        regmirror::sync::Selection::Filtered { filter, .. } => {
            let kept = filter.apply(&listed);
            assert_eq!(kept, ["3", "3.18", "edge", "latest"], "{text}");
        }
        other => panic!("alpine selects {other:?}"),
    }
}

#[tokio::test]
async fn a_file_that_is_not_yaml_or_not_that_tools_shape_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "sync: [unclosed\n").unwrap();
    let run = regmirror(&[
        "config",
        "convert",
        "--from",
        "regsync",
        bad.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is not valid YAML"), "{}", run.stderr);
    std::fs::write(&bad, "- a list\n").unwrap();
    let run = regmirror(&[
        "config",
        "convert",
        "--from",
        "skopeo",
        "--target",
        "h.example",
        bad.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("mapping of registry hosts"),
        "{}",
        run.stderr
    );
}

fn image(seed: &str) -> Node {
    Node::Image(ImageSet::image(seed, "linux/amd64", Format::Oci))
}

/// `skopeo sync --src yaml --dest docker YAML DEST`, as its man page runs it.
async fn skopeo_sync(yaml: &Path, dest: &str) {
    let home = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new("skopeo")
        .args(["--insecure-policy", "sync", "--all", "--preserve-digests"])
        .args([
            "--src",
            "yaml",
            "--dest",
            "docker",
            "--dest-tls-verify=false",
        ])
        .arg(yaml)
        .arg(dest)
        .env("HOME", home.path())
        .env_remove("REGISTRY_AUTH_FILE")
        .kill_on_drop(true)
        .output()
        .await
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo sync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_converted_skopeo_example_mirrors_what_skopeo_sync_mirrors() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    push_tags(&src, "busybox", &["1", "latest"], &image("busybox")).await;
    for t in ["1.0", "2.0"] {
        push_tags(&src, "redis", &[t], &image(&format!("redis/{t}"))).await;
    }
    let pinned = image("redis/3.0");
    push_tags(&src, "redis", &["3.0"], &pinned).await;
    for t in [
        "1.13.1",
        "1.13.1-alpine-perl",
        "1.13.2-alpine-perl",
        "1.13.3-alpine-perl",
    ] {
        push_tags(&src, "nginx", &[t], &image(&format!("nginx/{t}"))).await;
    }
    for t in ["3.11.0", "3.12.0", "3.13.1", "latest"] {
        push_tags(&src, "alpine", &[t], &image(&format!("alpine/{t}"))).await;
    }
    // The man page's example, on the loopback registry (which speaks HTTP:
    // tls-verify false) and without its credentials and cert-dir.
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("sync.yml");
    std::fs::write(
        &yaml,
        format!(
            "{host}:\n    images:\n        busybox: []\n        redis:\n            - \"1.0\"\n\
             \x20           - \"2.0\"\n            - \"{digest}\"\n    images-by-tag-regex:\n\
             \x20       nginx: ^1\\.13\\.[12]-alpine-perl$\n    images-by-semver:\n\
             \x20       alpine: \">= 3.12.0\"\n    tls-verify: false\n",
            host = src.host(),
            digest = pinned.digest()
        ),
    )
    .unwrap();

    let (config, text) = convert(
        dir.path(),
        &[
            "--from",
            "skopeo",
            "--target",
            &format!("{}/regmirror", dst.host()),
            yaml.to_str().unwrap(),
        ],
    )
    .await;
    let run = regmirror(&["sync", "-c", config.to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{text}\n{}\n{}", run.stdout, run.stderr);
    skopeo_sync(&yaml, &format!("{}/skopeo", dst.host())).await;

    let expected: [(&str, &[&str]); 3] = [
        ("busybox", &["1", "latest"]),
        ("redis", &["1.0", "2.0"]),
        ("nginx", &["1.13.1-alpine-perl", "1.13.2-alpine-perl"]),
    ];
    for (repo, want) in expected {
        let ours = tags(&dst, &format!("regmirror/{repo}")).await;
        let theirs = tags(&dst, &format!("skopeo/{repo}")).await;
        assert_eq!(ours, theirs, "{repo}: regmirror vs skopeo");
        assert_eq!(ours, want, "{repo}");
    }
    // images-by-semver came after the skopeo of the test machines (Debian's
    // 1.9 ignores the key), so alpine is checked against the man page's
    // words: "all images with tags match the semantic version constraint
    // \">= 3.12.0\"".
    assert_eq!(tags(&dst, "regmirror/alpine").await, ["3.12.0", "3.13.1"]);
    // The pinned digest, untagged, in both.
    let pusher = common::Pusher::for_registry(&dst);
    for prefix in ["regmirror", "skopeo"] {
        assert!(
            pusher
                .manifest_exists(&format!("{prefix}/redis"), pinned.digest())
                .await
                .unwrap(),
            "{prefix}/redis lacks {}",
            pinned.digest()
        );
    }
}

#[tokio::test]
async fn regsync_and_skopeo_settings_map_as_docs_migrating_says() {
    let dir = tempfile::tempdir().unwrap();
    let regsync = dir.path().join("regsync.yml");
    std::fs::write(
        &regsync,
        r#"version: 1
creds:
  - registry: registry.example.com
    user: mirror
    pass: '{{env "MIRROR_TOKEN"}}'
    tls: insecure
    reqPerSec: 2.5
    reqConcurrent: 3
    blobChunk: 1048576
    credHelper: docker-credential-ecr-login
    regcert: "-----BEGIN CERTIFICATE-----"
defaults:
  interval: 12h
  referrers: true
  digestTags: true
  referrerFilters:
    - artifactType: application/vnd.example.sbom
sync:
  - source: registry.example.com
    target: mirror.example.com
    type: registry
  - source: registry.example.com/team/app
    target: other.example.com/team/app
    type: repository
    platform: linux/arm64
    interval: 90m
  - source: "{{ .Sync.Target }}"
    target: mirror.example.com/x
    type: image
"#,
    )
    .unwrap();
    let (path, text) = convert(
        dir.path(),
        &["--from", "regsync", regsync.to_str().unwrap()],
    )
    .await;
    check(&path).await;
    for want in [
        "username = \"mirror\"\npassword_env = \"MIRROR_TOKEN\"\ntls = \"skip-verify\"",
        "requests_per_second = 2.5\nmax_concurrent_requests = 3\nchunk_size = 1048576",
        "# convert: credHelper \"docker-credential-ecr-login\"",
        "# convert: regcert",
        "schedule = \"0 */12 * * *\"",
        "referrers = true",
        "cosign_tags = true",
        "referrer_types = [\"application/vnd.example.sbom\"]",
        "source = \"registry.example.com\"\ntarget = \"mirror.example.com\"\nrepositories = [\".*\"]",
        "platforms = [\"linux/arm64\"]",
        "# convert: interval \"90m\" has no cron form here",
        "# convert: left out, sync entry 3",
    ] {
        assert!(text.contains(want), "lacks {want:?}:\n{text}");
    }

    // A semver constraint regmirror cannot read leaves its mirror out,
    // rather than mirror every tag.
    let skopeo = dir.path().join("sync.yml");
    std::fs::write(
        &skopeo,
        "registry.example.com:\n    images-by-semver:\n        app: \">= 1.2 || < 0.5\"\n    \
         images:\n        other: [\"1\"]\n",
    )
    .unwrap();
    let (path, text) = convert(
        dir.path(),
        &[
            "--from",
            "skopeo",
            "--target",
            "mirror.example.com",
            skopeo.to_str().unwrap(),
        ],
    )
    .await;
    check(&path).await;
    assert!(
        text.contains("# convert: left out, the constraint \">= 1.2 || < 0.5\""),
        "{text}"
    );
    assert!(text.contains("# semver = \">= 1.2 || < 0.5\""), "{text}");
    let config = regmirror::sync::Config::parse(&path, &text).unwrap();
    assert_eq!(config.mirrors.len(), 1, "{text}");
}

#[tokio::test]
async fn docs_migrating_names_only_commands_and_flags_that_exist() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/migrating.md"))
            .unwrap();
    let snippet = regex::Regex::new(r"`(regmirror [^`]+)`").unwrap();
    let mut checked = 0;
    for c in snippet.captures_iter(&doc) {
        let words: Vec<&str> = c[1].split_whitespace().collect();
        if words[1].chars().all(|c| c.is_ascii_uppercase()) {
            continue; // `regmirror COMMAND --help`
        }
        let mut path = vec![words[1]];
        if matches!(words[1], "config" | "auth" | "index") {
            path.push(words[2]);
        }
        let mut args = path.clone();
        args.push("--help");
        let run = common::regmirror_isolated(&args, &[]).await;
        assert_eq!(
            run.code, 0,
            "docs/migrating.md runs `{}`: {}",
            &c[1], run.stderr
        );
        for flag in words.iter().filter(|w| w.starts_with("--")) {
            let flag = flag.split('=').next().unwrap();
            assert!(
                run.stdout.contains(flag),
                "`{}`: {flag} is not a flag of it",
                &c[1]
            );
        }
        checked += 1;
    }
    assert!(checked > 15, "{checked}");
}
