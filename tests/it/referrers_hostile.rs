//! Referrers from a hostile or careless source, and fallback indexes other
//! tools wrote on the target, played through the `regmirror` binary:
//! - a referrer bomb (32 referrers of every digest, 4 levels deep) ends by
//!   itself within the walk limits, the tag written and the rest counted as
//!   `left_behind`, while an honest mirror in the same run finishes;
//! - a fallback index listing a deleted signature does not block its image;
//! - a source fallback index of 2,000 entries is cut at the per-subject
//!   limit with a warning that says so; one that is not an index at all is
//!   a warning and a failure, never "no referrers";
//! - the target's fallback index of 1,500 entries keeps them all, and one
//!   with `annotations: null`, `data` and index annotations keeps them.
//!
//! Hostile sources are the fake ([`FakeRegistry`]); targets are real
//! distribution registries.

use crate::common;

use std::time::Duration;

use serde_json::{Value, json};

use common::artifacts::{fallback_tag, manifest_descriptor, sbom_for};
use common::image::{Blob, Format, Image, ImageSet, Manifest, OCI_INDEX, OCI_MANIFEST};
use common::referrers_fake::{FakeReferrers, FakeRegistry};
use common::{Pusher, RegistryOptions, Run, TestRegistry, regmirror};

/// `sync --config` of `config`, JSON report parsed.
async fn sync(config: &str) -> (Run, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mirror.toml");
    std::fs::write(&path, config).expect("writing the config");
    let run = regmirror(&[
        "sync",
        "--config",
        path.to_str().unwrap(),
        "--output",
        "json",
    ])
    .await;
    let doc = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
    (run, doc)
}

fn mirror(name: &str, source: &str, target: &str) -> String {
    format!("[[mirror]]\nname = \"{name}\"\nsource = \"{source}\"\ntarget = \"{target}\"\n")
}

/// The reports of the images of mirror `name`, in order.
fn images<'a>(doc: &'a Value, name: &str) -> Vec<&'a Value> {
    doc["images"]
        .as_array()
        .map(|all| all.iter().filter(|i| i["mirror"] == name).collect())
        .unwrap_or_default()
}

/// The report of the one image of mirror `name`.
fn image<'a>(doc: &'a Value, name: &str) -> &'a Value {
    images(doc, name)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no image of mirror {name} in {doc:#}"))
}

/// The referrer counts of an image report.
fn counts(image: &Value) -> &Value {
    &image["referrers"]
}

fn explain(run: &Run) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        run.code, run.stdout, run.stderr
    )
}

/// A source without the referrers API holding `img` as `app:v1`.
async fn fallback_source(img: &Image) -> FakeRegistry {
    let src = FakeRegistry::start(FakeReferrers::default()).await;
    src.add_image("app", img, Some("v1"));
    src
}

/// An index of `entries` as bytes.
fn index_bytes(entries: Vec<Value>, extra: &[(&str, Value)]) -> Vec<u8> {
    let mut doc = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    for (k, v) in extra {
        doc[*k] = v.clone();
    }
    serde_json::to_vec(&doc).unwrap()
}

/// A made-up descriptor of a manifest nobody has.
fn phantom(n: usize) -> Value {
    json!({
        "mediaType": OCI_MANIFEST,
        "digest": common::sha256_digest(format!("phantom-{n}").as_bytes()),
        "size": 100,
        "artifactType": "application/spdx+json",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referrer_bomb_ends_by_itself_and_an_honest_mirror_finishes() {
    let bomb = FakeRegistry::start_bomb(32, 4).await;
    for t in ["v1", "v2", "v3"] {
        bomb.add_image(
            "app",
            &ImageSet::image(&format!("bomb-{t}"), "linux/amd64", Format::Oci),
            Some(t),
        );
    }
    let honest = fallback_source(&ImageSet::image("honest", "linux/amd64", Format::Oci)).await;
    let sbom = sbom_for(
        &ImageSet::image("honest", "linux/amd64", Format::Oci).manifest,
        "honest",
    );
    honest.add_image("app", &sbom, None);
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let config = format!(
        "[defaults]\nconcurrency = 2\n{}tags = [\"v1\", \"v2\", \"v3\"]\n{}",
        mirror(
            "bomb",
            &format!("{}/app", bomb.host()),
            &format!("{}/bomb", dst.host())
        ),
        mirror(
            "honest",
            &format!("{}/app:v1", honest.host()),
            &format!("{}/honest", dst.host())
        ),
    );
    let (run, doc) = tokio::time::timeout(Duration::from_secs(110), sync(&config))
        .await
        .expect("the bomb did not end by itself within 110 s");
    assert_eq!(run.code, 0, "{}", explain(&run));
    let honest_image = image(&doc, "honest");
    assert_eq!(honest_image["result"], "copied", "{}", explain(&run));
    let pusher = Pusher::for_registry(&dst);
    let bombs = images(&doc, "bomb");
    assert_eq!(bombs.len(), 3, "{doc:#}");
    for img in bombs {
        let t = img["target"].as_str().unwrap().rsplit(':').next().unwrap();
        assert_eq!(img["result"], "copied", "{t}: {}", explain(&run));
        let c = counts(img);
        let (found, left) = (
            c["found"].as_u64().unwrap(),
            c["left_behind"].as_u64().unwrap(),
        );
        assert!(
            found <= 256,
            "{t}: more than max_referrers_per_image handled: {c}"
        );
        assert!(left > 0, "{t}: nothing counted as left behind: {c}");
        assert!(
            pusher.manifest_exists("bomb", t).await.unwrap(),
            "{t} was not written"
        );
    }
    let warnings = run
        .stderr
        .matches("referrers beyond the limits of one image were left behind")
        .count();
    assert_eq!(warnings, 3, "one warning per image:\n{}", run.stderr);
    assert!(
        run.stderr.contains("max_referrers_per_image = 256"),
        "{}",
        run.stderr
    );
    assert!(
        bomb.bomb_made() < 3 * (256 + 1) * 32 + 3 * 32,
        "the source was walked beyond the limits: {} referrers listed",
        bomb.bomb_made()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sigterm_stops_a_bombed_sync_after_its_bounded_copies() {
    let bomb = FakeRegistry::start_bomb(32, 4).await;
    let tags: Vec<String> = (0..8).map(|n| format!("v{n}")).collect();
    for t in &tags {
        let img = ImageSet::image(&format!("term-{t}"), "linux/amd64", Format::Oci);
        bomb.add_image("app", &img, Some(t));
    }
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mirror.toml");
    let config = format!(
        "[defaults]\nconcurrency = 2\n{}tags = {tags:?}\n",
        mirror(
            "bomb",
            &format!("{}/app", bomb.host()),
            &format!("{}/bomb", dst.host())
        ),
    );
    std::fs::write(&path, config).expect("writing the config");
    let signalled = std::sync::Mutex::new(None);
    let run = common::regmirror_signalled(
        &[
            "sync",
            "--config",
            path.to_str().unwrap(),
            "--output",
            "json",
        ],
        &[],
        libc::SIGTERM,
        Duration::from_secs(60),
        || {
            let going = bomb.bomb_made() > 100;
            if going {
                *signalled.lock().unwrap() = Some(std::time::Instant::now());
            }
            going
        },
    )
    .await;
    let after = signalled.lock().unwrap().expect("signalled").elapsed();
    assert_eq!(run.code, 130, "{}", explain(&run));
    assert!(
        after < Duration::from_secs(60),
        "sync took {after:?} to stop after one SIGTERM"
    );
    let doc: Value = serde_json::from_str(&run.stdout).expect("a JSON report");
    let results: Vec<&str> = images(&doc, "bomb")
        .iter()
        .map(|i| i["result"].as_str().unwrap_or_default())
        .collect();
    assert!(
        results.contains(&"cancelled"),
        "{results:?}\n{}",
        explain(&run)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_referrer_is_skipped_and_the_image_still_mirrors() {
    let img = ImageSet::image("deleted-sig", "linux/amd64", Format::Oci);
    let src = fallback_source(&img).await;
    let sbom = sbom_for(&img.manifest, "kept");
    src.add_image("app", &sbom, None);
    let entries = vec![manifest_descriptor(&sbom.manifest), phantom(1)];
    src.add_raw(
        "app",
        OCI_INDEX,
        index_bytes(entries, &[]),
        &fallback_tag(img.digest()),
    );
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let config = mirror(
        "m",
        &format!("{}/app:v1", src.host()),
        &format!("{}/app", dst.host()),
    );
    let (run, doc) = sync(&config).await;
    assert_eq!(run.code, 0, "{}", explain(&run));
    let c = counts(image(&doc, "m"));
    assert_eq!(
        (c["copied"].as_u64(), c["vanished"].as_u64()),
        (Some(1), Some(1)),
        "{c}"
    );
    assert_eq!(
        run.stderr.matches("gone from the source").count(),
        1,
        "{}",
        run.stderr
    );
    let pusher = Pusher::for_registry(&dst);
    assert!(pusher.manifest_exists("app", "v1").await.unwrap());
    assert!(pusher.manifest_exists("app", sbom.digest()).await.unwrap());
    // The next run finds the image and its one referrer in place.
    let (again, doc) = sync(&config).await;
    assert_eq!(again.code, 0, "{}", explain(&again));
    assert_eq!(image(&doc, "m")["result"], "up-to-date");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_fallback_index_beyond_the_limit_warns() {
    let img = ImageSet::image("big-index", "linux/amd64", Format::Oci);
    let src = fallback_source(&img).await;
    let mut entries = Vec::new();
    for n in 0..64 {
        let s = sbom_for(&img.manifest, &format!("sbom-{n}"));
        src.add_image("app", &s, None);
        entries.push(manifest_descriptor(&s.manifest));
    }
    entries.extend((64..2000).map(phantom));
    src.add_raw(
        "app",
        OCI_INDEX,
        index_bytes(entries, &[]),
        &fallback_tag(img.digest()),
    );
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let config = mirror(
        "m",
        &format!("{}/app:v1", src.host()),
        &format!("{}/app", dst.host()),
    );
    let (run, doc) = sync(&config).await;
    assert_eq!(run.code, 0, "{}", explain(&run));
    let c = counts(image(&doc, "m"));
    assert_eq!(
        (c["copied"].as_u64(), c["left_behind"].as_u64()),
        (Some(64), Some(1936)),
        "{c}"
    );
    assert!(
        run.stderr.contains("max_referrers_per_subject = 64"),
        "{}",
        run.stderr
    );
    let fetched = src.count("GET", "/v2/app/manifests/sha256:");
    assert!(
        fetched <= 2 * 64 + 2,
        "entries beyond the limit were fetched: {fetched}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unparseable_source_fallback_index_is_a_warning_and_a_failure() {
    let img = ImageSet::image("junk-index", "linux/amd64", Format::Oci);
    let src = fallback_source(&img).await;
    let junk = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":{"not":"a list"}}"#;
    src.add_raw("app", OCI_INDEX, junk.to_vec(), &fallback_tag(img.digest()));
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let config = mirror(
        "m",
        &format!("{}/app:v1", src.host()),
        &format!("{}/app", dst.host()),
    );
    let (run, doc) = sync(&config).await;
    assert_ne!(
        run.code,
        0,
        "an unreadable referrer list read as success:\n{}",
        explain(&run)
    );
    let im = image(&doc, "m");
    assert_eq!(im["result"], "failed", "{}", explain(&run));
    assert_eq!(counts(im)["unreadable"], 1, "{im}");
    assert!(
        im["error"]
            .as_str()
            .unwrap_or_default()
            .contains("could not be read"),
        "{im}"
    );
    assert!(run.stderr.contains("cannot be read"), "{}", run.stderr);
    assert!(
        Pusher::for_registry(&dst)
            .manifest_exists("app", "v1")
            .await
            .unwrap()
    );
}

/// A small artifact manifest about `subject`, pushed to `repo` at the
/// target (with the empty blob), as an index entry.
async fn pushed_entry(p: &Pusher, repo: &str, subject: &Manifest, n: usize) -> Value {
    let empty = Blob::empty_config();
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.other-tool",
        "config": empty.descriptor(),
        "layers": [empty.descriptor()],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size()},
        "annotations": {"n": n.to_string()},
    });
    let m = Manifest::from_json(OCI_MANIFEST, &doc);
    p.push_manifest(repo, &m.digest, &m).await.unwrap();
    manifest_descriptor(&m)
}

/// A source (no API) with `img` as `app:v1` and one SBOM of it listed in
/// its fallback index; the SBOM.
async fn signed_source(img: &Image) -> (FakeRegistry, Image) {
    let src = fallback_source(img).await;
    let sbom = sbom_for(&img.manifest, "new-sbom");
    src.add_image("app", &sbom, None);
    let entries = vec![manifest_descriptor(&sbom.manifest)];
    src.add_raw(
        "app",
        OCI_INDEX,
        index_bytes(entries, &[]),
        &fallback_tag(img.digest()),
    );
    (src, sbom)
}

/// The target's fallback index of `subject` in `repo`, parsed.
async fn target_index(p: &Pusher, repo: &str, subject: &str) -> Value {
    let path = format!("/v2/{repo}/manifests/{}", fallback_tag(subject));
    let (status, _, bytes) = p.get_raw(&path, repo, Some(OCI_INDEX)).await.unwrap();
    assert_eq!(status, 200, "no fallback index of {subject}");
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_fallback_index_of_1500_entries_keeps_them_all() {
    let img = ImageSet::image("other-tool", "linux/amd64", Format::Oci);
    let (src, sbom) = signed_source(&img).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let p = Pusher::for_registry(&dst);
    p.push_blob("app", &Blob::empty_config()).await.unwrap();
    let mut entries = Vec::new();
    for n in 0..1500 {
        entries.push(pushed_entry(&p, "app", &img.manifest, n).await);
    }
    let index = Manifest {
        media_type: OCI_INDEX.into(),
        bytes: index_bytes(entries.clone(), &[]).into(),
        digest: String::new(),
    };
    let index = Manifest {
        digest: common::sha256_digest(&index.bytes),
        ..index
    };
    p.push_manifest("app", &fallback_tag(img.digest()), &index)
        .await
        .unwrap();
    let config = mirror(
        "m",
        &format!("{}/app:v1", src.host()),
        &format!("{}/app", dst.host()),
    );
    let (run, _) = sync(&config).await;
    assert_eq!(run.code, 0, "{}", explain(&run));
    assert!(!run.stderr.contains("other writer"), "{}", run.stderr);
    let after = target_index(&p, "app", img.digest()).await;
    let list = after["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 1501, "entries lost or duplicated");
    assert_eq!(list[..1500], entries[..], "existing entries changed");
    assert_eq!(list[1500]["digest"], sbom.digest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_fallback_index_with_null_fields_and_data_keeps_every_entry() {
    let img = ImageSet::image("null-fields", "linux/amd64", Format::Oci);
    let (src, sbom) = signed_source(&img).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let p = Pusher::for_registry(&dst);
    p.push_blob("app", &Blob::empty_config()).await.unwrap();
    let mut entries = Vec::new();
    for n in 0..5 {
        entries.push(pushed_entry(&p, "app", &img.manifest, n).await);
    }
    entries[0]["annotations"] = Value::Null;
    entries[1]["data"] = json!("e30=");
    entries[2]["x-other-tool"] = json!({"kept": [1, 2, 3]});
    let bytes = index_bytes(
        entries.clone(),
        &[("annotations", json!({"org.example.owner": "other-tool"}))],
    );
    let index = Manifest {
        media_type: OCI_INDEX.into(),
        digest: common::sha256_digest(&bytes),
        bytes: bytes.into(),
    };
    p.push_manifest("app", &fallback_tag(img.digest()), &index)
        .await
        .unwrap();
    let config = mirror(
        "m",
        &format!("{}/app:v1", src.host()),
        &format!("{}/app", dst.host()),
    );
    let (run, _) = sync(&config).await;
    assert_eq!(run.code, 0, "{}", explain(&run));
    let after = target_index(&p, "app", img.digest()).await;
    let list = after["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 6, "{after}");
    assert_eq!(list[..5], entries[..], "existing entries changed: {after}");
    assert_eq!(list[5]["digest"], sbom.digest());
    assert_eq!(
        after["annotations"]["org.example.owner"], "other-tool",
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_fails_on_an_unparseable_source_fallback_index() {
    let img = ImageSet::image("junk-index-import", "linux/amd64", Format::Oci);
    let src = fallback_source(&img).await;
    let junk = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":{"not":"a list"}}"#;
    src.add_raw("app", OCI_INDEX, junk.to_vec(), &fallback_tag(img.digest()));
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let from = format!("{}/app:v1", src.host());
    let to = format!("{}/app:v1", dst.host());
    let run = regmirror(&["import", &from, &to]).await;
    assert_eq!(run.code, 1, "{}", explain(&run));
    assert!(run.stderr.contains("could not be read"), "{}", run.stderr);
    let to_json = format!("{}/json:v1", dst.host());
    let json = regmirror(&["import", "--output", "json", &from, &to_json]).await;
    assert_eq!(json.code, 1, "{}", explain(&json));
    let doc: Value = serde_json::from_str(&json.stdout).expect("a JSON report");
    assert_eq!(doc["result"], "failed", "{doc:#}");
    assert_eq!(doc["images"][0]["result"], "failed", "{doc:#}");
    assert_eq!(doc["exit_code"], 1, "{doc:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referrers_listing_beyond_its_cap_is_cut_with_a_warning_not_fatal() {
    // 1,100 referrers of one digest, one level: past the listing cap of 1,024.
    let bomb = FakeRegistry::start_bomb(1100, 1).await;
    bomb.add_image(
        "app",
        &ImageSet::image("wide", "linux/amd64", Format::Oci),
        Some("v1"),
    );
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let config = mirror(
        "m",
        &format!("{}/app:v1", bomb.host()),
        &format!("{}/app", dst.host()),
    );
    let (run, doc) = sync(&config).await;
    assert_eq!(run.code, 0, "{}", explain(&run));
    let im = image(&doc, "m");
    assert_eq!(im["result"], "copied", "{}", explain(&run));
    let c = counts(im);
    assert_eq!(c["copied"].as_u64(), Some(64), "{c}");
    assert!(c["left_behind"].as_u64().unwrap() >= 1024 - 64, "{c}");
    assert!(
        run.stderr
            .contains("the referrers API listing was cut at 1024 referrers"),
        "{}",
        run.stderr
    );
    let pusher = Pusher::for_registry(&dst);
    assert!(pusher.manifest_exists("app", "v1").await.unwrap());
}
