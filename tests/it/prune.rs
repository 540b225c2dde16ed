//! `prune = "not-in-source"` against distribution 2.8 with deletion enabled:
//! what is deleted, what never is (tags outside the selection, `sha256-*`
//! tags, backup tags, digests other tags share), and each guard rail that
//! stops a prune (incomplete or empty source listing, more than
//! `max_prune`, a registry that refuses deletes). Tags and digests are
//! checked with the independent test client and skopeo.

use crate::common;
use crate::sync_run;

use common::{Format, ImageSet, Node, RegistryOptions, TestRegistry, skopeo_raw_digest};
use sync_run::{ConfigFile, push_tags, sync_json, tags};

fn image(seed: &str) -> Node {
    Node::Image(ImageSet::image(seed, "linux/amd64", Format::Oci))
}

/// `pruned[].target` of the first mirror, as tags.
fn pruned_tags(report: &serde_json::Value) -> Vec<String> {
    report["mirrors"][0]["prune"]["pruned"]
        .as_array()
        .unwrap_or_else(|| panic!("no prune report: {report:#}"))
        .iter()
        .map(|p| {
            let t = p["target"].as_str().unwrap();
            t.rsplit_once(':').unwrap().1.to_string()
        })
        .collect()
}

fn mirror_config(src: &TestRegistry, dst: &TestRegistry, extra: &str) -> String {
    format!(
        "[[mirror]]\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n\
         include = ['^[0-9]']\nprune = \"not-in-source\"\n{extra}\n",
        src.host(),
        dst.host()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_only_selected_tags_gone_from_source_and_keeps_shared_digests() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous().with_delete()).await;
    let (one, two) = (image("prune/1.0"), image("prune/2.0"));
    push_tags(&src, "team/app", &["1.0"], &one).await;
    push_tags(&src, "team/app", &["2.0"], &two).await;
    // On the target only: 0.9 (its own digest), 0.8 (the digest of 1.0, which
    // the source still has), dev (outside `include`), a referrer fallback
    // tag and a backup tag (neither may ever be pruned).
    let old = image("prune/0.9");
    push_tags(&dst, "mirror/app", &["0.9"], &old).await;
    push_tags(&dst, "mirror/app", &["0.8"], &one).await;
    push_tags(&dst, "mirror/app", &["dev"], &old).await;
    let fallback = format!("sha256-{}", one.digest().trim_start_matches("sha256:"));
    push_tags(&dst, "mirror/app", &[fallback.as_str(), "0.7-prev"], &old).await;

    let config = ConfigFile::new();
    let path = config.write(&mirror_config(&src, &dst, "backup = \"{tag}-prev\""));

    // Dry run of prune: copies happen, nothing is deleted, the report says what would be.
    let (code, dry, stderr) = sync_json(&path, &["--prune-dry-run"]).await;
    assert_eq!(code, 0, "{dry:#}\n{stderr}");
    assert_eq!(dry["totals"]["copied"], 2, "{dry:#}");
    assert_eq!(pruned_tags(&dry), ["0.8", "0.9"], "{dry:#}");
    assert_eq!(dry["mirrors"][0]["prune"]["dry_run"], true);
    assert!(dry["mirrors"][0]["prune"]["pruned"][0]["how"].is_null());
    assert_eq!(dry["totals"]["pruned"], 2);
    let before = tags(&dst, "mirror/app").await;
    assert!(before.contains(&"0.8".to_string()) && before.contains(&"0.9".to_string()));

    // The real run deletes exactly those two.
    let (code, run, stderr) = sync_json(&path, &[]).await;
    assert_eq!(code, 0, "{run:#}\n{stderr}");
    assert_eq!(pruned_tags(&run), ["0.8", "0.9"], "{run:#}");
    let p = &run["mirrors"][0]["prune"];
    assert_eq!(p["dry_run"], false);
    assert!(p["refused"].is_null(), "{p:#}");
    assert_eq!(p["pruned"][0]["digest"], one.digest());
    assert_eq!(p["pruned"][1]["digest"], old.digest());
    // distribution 2.8 cannot delete a tag by name: the placeholder path ran.
    assert_eq!(p["pruned"][0]["how"], "by-placeholder");
    let mut want = vec!["0.7-prev", "1.0", "2.0", "dev", fallback.as_str()];
    want.sort();
    assert_eq!(tags(&dst, "mirror/app").await, want);
    // 0.8 shared its digest with 1.0 and 0.9 with dev: both survive, whole.
    assert_eq!(
        skopeo_raw_digest(&dst, "mirror/app:1.0").await.unwrap(),
        one.digest()
    );
    assert_eq!(
        skopeo_raw_digest(&dst, "mirror/app:dev").await.unwrap(),
        old.digest()
    );
    let problems = common::graph_problems(
        &common::Pusher::for_registry(&dst),
        "mirror/app",
        "1.0",
        one.digest(),
    )
    .await;
    assert!(problems.is_empty(), "{problems:?}");

    // Nothing left to prune: the next run deletes nothing.
    let (code, again, _) = sync_json(&path, &[]).await;
    assert_eq!(code, 0);
    assert!(pruned_tags(&again).is_empty(), "{again:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_refuses_over_max_prune_an_incomplete_listing_and_an_empty_source() {
    let src = TestRegistry::start(RegistryOptions::anonymous().with_delete()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous().with_delete()).await;
    push_tags(&src, "team/app", &["1.0"], &image("refuse/1.0")).await;
    let old = image("refuse/old");
    push_tags(&dst, "mirror/app", &["0.1", "0.2", "0.3"], &old).await;
    let config = ConfigFile::new();

    // Over max_prune: three candidates, a cap of two: none is deleted.
    let path = config.write(&mirror_config(&src, &dst, "max_prune = 2"));
    let (code, run, stderr) = sync_json(&path, &[]).await;
    assert_eq!(code, 0, "a refusal is not a failure: {run:#}\n{stderr}");
    let refused = run["mirrors"][0]["prune"]["refused"].as_str().unwrap();
    assert!(
        refused.contains("3 target tags") && refused.contains("max_prune = 2"),
        "{refused}"
    );
    assert!(pruned_tags(&run).is_empty());
    assert_eq!(tags(&dst, "mirror/app").await, ["0.1", "0.2", "0.3", "1.0"]);

    // An incomplete listing (more tags than the source's max_tags cap): the
    // listing fails, so nothing is copied and nothing pruned.
    push_tags(&src, "team/app", &["1.1", "1.2"], &image("refuse/1.1")).await;
    let capped = format!(
        "[[registry]]\nhost = \"{}\"\nmax_tags = 2\n\n{}",
        src.host(),
        mirror_config(&src, &dst, "max_prune = 10")
    );
    let path = config.write(&capped);
    let (code, run, _) = sync_json(&path, &[]).await;
    assert_eq!(code, 1, "the listing failed: {run:#}");
    let refused = run["mirrors"][0]["prune"]["refused"].as_str().unwrap();
    assert!(refused.contains("listing failed"), "{refused}");
    assert_eq!(tags(&dst, "mirror/app").await.len(), 4);

    // An empty source (every tag deleted upstream): nothing pruned.
    for t in ["1.0", "1.1"] {
        let digest = skopeo_raw_digest(&src, &format!("team/app:{t}"))
            .await
            .unwrap();
        let url = format!("{}/v2/team/app/manifests/{digest}", src.base_url());
        let resp = src.http_client().delete(&url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 202, "deleting {t} upstream");
    }
    assert!(tags(&src, "team/app").await.is_empty());
    let path = config.write(&mirror_config(&src, &dst, "max_prune = 10"));
    let (code, run, stderr) = sync_json(&path, &[]).await;
    assert_eq!(code, 0, "{run:#}\n{stderr}");
    let refused = run["mirrors"][0]["prune"]["refused"].as_str().unwrap();
    assert!(refused.contains("listed no tag"), "{refused}");
    assert_eq!(tags(&dst, "mirror/app").await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_refuses_deletes_keeps_the_tag_untouched() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    // Deletion disabled (distribution's default): every DELETE is 405.
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    push_tags(&src, "team/app", &["1.0"], &image("nodelete/1.0")).await;
    let old = image("nodelete/0.9");
    push_tags(&dst, "mirror/app", &["0.9"], &old).await;
    let config = ConfigFile::new();
    let path = config.write(&mirror_config(&src, &dst, ""));
    let (code, run, stderr) = sync_json(&path, &[]).await;
    assert_eq!(code, 3, "copy ok, prune failed: {run:#}\n{stderr}");
    let errors = run["mirrors"][0]["prune"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{run:#}");
    let e = errors[0].as_str().unwrap();
    assert!(
        e.contains("storage.delete.enabled") && e.contains("left as it was"),
        "{e}"
    );
    assert!(stderr.contains("prune:"), "{stderr}");
    // The probe found the refusal before the tag moved.
    assert_eq!(
        skopeo_raw_digest(&dst, "mirror/app:0.9").await.unwrap(),
        old.digest()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prunes_and_backups_are_counted_in_metrics() {
    use regmirror::registry::{Client, ClientOptions};
    use regmirror::sync::Config;
    use regmirror::sync::run::{SyncOptions, Syncer};

    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous().with_delete()).await;
    push_tags(&src, "team/app", &["1.0"], &image("metrics/new")).await;
    push_tags(&dst, "mirror/app", &["1.0", "0.9"], &image("metrics/old")).await;
    let text = format!(
        "[[mirror]]\nname = \"metered\"\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\n\
         prune = \"not-in-source\"\nbackup = \"{{tag}}-prev\"\n",
        src.host(),
        dst.host()
    );
    let config = Config::parse(std::path::Path::new("metrics.toml"), &text).unwrap();
    let syncer = Syncer::new(
        Client::new(ClientOptions::default()).unwrap(),
        SyncOptions::default(),
        tokio_util::sync::CancellationToken::new(),
    );
    regmirror::metrics::init();
    let report = syncer.run_all(&config.mirrors).await;
    let m = &report.mirrors[0];
    assert_eq!(m.failures(), 0, "{m:#?}");
    assert_eq!(m.images[0].backup.as_ref().unwrap().tag, "1.0-prev");
    let pruned: Vec<&str> = m
        .prune
        .as_ref()
        .unwrap()
        .pruned
        .iter()
        .map(|p| p.target.as_str())
        .collect();
    assert_eq!(pruned, [format!("{}/mirror/app:0.9", dst.host())]);
    let metrics = regmirror::metrics::render();
    for line in [
        "regmirror_pruned_tags_total{mirror=\"metered\",result=\"deleted\"} 1",
        "regmirror_backups_total{mirror=\"metered\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    assert_eq!(tags(&dst, "mirror/app").await, ["1.0", "1.0-prev"]);
}

/// How a fake registry answers `DELETE /v2/<name>/manifests/<tag>`.
#[derive(Clone, Copy)]
enum TagDelete {
    /// The OCI spec: the tag goes, the manifest and its other tags stay.
    TagOnly,
    /// The manifest goes, with every tag on it (some registries do this).
    WholeManifest,
}

/// A one-repository in-memory registry whose tag DELETE behaves as `mode`.
/// A fake because distribution 2.8 can do neither (it refuses tag deletes).
/// Returns the server and its state: tag -> digest, digest -> bytes.
async fn fake_deleting_registry(
    mode: TagDelete,
    seed: &[(&str, &[u8])],
) -> (
    common::FakeServer,
    std::sync::Arc<
        std::sync::Mutex<(
            std::collections::BTreeMap<String, String>,
            std::collections::BTreeMap<String, Vec<u8>>,
        )>,
    >,
) {
    use axum::http::{Method, StatusCode, Uri};
    use axum::response::IntoResponse;
    let state = std::sync::Arc::new(std::sync::Mutex::new((
        std::collections::BTreeMap::<String, String>::new(),
        std::collections::BTreeMap::<String, Vec<u8>>::new(),
    )));
    {
        let mut s = state.lock().unwrap();
        for (tag, body) in seed {
            let d = common::sha256_digest(body);
            s.0.insert(tag.to_string(), d.clone());
            s.1.insert(d, body.to_vec());
        }
    }
    let shared = state.clone();
    let router =
        axum::Router::new().fallback(move |method: Method, uri: Uri, body: axum::body::Bytes| {
            let state = shared.clone();
            async move {
                let path = uri.path().to_string();
                if path == "/v2/" {
                    return StatusCode::OK.into_response();
                }
                if path.starts_with("/v2/app/blobs/") {
                    return StatusCode::OK.into_response(); // every blob "present"
                }
                let Some(reference) = path.strip_prefix("/v2/app/manifests/") else {
                    return StatusCode::NOT_FOUND.into_response();
                };
                let mut s = state.lock().unwrap();
                let digest = if reference.starts_with("sha256:") {
                    Some(reference.to_string())
                } else {
                    s.0.get(reference).cloned()
                };
                match method {
                    Method::PUT => {
                        let d = common::sha256_digest(&body);
                        s.1.insert(d.clone(), body.to_vec());
                        if !reference.starts_with("sha256:") {
                            s.0.insert(reference.to_string(), d.clone());
                        }
                        (StatusCode::CREATED, [("docker-content-digest", d)]).into_response()
                    }
                    Method::HEAD => match digest.filter(|d| s.1.contains_key(d)) {
                        Some(d) => (StatusCode::OK, [("docker-content-digest", d)]).into_response(),
                        None => StatusCode::NOT_FOUND.into_response(),
                    },
                    Method::DELETE => {
                        let Some(d) = digest.filter(|d| s.1.contains_key(d)) else {
                            return StatusCode::NOT_FOUND.into_response();
                        };
                        let whole = reference.starts_with("sha256:")
                            || matches!(mode, TagDelete::WholeManifest);
                        if whole {
                            s.1.remove(&d);
                            s.0.retain(|_, v| *v != d);
                        } else {
                            s.0.remove(reference);
                        }
                        StatusCode::ACCEPTED.into_response()
                    }
                    _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
                }
            }
        });
    (common::FakeServer::start(router).await, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_by_tag_never_takes_a_shared_digest_whatever_the_registry_deletes() {
    use regmirror::registry::{Client, ClientOptions, Reference, TagDeletion};
    let shared: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let shared_digest = common::sha256_digest(shared);
    for (mode, want) in [
        (TagDelete::TagOnly, TagDeletion::ByTag),
        (TagDelete::WholeManifest, TagDeletion::ByTag),
    ] {
        let (server, state) =
            fake_deleting_registry(mode, &[("old", shared), ("keep", shared)]).await;
        let client = Client::new(ClientOptions::default()).unwrap();
        let old = Reference::parse(&format!("{}/app:old", server.host())).unwrap();
        assert_eq!(client.delete_tag(&old).await.unwrap(), want);
        let s = state.lock().unwrap();
        let tags: Vec<&str> = s.0.keys().map(String::as_str).collect();
        assert_eq!(tags, ["keep"], "only the deleted tag went");
        assert_eq!(s.0["keep"], shared_digest);
        // The shared manifest survives; every placeholder is gone.
        let manifests: Vec<&str> = s.1.keys().map(String::as_str).collect();
        assert_eq!(manifests, [shared_digest.as_str()]);
    }
}
