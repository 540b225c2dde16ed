//! Configs and commands that would fight themselves are refused before
//! anything is written: two mirrors that can write the same target tag, a
//! config with no mirror (unless it says `allow_empty = true`), `import` and
//! `index create` onto their own source.

use crate::common;

use common::{Format, ImageSet, Node, Pusher, RegistryOptions, TestRegistry, push, regmirror};

fn write(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("mirror.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn mirrors_that_can_write_one_tag_are_a_config_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // The same explicit tag from two sources.
        (
            "[[mirror]]\nname = \"a\"\nsource = \"r.example/team/a:1.0\"\ntarget = \"t.example/mirror/app\"\n\
             [[mirror]]\nname = \"b\"\nsource = \"r.example/team/b\"\ntarget = \"t.example/mirror/app\"\ntags = [\"2.0\", \"1.0\"]\n",
            "tag \"1.0\"",
        ),
        // Every tag of one source and a single tag of another.
        (
            "[[mirror]]\nname = \"a\"\nsource = \"r.example/team/a\"\ntarget = \"t.example/mirror/app\"\n\
             [[mirror]]\nname = \"b\"\nsource = \"r.example/team/b:stable\"\ntarget = \"t.example/mirror/app\"\n",
            "tag \"stable\"",
        ),
        // Two listing mirrors: which tags each keeps depends on the sources.
        (
            "[[mirror]]\nname = \"a\"\nsource = \"r.example/team/a\"\ntarget = \"t.example/mirror/app\"\ninclude = ['^1\\.']\n\
             [[mirror]]\nname = \"b\"\nsource = \"r.example/team/b\"\ntarget = \"t.example/mirror/app\"\ninclude = ['^2\\.']\n",
            "tag lists",
        ),
    ];
    for (text, what) in cases {
        let path = write(dir.path(), text);
        for cmd in ["check", "sync"] {
            let run = regmirror(&[cmd, "--config", &path]).await;
            assert_eq!(run.code, 2, "{cmd}: {text}\n{}", run.stderr);
            for needle in ["\"a\"", "\"b\"", "mirror[2].target", what, "mirror/app"] {
                assert!(
                    run.stderr.contains(needle),
                    "{cmd}: {needle:?} in {}",
                    run.stderr
                );
            }
        }
    }
    // Provably disjoint: different tags, or a filter that rejects the other's tag.
    let ok = [
        "[[mirror]]\nsource = \"r.example/team/a:1.0\"\ntarget = \"t.example/mirror/app\"\n\
         [[mirror]]\nsource = \"r.example/team/b:2.0\"\ntarget = \"t.example/mirror/app\"\n",
        "[[mirror]]\nsource = \"r.example/team/a\"\ntarget = \"t.example/mirror/app\"\nsemver = \">=2\"\n\
         [[mirror]]\nsource = \"r.example/team/b:1.0\"\ntarget = \"t.example/mirror/app\"\n",
    ];
    for text in ok {
        let run = regmirror(&["check", "--config", &write(dir.path(), text)]).await;
        assert_eq!(run.code, 0, "{text}\n{}", run.stderr);
    }
}

#[tokio::test]
async fn check_reports_a_config_without_mirrors_unless_it_says_so() {
    let dir = tempfile::tempdir().unwrap();
    for text in ["", "[defaults]\nconcurrency = 2\n"] {
        let run = regmirror(&["check", "--config", &write(dir.path(), text)]).await;
        assert_eq!(run.code, 2, "{text:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("no [[mirror]]") && run.stderr.contains("allow_empty = true"),
            "{}",
            run.stderr
        );
    }
    let run = regmirror(&[
        "check",
        "--config",
        &write(dir.path(), "allow_empty = true\n"),
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("0 mirrors"), "{}", run.stdout);
}

/// A registry holding a 3-platform index as `team/app:1.0`.
async fn registry_with_app(seed: &str) -> (TestRegistry, common::MultiArch) {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let index = ImageSet::multi_arch(
        seed,
        &["linux/amd64", "linux/arm64", "linux/arm/v7"],
        false,
        Format::Oci,
    );
    push(&reg, "team/app", "1.0", index.to_node())
        .await
        .unwrap();
    (reg, index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_and_index_create_refuse_their_own_source_as_target() {
    let (reg, index) = registry_with_app("self/app").await;
    let amd = ImageSet::image("self/one", "linux/amd64", Format::Oci);
    push(&reg, "team/one", "1.0", Node::Image(amd))
        .await
        .unwrap();
    let h = reg.host();
    let same = format!("{h}/team/app:1.0");
    for args in [
        vec![
            "import",
            same.as_str(),
            same.as_str(),
            "--platform",
            "linux/amd64",
        ],
        vec!["import", same.as_str(), same.as_str()],
        vec!["import", same.as_str(), &format!("{h}/team/app")],
    ] {
        let run = regmirror(&args).await;
        assert_ne!(run.code, 0, "{args:?}: {}", run.stdout);
        assert!(
            run.stderr.contains("is the source itself"),
            "{args:?}: {}",
            run.stderr
        );
    }
    let one = format!("{h}/team/one:1.0");
    let run = regmirror(&["index", "create", &one, &one]).await;
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("is the source itself"),
        "{}",
        run.stderr
    );
    // The source is untouched: still the 3-platform index and the image.
    let pusher = Pusher::for_registry(&reg);
    let (_, bytes) = pusher.get_manifest("team/app", "1.0").await.unwrap();
    assert_eq!(common::sha256_digest(&bytes), index.digest());
    let (ct, _) = pusher.get_manifest("team/one", "1.0").await.unwrap();
    assert_eq!(ct, common::image::OCI_MANIFEST);
    // A retag within the repository is still allowed.
    let run = regmirror(&["import", &same, &format!("{h}/team/app:stable")]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (_, bytes) = pusher.get_manifest("team/app", "stable").await.unwrap();
    assert_eq!(common::sha256_digest(&bytes), index.digest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_imports_name_the_digest_they_would_write() {
    let (reg, index) = registry_with_app("plat/app").await;
    let other = ImageSet::image("plat/other", "linux/amd64", Format::Oci);
    let other_digest = other.manifest.digest.clone();
    push(&reg, "mirror/taken", "1.0", Node::Image(other))
        .await
        .unwrap();
    let h = reg.host();

    // The filtered index's digest, from a first import elsewhere.
    let run = regmirror(&[
        "import",
        &format!("{h}/team/app:1.0"),
        &format!("{h}/mirror/free:1.0"),
        "--platform",
        "linux/arm64",
        "--output",
        "json",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let filtered = report["images"][0]["target_digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(filtered, index.digest());

    // A conflict names that digest, not the source's.
    let run = regmirror(&[
        "import",
        &format!("{h}/team/app:1.0"),
        &format!("{h}/mirror/taken:1.0"),
        "--platform",
        "linux/arm64",
    ])
    .await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("points at {other_digest}, not {filtered}")),
        "{}",
        run.stderr
    );

    // Digest-pinned with --platform and no target tag: refused like the config does.
    let run = regmirror(&[
        "import",
        &format!("{h}/team/app@{}", index.digest()),
        &format!("{h}/mirror/pinned"),
        "--platform",
        "linux/amd64",
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("give the target a tag"),
        "{}",
        run.stderr
    );
    assert!(
        Pusher::for_registry(&reg)
            .tags("mirror/pinned")
            .await
            .unwrap_or_default()
            .is_empty()
    );
}
