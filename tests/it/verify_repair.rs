//! `regmirror verify` without its source and `--heal` of damaged blobs,
//! through the binary against real registries (Debian's `docker-registry`):
//!
//! - with `--no-source`, or a source that cannot be reached, a tag is
//!   compared with the digest regmirror last mirrored there, from a real
//!   run-state store written by `sync` (`unknown` when the store has no
//!   record); a tag moved at the target since is a `tag_moved` finding;
//! - a blob whose bytes were corrupted in the registry's storage is deleted
//!   at the target (`DELETE /v2/<name>/blobs/<digest>`) and copied again by
//!   `--heal`. Distribution keeps a stored file after that delete and does
//!   not replace it with an upload of the same digest (its blob writer skips
//!   a digest whose file exists: `moveBlob` in distribution's
//!   registry/storage/blobwriter.go), so the heal reports it unrepaired with
//!   what to do; once the file is removed as it says, `--heal` repairs it
//!   and `verify --deep` is clean. A registry with deletes disabled answers
//!   `405 UNSUPPORTED`, which the heal reports with what to do. On a
//!   registry that removes the bytes on that delete (ferro-oci-server with
//!   its filesystem store), one `--heal` repairs the blob.

use serde_json::Value;

use crate::common;
use crate::sync_run::schema_problems;
use crate::verify::{assert_code, blob_file, corrupt_blob, findings, verify};
use common::ferro::FerroRegistry;
use common::{
    Format, ImageSet, RegistryOptions, Run, TestRegistry, push, regmirror, regmirror_env,
};

/// `ARGS --output json` with the run-state store enabled.
async fn with_store(args: &[&str]) -> (Run, Value) {
    let run = regmirror_env(args, &[("REGMIRROR_NO_STATE", "0")]).await;
    let doc = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not JSON ({e})\nstdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        )
    });
    (run, doc)
}

/// The entry of `target` in a verify document.
fn entry<'a>(doc: &'a Value, target: &str) -> &'a Value {
    doc["images"]
        .as_array()
        .expect("images")
        .iter()
        .find(|i| i["target"] == target)
        .unwrap_or_else(|| panic!("no entry for {target}: {doc:#}"))
}

/// Fails unless `doc` validates against docs/report.schema.json.
fn assert_schema(doc: &Value) {
    let problems = schema_problems(doc);
    assert!(problems.is_empty(), "{problems:#?}\n{doc:#}");
}

/// Fails unless `verify --deep SOURCE TARGET` finds exactly blob `layer` damaged.
async fn assert_damaged(source: &str, target: &str, layer: &str) {
    let (run, doc) = verify(&["--deep", source, target]).await;
    assert_code(&run, 1, "verify --deep of a corrupted blob");
    assert_schema(&doc);
    assert_eq!(
        findings(&doc),
        vec![("blob_digest".to_string(), layer.to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_source_verify_compares_with_the_last_mirrored_digest() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let image = ImageSet::multi_arch("verify-state", &["linux/amd64"], false, Format::Oci);
    for tag in ["v1", "edge"] {
        push(&src, "team/app", tag, image.to_node()).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirror.toml");
    let config_listing = |tags: &str| {
        format!(
            "state_dir = \"state\"\n\n[[mirror]]\nname = \"app\"\nsource = \"{}/team/app\"\n\
             target = \"{}/mirror/app\"\ntags = [{tags}]\nimmutable_tags = '^v\\d+$'\n",
            src.host(),
            dst.host()
        )
    };
    // regmirror mirrors v1 (the store records it); edge reaches the target
    // another way (the store has no record of it).
    std::fs::write(&config, config_listing("\"v1\"")).unwrap();
    let config = config.to_str().unwrap();
    let (run, doc) = with_store(&["sync", "--config", config, "--output", "json"]).await;
    assert_code(&run, 0, &format!("sync: {doc:#}"));
    assert!(dir.path().join("state/state.redb").is_file());
    std::fs::write(config, config_listing("\"v1\", \"edge\"")).unwrap();
    push(&dst, "mirror/app", "edge", image.to_node())
        .await
        .unwrap();
    let (v1, edge) = (
        format!("{}/mirror/app:v1", dst.host()),
        format!("{}/mirror/app:edge", dst.host()),
    );
    let verify_args = ["verify", "--config", config, "--output", "json"];

    // --no-source: v1 against its record, edge has none (unknown).
    let heads = src.access_log_count("HEAD", "/v2/team/app/manifests/");
    let mut args = verify_args.to_vec();
    args.push("--no-source");
    let (run, doc) = with_store(&args).await;
    assert_code(&run, 0, "verify --no-source of an intact mirror");
    assert_schema(&doc);
    assert_eq!(
        entry(&doc, &v1)["expected_from"],
        "last_mirrored",
        "{doc:#}"
    );
    assert_eq!(
        entry(&doc, &v1)["expected_digest"],
        image.digest(),
        "{doc:#}"
    );
    assert_eq!(entry(&doc, &edge)["expected_from"], "unknown", "{doc:#}");
    assert!(entry(&doc, &edge)["expected_digest"].is_null(), "{doc:#}");
    assert_eq!(entry(&doc, &edge)["verdict"], "complete", "{doc:#}");
    // The source was not asked.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        src.access_log_count("HEAD", "/v2/team/app/manifests/"),
        heads,
        "{}",
        src.log()
    );

    // v1 moved at the target since regmirror wrote it.
    let other = ImageSet::multi_arch("verify-state-other", &["linux/amd64"], false, Format::Oci);
    push(&dst, "mirror/app", "v1", other.to_node())
        .await
        .unwrap();
    let (run, doc) = with_store(&args).await;
    assert_code(&run, 1, "verify --no-source after the tag moved");
    let moved = entry(&doc, &v1);
    assert_eq!(moved["findings"][0]["kind"], "tag_moved", "{doc:#}");
    assert_eq!(moved["findings"][0]["actual"], other.digest(), "{doc:#}");
    assert!(
        moved["findings"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("last mirrored"),
        "{doc:#}"
    );
    assert_eq!(entry(&doc, &edge)["verdict"], "complete", "{doc:#}");

    // The source gone: the same comparison, with why the source was not asked.
    drop(src);
    let (run, doc) = with_store(&verify_args).await;
    assert_code(&run, 1, "verify with the source unreachable");
    assert_schema(&doc);
    let moved = entry(&doc, &v1);
    assert_eq!(moved["expected_from"], "last_mirrored", "{doc:#}");
    assert!(moved["source_error"].is_string(), "{doc:#}");
    assert_eq!(moved["findings"][0]["kind"], "tag_moved", "{doc:#}");
    assert_eq!(entry(&doc, &edge)["expected_from"], "unknown", "{doc:#}");

    // --heal needs the source.
    let run = regmirror(&["verify", "--no-source", "--heal", "--config", config]).await;
    assert_code(&run, 2, "--heal with --no-source");
}

/// A mirror without `immutable_tags`: every tag a run mirrors is recorded
/// (copied, then found up to date), so `verify --no-source` compares each
/// with the digest last mirrored there, and finds a tag moved at the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_immutable_tags_every_mirrored_tag_is_recorded_for_verify_without_source() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let image = ImageSet::multi_arch("verify-mutable", &["linux/amd64"], false, Format::Oci);
    let edge = ImageSet::multi_arch("verify-mutable-edge", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/app", "v1", image.to_node()).await.unwrap();
    push(&src, "team/app", "edge", edge.to_node())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"state\"\n\n[[mirror]]\nname = \"app\"\nsource = \"{}/team/app\"\n\
             target = \"{}/mirror/app\"\n",
            src.host(),
            dst.host()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let sync_args = ["sync", "--config", config, "--output", "json"];
    let (run, doc) = with_store(&sync_args).await;
    assert_code(&run, 0, &format!("sync: {doc:#}"));
    assert_eq!(doc["totals"]["copied"], 2, "{doc:#}");
    // A run that finds both up to date keeps (or renews) the records.
    let (run, doc) = with_store(&sync_args).await;
    assert_code(&run, 0, &format!("second sync: {doc:#}"));
    assert_eq!(doc["totals"]["up_to_date"], 2, "{doc:#}");

    let args = [
        "verify",
        "--no-source",
        "--config",
        config,
        "--output",
        "json",
    ];
    let heads = src.access_log_count("HEAD", "/v2/team/app/manifests/");
    let (run, doc) = with_store(&args).await;
    assert_code(&run, 0, "verify --no-source of an intact mirror");
    assert_schema(&doc);
    for (tag, img) in [("v1", &image), ("edge", &edge)] {
        let e = entry(&doc, &format!("{}/mirror/app:{tag}", dst.host()));
        assert_eq!(e["expected_from"], "last_mirrored", "{tag}: {doc:#}");
        assert_eq!(e["expected_digest"], img.digest(), "{tag}: {doc:#}");
        assert_eq!(e["verdict"], "complete", "{tag}: {doc:#}");
    }
    assert_eq!(
        src.access_log_count("HEAD", "/v2/team/app/manifests/"),
        heads,
        "the source was asked: {}",
        src.log()
    );

    // edge (no immutable tag) moved at the target since regmirror wrote it.
    push(&dst, "mirror/app", "edge", image.to_node())
        .await
        .unwrap();
    let (run, doc) = with_store(&args).await;
    assert_code(&run, 1, "verify --no-source after edge moved");
    let moved = entry(&doc, &format!("{}/mirror/app:edge", dst.host()));
    assert_eq!(moved["findings"][0]["kind"], "tag_moved", "{doc:#}");
    assert_eq!(moved["findings"][0]["expected"], edge.digest(), "{doc:#}");
    assert_eq!(moved["findings"][0]["actual"], image.digest(), "{doc:#}");
}

/// An image pushed to `src` as team/app:v1 and imported to `dst`'s
/// mirror/app:v1: (source, target, the digest of its layer).
async fn mirrored(src: &TestRegistry, dst: &str, seed: &str) -> (String, String, String) {
    let image = ImageSet::multi_arch(seed, &["linux/amd64"], false, Format::Oci);
    push(src, "team/app", "v1", image.to_node()).await.unwrap();
    let source = format!("{}/team/app:v1", src.host());
    let target = format!("{dst}/mirror/app:v1");
    assert_code(&regmirror(&["import", &source, &target]).await, 0, "import");
    let layer = image.image_for("linux/amd64").unwrap().layers[0]
        .digest
        .clone();
    (source, target, layer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heal_replaces_a_corrupted_blob() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous().with_delete()).await;
    let (source, target, layer) = mirrored(&src, &dst.host(), "verify-corrupt").await;
    corrupt_blob(&dst, &layer);
    assert_damaged(&source, &target, &layer).await;

    // Deleted and uploaded again, but distribution keeps the stored file.
    let (run, doc) = verify(&["--deep", "--heal", &source, &target]).await;
    assert_code(&run, 1, "verify --deep --heal on distribution");
    assert_schema(&doc);
    let blob = format!("/v2/mirror/app/blobs/{layer}");
    assert_eq!(dst.access_log_count("DELETE", &blob), 1, "{}", dst.log());
    let unrepaired = &doc["images"][0]["heal"]["unrepaired"][0];
    assert_eq!(unrepaired["finding"]["kind"], "blob_digest", "{doc:#}");
    let reason = unrepaired["reason"].as_str().unwrap();
    assert!(
        reason.contains("still serves the damaged bytes") && reason.contains("file"),
        "{reason}"
    );

    // Its file removed as the reason says: --heal copies it back.
    std::fs::remove_file(blob_file(&dst, &layer)).unwrap();
    let (run, doc) = verify(&["--deep", "--heal", &source, &target]).await;
    assert_code(&run, 0, "verify --deep --heal once the file is gone");
    assert_eq!(
        doc["images"][0]["heal"]["repaired"][0]["digest"], layer,
        "{doc:#}"
    );
    let (run, doc) = verify(&["--deep", &source, &target]).await;
    assert_code(&run, 0, "verify --deep after the repair");
    assert!(
        doc["images"][0]["checked"]["bytes_hashed"]
            .as_u64()
            .unwrap()
            > 0
    );

    // A registry that refuses deletes: its answer and what to do.
    let closed = TestRegistry::start(RegistryOptions::anonymous()).await;
    let target = format!("{}/mirror/app:v1", closed.host());
    assert_code(&regmirror(&["import", &source, &target]).await, 0, "import");
    corrupt_blob(&closed, &layer);
    let (run, doc) = verify(&["--deep", "--heal", &source, &target]).await;
    assert_code(&run, 1, "verify --deep --heal where deletes are disabled");
    let reason = doc["images"][0]["heal"]["unrepaired"][0]["reason"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("does not allow deletes (HTTP 405)")
            && reason.contains("storage.delete.enabled")
            && reason.contains("UNSUPPORTED"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heal_repairs_a_corrupted_blob_where_the_delete_removes_its_bytes() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let store = tempfile::tempdir().unwrap();
    let dst = FerroRegistry::start_on_disk(store.path()).await;
    let (source, target, layer) = mirrored(&src, &dst.host(), "verify-ferro").await;
    let hex = layer.strip_prefix("sha256:").unwrap();
    let file = store.path().join("sha256").join(&hex[..2]).join(&hex[2..]);
    let mut bytes = std::fs::read(&file).expect("the blob's file in ferro's store");
    bytes.iter_mut().for_each(|b| *b ^= 0x5a);
    std::fs::write(&file, bytes).unwrap();
    assert_damaged(&source, &target, &layer).await;
    let (run, doc) = verify(&["--deep", "--heal", &source, &target]).await;
    assert_code(&run, 0, "verify --deep --heal");
    assert_schema(&doc);
    let image_entry = &doc["images"][0];
    assert_eq!(image_entry["verdict"], "complete", "{doc:#}");
    assert_eq!(
        image_entry["heal"]["repaired"][0]["kind"], "blob_digest",
        "{doc:#}"
    );
    let (run, _) = verify(&["--deep", &source, &target]).await;
    assert_code(&run, 0, "verify --deep after the repair");
    let healed = std::fs::read(&file).unwrap();
    assert_eq!(
        common::sha256_digest(&healed),
        layer,
        "the file holds the right bytes again"
    );
}
