//! `regmirror index create` against real registries.

use crate::common;

use common::{
    Format, ImageBuilder, ImageSet, Node, RegistryOptions, TestRegistry, push, regmirror,
    skopeo_raw_digest,
};
use serde_json::Value;

async fn manifest(reg: &TestRegistry, repo: &str, reference: &str) -> (String, Value) {
    let (media_type, bytes) = common::Pusher::for_registry(reg)
        .get_manifest(repo, reference)
        .await
        .unwrap();
    (media_type, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn oci_index_from_two_images_in_other_repositories() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let amd = ImageSet::image("ic", "linux/amd64", Format::Oci);
    let arm = ImageSet::image("ic", "linux/arm/v7", Format::Docker);
    push(&src, "ic/amd", "v1", Node::Image(amd.clone()))
        .await
        .unwrap();
    push(&src, "ic/arm", "v1", Node::Image(arm.clone()))
        .await
        .unwrap();
    let target = format!("{}/multi:v1", dst.host());
    let (s1, s2) = (
        format!("{}/ic/amd:v1", src.host()),
        format!("{}/ic/arm:v1", src.host()),
    );

    let run = regmirror(&[
        "index",
        "create",
        &target,
        &s1,
        &s2,
        "--annotation",
        "org.opencontainers.image.version=1.0",
        "--output",
        "json",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["images"][0]["result"], "copied");
    // Both images copied into the target repository, then the index.
    assert_eq!(report["totals"]["manifests_pushed"], 3);
    let digest = report["index"]["digest"].as_str().unwrap().to_string();
    assert_eq!(skopeo_raw_digest(&dst, "multi:v1").await.unwrap(), digest);

    let (media_type, v) = manifest(&dst, "multi", "v1").await;
    assert_eq!(media_type, common::image::OCI_INDEX);
    assert_eq!(v["mediaType"], common::image::OCI_INDEX);
    assert_eq!(v["annotations"]["org.opencontainers.image.version"], "1.0");
    let entries = v["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["digest"], amd.digest());
    assert_eq!(entries[0]["mediaType"], common::image::OCI_MANIFEST);
    assert_eq!(entries[0]["size"], amd.manifest.size());
    assert_eq!(
        entries[0]["platform"],
        serde_json::json!({"architecture": "amd64", "os": "linux"})
    );
    assert_eq!(entries[1]["digest"], arm.digest());
    assert_eq!(
        entries[1]["mediaType"],
        common::image::DOCKER_MANIFEST,
        "entry media type is the child's"
    );
    assert_eq!(
        entries[1]["platform"],
        serde_json::json!({"architecture": "arm", "os": "linux", "variant": "v7"})
    );
    // The children were copied into the target repository, unchanged.
    for img in [&amd, &arm] {
        let at = format!("multi@{}", img.digest());
        assert_eq!(skopeo_raw_digest(&dst, &at).await.unwrap(), img.digest());
    }

    // Again: up to date. Another index at the tag: exit 4 unless --force.
    let run = regmirror(&[
        "index",
        "create",
        &target,
        &s1,
        &s2,
        "--annotation",
        "org.opencontainers.image.version=1.0",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("up to date"), "{}", run.stdout);
    let run = regmirror(&["index", "create", &target, &s1]).await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    assert_eq!(skopeo_raw_digest(&dst, "multi:v1").await.unwrap(), digest);
    let run = regmirror(&["index", "create", &target, &s1, "--force"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_ne!(skopeo_raw_digest(&dst, "multi:v1").await.unwrap(), digest);
}

#[tokio::test]
async fn docker_manifest_list_needs_schema2_children() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let win = ImageBuilder::new(Format::Docker)
        .platform_value(common::Platform::parse("windows/amd64").with_os_version("10.0.17763.1234"))
        .random_layer("win/app", 512)
        .build();
    let lin = ImageSet::image("dl", "linux/arm64/v8", Format::Docker);
    let oci = ImageSet::image("dl", "linux/s390x", Format::Oci);
    push(&reg, "dl", "win", Node::Image(win.clone()))
        .await
        .unwrap();
    push(&reg, "dl", "lin", Node::Image(lin.clone()))
        .await
        .unwrap();
    push(&reg, "dl", "oci", Node::Image(oci.clone()))
        .await
        .unwrap();
    let h = reg.host();

    let run = regmirror(&[
        "index",
        "create",
        &format!("{h}/dl:list"),
        &format!("{h}/dl:win"),
        &format!("{h}/dl:lin"),
        "--format",
        "docker",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (media_type, v) = manifest(&reg, "dl", "list").await;
    assert_eq!(media_type, common::image::DOCKER_LIST);
    assert_eq!(
        v["manifests"][0]["platform"]["os.version"],
        "10.0.17763.1234"
    );
    assert_eq!(v["manifests"][0]["platform"]["os"], "windows");
    assert_eq!(v["manifests"][1]["platform"]["variant"], "v8");
    assert!(v.get("annotations").is_none());
    let (_, bytes) = common::Pusher::for_registry(&reg)
        .get_manifest("dl", "list")
        .await
        .unwrap();
    assert_eq!(
        skopeo_raw_digest(&reg, "dl:list").await.unwrap(),
        common::sha256_digest(&bytes)
    );

    // An OCI child cannot go into a Docker manifest list.
    let run = regmirror(&[
        "index",
        "create",
        &format!("{h}/dl:bad"),
        &format!("{h}/dl:lin"),
        &format!("{h}/dl:oci"),
        "--format",
        "docker",
    ])
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("--format oci") && run.stderr.contains("dl:oci"),
        "{}",
        run.stderr
    );
    assert!(
        !common::Pusher::for_registry(&reg)
            .manifest_exists("dl", "bad")
            .await
            .unwrap()
    );

    // Annotations on a Docker list: a usage error.
    let run = regmirror(&[
        "index",
        "create",
        &format!("{h}/dl:bad"),
        &format!("{h}/dl:lin"),
        "--format",
        "docker",
        "--annotation",
        "a=b",
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[tokio::test]
async fn index_sources_and_duplicate_platforms_are_refused() {
    let reg = TestRegistry::start(RegistryOptions::anonymous()).await;
    let index = ImageSet::multi_arch("refuse", &["linux/amd64"], false, Format::Oci);
    let a = ImageSet::image("one", "linux/amd64", Format::Oci);
    let b = ImageSet::image("two", "linux/amd64", Format::Oci);
    push(&reg, "r", "index", index.to_node()).await.unwrap();
    push(&reg, "r", "a", Node::Image(a)).await.unwrap();
    push(&reg, "r", "b", Node::Image(b)).await.unwrap();
    let h = reg.host();

    let run = regmirror(&[
        "index",
        "create",
        &format!("{h}/r:out"),
        &format!("{h}/r:index"),
    ])
    .await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("multi-platform index") && run.stderr.contains("r:index"),
        "{}",
        run.stderr
    );

    let run = regmirror(&[
        "index",
        "create",
        &format!("{h}/r:out"),
        &format!("{h}/r:a"),
        &format!("{h}/r:b"),
    ])
    .await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("both linux/amd64"), "{}", run.stderr);
    assert!(
        !common::Pusher::for_registry(&reg)
            .manifest_exists("r", "out")
            .await
            .unwrap()
    );

    let run = regmirror(&["index", "create", &format!("{h}/r:out")]).await;
    assert_eq!(run.code, 2, "a source is required: {}", run.stderr);
}
