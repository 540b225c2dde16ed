//! Results that say what happened: `tags` of a multi-image layout lists
//! every image by its REF and sorts versions as versions, a digest-only
//! `import` says no tag was written, a requested platform the source lacks
//! fails the copy (nothing written) unless `--platform-optional` /
//! `platforms_optional`, and `sync`'s summary line counts prunes.

use crate::common;
use crate::sync_run;

use common::{Format, ImageSet, Node, RegistryOptions, TestRegistry, push, regmirror_isolated};
use sync_run::{ConfigFile, push_tags, tags};

fn image(seed: &str) -> Node {
    Node::Image(ImageSet::image(seed, "linux/amd64", Format::Oci))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_of_a_multi_image_bundle_lists_each_image_by_its_ref() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    push_tags(
        &src,
        "team/app",
        &["v1.9.0", "v1.10.0"],
        &image("bundle/app"),
    )
    .await;
    push_tags(&src, "team/db", &["2"], &image("bundle/db")).await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.tar");
    let s = src.host();
    // The README's air-gap bundle: a sync to an archive names every image
    // by its full source reference.
    let config = ConfigFile::new();
    let path = config.write(&format!(
        "[[mirror]]\nsource = \"{s}/team/app\"\ntarget = \"oci-archive:{b}\"\n\n\
         [[mirror]]\nsource = \"{s}/team/db:2\"\ntarget = \"oci-archive:{b}\"\n",
        b = bundle.display()
    ));
    let run = regmirror_isolated(&["sync", "--config", path.to_str().unwrap()], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let archive = format!("oci-archive:{}", bundle.display());
    let run = regmirror_isolated(&["tags", &archive], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let want = [
        format!("{s}/team/app:v1.9.0"),
        format!("{s}/team/app:v1.10.0"),
        format!("{s}/team/db:2"),
    ];
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        want,
        "{}",
        run.stderr
    );
    // Each line is the REF that addresses the image.
    let run = regmirror_isolated(&["inspect", &format!("{archive}:{}", want[2])], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    // NAME still lists that repository's tags.
    let run = regmirror_isolated(&["tags", &format!("{archive}:{s}/team/app")], &[]).await;
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        ["v1.9.0", "v1.10.0"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_sort_versions_as_versions_by_default() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let tagged = ["v1.10.0", "latest", "v1.9.0", "v1.9.0-rc1"];
    push_tags(&src, "team/app", &tagged, &image("sort/app")).await;
    let repo = format!("{}/team/app", src.host());
    let run = regmirror_isolated(&["tags", &repo], &[]).await;
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        ["v1.9.0-rc1", "v1.9.0", "v1.10.0", "latest"],
        "{}",
        run.stderr
    );
    let run = regmirror_isolated(&["tags", "--sort", "lexical", "--json", &repo], &[]).await;
    let listed: Vec<String> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(listed, ["latest", "v1.10.0", "v1.9.0", "v1.9.0-rc1"]);
    // registry: as the registry listed them (distribution lists them sorted).
    let run = regmirror_isolated(&["tags", "--sort", "registry", &repo], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_only_import_says_no_tag_was_written() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::image("untagged", "linux/amd64", Format::Oci);
    push(&src, "team/app", "v1", Node::Image(set.clone()))
        .await
        .unwrap();
    let source = format!("{}/team/app@{}", src.host(), set.digest());
    let run =
        regmirror_isolated(&["import", &source, &format!("{}/m/text", dst.host())], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("no tag was written") && run.stdout.contains("ECR lifecycle"),
        "{}",
        run.stdout
    );
    let run = regmirror_isolated(
        &[
            "import",
            "--output",
            "json",
            &source,
            &format!("{}/m/json", dst.host()),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["images"][0]["untagged"], true, "{report:#}");
    assert!(tags(&dst, "m/json").await.is_empty());
    // A tagged import is not untagged.
    let run = regmirror_isolated(
        &[
            "import",
            "--output",
            "json",
            &format!("{}/team/app:v1", src.host()),
            &dst.host(),
        ],
        &[],
    )
    .await;
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["images"][0]["untagged"], false, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_platform_fails_unless_optional() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch(
        "missing",
        &["linux/amd64", "linux/arm64"],
        false,
        Format::Oci,
    );
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    let (s, d) = (src.host(), dst.host());
    let source = format!("{s}/team/app:v1");
    let wanted = "linux/amd64,linux/s390x";
    let run = regmirror_isolated(
        &[
            "import",
            "--platform",
            wanted,
            &source,
            &format!("{d}/m/app"),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("has no linux/s390x") && run.stderr.contains("--platform-optional"),
        "{}",
        run.stderr
    );
    assert!(tags(&dst, "m/app").await.is_empty(), "nothing is written");

    let run = regmirror_isolated(
        &[
            "import",
            "--platform",
            wanted,
            "--platform-optional",
            "--output",
            "json",
            &source,
            &format!("{d}/m/app"),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let image = &report["images"][0];
    assert_eq!(
        image["platforms_missing"],
        serde_json::json!(["linux/s390x"])
    );
    assert_eq!(image["platforms_kept"], serde_json::json!(["linux/amd64"]));
    assert_eq!(tags(&dst, "m/app").await, ["v1"]);

    // The same in a config: the mirror fails, then copies with the key.
    let config = ConfigFile::new();
    let mirror = format!(
        "[[mirror]]\nsource = \"{source}\"\ntarget = \"{d}/m/sync\"\nplatforms = [\"linux/amd64\", \"linux/s390x\"]\n"
    );
    let path = config.write(&mirror);
    let run = regmirror_isolated(&["sync", "--config", path.to_str().unwrap()], &[]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("has no linux/s390x"), "{}", run.stderr);
    assert!(tags(&dst, "m/sync").await.is_empty());
    let path = config.write(&format!("{mirror}platforms_optional = true\n"));
    let (code, report, stderr) = sync_run::sync_json(&path, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        report["images"][0]["platforms_missing"],
        serde_json::json!(["linux/s390x"]),
        "{report:#}"
    );
    assert_eq!(tags(&dst, "m/sync").await, ["v1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_summary_counts_prunes() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous().with_delete()).await;
    push_tags(&src, "team/app", &["1.0"], &image("summary/1.0")).await;
    push_tags(&dst, "mirror/app", &["0.9"], &image("summary/0.9")).await;
    let config = ConfigFile::new();
    let path = config.write(&format!(
        "[[mirror]]\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n\
         include = ['^[0-9]']\nprune = \"not-in-source\"\n",
        src.host(),
        dst.host()
    ));
    let cfg = path.to_str().unwrap();
    let run = regmirror_isolated(&["sync", "--config", cfg, "--prune-dry-run"], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("; prune: 1 would be pruned, 0 refused;"),
        "{}",
        run.stdout
    );
    let run = regmirror_isolated(&["sync", "--config", cfg], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("; prune: 1 pruned, 0 refused;"),
        "{}",
        run.stdout
    );
    assert_eq!(tags(&dst, "mirror/app").await, ["1.0"]);
}
