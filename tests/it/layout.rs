//! OCI image layouts and archives as sources and targets, checked with
//! independent tools: skopeo reads what regmirror writes and writes what
//! regmirror reads, umoci lists regmirror's layouts and makes its own, and
//! a registry round trip keeps every digest (compared by `skopeo inspect --raw`).

use crate::common;
use crate::layout_support;

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

fn blob_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

/// `kill -9` while a second image is written: `index.json` still lists only
/// the first, complete image (umoci and an independent walk agree), and a
/// rerun finishes the second without rewriting the blobs already there.
/// Repeated with the stall at different blobs.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_layout_write_leaves_a_valid_layout_and_a_rerun_resumes() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let tmp = tempfile::tempdir().unwrap();
    let first = ImageSet::multi_arch("kill-a", &["linux/amd64"], false, Format::Oci);
    push(&src, "app", "v1", first.to_node()).await.unwrap();
    for (round, nth) in [2usize, 4, 6].into_iter().enumerate() {
        let dir = tmp.path().join(format!("layout{round}"));
        let oci = format!("oci:{}", dir.display());
        let run = regmirror(&["import", &format!("{}/app:v1", src.host()), &oci]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let before = blob_count(&dir);

        let second = ImageSet::multi_arch(
            &format!("kill-b{round}"),
            &["linux/amd64", "linux/arm64", "linux/ppc64le", "linux/s390x"],
            true,
            Format::Oci,
        );
        push(&src, "app", "v2", second.to_node()).await.unwrap();
        // One blob GET hangs, so the image can never complete before the kill.
        let proxy = common::TestProxy::start(
            &src.base_url(),
            common::FaultPlan::none().nth(
                "GET",
                r"/v2/app/blobs/sha256:",
                nth,
                common::Fault::Stall(std::time::Duration::from_secs(60)),
            ),
        )
        .await;
        let source = format!("{}/app:v2", proxy.host());
        let watched = dir.clone();
        let killed = common::regmirror_signalled(
            &["import", &source, &oci, "--blob-concurrency", "2"],
            &[],
            libc::SIGKILL,
            std::time::Duration::from_secs(30),
            move || blob_count(&watched) > before,
        )
        .await;
        assert_eq!(killed.code, -1, "not killed: {}", killed.stderr);

        let (names, _) = check_layout_complete(&dir);
        assert_eq!(names, vec!["v1".to_string()], "round {round}");
        assert_eq!(umoci_ls(&dir).await, vec!["v1".to_string()]);

        let rerun = regmirror(&[
            "import",
            &format!("{}/app:v2", src.host()),
            &oci,
            "--output",
            "json",
        ])
        .await;
        assert_eq!(rerun.code, 0, "{}", rerun.stderr);
        let v = &json(&rerun)["images"][0];
        assert!(
            v["blobs_present"].as_u64().unwrap() >= 1,
            "blobs written before the kill are verified and kept: {v}"
        );
        let (mut names, _) = check_layout_complete(&dir);
        names.sort();
        assert_eq!(names, vec!["v1".to_string(), "v2".to_string()]);
        let mut tags = umoci_ls(&dir).await;
        tags.sort();
        assert_eq!(tags, vec!["v1".to_string(), "v2".to_string()]);
        assert_eq!(
            layout_support::skopeo_raw_digest(&format!("{oci}:v2")).await,
            second.digest()
        );
        assert!(!dir.join(".regmirror-tmp").exists());
    }
}

/// A second writer waits for the lock within the timeout, then fails with
/// a message naming the lock; the layout is untouched.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_writer_fails_clearly_while_the_first_holds_the_layout() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("busy", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    push(&src, "app", "v1", set.to_node()).await.unwrap();
    let proxy = common::TestProxy::start(
        &src.base_url(),
        common::FaultPlan::none().nth(
            "GET",
            r"/v2/app/blobs/sha256:",
            2,
            common::Fault::Stall(std::time::Duration::from_secs(6)),
        ),
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let oci = format!("oci:{}", dir.display());
    let slow_source = format!("{}/app:v1", proxy.host());
    let slow = tokio::spawn({
        let oci = oci.clone();
        async move { regmirror(&["import", &slow_source, &oci, "--blob-concurrency", "1"]).await }
    });
    // Wait until the first writer holds the lock.
    let lock = dir.join(".regmirror.lock");
    for _ in 0..200 {
        if lock.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(lock.exists(), "the first writer never took the lock");
    let second = regmirror(&[
        "import",
        &format!("{}/app:v1", src.host()),
        &format!("{oci}:other"),
        "--timeout",
        "1",
    ])
    .await;
    assert_ne!(second.code, 0);
    assert!(
        second
            .stderr
            .contains("another process is writing this layout"),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains(".regmirror.lock"),
        "{}",
        second.stderr
    );
    let first = slow.await.unwrap();
    assert_eq!(first.code, 0, "{}", first.stderr);
    let (names, _) = check_layout_complete(&dir);
    assert_eq!(names, vec!["v1".to_string()]);
}

/// Referrers stored under the fallback tag scheme (`sha256-<hex>`, an index
/// of the artifacts) and a cosign-style tag (`sha256-<hex>.sig`) travel
/// through a layout with sync like any tag, byte for byte, and come back
/// into a registry; a platform filter writes a new, complete index.
#[tokio::test(flavor = "multi_thread")]
async fn referrer_tags_and_platform_filters_through_a_layout() {
    use common::{Blob, IndexBuilder, Node};
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("signed", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    push(&src, "app", "v1", set.to_node()).await.unwrap();
    let subject = set.to_node().manifest().clone();
    let hex = subject.digest.trim_start_matches("sha256:").to_string();
    let sbom = common::image::artifact_for(
        &subject,
        "application/spdx+json",
        Blob::new("application/spdx+json", r#"{"spdxVersion":"SPDX-2.3"}"#),
    );
    let sbom_digest = sbom.digest().to_string();
    let fallback = IndexBuilder::new(Format::Oci).image(sbom).build();
    push(
        &src,
        "app",
        &format!("sha256-{hex}"),
        Node::Index(fallback.clone()),
    )
    .await
    .unwrap();
    let sig = common::image::artifact_for(
        &subject,
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        Blob::new("application/vnd.dev.cosign.simplesigning.v1+json", "{}"),
    );
    push(
        &src,
        "app",
        &format!("sha256-{hex}.sig"),
        Node::Image(sig.clone()),
    )
    .await
    .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let config = tmp.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[[mirror]]\nname = \"out\"\nsource = \"{}/app\"\ntarget = \"oci:{}\"\n\n\
             [[mirror]]\nname = \"back\"\nsource = \"oci:{}\"\ntarget = \"{}/restored\"\n",
            src.host(),
            dir.display(),
            dir.display(),
            dst.host()
        ),
    )
    .unwrap();
    let only = |name: &str| {
        vec![
            "sync".to_string(),
            "--config".to_string(),
            config.display().to_string(),
            "--mirror".to_string(),
            name.to_string(),
        ]
    };
    let args = only("out");
    let run = regmirror(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let (mut names, _) = check_layout_complete(&dir);
    names.sort();
    // A layout target without REF names each image by its full source
    // reference; restored under a prefix, the registry host is dropped.
    let repo = format!("{}/app", src.host());
    let mut want = vec![
        format!("{repo}:sha256-{hex}"),
        format!("{repo}:sha256-{hex}.sig"),
        format!("{repo}:v1"),
    ];
    want.sort();
    assert_eq!(names, want);
    let args = only("back");
    let run = regmirror(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    // The fallback index is not copied as bytes: regmirror writes its own
    // from the referrer manifests, so it lists the same referrer.
    let (_, restored) = common::Pusher::for_registry(&dst)
        .get_manifest("restored/app", &format!("sha256-{hex}"))
        .await
        .unwrap();
    let restored: Value = serde_json::from_slice(&restored).unwrap();
    let listed: Vec<&str> = restored["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["digest"].as_str())
        .collect();
    assert_eq!(listed, vec![sbom_digest.as_str()], "{restored}");
    for (tag, digest) in [
        ("v1".to_string(), set.digest().to_string()),
        (format!("sha256-{hex}.sig"), sig.digest().to_string()),
    ] {
        assert_eq!(
            skopeo_raw_digest(&dst, &format!("restored/app:{tag}"))
                .await
                .unwrap(),
            digest,
            "{tag}"
        );
    }

    // --platform into a layout: a new index of the kept platform, complete.
    let filtered = format!("oci:{}:arm64", dir.display());
    let run = regmirror(&[
        "import",
        &format!("{}/app:v1", src.host()),
        &filtered,
        "--platform",
        "linux/arm64",
        "--output",
        "json",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = &json(&run)["images"][0];
    assert_eq!(v["digest_changed"], true);
    let digest = v["target_digest"].as_str().unwrap().to_string();
    check_layout_complete(&dir);
    assert_eq!(layout_support::skopeo_raw_digest(&filtered).await, digest);
    let raw = skopeo(&["inspect", "--raw", &filtered]).await.unwrap();
    let index: Value = serde_json::from_slice(&raw).unwrap();
    let arches: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["platform"]["architecture"].as_str())
        .filter(|a| *a != "unknown")
        .collect();
    assert_eq!(arches, vec!["arm64"]);
}

/// sync into an `oci-archive:` packs it at the end of the run; a second run
/// finds everything up to date and leaves the archive byte for byte; the
/// archive syncs back into an empty registry with the same digests. A
/// layout source with several images and no REF says what to add.
#[tokio::test(flavor = "multi_thread")]
async fn sync_to_and_from_an_archive() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let a = ImageSet::multi_arch("sync-a", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    let b = ImageSet::multi_arch("sync-b", &["linux/amd64"], false, Format::Docker);
    push(&src, "team/app", "1.0", a.to_node()).await.unwrap();
    push(&src, "team/app", "2.0", b.to_node()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bundle.tar");
    let out = tmp.path().join("out.toml");
    std::fs::write(
        &out,
        format!(
            "[[mirror]]\nsource = \"{}/team/app\"\ntarget = \"oci-archive:{}\"\n",
            src.host(),
            file.display()
        ),
    )
    .unwrap();
    // The archive's extracted copy lives under TMPDIR and is gone at exit.
    let tmpdir = tmp.path().join("tmpdir");
    std::fs::create_dir(&tmpdir).unwrap();
    let env = [("TMPDIR", tmpdir.to_str().unwrap())];
    let run = common::regmirror_env(&["sync", "--config", out.to_str().unwrap()], &env).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(layout_support::files_under(&tmpdir), Vec::<String>::new());
    let members = tar_members(&file);
    assert_eq!(members.first().map(String::as_str), Some("oci-layout"));
    assert_eq!(members.last().map(String::as_str), Some("index.json"));
    let packed = std::fs::read(&file).unwrap();
    let again = regmirror(&["sync", "--config", out.to_str().unwrap()]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("2 up to date"), "{}", again.stdout);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        packed,
        "an up-to-date run rewrote the archive"
    );

    let back = tmp.path().join("back.toml");
    std::fs::write(
        &back,
        format!(
            "[[mirror]]\nsource = \"oci-archive:{}\"\ntarget = \"{}/restored\"\n",
            file.display(),
            dst.host()
        ),
    )
    .unwrap();
    let run = regmirror(&["sync", "--config", back.to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    // The archive names images by full source reference; restored under a
    // prefix, the registry host is dropped.
    for (tag, digest) in [("1.0", a.digest()), ("2.0", b.digest())] {
        assert_eq!(
            skopeo_raw_digest(&dst, &format!("restored/team/app:{tag}"))
                .await
                .unwrap(),
            digest
        );
    }

    let run = regmirror(&[
        "import",
        &format!("oci-archive:{}", file.display()),
        &format!("{}/x/y", dst.host()),
    ])
    .await;
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("holds 2 images"), "{}", run.stderr);
    assert!(
        run.stderr.contains("1.0") && run.stderr.contains("2.0"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("e.g. oci-archive:{}:", file.display())),
        "{}",
        run.stderr
    );
}

/// `index create` with layouts: sources from one layout, the index into an
/// archive (packed at the end), read back by skopeo.
#[tokio::test(flavor = "multi_thread")]
async fn index_create_reads_and_writes_layouts() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let amd = ImageSet::image("lic", "linux/amd64", Format::Oci);
    let arm = ImageSet::image("lic", "linux/arm64", Format::Oci);
    push(&src, "lic", "amd", common::Node::Image(amd.clone()))
        .await
        .unwrap();
    push(&src, "lic", "arm", common::Node::Image(arm.clone()))
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("singles");
    for tag in ["amd", "arm"] {
        let run = regmirror(&[
            "import",
            &format!("{}/lic:{tag}", src.host()),
            &format!("oci:{}", dir.display()),
        ])
        .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let file = tmp.path().join("multi.tar");
    let target = format!("oci-archive:{}:1.0", file.display());
    let run = regmirror(&[
        "index",
        "create",
        &target,
        &format!("oci:{}:amd", dir.display()),
        &format!("oci:{}:arm", dir.display()),
        "--output",
        "json",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let digest = json(&run)["index"]["digest"].as_str().unwrap().to_string();
    assert_eq!(layout_support::skopeo_raw_digest(&target).await, digest);
    let raw = skopeo(&["inspect", "--raw", &target]).await.unwrap();
    let index: Value = serde_json::from_slice(&raw).unwrap();
    let children: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["digest"].as_str())
        .collect();
    assert_eq!(children, vec![amd.digest(), arm.digest()]);
    let (names, _) = {
        let x = tmp.path().join("x");
        std::fs::create_dir(&x).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&file)
            .arg("-C")
            .arg(&x)
            .status()
            .unwrap();
        assert!(out.success());
        check_layout_complete(&x)
    };
    assert_eq!(names, vec!["1.0".to_string()]);
}

/// One client kept across runs (as `serve` keeps it): a layout target that
/// lost its content is rebuilt by the next run, and a blob corrupted on disk
/// is found by verification and written again.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_lived_client_heals_a_layout_that_lost_its_data() {
    use regmirror::copy::{Copier, CopyOptions};
    use regmirror::registry::{Client, ClientOptions, Reference};
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("heal", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    push(&src, "app", "v1", set.to_node()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let client = Client::new(ClientOptions::default()).unwrap();
    let source = Reference::parse(&format!("{}/app:v1", src.host())).unwrap();
    let target = Reference::parse(&format!("oci:{}:v1", dir.display())).unwrap();
    let options = CopyOptions::default();
    let run = || async {
        let copier = Copier::new(client.clone());
        let plan = copier.plan(&source, &target, &options).await.unwrap();
        copier.execute(&plan, &options).await.unwrap()
    };
    run().await;
    check_layout_complete(&dir);

    std::fs::remove_dir_all(&dir).unwrap();
    let report = run().await;
    assert_eq!(report.outcome, regmirror::copy::Outcome::Copied);
    assert_eq!(check_layout_complete(&dir).0, vec!["v1".to_string()]);
    assert_eq!(umoci_ls(&dir).await, vec!["v1".to_string()]);

    // Corrupt one layer in place: the next run verifies, rewrites it.
    let layer = set.blobs().iter().map(|b| b.digest.clone()).max().unwrap();
    let path = dir
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let report = run().await;
    assert!(report.blobs_copied >= 1, "{report:?}");
    check_layout_complete(&dir);
}

/// Tags sharing an index and blobs, written at once into one layout by a
/// sync with image concurrency 8: every fresh run ends with every tag in
/// `index.json` (no lost update between concurrent tag writes) and a
/// complete graph. Ten fresh runs.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_tags_into_one_layout_never_lose_an_entry() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let one = ImageSet::multi_arch("rep-1", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    let two = ImageSet::multi_arch("rep-2", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    let mut want = Vec::new();
    for (i, set) in [&one, &two, &one, &two, &one, &two, &one, &two]
        .iter()
        .enumerate()
    {
        let tag = format!("t{i}");
        push(&src, "app", &tag, set.to_node()).await.unwrap();
        // A layout target without REF names each image by its full source reference.
        want.push(format!("{}/app:{tag}", src.host()));
    }
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..10 {
        let dir = tmp.path().join(format!("layout{round}"));
        let config = tmp.path().join(format!("c{round}.toml"));
        std::fs::write(
            &config,
            format!(
                "[defaults]\nconcurrency = 8\n\n[[mirror]]\nsource = \"{}/app\"\ntarget = \"oci:{}\"\n",
                src.host(),
                dir.display()
            ),
        )
        .unwrap();
        let run = regmirror(&["sync", "--config", config.to_str().unwrap()]).await;
        assert_eq!(run.code, 0, "round {round}: {}\n{}", run.stdout, run.stderr);
        let (mut names, _) = check_layout_complete(&dir);
        names.sort();
        assert_eq!(names, want, "round {round}");
    }
}
