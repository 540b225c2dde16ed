//! `[[registry]] max_bytes_per_second` through the binary against real
//! registries (Debian's `docker-registry`): a `sync` of an image with a
//! 8 MiB layer from a source capped at 1 MiB/s reads the layer at the cap,
//! within 10%, and the waits show in `regmirror_bandwidth_wait_seconds_total`.
//!
//! The rate is measured at the target registry: the layer is streamed from
//! the source's GET into the target's upload as it is read, so the upload
//! request lasts as long as the paced read (its `http.response.duration`
//! in the target's log). The source's own log cannot show it: its answer
//! fits in the loopback socket buffers and completes at once.
//!
//! The rate is bytes over time, which is the feature here (not a
//! performance figure). The cap is low (1 MiB/s) so that a debug build on
//! a busy machine still reads faster than it uncapped.

use crate::common;

use std::path::Path;

use common::{Format, ImageBuilder, RegistryOptions, TestRegistry, push};

const LAYER: usize = 8 << 20;
const CAP: u64 = 1 << 20;

/// `sync --config CONFIG --metrics-file METRICS` without the run-state store.
async fn sync(config: &Path, metrics: &Path) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args([
            "sync",
            "--config",
            config.to_str().unwrap(),
            "--metrics-file",
        ])
        .arg(metrics)
        .env("REGMIRROR_NO_STATE", "1")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sync failed:\n{stderr}");
}

/// The value of `regmirror_bandwidth_wait_seconds_total{registry="host"}`,
/// if the file has that series.
fn waited(metrics: &Path, host: &str) -> Option<f64> {
    let text = std::fs::read_to_string(metrics).unwrap();
    let prefix = format!("regmirror_bandwidth_wait_seconds_total{{registry=\"{host}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
}

/// Seconds of a Go duration as the registry logs it (`4.01s`, `812.3ms`, `1m2.5s`).
fn go_seconds(d: &str) -> f64 {
    let (minutes, rest) = d
        .split_once('m')
        .filter(|(_, r)| !r.is_empty() && !r.starts_with('s'))
        .map_or((0.0, d), |(m, r)| (m.parse().unwrap(), r));
    let secs = if let Some(v) = rest.strip_suffix("ms") {
        v.parse::<f64>().unwrap() / 1e3
    } else if let Some(v) = rest.strip_suffix("µs") {
        v.parse::<f64>().unwrap() / 1e6
    } else {
        rest.strip_suffix('s').unwrap().parse().unwrap()
    };
    minutes * 60.0 + secs
}

/// Seconds of the longest blob upload request (the PUT or PATCH carrying
/// the bytes) in a registry's `log`.
fn longest_upload(log: &str) -> f64 {
    log.lines()
        .filter(|l| l.contains("/blobs/uploads/") && l.contains("http.response.duration="))
        .filter(|l| {
            l.contains("http.request.method=PUT") || l.contains("http.request.method=PATCH")
        })
        .filter_map(|l| {
            let d = l
                .split_whitespace()
                .find_map(|f| f.strip_prefix("http.response.duration="))?;
            Some(go_seconds(d))
        })
        .max_by(f64::total_cmp)
        .unwrap_or_else(|| panic!("no blob upload in the target's log:\n{log}"))
}

#[test]
fn go_durations_read() {
    assert_eq!(go_seconds("4.5s"), 4.5);
    assert_eq!(go_seconds("250ms"), 0.25);
    assert_eq!(go_seconds("1m2.5s"), 62.5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_capped_source_is_read_at_its_max_bytes_per_second() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let img = ImageBuilder::new(Format::Oci)
        .platform("linux/amd64")
        .random_layer("bandwidth", LAYER)
        .build();
    push(&src, "team/app", "1.0", img).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("capped.toml");
    std::fs::write(
        &config,
        format!(
            "[[registry]]\nhost = \"{s}\"\nmax_bytes_per_second = {CAP}\n\n\
             [[mirror]]\nsource = \"{s}/team/app:1.0\"\ntarget = \"{d}/mirror/app\"\n",
            s = src.host(),
            d = dst.host()
        ),
    )
    .unwrap();
    let metrics = dir.path().join("capped.prom");
    sync(&config, &metrics).await;
    // The access log is written after the response.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let seconds = longest_upload(&dst.log());
    let rate = LAYER as f64 / seconds;
    let cap = CAP as f64;
    eprintln!("capped upload: {LAYER} bytes in {seconds:.2} s, {rate:.0} B/s, cap {cap} B/s");
    assert!(
        (0.9 * cap..=1.1 * cap).contains(&rate),
        "the target received the layer at {rate:.0} B/s ({LAYER} bytes in {seconds:.2} s), cap {cap} B/s"
    );
    let wait = waited(&metrics, &src.host()).expect("the capped registry's wait series");
    assert!(
        wait > 0.5 * LAYER as f64 / cap,
        "waited only {wait:.2} s for the cap"
    );
}

#[tokio::test]
async fn a_cap_below_64_kib_per_second_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[[registry]]\nhost = \"127.0.0.1:5000\"\nmax_bytes_per_second = 1000\n\n\
         [[mirror]]\nsource = \"127.0.0.1:5000/a:1\"\ntarget = \"127.0.0.1:5001/a\"\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"))
        .args(["check", "--no-credentials", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("max_bytes_per_second") && stderr.contains("65536"),
        "{stderr}"
    );
}
