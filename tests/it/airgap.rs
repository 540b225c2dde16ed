//! The air-gapped workflow end to end: a config of several mirrors from two
//! upstream registries syncs into one `oci-archive:`, which skopeo reads
//! image by image, and that archive syncs into an empty registry under a
//! prefix with every digest identical to upstream (`skopeo inspect --raw`).

use crate::common;
use crate::layout_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{Format, ImageSet, RegistryOptions, TestRegistry, push, regmirror, skopeo_raw_digest};

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

fn report_of(run: &common::Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr))
}

async fn sync(config: &Path) -> (common::Run, serde_json::Value) {
    let run = regmirror(&[
        "sync",
        "--config",
        config.to_str().unwrap(),
        "--output",
        "json",
    ])
    .await;
    let report = report_of(&run);
    (run, report)
}

/// `index.json` of a packed archive, read from the tar.
fn archive_index(file: &Path) -> serde_json::Value {
    let mut a = tar::Archive::new(std::fs::File::open(file).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("index.json") {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            return serde_json::from_str(&s).unwrap();
        }
    }
    panic!("{} has no index.json", file.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_mirrors_into_one_archive_then_into_an_empty_registry() {
    let up1 = TestRegistry::start(RegistryOptions::anonymous()).await;
    let up2 = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    // (upstream, repository, tag, digest); images of one platform share a base layer.
    let mut images: Vec<(String, String, String, String)> = Vec::new();
    let mut blobs = BTreeSet::new();
    for (reg, repo, tag, multi) in [
        (&up1, "team/app", "1.0", true),
        (&up1, "team/app", "2.0", true),
        (&up1, "team/tool", "0.9", false),
        (&up2, "library/nginx", "1.27", true),
    ] {
        let seed = format!("{repo}/{tag}");
        let digest = if multi {
            let set =
                ImageSet::multi_arch(&seed, &["linux/amd64", "linux/arm64"], true, Format::Oci);
            push(reg, repo, tag, set.to_node()).await.unwrap();
            blobs.extend(set.blobs().iter().map(|b| b.digest.clone()));
            set.digest().to_string()
        } else {
            let image = ImageSet::image(&seed, "linux/amd64", Format::Docker);
            push(reg, repo, tag, image.clone()).await.unwrap();
            blobs.extend(image.pushable_blobs().iter().map(|b| b.digest.clone()));
            image.digest().to_string()
        };
        images.push((reg.host(), repo.to_string(), tag.to_string(), digest));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bundle.tar");
    let archive = format!("oci-archive:{}", file.display());

    // Step 1, on the connected side: three mirrors, one archive.
    let connected = write_config(
        dir.path(),
        "connected.toml",
        &format!(
            "[[mirror]]\nsource = \"{u1}/team/app\"\ntarget = \"{archive}\"\ninclude = ['^\\d']\n\n\
             [[mirror]]\nsource = \"{u1}/team/tool:0.9\"\ntarget = \"{archive}\"\n\n\
             [[mirror]]\nsource = \"{u2}/library/nginx\"\ntarget = \"{archive}\"\ntags = [\"1.27\"]\n",
            u1 = up1.host(),
            u2 = up2.host()
        ),
    );
    let (run, report) = sync(&connected).await;
    assert_eq!(run.code, 0, "{report:#}\n{}", run.stderr);
    assert_eq!(report["totals"]["copied"], 4, "{report:#}");

    // The archive: oci-layout first, index.json last, each blob once, one
    // entry per image named by its full source reference.
    let members = layout_support::tar_members(&file);
    assert_eq!(members.first().map(String::as_str), Some("oci-layout"));
    assert_eq!(members.last().map(String::as_str), Some("index.json"));
    let blob_members: Vec<&String> = members.iter().filter(|m| m.starts_with("blobs/")).collect();
    let unique: BTreeSet<&String> = blob_members.iter().copied().collect();
    assert_eq!(
        blob_members.len(),
        unique.len(),
        "a blob stored twice: {members:?}"
    );
    for b in &blobs {
        let path = format!("blobs/sha256/{}", b.trim_start_matches("sha256:"));
        assert!(unique.contains(&path), "{b} missing from the archive");
    }
    let index = archive_index(&file);
    let mut names: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    names.sort();
    let mut want: Vec<String> = images
        .iter()
        .map(|(h, r, t, _)| format!("{h}/{r}:{t}"))
        .collect();
    want.sort();
    assert_eq!(names, want);

    // skopeo reads each image from the archive, digests unchanged. (The
    // Docker-format image is kept byte for byte too, but skopeo 1.9 reads
    // only OCI media types from a layout; the restore below checks it.)
    for (host, repo, tag, digest) in images.iter().filter(|i| i.1 != "team/tool") {
        let transport = format!("{archive}:{host}/{repo}:{tag}");
        assert_eq!(
            &layout_support::skopeo_raw_digest(&transport).await,
            digest,
            "{transport}"
        );
    }

    // Step 2, on the disconnected side: the archive into an empty registry.
    let restore = write_config(
        dir.path(),
        "restore.toml",
        &format!(
            "[[mirror]]\nsource = \"{archive}\"\ntarget = \"{}/mirror\"\n",
            dst.host()
        ),
    );
    let (run, report) = sync(&restore).await;
    assert_eq!(run.code, 0, "{report:#}\n{}", run.stderr);
    assert_eq!(report["totals"]["copied"], 4, "{report:#}");
    assert_eq!(
        report["mirrors"][0]["discovered"]["listed"], 3,
        "{report:#}"
    );
    for (_, repo, tag, digest) in &images {
        let reference = format!("mirror/{repo}:{tag}");
        assert_eq!(
            &skopeo_raw_digest(&dst, &reference).await.unwrap(),
            digest,
            "{reference}"
        );
    }
    // Every child manifest is there too, under its digest.
    for (_, repo, _, digest) in &images {
        let raw = layout_support::skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/mirror/{repo}@{digest}", dst.host()),
        ])
        .await
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        for child in v["manifests"].as_array().into_iter().flatten() {
            let d = child["digest"].as_str().unwrap();
            assert_eq!(
                skopeo_raw_digest(&dst, &format!("mirror/{repo}@{d}"))
                    .await
                    .unwrap(),
                d
            );
        }
    }

    // A second restore finds everything up to date.
    let (run, report) = sync(&restore).await;
    assert_eq!(run.code, 0, "{report:#}\n{}", run.stderr);
    assert_eq!(report["totals"]["up_to_date"], 4, "{report:#}");
    assert_eq!(report["totals"]["copied"], 0, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_two_hosts_that_restore_to_one_repository_are_refused() {
    let up1 = TestRegistry::start(RegistryOptions::anonymous()).await;
    let up2 = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let a = ImageSet::image("one/org/app", "linux/amd64", Format::Oci);
    let b = ImageSet::image("two/org/app", "linux/amd64", Format::Oci);
    let c = ImageSet::image("two/org/other", "linux/amd64", Format::Oci);
    push(&up1, "org/app", "1", a.clone()).await.unwrap();
    push(&up2, "org/app", "1", b.clone()).await.unwrap();
    push(&up2, "org/other", "1", c.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}", dir.path().join("bundle").display());
    let connected = write_config(
        dir.path(),
        "connected.toml",
        &format!(
            "[[mirror]]\nsource = \"{u1}/org/app:1\"\ntarget = \"{layout}\"\n\n\
             [[mirror]]\nsource = \"{u2}/org/app:1\"\ntarget = \"{layout}\"\n\n\
             [[mirror]]\nsource = \"{u2}/org/other:1\"\ntarget = \"{layout}\"\n",
            u1 = up1.host(),
            u2 = up2.host()
        ),
    );
    let (run, report) = sync(&connected).await;
    assert_eq!(run.code, 0, "{report:#}\n{}", run.stderr);

    // Both org/app names would land on mirror/org/app: refused, and said;
    // the other repository is restored; the exit code says partial.
    let restore = write_config(
        dir.path(),
        "restore.toml",
        &format!(
            "[[mirror]]\nsource = \"{layout}\"\ntarget = \"{}/mirror\"\n",
            dst.host()
        ),
    );
    let (run, report) = sync(&restore).await;
    assert_eq!(run.code, 3, "{report:#}\n{}", run.stderr);
    let errors = report["mirrors"][0]["errors"].to_string();
    assert!(errors.contains("all restore to"), "{report:#}");
    assert!(
        errors.contains(&format!("{}/org/app", up1.host())),
        "{report:#}"
    );
    assert!(
        errors.contains(&format!("{}/org/app", up2.host())),
        "{report:#}"
    );
    assert!(errors.contains("split the mirror"), "{report:#}");
    assert_eq!(
        skopeo_raw_digest(&dst, "mirror/org/other:1").await.unwrap(),
        c.digest()
    );
    assert!(
        common::Pusher::for_registry(&dst)
            .tags("mirror/org/app")
            .await
            .unwrap_or_default()
            .is_empty()
    );

    // Split by host, each gets its own prefix.
    let split = write_config(
        dir.path(),
        "split.toml",
        &format!(
            "[[mirror]]\nsource = \"{layout}\"\ntarget = \"{d}/one\"\nrepositories = ['^{h1}/']\n\n\
             [[mirror]]\nsource = \"{layout}\"\ntarget = \"{d}/two\"\nrepositories = ['^{h2}/']\n",
            d = dst.host(),
            h1 = regex::escape(&up1.host()),
            h2 = regex::escape(&up2.host()),
        ),
    );
    let (run, report) = sync(&split).await;
    assert_eq!(run.code, 0, "{report:#}\n{}", run.stderr);
    assert_eq!(
        skopeo_raw_digest(&dst, "one/org/app:1").await.unwrap(),
        a.digest()
    );
    assert_eq!(
        skopeo_raw_digest(&dst, "two/org/app:1").await.unwrap(),
        b.digest()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mirrors_into_one_layout_leave_it_complete_every_time() {
    // Four mirrors whose images share base layers write one layout at once;
    // repeated on fresh layouts, since a race shows only now and then.
    let up = TestRegistry::start(RegistryOptions::anonymous()).await;
    let mut names = Vec::new();
    for r in 0..4 {
        let repo = format!("team/app{r}");
        let set = ImageSet::multi_arch(&repo, &["linux/amd64", "linux/arm64"], false, Format::Oci);
        push(&up, &repo, "1.0", set.to_node()).await.unwrap();
        names.push(format!("{}/{repo}:1.0", up.host()));
    }
    names.sort();
    let dir = tempfile::tempdir().unwrap();
    for round in 0..6 {
        let layout = dir.path().join(format!("bundle{round}"));
        let mut text = String::from("[defaults]\nconcurrency = 4\n\n");
        for r in 0..4 {
            text.push_str(&format!(
                "[[mirror]]\nsource = \"{}/team/app{r}:1.0\"\ntarget = \"oci:{}\"\n\n",
                up.host(),
                layout.display()
            ));
        }
        let config = write_config(dir.path(), "many.toml", &text);
        let (run, report) = sync(&config).await;
        assert_eq!(run.code, 0, "round {round}: {report:#}\n{}", run.stderr);
        let (mut got, _) = layout_support::check_layout_complete(&layout);
        got.sort();
        assert_eq!(got, names, "round {round}");
    }
}
