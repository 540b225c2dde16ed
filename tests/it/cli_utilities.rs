//! The crane-style one-shot commands through the binary, against a real
//! registry (Debian `docker-registry`): `digest`, `catalog`, `tag`,
//! `delete`, `copy` as an alias of `import`, and the one `--output json`
//! spelling of `inspect` and `tags` (the old `--json` kept as a hidden alias).

use crate::common;
use crate::sync_run;

use common::{Format, ImageSet, Node, RegistryOptions, TestRegistry, regmirror};
use sync_run::{push_tags, tags};

fn image(seed: &str) -> Node {
    Node::Image(ImageSet::image(seed, "linux/amd64", Format::Oci))
}

fn json(run: &common::Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr))
}

/// The report of a one-shot command, each of its fields documented in
/// docs/report.md's section on these commands.
fn report(run: &common::Run) -> serde_json::Value {
    let v = json(run);
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.md"),
    )
    .unwrap();
    let section = doc
        .split("## The one-shot commands")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/report.md documents the one-shot commands");
    let command = v["command"].as_str().unwrap().to_string();
    for key in v.as_object().unwrap().keys() {
        assert!(
            section.contains(&format!("| `{command}` | `{key}` |"))
                || section.contains(&format!("`{key}`")),
            "docs/report.md does not document `{key}` of {command}"
        );
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_prints_the_index_digest_and_a_platform_child_digest() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let index = ImageSet::multi_arch(
        "digest",
        &["linux/amd64", "linux/arm64"],
        false,
        Format::Oci,
    );
    common::push(&reg, "team/app", "1.0", index.to_node())
        .await
        .unwrap();
    let image = format!("{}/team/app:1.0", reg.host());

    let run = regmirror(&["digest", &image]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), index.digest());

    let child = index.image_for("linux/arm64").unwrap().digest();
    let run = regmirror(&["digest", "--platform", "linux/arm64", &image]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), child);

    let run = regmirror(&[
        "digest",
        "--output",
        "json",
        "--platform",
        "linux/arm64",
        &image,
    ])
    .await;
    let v = report(&run);
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["command"], "digest");
    assert_eq!(v["result"], "success");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["digest"], child);
    assert_eq!(v["platform"], "linux/arm64");

    // A platform the index lacks, and a tag that does not exist: failures
    // with a report that says so.
    let run = regmirror(&["digest", "--platform", "linux/s390x", &image]).await;
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("linux/amd64"), "{}", run.stderr);
    let missing = format!("{}/team/app:nope", reg.host());
    let run = regmirror(&["digest", "--output", "json", &missing]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let v = report(&run);
    assert_eq!(v["result"], "failed");
    assert!(
        v["error"].as_str().unwrap().contains("no such manifest"),
        "{v:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lists_every_repository_across_pages() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    for repo in ["a/one", "b/two", "c/three"] {
        push_tags(&reg, repo, &["1"], &image(repo)).await;
    }
    let run = regmirror(&["catalog", &reg.host()]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        ["a/one", "b/two", "c/three"]
    );

    let run = regmirror(&[
        "catalog",
        "--page-size",
        "1",
        "--output",
        "json",
        &reg.host(),
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = report(&run);
    assert_eq!(v["command"], "catalog");
    assert_eq!(
        v["repositories"],
        serde_json::json!(["a/one", "b/two", "c/three"])
    );
    assert!(v["pages"].as_u64().unwrap() >= 3, "{v:#}");

    let run = regmirror(&["catalog", &format!("http://{}", reg.host())]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("URL scheme"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_puts_the_same_manifest_under_a_new_tag_without_blob_traffic() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (one, two) = (image("tag/1"), image("tag/2"));
    push_tags(&reg, "team/app", &["1.0"], &one).await;
    push_tags(&reg, "team/app", &["2.0"], &two).await;
    let uploads = || {
        reg.access_log_count("POST", "/v2/team/app/blobs/uploads")
            + reg.access_log_count("HEAD", "/v2/team/app/blobs/")
            + reg.access_log_count("GET", "/v2/team/app/blobs/")
    };
    let before = uploads();

    let src = format!("{}/team/app:1.0", reg.host());
    let run = regmirror(&["tag", "--output", "json", &src, "stable"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = report(&run);
    assert_eq!(v["outcome"], "tagged");
    assert_eq!(v["digest"], one.digest());
    assert!(tags(&reg, "team/app").await.contains(&"stable".to_string()));
    let digest = regmirror(&["digest", &format!("{}/team/app:stable", reg.host())]).await;
    assert_eq!(digest.stdout.trim(), one.digest());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(uploads(), before, "tag touched blobs:\n{}", reg.log());

    // Again: already there.
    let run = regmirror(&["tag", &src, "stable"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("already points at"), "{}", run.stdout);

    // A tag holding another digest stays unless --force.
    let run = regmirror(&["tag", &src, "2.0"]).await;
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    let digest = regmirror(&["digest", &format!("{}/team/app:2.0", reg.host())]).await;
    assert_eq!(digest.stdout.trim(), two.digest());
    let run = regmirror(&["tag", "--force", &src, "2.0"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let digest = regmirror(&["digest", &format!("{}/team/app:2.0", reg.host())]).await;
    assert_eq!(digest.stdout.trim(), one.digest());

    let run = regmirror(&["tag", &src, "other/repo:x"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is not a tag"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_needs_yes_resolves_the_digest_and_deletes_the_tag_alone() {
    let reg = TestRegistry::start(RegistryOptions::anonymous().with_delete()).await;
    let one = image("delete/1");
    push_tags(&reg, "team/app", &["old", "keep"], &one).await;
    let old = format!("{}/team/app:old", reg.host());

    // Without --yes: a usage error before any request.
    let requests = reg.access_log_count("HEAD", "/v2/") + reg.access_log_count("GET", "/v2/");
    let run = regmirror(&["delete", &old]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let after = reg.access_log_count("HEAD", "/v2/") + reg.access_log_count("GET", "/v2/");
    assert_eq!(after, requests);

    let run = regmirror(&["delete", "--dry-run", "--output", "json", &old]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = report(&run);
    assert_eq!(v["digest"], one.digest());
    assert_eq!(v["dry_run"], true);
    assert!(tags(&reg, "team/app").await.contains(&"old".to_string()));

    let run = regmirror(&["delete", "--yes", "--output", "json", &old]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = report(&run);
    assert_eq!(v["digest"], one.digest());
    assert_eq!(v["how"], "by-placeholder");
    assert_eq!(tags(&reg, "team/app").await, ["keep"]);
    let keep = format!("{}/team/app:keep", reg.host());
    assert_eq!(
        regmirror(&["digest", &keep]).await.stdout.trim(),
        one.digest()
    );

    // By digest: the manifest goes, with every tag on it.
    let by_digest = format!("{}/team/app@{}", reg.host(), one.digest());
    let run = regmirror(&["delete", "-y", &by_digest]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = regmirror(&["digest", &keep]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);

    // Layouts and bare repositories are refused up front.
    let run = regmirror(&["delete", "--yes", "oci:/nonexistent/layout:tag"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("registries only"), "{}", run.stderr);
    let run = regmirror(&["delete", "--yes", &format!("{}/team/app", reg.host())]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("name the tag"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_on_a_registry_that_refuses_deletes_says_so_and_keeps_the_tag() {
    // distribution without storage.delete.enabled answers 405 to DELETE.
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let one = image("refuse/1");
    push_tags(&reg, "team/app", &["old"], &one).await;
    let run = regmirror(&["delete", "--yes", &format!("{}/team/app:old", reg.host())]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("405"), "{}", run.stderr);
    assert!(
        run.stderr.contains("storage.delete.enabled"),
        "{}",
        run.stderr
    );
    let run = regmirror(&[
        "delete",
        "--yes",
        &format!("{}/team/app@{}", reg.host(), one.digest()),
    ])
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("storage.delete.enabled"),
        "{}",
        run.stderr
    );
    assert_eq!(tags(&reg, "team/app").await, ["old"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_is_import_and_unknown_commands_get_a_suggestion() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let one = image("copy/1");
    push_tags(&reg, "team/app", &["1.0"], &one).await;
    let src = format!("{}/team/app:1.0", reg.host());
    let dst = format!("{}/mirror/app:1.0", reg.host());
    let run = regmirror(&["copy", "--output", "json", &src, &dst]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(json(&run)["command"], "import");
    assert_eq!(tags(&reg, "mirror/app").await, ["1.0"]);

    let run = regmirror(&["copi", &src, &dst]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("'copy'"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_and_tags_take_output_json_and_keep_the_old_json_flag() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let one = image("output/1");
    push_tags(&reg, "team/app", &["1.0", "2.0"], &one).await;
    let image = format!("{}/team/app:1.0", reg.host());
    let repo = format!("{}/team/app", reg.host());
    for flags in [&["--output", "json"][..], &["--json"][..]] {
        let mut args = vec!["inspect"];
        args.extend_from_slice(flags);
        args.push(&image);
        let run = regmirror(&args).await;
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert_eq!(json(&run)["schemaVersion"], 2, "{args:?}");

        let mut args = vec!["tags"];
        args.extend_from_slice(flags);
        args.push(&repo);
        let run = regmirror(&args).await;
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert_eq!(json(&run), serde_json::json!(["1.0", "2.0"]), "{args:?}");
    }
    // Only the one spelling is shown.
    for cmd in ["inspect", "tags"] {
        let run = regmirror(&[cmd, "--help"]).await;
        assert!(run.stdout.contains("--output"), "{}", run.stdout);
        assert!(!run.stdout.contains("--json"), "{}", run.stdout);
    }
}

#[tokio::test]
async fn each_utility_has_help_with_the_syntax_and_two_examples() {
    for cmd in ["digest", "catalog", "tag", "delete"] {
        let run = common::regmirror_isolated(&[cmd, "--help"], &[]).await;
        assert_eq!(run.code, 0, "{cmd}: {}", run.stderr);
        let examples = run
            .stdout
            .split("Examples:")
            .nth(1)
            .unwrap_or_else(|| panic!("{cmd}: no examples:\n{}", run.stdout))
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("regmirror {cmd} ")))
            .count();
        assert!(examples >= 2, "{cmd}:\n{}", run.stdout);
        assert!(
            run.stdout.contains("[REGISTRY[:PORT]"),
            "{cmd}:\n{}",
            run.stdout
        );
        assert!(run.stdout.contains("--output"), "{cmd}:\n{}", run.stdout);
    }
    let top = common::regmirror_isolated(&["--help"], &[]).await.stdout;
    for cmd in ["digest", "catalog", "tag", "delete"] {
        assert!(top.contains(&format!("\n  {cmd} ")), "{top}");
    }
    assert!(top.contains("[alias: copy]"), "{top}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_source_target_mirrors_one_repository_with_flag_filters() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    for t in ["0.9", "1.0", "1.1", "1.2-rc1"] {
        push_tags(&src, "team/app", &[t], &image(&format!("adhoc/{t}"))).await;
    }
    let source = format!("{}/team/app", src.host());
    let target = format!("{}/mirror/app", dst.host());
    let run = regmirror(&[
        "sync",
        "--semver",
        ">=1.0",
        "--exclude",
        "rc",
        "--output",
        "json",
        &source,
        &target,
    ])
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let v = json(&run);
    assert_eq!(v["command"], "sync");
    assert_eq!(v["mirrors"][0]["name"], "mirror/app");
    assert_eq!(v["totals"]["copied"], 2, "{v:#}");
    assert_eq!(tags(&dst, "mirror/app").await, ["1.0", "1.1"]);

    // Every tag by default; the second run finds them up to date.
    let run = regmirror(&["sync", &source, &target]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        tags(&dst, "mirror/app").await,
        ["0.9", "1.0", "1.1", "1.2-rc1"]
    );
    assert!(
        run.stdout.contains("2 copied, 2 up to date"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_from_file_mirrors_each_line_and_names_a_bad_line() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    push_tags(&src, "team/one", &["1"], &image("list/1")).await;
    push_tags(&src, "team/two", &["2", "3"], &image("list/2")).await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("images.txt");
    std::fs::write(
        &list,
        format!(
            "# images of the team\n\n{s}/team/one:1 {d}/elsewhere/one   # a pair\n{s}/team/two\n",
            s = src.host(),
            d = dst.host()
        ),
    )
    .unwrap();
    let list = list.to_str().unwrap();
    let prefix = format!("{}/mirror", dst.host());
    let run = regmirror(&["sync", "--from-file", list, "--target-prefix", &prefix]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(tags(&dst, "elsewhere/one").await, ["1"]);
    assert_eq!(tags(&dst, "mirror/team/two").await, ["2", "3"]);

    // Without --target-prefix, the source alone on line 4 is an error naming the line.
    let run = regmirror(&["sync", "--from-file", list]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("line 4"), "{}", run.stderr);
    assert!(run.stderr.contains("--target-prefix"), "{}", run.stderr);

    // A validation error of the config names the LIST line and the flag.
    let run = regmirror(&[
        "sync",
        "--from-file",
        list,
        "--target-prefix",
        &prefix,
        "--semver",
        "not a version",
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("line 3") && run.stderr.contains("--semver"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn sync_without_a_config_checks_its_arguments_before_any_registry() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("m.toml");
    std::fs::write(
        &config,
        "[[mirror]]\nsource = \"127.0.0.1:9/a\"\ntarget = \"127.0.0.1:9/b\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["sync"], "needs a config file"),
        (
            &["sync", "-c", config, "127.0.0.1:9/a", "127.0.0.1:9/b"],
            "not both",
        ),
        (
            &["sync", "-c", config, "--semver", ">=1"],
            "--semver applies to mirrors given",
        ),
        (
            &[
                "sync",
                "--semver",
                "not a version",
                "127.0.0.1:9/a",
                "127.0.0.1:9/b",
            ],
            "--semver:",
        ),
        (
            &[
                "sync",
                "--platform",
                "linux",
                "127.0.0.1:9/a",
                "127.0.0.1:9/b",
            ],
            "--platform:",
        ),
    ];
    for (args, want) in cases {
        let run = common::regmirror_isolated(args, &[]).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{args:?}: {}", run.stderr);
    }
}

/// Every environment variable the sources read by name: `var("X")`,
/// `env("X")`, `var_os("X")` and `…ENV…: &str = "X"` constants.
fn env_vars_read() -> std::collections::BTreeSet<String> {
    let call = regex::Regex::new(r#"\b(?:var|env|var_os)\("([A-Z][A-Z0-9_]+)"\)"#).unwrap();
    let konst = regex::Regex::new(r#"ENV[A-Z_]*: &str = "([A-Z][A-Z0-9_]+)""#).unwrap();
    let mut found = std::collections::BTreeSet::new();
    let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for re in [&call, &konst] {
                    for c in re.captures_iter(&text) {
                        found.insert(c[1].to_string());
                    }
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn the_man_page_has_environment_files_and_exit_status() {
    let run = common::regmirror_isolated(&["man"], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let page = run.stdout.replace("\\-", "-");
    for section in [
        ".SH \"ENVIRONMENT\"",
        ".SH \"FILES\"",
        ".SH \"EXIT STATUS\"",
    ] {
        assert!(page.contains(section), "lacks {section}");
    }
    let vars = env_vars_read();
    assert!(
        vars.contains("RUST_LOG") && vars.contains("DOCKER_CONFIG"),
        "{vars:?}"
    );
    let env = page
        .split(".SH \"ENVIRONMENT\"")
        .nth(1)
        .and_then(|s| s.split(".SH \"FILES\"").next())
        .unwrap();
    for v in &vars {
        assert!(env.contains(v.as_str()), "ENVIRONMENT lacks {v}");
    }
    let files = page.split(".SH \"FILES\"").nth(1).unwrap();
    for f in ["config.json", "containers/auth.json", "--config"] {
        assert!(files.contains(f), "FILES lacks {f}");
    }
    // Every exit code the top-level help lists, with its meaning.
    let status = page.split(".SH \"EXIT STATUS\"").nth(1).unwrap();
    for code in ["0", "1", "2", "3", "4", "5", "130"] {
        assert!(
            status.contains(&format!(".TP\n\\fB{code}\\fR\n")),
            "EXIT STATUS lacks {code}:\n{status}"
        );
    }
    assert!(status.contains("Interrupted by SIGINT"), "{status}");
    // The new commands have their man sections too.
    for page_name in [
        "regmirror-digest",
        "regmirror-delete",
        "regmirror-config-convert",
    ] {
        assert!(page.contains(page_name), "lacks {page_name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_tags_and_no_force_flags_act_as_their_config_keys() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (one, two, three) = (image("flags/1"), image("flags/2"), image("flags/3"));
    push_tags(&src, "team/app", &["1"], &one).await;
    push_tags(&src, "team/app", &["2"], &two).await;
    push_tags(&src, "team/app", &["3"], &three).await;
    // The target's tag 1 holds another digest.
    push_tags(&dst, "mirror/app", &["1"], &three).await;
    let source = format!("{}/team/app", src.host());
    let target = format!("{}/mirror/app", dst.host());
    let run = regmirror(&[
        "sync",
        "--tags",
        "1,2",
        "--no-force",
        "--output",
        "json",
        &source,
        &target,
    ])
    .await;
    let v = json(&run);
    assert_eq!(run.code, 3, "{v:#}\n{}", run.stderr);
    assert_eq!(v["totals"]["copied"], 1, "{v:#}");
    assert_eq!(v["totals"]["conflict"], 1, "{v:#}");
    // Tag 3 was not asked for; tag 1 kept its digest.
    assert_eq!(tags(&dst, "mirror/app").await, ["1", "2"]);
    let digest = regmirror(&["digest", &format!("{target}:1")]).await;
    assert_eq!(digest.stdout.trim(), three.digest());
}
