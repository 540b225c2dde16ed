//! `regmirror verify` through the binary against real registries (Debian's
//! `docker-registry`): a signed multi-arch image with referrers is
//! mirrored, then damaged directly on the target registry one way at a
//! time (a blob deleted through the registry API, a child manifest
//! deleted, a referrer deleted, the tag moved, a blob's bytes corrupted in
//! the registry's storage directory); verify must report exactly that
//! finding and exit 1, `--heal` must repair it and a second verify exit 0.
//! The healed image is checked with tools that are not regmirror (skopeo
//! copies it, digests verified, and the harness's own graph reader).

use crate::common;

use std::path::Path;

use common::artifacts::SignedImage;
use common::{
    Format, ImageSet, RegistryOptions, Run, SkopeoLoc, TestRegistry, graph_problems, push,
    regmirror, skopeo_copy_all,
};
use serde_json::Value;

/// `verify ARGS --output json`: the run and its document.
pub(crate) async fn verify(args: &[&str]) -> (Run, Value) {
    let mut all = vec!["verify", "--output", "json"];
    all.extend_from_slice(args);
    let run = regmirror(&all).await;
    let doc = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "verify {args:?}: stdout is not JSON ({e})\nstdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        )
    });
    (run, doc)
}

/// The findings of the only image as (kind, digest) pairs.
pub(crate) fn findings(doc: &Value) -> Vec<(String, String)> {
    doc["images"][0]["findings"]
        .as_array()
        .expect("findings are an array")
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or_default().to_string(),
                f["digest"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Fails unless `run` exited `code`.
pub(crate) fn assert_code(run: &Run, code: i32, what: &str) {
    assert_eq!(
        run.code, code,
        "{what}: exited {}\nstdout:\n{}\nstderr:\n{}",
        run.code, run.stdout, run.stderr
    );
}

/// Verify finds exactly `want` (exit 1), `--heal` repairs it (exit 0,
/// reported as repaired) and a second verify exits 0.
async fn found_then_healed(args: &[&str], want: (&str, &str), what: &str) {
    let (run, doc) = verify(args).await;
    assert_code(&run, 1, &format!("verify after {what}"));
    assert_eq!(doc["images"][0]["verdict"], "incomplete", "{what}");
    assert_eq!(
        findings(&doc),
        vec![(want.0.to_string(), want.1.to_string())],
        "{what}: {doc:#}"
    );
    let mut healing = vec!["--heal"];
    healing.extend_from_slice(args);
    let (run, doc) = verify(&healing).await;
    assert_code(&run, 0, &format!("verify --heal after {what}"));
    let repaired: Vec<&str> = doc["images"][0]["heal"]["repaired"]
        .as_array()
        .expect("a heal section")
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert_eq!(repaired, vec![want.0], "{what}: {doc:#}");
    assert_eq!(doc["images"][0]["verdict"], "complete", "{what}");
    let (run, _) = verify(args).await;
    assert_code(&run, 0, &format!("verify after healing {what}"));
}

/// DELETE `path` on `reg` (its API), failing the test unless accepted.
pub(crate) async fn delete(reg: &TestRegistry, path: &str) {
    let resp = reg
        .http_client()
        .delete(format!("{}{path}", reg.base_url()))
        .send()
        .await
        .expect("DELETE request");
    assert_eq!(resp.status().as_u16(), 202, "DELETE {path}");
}

/// The data file of `digest` in `reg`'s storage.
pub(crate) fn blob_file(reg: &TestRegistry, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    reg.storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// Append bytes to a blob's file in `reg`'s storage.
fn grow_blob(reg: &TestRegistry, digest: &str) {
    let path = blob_file(reg, digest);
    let mut bytes = std::fs::read(&path).expect("the blob's data file");
    bytes.extend_from_slice(b"more");
    std::fs::write(&path, bytes).expect("rewriting the blob's data file");
}

/// Overwrite a blob's file in `reg`'s storage with other bytes of the same size.
pub(crate) fn corrupt_blob(reg: &TestRegistry, digest: &str) {
    let path = blob_file(reg, digest);
    let mut bytes = std::fs::read(&path).expect("the blob's data file");
    for b in bytes.iter_mut() {
        *b ^= 0x5a;
    }
    std::fs::write(&path, bytes).expect("rewriting the blob's data file");
}

/// GETs of the image's own manifests (its tag, its index, its children)
/// at `src`'s `repo`.
fn image_manifest_gets(src: &TestRegistry, repo: &str, img: &SignedImage) -> usize {
    let mut names = vec!["v1".to_string(), img.index.manifest.digest.clone()];
    names.extend(img.index.children.iter().map(|c| c.digest().to_string()));
    names
        .iter()
        .map(|n| {
            src.access_log_count("GET", &format!("/v2/{repo}/manifests/{n} "))
                + src.access_log_count("GET", &format!("/v2/{repo}/manifests/{n}?"))
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_each_kind_of_damage_and_heal_repairs_it() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous().with_delete()).await;
    let mut img = SignedImage::build("verify");
    img.push((&src).into(), "team/app", "v1").await.unwrap();
    let source = format!("{}/team/app:v1", src.host());
    let target = format!("{}/mirror/app:v1", dst.host());
    let run = regmirror(&["import", &source, &target]).await;
    assert_code(&run, 0, "import");

    // Intact: complete, referrers checked, no manifest GET of the image at the source.
    let before = image_manifest_gets(&src, "team/app", &img);
    let (run, doc) = verify(&[&source, &target]).await;
    assert_code(&run, 0, "verify of an intact mirror");
    assert_eq!(doc["command"], "verify");
    assert_eq!(doc["result"], "success");
    let image = &doc["images"][0];
    assert_eq!(image["verdict"], "complete", "{doc:#}");
    assert_eq!(image["policy"], "not_configured");
    assert_eq!(image["target_digest"], img.index.manifest.digest.as_str());
    // Two SBOMs, the provenance, the SBOM's attestation, and a cosign
    // signature of the index and of each manifest it lists.
    let referrers = image["checked"]["referrers"].as_u64().unwrap();
    assert!(referrers >= 4 + img.signed.len() as u64, "{doc:#}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        image_manifest_gets(&src, "team/app", &img),
        before,
        "verify read a manifest of the image at the source by GET:\n{}",
        src.log()
    );
    assert!(src.access_log_count("HEAD", "/v2/team/app/manifests/v1") >= 1);

    // A blob deleted through the registry API.
    let amd64 = img.child("linux/amd64").clone();
    let layer = amd64.layers.last().unwrap().digest.clone();
    delete(&dst, &format!("/v2/mirror/app/blobs/{layer}")).await;
    let (run, doc) = verify(&[&target]).await;
    assert_code(
        &run,
        1,
        "verify of the target alone after a blob was deleted",
    );
    assert_eq!(
        findings(&doc),
        vec![("missing_blob".to_string(), layer.clone())]
    );
    found_then_healed(
        &[&source, &target],
        ("missing_blob", &layer),
        "a deleted blob",
    )
    .await;

    // A child manifest deleted.
    let arm64 = img.child("linux/arm64").digest().to_string();
    delete(&dst, &format!("/v2/mirror/app/manifests/{arm64}")).await;
    found_then_healed(
        &[&source, &target],
        ("missing_manifest", &arm64),
        "a deleted child",
    )
    .await;

    // A referrer (the arm64 image's SBOM) deleted.
    let sbom = img.sbom("linux/arm64").digest().to_string();
    delete(&dst, &format!("/v2/mirror/app/manifests/{sbom}")).await;
    found_then_healed(
        &[&source, &target],
        ("missing_referrer", &sbom),
        "a deleted referrer",
    )
    .await;

    // A cosign signature tag of the index deleted (with its manifest).
    let sig_tag = common::cosign::sig_tag(&img.index.manifest.digest);
    let pusher = common::Pusher::for_registry(&dst);
    let (_, sig) = pusher.get_manifest("mirror/app", &sig_tag).await.unwrap();
    let sig = common::sha256_digest(&sig);
    delete(&dst, &format!("/v2/mirror/app/manifests/{sig}")).await;
    found_then_healed(
        &[&source, &target],
        ("missing_referrer", &sig),
        "a deleted cosign tag",
    )
    .await;

    // The index itself deleted: the tag is gone.
    let index = img.index.manifest.digest.clone();
    delete(&dst, &format!("/v2/mirror/app/manifests/{index}")).await;
    found_then_healed(
        &[&source, &target],
        ("missing_manifest", &index),
        "a deleted tag",
    )
    .await;

    // The tag moved to another image, found through a config's mirror.
    let other = ImageSet::multi_arch("verify-other", &["linux/amd64"], false, Format::Oci);
    push(&dst, "mirror/app", "v1", other.to_node())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[[mirror]]\nname = \"app\"\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n\
             tags = [\"v1\"]\nreferrers = true\ncosign_tags = true\n",
            src.host(),
            dst.host()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let mirror_args = ["--config", config, "--mirror", "app"];
    found_then_healed(
        &mirror_args,
        ("tag_moved", &img.index.manifest.digest),
        "a moved tag",
    )
    .await;

    // Independent checks of the healed mirror.
    let problems = graph_problems(
        &common::Pusher::for_registry(&dst),
        "mirror/app",
        "v1",
        &img.index.manifest.digest,
    )
    .await;
    assert!(problems.is_empty(), "{problems:?}");
    let out = tempfile::tempdir().unwrap();
    skopeo_copy_all(
        &SkopeoLoc::registry(&dst, "mirror/app:v1"),
        &SkopeoLoc::oci(out.path().join("layout"), "v1"),
    )
    .await
    .expect("skopeo copies the healed image, digests verified");

    // A blob's bytes corrupted on disk: HEAD cannot see it, --deep does.
    let config_blob = amd64.config.digest.clone();
    corrupt_blob(&dst, &config_blob);
    let (run, _) = verify(&[&source, &target]).await;
    assert_code(&run, 0, "verify without --deep after the corruption");
    let (run, doc) = verify(&["--deep", &source, &target]).await;
    assert_code(&run, 1, "verify --deep after the corruption");
    assert_eq!(
        findings(&doc),
        vec![("blob_digest".to_string(), config_blob.clone())]
    );
    assert!(
        doc["images"][0]["checked"]["bytes_hashed"]
            .as_u64()
            .unwrap()
            > 0
    );
    // No registry replaces stored bytes with an upload: --heal says so.
    let (run, doc) = verify(&["--deep", "--heal", &source, &target]).await;
    assert_code(&run, 1, "verify --deep --heal of a corrupted blob");
    let reason = doc["images"][0]["heal"]["unrepaired"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("delete blob"), "{doc:#}");

    // A blob's file grown on disk: HEAD answers another size.
    let arm64_config = img.child("linux/arm64").config.digest.clone();
    grow_blob(&dst, &arm64_config);
    let (run, doc) = verify(&[&target]).await;
    assert_code(&run, 1, "verify after a blob's size changed");
    assert_eq!(
        findings(&doc),
        vec![("blob_size".to_string(), arm64_config)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_usage_errors_exit_2_before_any_request() {
    for (args, says) in [
        (vec!["verify"], "needs SOURCE TARGET"),
        (
            vec!["verify", "--heal", "127.0.0.1:9/a:v1"],
            "--heal copies from a source",
        ),
        (
            vec!["verify", "--mirror", "x", "127.0.0.1:9/a:v1"],
            "--mirror selects mirrors",
        ),
    ] {
        let run = regmirror(&args).await;
        assert_code(&run, 2, &format!("{args:?}"));
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
}

/// The report file holds the same document as stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_writes_its_report_file() {
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("verify-report", &["linux/amd64"], false, Format::Oci);
    push(&dst, "team/app", "v1", set.to_node()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.json");
    let target = format!("{}/team/app:v1", dst.host());
    let run = regmirror(&["verify", "--report", file.to_str().unwrap(), &target]).await;
    assert_code(&run, 0, "verify of an image alone");
    assert!(run.stdout.contains("complete"), "{}", run.stdout);
    let doc: Value = serde_json::from_slice(&std::fs::read(Path::new(&file)).unwrap()).unwrap();
    assert_eq!(doc["exit_code"], 0);
    assert_eq!(doc["images"][0]["verdict"], "complete");
    assert_eq!(doc["totals"]["images"], 1);
}

/// A source with the referrers API (ferro-oci-server: distribution 2.8
/// has none): its listings say which referrers the target must hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_takes_referrers_from_a_source_with_the_referrers_api() {
    let src = common::ferro::FerroRegistry::start().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous().with_delete()).await;
    let mut img = SignedImage::build("verify-api");
    img.push((&src).into(), "team/app", "v1").await.unwrap();
    let source = format!("{}/team/app:v1", src.host());
    let target = format!("{}/mirror/app:v1", dst.host());
    assert_code(&regmirror(&["import", &source, &target]).await, 0, "import");
    let (run, doc) = verify(&[&source, &target]).await;
    assert_code(&run, 0, "verify of an intact mirror");
    assert!(doc["images"][0]["checked"]["referrers"].as_u64().unwrap() >= 4);

    let provenance = img.provenance.digest().to_string();
    delete(&dst, &format!("/v2/mirror/app/manifests/{provenance}")).await;
    found_then_healed(
        &[&source, &target],
        ("missing_referrer", &provenance),
        "a deleted referrer of the index",
    )
    .await;
}

/// A platform-filtered copy has a new index digest that records the
/// source's: the tag has not moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_accepts_a_platform_filtered_index_of_the_source() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch(
        "verify-filtered",
        &["linux/amd64", "linux/arm64"],
        false,
        Format::Oci,
    );
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    let source = format!("{}/team/app:v1", src.host());
    let target = format!("{}/mirror/app:v1", dst.host());
    let run = regmirror(&["import", "--platform", "linux/arm64", &source, &target]).await;
    assert_code(&run, 0, "import of one platform");
    let (run, doc) = verify(&[&source, &target]).await;
    assert_code(&run, 0, "verify of a platform-filtered mirror");
    assert_ne!(doc["images"][0]["target_digest"], set.digest(), "{doc:#}");
    assert_eq!(doc["images"][0]["expected_digest"], set.digest());
}

/// `audit_schedule` takes the forms of `schedule`; a bad one names its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_schedule_is_checked_like_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirror.toml");
    let text = |audit: &str| {
        format!(
            "[defaults]\naudit_schedule = \"@daily\"\n\n[[mirror]]\nsource = \"127.0.0.1:9/a:v1\"\n\
             target = \"127.0.0.1:9/b\"\naudit_schedule = \"{audit}\"\n"
        )
    };
    std::fs::write(&config, text("*/10 * * * * *")).unwrap();
    let path = config.to_str().unwrap();
    let run = regmirror(&["check", "--no-credentials", "--config", path]).await;
    assert_code(&run, 0, "check of a valid audit_schedule");
    std::fs::write(&config, text("*/30 * * *")).unwrap();
    let run = regmirror(&["check", "--no-credentials", "--config", path]).await;
    assert_code(&run, 2, "check of a bad audit_schedule");
    assert!(
        run.stderr.contains("mirror[1].audit_schedule"),
        "{}",
        run.stderr
    );
}
