//! Bad input never panics and never writes anything: oversized manifests,
//! malformed JSON, unknown media types, descriptors with invalid digests or
//! negative sizes (served by a fake source registry, since a real registry
//! refuses to store them), invalid references and invalid config files. Each
//! gets a clear error and the documented exit code; the real target registry
//! behind a counting proxy receives no write and holds no tag.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use common::{
    FakeServer, FaultPlan, Pusher, RegistryOptions, Run, TestProxy, TestRegistry, regmirror,
};

/// A run that ended on its own terms: an exit code, no panic message.
fn assert_no_panic(what: &str, run: &Run) {
    assert_ne!(run.code, 101, "{what}: exit 101 is a panic\n{}", run.stderr);
    assert_ne!(run.code, -1, "{what}: killed by a signal\n{}", run.stderr);
    assert!(
        !run.stderr.contains("panicked") && !run.stdout.contains("panicked"),
        "{what}: panicked\n{}",
        run.stderr
    );
}

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// One bad manifest served under `bad/app:<tag>`, and what its error must say.
struct Case {
    tag: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    /// Substrings the error must contain (besides the image name).
    needles: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    // Over the 4 MiB cap, yet valid JSON: a real registry refuses to store it.
    let mut big = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":2}},"layers":[],"annotations":{{"pad":""#
    )
    .into_bytes();
    big.resize(big.len() + 5 * 1024 * 1024, b'x');
    big.extend_from_slice(b"\"}}");
    vec![
        Case {
            tag: "oversized",
            content_type: OCI_MANIFEST,
            body: big,
            needles: &["manifest"],
        },
        Case {
            tag: "malformed",
            content_type: OCI_MANIFEST,
            body: br#"{"schemaVersion":2,"config":{"mediaType":"#.to_vec(),
            needles: &["malformed"],
        },
        Case {
            tag: "unknown-type",
            content_type: "application/vnd.example.thing.v1+json",
            body: br#"{"schemaVersion":2,"thing":true}"#.to_vec(),
            needles: &["application/vnd.example.thing.v1+json"],
        },
        Case {
            tag: "bad-digest",
            content_type: OCI_INDEX,
            body: format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:not-a-digest","size":10,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
            )
            .into_bytes(),
            needles: &["malformed", "digest"],
        },
        Case {
            tag: "negative-size",
            content_type: OCI_MANIFEST,
            body: format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":-5}},"layers":[]}}"#
            )
            .into_bytes(),
            needles: &["malformed"],
        },
        Case {
            tag: "not-json",
            content_type: "application/json",
            body: b"<html><body>502 Bad Gateway</body></html>".to_vec(),
            needles: &["malformed"],
        },
    ]
}

/// A fake source registry serving each case's bytes under `bad/app:<tag>`,
/// with a correct `Docker-Content-Digest`, for HEAD and GET.
async fn fake_source(cases: &[Case]) -> FakeServer {
    let table: Arc<HashMap<String, (String, Vec<u8>)>> = Arc::new(
        cases
            .iter()
            .map(|c| {
                (
                    format!("/v2/bad/app/manifests/{}", c.tag),
                    (c.content_type.to_string(), c.body.clone()),
                )
            })
            .collect(),
    );
    let router = Router::new().fallback(move |method: Method, uri: Uri| {
        let table = table.clone();
        async move {
            let path = uri.path();
            if path == "/v2/" {
                return (StatusCode::OK, "{}").into_response();
            }
            match table.get(path) {
                Some((ct, body)) => {
                    let mut r: Response = if method == Method::HEAD {
                        StatusCode::OK.into_response()
                    } else {
                        body.clone().into_response()
                    };
                    let h = r.headers_mut();
                    h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
                    h.insert(
                        "docker-content-digest",
                        common::sha256_digest(body).parse().unwrap(),
                    );
                    if method == Method::HEAD {
                        h.insert(header::CONTENT_LENGTH, body.len().into());
                    }
                    r
                }
                None => (
                    StatusCode::NOT_FOUND,
                    r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#,
                )
                    .into_response(),
            }
        }
    });
    FakeServer::start(router).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_fail_clearly_and_write_nothing() {
    let cases = cases();
    let fake = fake_source(&cases).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst_proxy = TestProxy::start(&dst.base_url(), FaultPlan::none()).await;

    for case in &cases {
        let source = format!("{}/bad/app:{}", fake.host(), case.tag);
        let target = format!("{}/mirror/app:{}", dst_proxy.host(), case.tag);

        let run = regmirror(&["import", &source, &target]).await;
        assert_no_panic(&format!("import {}", case.tag), &run);
        assert_eq!(run.code, 1, "import {}: {}", case.tag, run.stderr);
        let err = run.stderr.to_lowercase();
        assert!(
            run.stderr.contains(&format!("bad/app:{}", case.tag)),
            "import {}: the error names the image: {}",
            case.tag,
            run.stderr
        );
        for n in case.needles {
            assert!(
                err.contains(&n.to_lowercase()),
                "import {}: the error says {n:?}: {}",
                case.tag,
                run.stderr
            );
        }
        assert!(
            !Pusher::for_registry(&dst)
                .manifest_exists("mirror/app", case.tag)
                .await
                .unwrap(),
            "import {}: a tag was created at the target",
            case.tag
        );

        // `inspect` prints a summary of what it walks: the same errors.
        let run = regmirror(&["inspect", &source]).await;
        assert_no_panic(&format!("inspect {}", case.tag), &run);
        assert_eq!(run.code, 1, "inspect {}: {}", case.tag, run.stderr);
        assert!(
            run.stderr.contains(&format!("bad/app:{}", case.tag)),
            "inspect {}: {}",
            case.tag,
            run.stderr
        );
    }
    // Nothing was written: no upload, no manifest PUT, no tag.
    for m in ["PUT", "POST", "PATCH", "DELETE"] {
        assert_eq!(
            dst_proxy.count(m, "/"),
            0,
            "{m} reached the target: {:?}",
            dst_proxy.requests()
        );
    }
    assert!(
        Pusher::for_registry(&dst)
            .tags("mirror/app")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn invalid_references_exit_2_without_a_panic() {
    let good = "127.0.0.1:1/ok/app:v1";
    // Every reference names a loopback host (or none that parses), so a
    // reference wrongly accepted fails on 127.0.0.1:1, never on the network.
    let bad = [
        "",
        " ",
        "127.0.0.1:1/a//b",
        "127.0.0.1:1/UPPER/case",
        "127.0.0.1:1/app:",
        "127.0.0.1:1/app:bad tag",
        "127.0.0.1:1/app@sha256:abc",
        "127.0.0.1:1/app@md5:d41d8cd98f00b204e9800998ecf8427e",
        "127.0.0.1:1/app@",
        "127.0.0.1:99999999/app",
        "[::1/app",
        "127.0.0.1:1/-leading/dash",
        "127.0.0.1:1/x/../y",
        "127.0.0.1:1/app:a:b:c",
        "127.0.0.1:1/app\ttab",
        "127.0.0.1:1/émoji/🦀",
    ];
    let long = format!("127.0.0.1:1/{}", "a/".repeat(300) + "x");
    let long_tag = format!("127.0.0.1:1/app:{}", "t".repeat(200));
    let mut all: Vec<&str> = bad.to_vec();
    all.push(&long);
    all.push(&long_tag);
    for r in all {
        for args in [
            vec!["import", r, "127.0.0.1:1/mirror/app"],
            vec!["import", good, r],
            vec!["inspect", r],
            vec!["tags", r],
        ] {
            let run = regmirror(&args).await;
            assert_no_panic(&format!("{args:?}"), &run);
            assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
            assert!(
                !run.stderr.trim().is_empty(),
                "{args:?}: no error message on stderr"
            );
        }
    }
}

#[tokio::test]
async fn invalid_configs_exit_2_and_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let m = "[[mirror]]\nsource = \"127.0.0.1:1/a\"\ntarget = \"127.0.0.1:2/b\"\n";
    let cases: Vec<(String, &str)> = vec![
        ("\u{feff}[[mirror]\nsource = ".to_string(), "line"),
        ("\0\0\0binary".to_string(), "mirror.toml"),
        (format!("{m}concurrency = 1\n"), "concurrency"),
        (format!("[defaults]\nconcurrency = -3\n{m}"), "concurrency"),
        (
            format!("[defaults]\nconcurrency = 99999999999999999999\n{m}"),
            "concurrency",
        ),
        (
            format!("[defaults]\nblob_concurrency = 0\n{m}"),
            "blob_concurrency",
        ),
        (
            format!("[defaults]\nplatforms = [\"linux\"]\n{m}"),
            "platforms",
        ),
        (
            format!("[defaults]\nschedule = \"* * * * * * * *\"\n{m}"),
            "schedule",
        ),
        (format!("{m}include = [\"(unclosed\"]\n"), "include"),
        (format!("{m}semver = \">>1\"\n"), "semver"),
        (format!("{m}latest = -1\n"), "latest"),
        (
            "[[mirror]]\nsource = \"127.0.0.1:1/a\"\ntarget = \"127.0.0.1:1/a\"\n".to_string(),
            "mirror[1]",
        ),
        (
            format!(
                "[[registry]]\nhost = \"127.0.0.1:1\"\npassword = \"x\"\npassword_env = \"Y\"\n{m}"
            ),
            "registry[1]",
        ),
        (
            format!("[[registry]]\nhost = \"127.0.0.1:1\"\nrequests_per_second = -1.0\n{m}"),
            "requests_per_second",
        ),
        (
            format!("[[registry]]\nhost = \"127.0.0.1:1\"\ntls = \"maybe\"\n{m}"),
            "tls",
        ),
        (
            format!("[server]\nlisten = \"not an address\"\n{m}"),
            "listen",
        ),
        (
            format!("{m}platforms = [\"linux/amd64\", 7]\n"),
            "platforms",
        ),
        ("[[mirror]]\n".to_string(), "source"),
        (format!("{m}\n{m}"), "name"),
    ];
    let path = dir.path().join("mirror.toml");
    for (text, needle) in &cases {
        std::fs::write(&path, text).unwrap();
        for cmd in ["sync", "check"] {
            let run = regmirror(&[cmd, "--config", path.to_str().unwrap()]).await;
            assert_no_panic(&format!("{cmd} with {text:?}"), &run);
            assert_eq!(run.code, 2, "{cmd} with {text:?}: {}", run.stderr);
            assert!(
                run.stderr.contains("mirror.toml") && run.stderr.contains(needle),
                "{cmd} with {text:?}: the error names the file and {needle:?}: {}",
                run.stderr
            );
        }
    }
    // A missing file and a directory instead of a file.
    for p in [dir.path().join("absent.toml"), dir.path().to_path_buf()] {
        let run = regmirror(&["sync", "--config", p.to_str().unwrap()]).await;
        assert_no_panic(&format!("sync --config {}", p.display()), &run);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains(p.to_str().unwrap()), "{}", run.stderr);
    }
}
