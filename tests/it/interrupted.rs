//! Interrupted `sync` runs through the binary: a mirror whose images were
//! cancelled by a signal is `interrupted`, never `success`, and a second
//! signal still reports the images finished before it.

use crate::common;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::{
    FakeServer, Format, ImageSet, RegistryOptions, TestRegistry, push, regmirror_signalled,
};
use serde_json::Value;

/// A registry that counts every request and answers 404 after `delay`.
async fn slow_server(delay: Duration) -> (FakeServer, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let router = Router::new().fallback(move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            (
                StatusCode::NOT_FOUND,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#,
            )
                .into_response()
        }
    });
    (FakeServer::start(router).await, hits)
}

/// A config of two mirrors, one image at a time: `fast` (one tag of `src`)
/// and `slow` (three tags of `slow`).
fn config(dir: &std::path::Path, src: &str, slow: &str, dst: &str) -> String {
    let cfg = dir.join("mirror.toml");
    std::fs::write(
        &cfg,
        format!(
            "[defaults]\nconcurrency = 1\n\n\
             [[mirror]]\nname = \"fast\"\nsource = \"{src}/team/fast:v1\"\ntarget = \"{dst}/mirror/fast\"\n\n\
             [[mirror]]\nname = \"slow\"\nsource = \"{slow}/team/slow\"\ntags = [\"v1\", \"v2\", \"v3\"]\n\
             target = \"{dst}/mirror/slow\"\n"
        ),
    )
    .unwrap();
    cfg.to_str().unwrap().to_string()
}

/// The report on stdout, checked against docs/report.schema.json.
fn json(stdout: &str, stderr: &str) -> Value {
    let doc: Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}\n{stderr}"));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
    doc
}

fn mirror<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no mirror {name}: {doc}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_with_cancelled_images_is_interrupted_in_report_and_summary() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("interrupt", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/fast", "v1", set.to_node()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for output in ["json", "text"] {
        let (slow, hits) = slow_server(Duration::from_secs(2)).await;
        let cfg = config(dir.path(), &src.host(), &slow.host(), &dst.host());
        let args = ["sync", "--config", &cfg, "--output", output];
        let run = regmirror_signalled(&args, &[], libc::SIGINT, Duration::from_secs(30), || {
            hits.load(Ordering::SeqCst) > 0
        })
        .await;
        assert_eq!(run.code, 130, "{}\n{}", run.stdout, run.stderr);
        if output == "json" {
            let doc = json(&run.stdout, &run.stderr);
            assert_eq!(doc["result"], "interrupted", "{doc}");
            let slow = mirror(&doc, "slow");
            assert_eq!(slow["result"], "interrupted", "{doc}");
            let cancelled = doc["images"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["mirror"] == "slow" && i["result"] == "cancelled")
                .count();
            assert!(cancelled >= 1, "{doc}");
        } else {
            assert!(
                run.stdout.contains("mirror slow: interrupted"),
                "{}\n{}",
                run.stdout,
                run.stderr
            );
            assert!(
                !run.stdout.contains("mirror slow: success"),
                "{}",
                run.stdout
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_still_reports_the_images_written() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("twice", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/fast", "v1", set.to_node()).await.unwrap();
    let (slow, hits) = slow_server(Duration::from_secs(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &src.host(), &slow.host(), &dst.host());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["sync", "--config", &cfg, "--output", "json"])
        .env_remove("RUST_LOG")
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning the regmirror binary");
    let pid = child.id().expect("the child's pid") as i32;
    let start = Instant::now();
    // The fast mirror's tag is written (tags last) and the slow one hangs.
    while hits.load(Ordering::SeqCst) == 0
        || dst.access_log_count("PUT", "/v2/mirror/fast/manifests/v1") == 0
    {
        assert!(start.elapsed() < Duration::from_secs(60), "never got ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..2 {
        // SAFETY: kill(2) on the pid of a child spawned here and not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(child.stdin.take());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("regmirror did not exit within 30 s of the second signal")
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(stderr.contains("interrupted twice"), "{stderr}");
    let doc = json(&stdout, &stderr);
    assert_eq!(doc["result"], "interrupted", "{doc}");
    assert_eq!(doc["totals"]["copied"], 1, "{doc}");
    let copied: Vec<_> = doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["mirror"] == "fast" && i["result"] == "copied")
        .collect();
    assert_eq!(copied.len(), 1, "{doc}");
    assert_eq!(mirror(&doc, "slow")["result"], "interrupted", "{doc}");
}

/// A registry that answers every request 503 with `Retry-After: 30`.
async fn unavailable_server() -> (FakeServer, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let router = Router::new().fallback(move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "30")],
                r#"{"errors":[{"code":"UNAVAILABLE","message":"down for maintenance"}]}"#,
            )
                .into_response()
        }
    });
    (FakeServer::start(router).await, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_a_retry_wait_ends_the_run_at_once() {
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let (down, hits) = unavailable_server().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mirror.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mirror]]\nname = \"down\"\nsource = \"{}/team/app:v1\"\ntarget = \"{}/mirror/app\"\n",
            down.host(),
            dst.host()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let args = ["sync", "--config", cfg, "--output", "json"];
    let waiting = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let run = regmirror_signalled(&args, &[], libc::SIGTERM, Duration::from_secs(30), || {
        // Signal half a second into the first 30 s retry wait.
        let mut w = waiting.lock().unwrap();
        if hits.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let since = *w.get_or_insert_with(Instant::now);
        since.elapsed() > Duration::from_millis(500)
    })
    .await;
    let signalled = waiting.lock().unwrap().expect("signalled");
    let after = signalled.elapsed();
    assert!(
        after < Duration::from_secs(10),
        "exited {after:?} after the signal, in a 30 s retry wait\n{}",
        run.stderr
    );
    assert_eq!(run.code, 130, "{}\n{}", run.stdout, run.stderr);
    let doc = json(&run.stdout, &run.stderr);
    assert_eq!(doc["result"], "interrupted", "{doc}");
}
