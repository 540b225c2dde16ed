//! Docker schema 1 sources. Without `convert_schema1` a tag served as a
//! schema 1 manifest is not copied; `sync` reports it as `unsupported` with
//! the reason and does not fail the mirror for it (run after run), and
//! `import` fails naming it. With it (`import --convert-schema1`, the
//! `convert_schema1` key), the image is converted to schema 2 as skopeo
//! converts it: checked against skopeo's own conversion, then pulled and
//! unpacked by skopeo and umoci (which checks each layer's diff_id).
//!
//! The conversion tests use a real docker-registry with
//! `compatibility.schema1.enabled` (see `support/schema1_image.rs`). The
//! tests of the default behaviour use a fake registry, kept from before
//! that harness option: the manifest has the shape of
//! docs/spec/manifest-v2-1.md of distribution (name, tag, architecture,
//! fsLayers, history of v1Compatibility strings, signatures) served as
//! `application/vnd.docker.distribution.manifest.v1+prettyjws`; its
//! signature is not a valid one (regmirror never reads the manifest that far).

use crate::common;
use crate::layout_support::{skopeo, umoci};
use crate::sync_run;

#[path = "support/schema1_image.rs"]
pub(crate) mod schema1_image;

use axum::Router;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::IntoResponse;
use common::{
    FakeServer, Format, ImageSet, Node, RegistryOptions, TestRegistry, regmirror_isolated,
};
use sync_run::{ConfigFile, push_tags, sync_json, tags};

const SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
const LAYER: &str = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

fn schema1_manifest() -> String {
    let v1 = serde_json::json!({
        "id": "e45a5af57b00862e5ef5782a9925979a02ba2b12dff832fd0991335f4a11e5c5",
        "created": "2014-12-31T22:57:59.178729048Z",
        "config": { "Cmd": ["/hello"], "Env": ["PATH=/bin"] },
        "architecture": "amd64",
        "os": "linux",
        "Size": 0
    });
    serde_json::to_string_pretty(&serde_json::json!({
        "schemaVersion": 1,
        "name": "team/old",
        "tag": "v1",
        "architecture": "amd64",
        "fsLayers": [{ "blobSum": LAYER }],
        "history": [{ "v1Compatibility": v1.to_string() }],
        "signatures": [{
            "header": { "jwk": { "crv": "P-256", "kty": "EC", "x": "AA", "y": "AA" }, "alg": "ES256" },
            "signature": "AA",
            "protected": "eyJmb3JtYXRMZW5ndGgiOjEsImZvcm1hdFRhaWwiOiJDbjAifQ"
        }]
    }))
    .unwrap()
}

async fn schema1_registry() -> FakeServer {
    let body = schema1_manifest();
    let router = Router::new().fallback(move |method: Method, uri: Uri| {
        let body = body.clone();
        async move {
            let path = uri.path();
            if path == "/v2/" {
                return (StatusCode::OK, "{}").into_response();
            }
            if path == "/v2/team/old/tags/list" {
                return (
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"name":"team/old","tags":["v1"]}"#,
                )
                    .into_response();
            }
            if !path.starts_with("/v2/team/old/manifests/") {
                return StatusCode::NOT_FOUND.into_response();
            }
            let digest = common::sha256_digest(body.as_bytes());
            let headers = [
                (header::CONTENT_TYPE, SIGNED.to_string()),
                (
                    header::HeaderName::from_static("docker-content-digest"),
                    digest,
                ),
            ];
            if method == Method::HEAD {
                return (headers, [(header::CONTENT_LENGTH, body.len().to_string())])
                    .into_response();
            }
            (headers, body).into_response()
        }
    });
    FakeServer::start(router).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema1_tag_is_reported_unsupported_and_does_not_fail_the_mirror() {
    let old = schema1_registry().await;
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let image = Node::Image(ImageSet::image(
        "schema1/new",
        "linux/amd64",
        Format::Docker,
    ));
    push_tags(&src, "team/new", &["v2"], &image).await;
    let config = ConfigFile::new();
    let path = config.write(&format!(
        "[[mirror]]\nsource = \"{o}/team/old\"\ntarget = \"{d}/m/old\"\n\n\
         [[mirror]]\nsource = \"{s}/team/new\"\ntarget = \"{d}/m/new\"\n",
        o = old.host(),
        s = src.host(),
        d = dst.host()
    ));
    for run in 0..2 {
        let (code, report, stderr) = sync_json(&path, &[]).await;
        assert_eq!(code, 0, "run {run}: {report:#}\n{stderr}");
        assert_eq!(report["result"], "success", "{report:#}");
        assert_eq!(report["totals"]["unsupported"], 1, "{report:#}");
        assert_eq!(report["totals"]["failed"], 0, "{report:#}");
        let images = report["images"].as_array().unwrap();
        let old_image = images
            .iter()
            .find(|i| i["source"].as_str().unwrap().contains("/team/old"))
            .unwrap();
        assert_eq!(old_image["result"], "unsupported", "{report:#}");
        let why = old_image["error"].as_str().unwrap();
        assert!(why.contains("schema 1") && why.contains(SIGNED), "{why}");
    }
    assert!(tags(&dst, "m/old").await.is_empty());
    assert_eq!(tags(&dst, "m/new").await, ["v2"]);
    // The text summary counts it.
    let run = regmirror_isolated(&["sync", "--config", path.to_str().unwrap()], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("1 unsupported (not copied)"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_a_schema1_image_fails_naming_the_format() {
    let old = schema1_registry().await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let run = regmirror_isolated(
        &[
            "import",
            &format!("{}/team/old:v1", old.host()),
            &dst.host(),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("Docker schema 1 manifest") && run.stderr.contains("skopeo copy"),
        "{}",
        run.stderr
    );
    assert!(tags(&dst, "team/old").await.is_empty());
}

/// `skopeo --insecure-policy` over plain HTTP, for `docker://` references.
async fn skopeo_http(args: &[&str]) -> Vec<u8> {
    let mut all = args.to_vec();
    all.insert(1, "--tls-verify=false");
    skopeo(&all)
        .await
        .unwrap_or_else(|e| panic!("skopeo {args:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_converts_a_schema1_image_as_skopeo_does_and_runtimes_unpack_it() {
    let src = TestRegistry::start(RegistryOptions::anonymous().with_schema1()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let pushed = schema1_image::push_schema1(&src, "team/old", "v1").await;
    let source = format!("{}/team/old:v1", src.host());
    let target = format!("{}/m/old:v1", dst.host());
    let run = regmirror_isolated(
        &[
            "import",
            "--convert-schema1",
            "--output",
            "json",
            &source,
            &target,
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let image = &doc["images"][0];
    assert_eq!(image["result"], "copied", "{doc:#}");
    assert_eq!(image["converted_from"], pushed.digest.as_str(), "{doc:#}");
    let converted = image["target_digest"].as_str().unwrap().to_string();
    assert_ne!(converted, pushed.digest);
    // The text output says so too.
    let text_target = format!("{}/m/text:v1", dst.host());
    let run =
        regmirror_isolated(&["import", "--convert-schema1", &source, &text_target], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = format!(
        "converted from Docker schema 1: {} -> {converted}",
        pushed.digest
    );
    assert!(run.stdout.contains(&line), "{}", run.stdout);

    // skopeo's own conversion of the same image gives the same bytes.
    let theirs = format!("docker://{}/skopeo/old:v1", dst.host());
    skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{source}"),
        &theirs,
    ])
    .await
    .unwrap();
    assert_eq!(
        common::skopeo_raw_digest(&dst, "skopeo/old:v1")
            .await
            .unwrap(),
        converted
    );
    assert_eq!(
        common::skopeo_raw_digest(&dst, "m/old:v1").await.unwrap(),
        converted
    );

    // The config: diff_ids of the two file layers (not the empty one), history of all three.
    let config: serde_json::Value = serde_json::from_slice(
        &skopeo_http(&["inspect", "--config", &format!("docker://{target}")]).await,
    )
    .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!(pushed.diff_ids),
        "{config:#}"
    );
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{config:#}");
    assert_eq!(history[2]["empty_layer"], true, "{config:#}");
    assert_eq!(config["config"]["Cmd"][0], "/hello", "{config:#}");

    // Pulled into an OCI layout and unpacked: umoci checks each diff_id.
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    skopeo_http(&[
        "copy",
        &format!("docker://{target}"),
        &format!("oci:{}:v1", layout.display()),
    ])
    .await;
    let bundle = dir.path().join("bundle");
    umoci(&[
        "unpack",
        "--rootless",
        "--image",
        &format!("{}:v1", layout.display()),
        bundle.to_str().unwrap(),
    ])
    .await;
    let rootfs = bundle.join("rootfs");
    assert_eq!(std::fs::read(rootfs.join("hello")).unwrap(), b"hi\n");
    assert_eq!(
        std::fs::read(rootfs.join("etc/motd")).unwrap(),
        b"converted\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_converts_schema1_tags_when_asked_and_reports_them_unsupported_otherwise() {
    let src = TestRegistry::start(RegistryOptions::anonymous().with_schema1()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let pushed = schema1_image::push_schema1(&src, "team/old", "v1").await;
    let config = ConfigFile::new();
    let path = config.write(&format!(
        "[defaults]\nconvert_schema1 = true\n\n\
         [[mirror]]\nsource = \"{s}/team/old\"\ntarget = \"{d}/m/old\"\n\n\
         [[mirror]]\nsource = \"{s}/team/old\"\ntarget = \"{d}/m/kept\"\nconvert_schema1 = false\n",
        s = src.host(),
        d = dst.host()
    ));
    for (run, word) in [(0, "copied"), (1, "up-to-date")] {
        let (code, report, stderr) = sync_json(&path, &[]).await;
        assert_eq!(code, 0, "run {run}: {report:#}\n{stderr}");
        assert_eq!(report["totals"]["unsupported"], 1, "{report:#}");
        assert_eq!(report["totals"]["failed"], 0, "{report:#}");
        let images = report["images"].as_array().unwrap();
        let by_target = |t: &str| {
            images
                .iter()
                .find(|i| i["target"].as_str().unwrap().contains(t))
                .unwrap()
        };
        let converted = by_target("/m/old:");
        assert_eq!(converted["result"], word, "run {run}: {report:#}");
        if run == 0 {
            assert_eq!(
                converted["converted_from"],
                pushed.digest.as_str(),
                "{report:#}"
            );
        }
        assert_eq!(by_target("/m/kept:")["result"], "unsupported", "{report:#}");
    }
    assert_eq!(tags(&dst, "m/old").await, ["v1"]);
    assert!(tags(&dst, "m/kept").await.is_empty());
}
