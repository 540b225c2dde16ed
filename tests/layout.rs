//! OCI image layouts and archives as sources and targets, checked with
//! independent tools: skopeo reads what regmirror writes and writes what
//! regmirror reads, umoci lists regmirror's layouts and makes its own, and
//! a registry round trip keeps every digest (compared by `skopeo inspect --raw`).

mod common;
mod layout_support;

use common::{Format, ImageSet, RegistryOptions, TestRegistry, push, regmirror, skopeo_raw_digest};
use layout_support::{check_layout_complete, skopeo, tar_members, umoci, umoci_ls};
use serde_json::Value;

fn json(run: &common::Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_to_oci_layout_to_registry_keeps_every_digest() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("lay", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let oci = format!("oci:{}", dir.display());

    let run = regmirror(&[
        "import",
        &format!("{}/team/app:v1", src.host()),
        &oci,
        "--output",
        "json",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = &json(&run)["images"][0];
    assert_eq!(v["target"], format!("{oci}:v1"));
    assert_eq!(v["target_digest"], set.digest());

    // The layout is complete and named as skopeo names it (`oci:dir:v1`).
    let (names, blobs) = check_layout_complete(&dir);
    assert_eq!(names, vec!["v1".to_string()]);
    assert_eq!(
        blobs,
        set.manifests_in_push_order().len() + set.blobs().len()
    );
    assert!(
        !dir.join(".regmirror-tmp").exists(),
        "temporary directory left behind"
    );
    assert_eq!(
        layout_support::skopeo_raw_digest(&format!("{oci}:v1")).await,
        set.digest()
    );
    assert_eq!(umoci_ls(&dir).await, vec!["v1".to_string()]);

    // A second run finds everything in place.
    let again = regmirror(&["import", &format!("{}/team/app:v1", src.host()), &oci]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);

    // Back into a registry, from `oci:DIR` with no REF (its only image).
    let run = regmirror(&["import", &oci, &format!("{}/restored/app", dst.host())]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        skopeo_raw_digest(&dst, "restored/app:v1").await.unwrap(),
        set.digest()
    );
    for m in set.manifests_in_push_order() {
        assert_eq!(
            skopeo_raw_digest(&dst, &format!("restored/app@{}", m.digest))
                .await
                .unwrap(),
            m.digest
        );
    }

    // Tags and inspect read the layout.
    let tags = regmirror(&["tags", &oci]).await;
    assert_eq!(tags.code, 0, "{}", tags.stderr);
    assert_eq!(tags.stdout.trim(), "v1");
    let inspect = regmirror(&["inspect", &format!("{oci}:v1")]).await;
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    assert!(inspect.stdout.contains(set.digest()), "{}", inspect.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_to_oci_archive_to_registry_keeps_every_digest() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("arc", &["linux/amd64", "linux/s390x"], true, Format::Oci);
    push(&src, "app", "1.0", set.to_node()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bundle.tar");
    let archive = format!("oci-archive:{}", file.display());

    let run = regmirror(&["import", &format!("{}/app:1.0", src.host()), &archive]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    // oci-layout first, index.json last, nothing else beside the archive
    // but its lock file.
    let members = tar_members(&file);
    assert_eq!(members.first().map(String::as_str), Some("oci-layout"));
    assert_eq!(members.last().map(String::as_str), Some("index.json"));
    assert!(
        members
            .iter()
            .all(|m| m == "oci-layout" || m == "index.json" || m.starts_with("blobs/"))
    );
    let mut beside = layout_support::files_under(tmp.path());
    beside.sort();
    assert_eq!(beside, vec!["bundle.tar", "bundle.tar.lock"]);
    assert_eq!(
        layout_support::skopeo_raw_digest(&format!("{archive}:1.0")).await,
        set.digest()
    );

    // Another image into the same archive keeps the first one. A Docker
    // manifest list keeps its media type and digest (skopeo only reads OCI
    // media types from a layout, so the registry round trip checks this one).
    let other = ImageSet::multi_arch("arc2", &["linux/amd64"], false, Format::Docker);
    push(&src, "app", "2.0", other.to_node()).await.unwrap();
    let run = regmirror(&["import", &format!("{}/app:2.0", src.host()), &archive]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tags = regmirror(&["tags", &archive]).await;
    assert_eq!(tags.code, 0, "{}", tags.stderr);
    assert_eq!(tags.stdout.lines().collect::<Vec<_>>(), vec!["1.0", "2.0"]);

    for (tag, digest) in [("1.0", set.digest()), ("2.0", other.digest())] {
        let run = regmirror(&[
            "import",
            &format!("{archive}:{tag}"),
            &format!("{}/mirror/app", dst.host()),
        ])
        .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(
            skopeo_raw_digest(&dst, &format!("mirror/app:{tag}"))
                .await
                .unwrap(),
            digest
        );
    }
    for m in set.manifests_in_push_order() {
        assert_eq!(
            skopeo_raw_digest(&dst, &format!("mirror/app@{}", m.digest))
                .await
                .unwrap(),
            m.digest
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn layouts_written_by_skopeo_and_umoci_are_read() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("sk", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    push(&src, "app", "v2", set.to_node()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // skopeo writes a directory layout and an archive.
    let dir = tmp.path().join("by-skopeo");
    let tar = tmp.path().join("by-skopeo.tar");
    for dest in [
        format!("oci:{}:v2", dir.display()),
        format!("oci-archive:{}:v2", tar.display()),
    ] {
        skopeo(&[
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            &format!("docker://{}/app:v2", src.host()),
            &dest,
        ])
        .await
        .unwrap();
    }
    for (i, from) in [
        format!("oci:{}:v2", dir.display()),
        format!("oci-archive:{}:v2", tar.display()),
    ]
    .iter()
    .enumerate()
    {
        let to = format!("{}/from-skopeo{i}/app:v2", dst.host());
        let run = regmirror(&["import", from, &to]).await;
        assert_eq!(run.code, 0, "{from}: {}", run.stderr);
        assert_eq!(
            skopeo_raw_digest(&dst, &format!("from-skopeo{i}/app:v2"))
                .await
                .unwrap(),
            set.digest()
        );
    }

    // umoci makes its own layout and image; regmirror copies it.
    let u = tmp.path().join("by-umoci");
    let u_s = u.display().to_string();
    umoci(&["init", "--layout", &u_s]).await;
    umoci(&["new", "--image", &format!("{u_s}:base")]).await;
    let expected = layout_support::skopeo_raw_digest(&format!("oci:{u_s}:base")).await;
    let run = regmirror(&[
        "import",
        &format!("oci:{u_s}:base"),
        &format!("{}/umoci/base:1", dst.host()),
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        skopeo_raw_digest(&dst, "umoci/base:1").await.unwrap(),
        expected
    );
    // And writes into umoci's layout, which umoci still lists.
    let run = regmirror(&[
        "import",
        &format!("{}/app:v2", src.host()),
        &format!("oci:{u_s}:copied"),
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut tags = umoci_ls(&u).await;
    tags.sort();
    assert_eq!(tags, vec!["base".to_string(), "copied".to_string()]);
    check_layout_complete(&u);
}
