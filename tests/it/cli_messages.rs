//! What the command line says, as a new user meets it: causes shown once,
//! config errors in the config's own words, hints naming the right knob,
//! consistent counts, JSON on stderr with `--log-format json`, HTTPS for a
//! loopback host given a CA, `inspect --platform`, the platform filter
//! looking into nested indexes, and a spinner while a copy is planned.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use common::{
    FakeServer, Format, ImageSet, IndexBuilder, RegistryOptions, TestRegistry, push,
    regmirror_isolated, skopeo_raw_digest,
};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cause_is_shown_once() {
    // A real registry refuses to store a descriptor with a malformed digest,
    // so a fake one serves it.
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:abc","size":10,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
    );
    let router = Router::new().fallback(move |uri: Uri| {
        let body = body.clone();
        async move {
            if uri.path() == "/v2/" {
                return (StatusCode::OK, "{}").into_response();
            }
            let digest = common::sha256_digest(body.as_bytes());
            (
                [
                    (header::CONTENT_TYPE, OCI_INDEX.to_string()),
                    (
                        header::HeaderName::from_static("docker-content-digest"),
                        digest,
                    ),
                ],
                body,
            )
                .into_response()
        }
    });
    let fake = FakeServer::start(router).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    for args in [
        vec!["inspect".to_string(), format!("{}/bad/app:v1", fake.host())],
        vec![
            "import".to_string(),
            format!("{}/bad/app:v1", fake.host()),
            dst.host(),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = regmirror_isolated(&args, &[]).await;
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        let line = run
            .stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_default();
        assert!(line.contains("sha256:abc"), "{args:?}: {}", run.stderr);
        assert_eq!(
            line.matches("sha256:abc").count(),
            1,
            "{args:?}: the cause is repeated: {line}"
        );
    }
}

#[tokio::test]
async fn config_errors_speak_toml_not_rust() {
    let dir = tempfile::tempdir().unwrap();
    let m = "[[mirror]]\nsource = \"127.0.0.1:1/a:v1\"\ntarget = \"127.0.0.1:2/b\"\n";
    let path = dir.path().join("mirror.toml");
    for (text, key) in [
        (
            format!("[defaults]\nconcurrency = -3\n{m}"),
            "defaults.concurrency",
        ),
        (
            format!("[defaults]\nconcurrency = \"four\"\n{m}"),
            "defaults.concurrency",
        ),
        (
            format!("[server]\nshutdown_grace_seconds = -1\n{m}"),
            "server.shutdown_grace_seconds",
        ),
        (
            format!("[[registry]]\nhost = \"a.io\"\nrequests_per_second = \"x\"\n{m}"),
            "requests_per_second",
        ),
        (
            format!("{m}platforms = \"linux/amd64\"\n"),
            "mirror[1].platforms",
        ),
        (format!("{m}latest = 1.5\n"), "mirror[1].latest"),
    ] {
        std::fs::write(&path, &text).unwrap();
        let run = regmirror_isolated(&["check", "--config", path.to_str().unwrap()], &[]).await;
        assert_eq!(run.code, 2, "{text}: {}", run.stderr);
        assert!(run.stderr.contains(key), "{text}: {}", run.stderr);
        for rust in ["usize", "u64", "f64", "i64", "a sequence"] {
            assert!(
                !run.stderr.contains(rust),
                "{text}: speaks Rust ({rust}): {}",
                run.stderr
            );
        }
    }
    std::fs::write(&path, "[[mirror]\nsource = \"a\"\n").unwrap();
    let run = regmirror_isolated(&["check", "--config", path.to_str().unwrap()], &[]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("line 1"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("mirror]["),
        "a broken header as a key: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_words_hints_and_json_stderr() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("words", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    let other = ImageSet::multi_arch("words-other", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    push(&dst, "mirror/held", "v1", other.to_node())
        .await
        .unwrap();
    let (s, d) = (src.host(), dst.host());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mirror.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mirror]]\nname = \"held\"\nsource = \"{s}/team/app:v1\"\ntarget = \"{d}/mirror/held\"\nforce = false\n\n\
             [[mirror]]\nname = \"windows\"\nsource = \"{s}/team/app:v1\"\ntarget = \"{d}/mirror/win\"\nplatforms = [\"windows/amd64\"]\n"
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let run = regmirror_isolated(&["sync", "--config", cfg], &[]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let held = run
        .stdout
        .lines()
        .find(|l| l.starts_with("mirror held:"))
        .unwrap();
    assert!(
        held.contains("1 conflicts") && held.contains("0 failed"),
        "{held}"
    );
    let summary = run
        .stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap();
    assert!(
        summary.contains("1 conflicts") && summary.contains("1 failed"),
        "{summary}"
    );
    assert!(
        summary.contains("manifests:") && summary.contains("blobs:"),
        "{summary}"
    );
    // The no-match hint names the config key, for a config run.
    assert!(run.stderr.contains("`platforms` key"), "{}", run.stderr);
    assert!(
        run.stderr.contains("linux/amd64, linux/arm64"),
        "{}",
        run.stderr
    );

    // With --log-format json every stderr line is a JSON object: logs,
    // the failure list, usage errors, even clap's.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[defaults]\nconcurrency = 0\n").unwrap();
    for args in [
        vec!["--log-format", "json", "sync", "--config", cfg],
        vec![
            "--log-format",
            "json",
            "sync",
            "--config",
            bad.to_str().unwrap(),
        ],
        vec!["--log-format", "json", "sync", "--bogus-flag"],
        vec![
            "sync",
            "--log-format=json",
            "--config",
            cfg,
            "--output",
            "json",
        ],
    ] {
        let run = regmirror_isolated(&args, &[]).await;
        assert_ne!(run.code, 0, "{args:?}");
        assert!(!run.stderr.trim().is_empty(), "{args:?}");
        for line in run.stderr.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{args:?}: stderr line is not JSON ({e}): {line}"));
            assert!(v["level"].is_string(), "{line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_or_https_flag_means_https_for_a_loopback_host() {
    let reg = TestRegistry::start(RegistryOptions::anonymous().with_tls()).await;
    let set = ImageSet::multi_arch("tls", &["linux/amd64"], false, Format::Oci);
    push(&reg, "team/app", "v1", set.to_node()).await.unwrap();
    let host = reg.host();
    let repo = format!("{host}/team/app");
    let ca = format!("{host}={}", reg.ca_pem_path().unwrap().display());
    let run = regmirror_isolated(&["tags", "--ca-file", &ca, &repo], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "v1");
    // --https without the CA: HTTPS is spoken, and the certificate refused.
    let run = regmirror_isolated(&["tags", "--https", &host, &repo], &[]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("TLS") && run.stderr.contains("ca_file"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platforms_are_found_inside_nested_indexes() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let inner = ImageSet::multi_arch("nested", &["linux/amd64", "linux/arm64"], true, Format::Oci);
    let s390x = ImageSet::image("nested", "linux/s390x", Format::Oci);
    let outer = IndexBuilder::new(Format::Oci)
        .nested(inner.clone())
        .image(s390x.clone())
        .build();
    push(&src, "team/nested", "v1", outer.to_node())
        .await
        .unwrap();
    let (s, d) = (src.host(), dst.host());
    let source = format!("{s}/team/nested:v1");
    let arm = inner.image_for("linux/arm64").unwrap();

    // inspect --platform walks into the nested index.
    let run = regmirror_isolated(
        &["inspect", "--raw", "--platform", "linux/arm64", &source],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        common::sha256_digest(run.stdout.as_bytes()),
        arm.manifest.digest
    );
    let run = regmirror_isolated(&["inspect", "--platform", "linux/s390x", &source], &[]).await;
    assert!(
        run.stdout.contains(&s390x.manifest.digest),
        "{}",
        run.stdout
    );
    let run = regmirror_isolated(&["inspect", "--platform", "windows/amd64", &source], &[]).await;
    // Found after the registry answered: exit 1 (README, "Exit codes").
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("linux/s390x") && run.stderr.contains("linux/arm64"),
        "{}",
        run.stderr
    );

    // The copy keeps arm64 from inside the nested index (and its attestation).
    let target = format!("{d}/mirror/nested:v1");
    let run = regmirror_isolated(
        &[
            "import",
            "--platform",
            "linux/arm64",
            "--output",
            "json",
            &source,
            &target,
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        doc["images"][0]["platforms_kept"],
        serde_json::json!(["linux/arm64"]),
        "{doc}"
    );
    let got = skopeo_raw_digest(&dst, "mirror/nested:v1").await.unwrap();
    assert_eq!(got, doc["images"][0]["target_digest"].as_str().unwrap());
    // What the target serves: one nested index entry, which lists arm64 and its attestation only.
    let run = regmirror_isolated(&["inspect", "--json", &target], &[]).await;
    let top: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let entries = top["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{top:#}");
    let nested_ref = format!(
        "{d}/mirror/nested@{}",
        entries[0]["digest"].as_str().unwrap()
    );
    let run = regmirror_isolated(&["inspect", "--json", &nested_ref], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let nested: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let digests: Vec<&str> = nested["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests.len(), 2, "{nested:#}");
    assert_eq!(digests[0], arm.manifest.digest);
    let run = regmirror_isolated(
        &["inspect", "--raw", "--platform", "linux/arm64", &target],
        &[],
    )
    .await;
    assert_eq!(
        common::sha256_digest(run.stdout.as_bytes()),
        arm.manifest.digest
    );
    // skopeo (which cannot copy nested indexes) finds every manifest the
    // filtered tree references at the target, with the right digests.
    for digest in [
        entries[0]["digest"].as_str().unwrap(),
        digests[0],
        digests[1],
    ] {
        let got = skopeo_raw_digest(&dst, &format!("mirror/nested@{digest}"))
            .await
            .unwrap_or_else(|e| panic!("{digest} missing at the target: {e}"));
        assert_eq!(got, digest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinner_shows_while_the_copy_is_planned() {
    // A source that takes 2 s per answer (as under requests_per_second),
    // served by a fake since a real registry cannot be slowed down.
    let router = Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        (
            StatusCode::NOT_FOUND,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#,
        )
            .into_response()
    });
    let fake = FakeServer::start(router).await;
    let cmd = format!(
        "{} import {}/team/app:v1 127.0.0.1:1/mirror/app",
        env!("CARGO_BIN_EXE_regmirror"),
        fake.host()
    );
    let out = tokio::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("util-linux `script` runs (CI installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("planning") && text.contains("reading manifests"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_listen_address_is_said_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mirror.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"{addr}\"\n\n[[mirror]]\nsource = \"127.0.0.1:1/a:v1\"\ntarget = \"127.0.0.1:1/b\"\nschedule = \"0 0 1 1 *\"\n"
        ),
    )
    .unwrap();
    let run = regmirror_isolated(&["serve", "--config", cfg.to_str().unwrap()], &[]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(line.contains(&addr.to_string()), "{}", run.stderr);
    assert_eq!(line.matches("in use").count(), 1, "{line}");
    drop(taken);
}
