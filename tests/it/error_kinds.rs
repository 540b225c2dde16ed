//! Failures carry their kind up to the report and the metrics: `import
//! --output json` says `auth-refused`, `not-found`, `rate-limited`,
//! `timeout` or `integrity` for a 401, a 404, a 429, a stalled registry and
//! a corrupted blob; and a fresh `serve` exposes every counter family that
//! docs/metrics.md lists, at zero for its configured mirrors and hosts,
//! before those events happen, then counts a failure by its kind.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::serve::{Daemon, free_port};
use common::{
    Fault, FaultPlan, Format, ImageSet, RegistryOptions, TestProxy, TestRegistry, Trigger, push,
    regmirror_isolated,
};
use serde_json::Value;

/// `import --output json source target` (extra arguments first): the kind
/// of its one image, checked to be a failure.
async fn import_kind(source: &str, target: &str, extra: &[&str]) -> String {
    let mut args = vec!["import", "--output", "json"];
    args.extend_from_slice(extra);
    args.extend([source, target]);
    let run = regmirror_isolated(&args, &[]).await;
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}\n{}", run.stdout, run.stderr));
    let image = &v["images"][0];
    assert_eq!(image["result"], "failed", "{args:?}: {v:#}");
    assert_ne!(run.code, 0, "{args:?}");
    image["error_kind"]
        .as_str()
        .unwrap_or_else(|| panic!("{args:?}: no error_kind: {v:#}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_the_kind_of_each_failure() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let locked = TestRegistry::start(RegistryOptions::htpasswd("u", "p")).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("kinds", &["linux/amd64", "linux/arm64"], false, Format::Oci);
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    let d = dst.host();

    // 401: a registry that wants credentials, none given.
    let kind = import_kind(&format!("{}/team/app:v1", locked.host()), &d, &[]).await;
    assert_eq!(kind, "auth-refused");

    // 404: no such tag.
    let kind = import_kind(&format!("{}/team/app:nope", src.host()), &d, &[]).await;
    assert_eq!(kind, "not-found");

    // 429 on every manifest request, with `Retry-After: 0` so that the
    // retries run out at once.
    let limited = TestProxy::start(
        &src.base_url(),
        FaultPlan::none().rule(
            None,
            "/manifests/",
            Trigger::Always,
            Fault::TooManyRequests {
                retry_after_secs: 0,
            },
        ),
    )
    .await;
    let kind = import_kind(&format!("{}/team/app:v1", limited.host()), &d, &[]).await;
    assert_eq!(kind, "rate-limited");

    // A registry that stalls past the deadline.
    let slow = TestProxy::start(
        &src.base_url(),
        FaultPlan::none().rule(
            None,
            "/manifests/",
            Trigger::Always,
            Fault::Stall(Duration::from_secs(20)),
        ),
    )
    .await;
    let started = Instant::now();
    let kind = import_kind(
        &format!("{}/team/app:v1", slow.host()),
        &d,
        &["--timeout", "1s"],
    )
    .await;
    assert_eq!(kind, "timeout");
    assert!(started.elapsed() < Duration::from_secs(20));

    // Blob bytes that do not match their digest.
    let corrupt = TestProxy::start(
        &src.base_url(),
        FaultPlan::none().always("GET", "/blobs/sha256:", Fault::CorruptBody),
    )
    .await;
    let kind = import_kind(&format!("{}/team/app:v1", corrupt.host()), &d, &[]).await;
    assert_eq!(kind, "integrity");
}

/// The registry layer's messages name only its own `[[registry]]` keys; the
/// command line adds the hint that names its flag, and only for a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_names_the_command_flag_and_other_failures_do_not() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::multi_arch("hint", &["linux/amd64"], false, Format::Oci);
    push(&src, "team/app", "v1", set.to_node()).await.unwrap();
    let slow = TestProxy::start(
        &src.base_url(),
        FaultPlan::none().rule(
            None,
            "/manifests/",
            Trigger::Always,
            Fault::Stall(Duration::from_secs(20)),
        ),
    )
    .await;
    let reference = format!("{}/team/app:v1", slow.host());
    let run = regmirror_isolated(&["inspect", "--timeout", "1s", &reference], &[]).await;
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("raise timeout_seconds"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint: --timeout DURATION"),
        "{}",
        run.stderr
    );

    let missing = format!("{}/team/absent:v1", src.host());
    let run = regmirror_isolated(&["inspect", &missing], &[]).await;
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("hint: --timeout"), "{}", run.stderr);
}

/// (name, type, label names) of every `regmirror_*` family in the table
/// of docs/metrics.md.
fn documented_families() -> Vec<(String, String, Vec<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| l.starts_with("| `regmirror_"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let name = cells[0]
                .trim_start_matches("| ")
                .trim_matches('`')
                .to_string();
            let labels = cells[2]
                .split(',')
                .filter_map(|c| c.trim().strip_prefix('`'))
                .filter_map(|c| c.split('`').next())
                .map(str::to_string)
                .collect();
            (name, cells[1].to_string(), labels)
        })
        .collect()
}

/// Sample lines of family `name` (a histogram's through its `_count`).
fn samples<'a>(text: &'a str, name: &str, kind: &str) -> Vec<&'a str> {
    let name = if kind == "histogram" {
        format!("{name}_count")
    } else {
        name.to_string()
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&name) && l[name.len()..].starts_with(['{', ' ']))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_serve_exposes_every_documented_counter_then_counts_failures_by_kind() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    let set = ImageSet::image("serve-kinds", "linux/amd64", Format::Oci);
    push(&src, "team/app", "v1", common::Node::Image(set))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("mirror.toml");
    // Slots once a year: nothing runs but the one run at start. The sink
    // (told of nothing: mirror present does not fail) gives the
    // notification counter its series.
    let (s, d) = (src.host(), dst.host());
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[mirror]]\nname = \"present\"\nsource = \"{s}/team/app:v1\"\ntarget = \"{d}/mirror/app\"\nschedule = \"0 0 0 1 1 *\"\n\n\
             [[mirror]]\nname = \"missing\"\nsource = \"{s}/team/gone:v1\"\ntarget = \"{d}/mirror/gone\"\nschedule = \"0 0 0 1 1 *\"\n\n\
             [[notify]]\nname = \"ops\"\nurl = \"http://127.0.0.1:1/\"\non = \"on_failure\"\nmirrors = [\"present\"]\n"
        ),
    )
    .unwrap();
    let daemon = Daemon::start_quiet(&config, dir.path(), port);
    let m = daemon
        .wait_for_answer("/metrics", "/metrics", |status, _| status == 200)
        .await;

    let families = documented_families();
    assert!(families.len() > 20, "{families:?}");
    for (name, kind, labels) in &families {
        if kind != "counter" && kind != "histogram" {
            continue;
        }
        let lines = samples(&m, name, kind);
        assert!(!lines.is_empty(), "{name} missing from a fresh serve:\n{m}");
        for mirror in ["present", "missing"] {
            let label = format!("mirror=\"{mirror}\"");
            if labels.iter().any(|l| l == "mirror") {
                assert!(
                    lines.iter().any(|l| l.contains(&label)),
                    "{name} lacks {label}:\n{m}"
                );
            }
        }
        for label in ["host", "registry"] {
            let series = format!("{label}=\"{s}\"");
            if labels.iter().any(|l| l == label) {
                assert!(
                    lines.iter().any(|l| l.contains(&series)),
                    "{name} lacks {series}:\n{m}"
                );
            }
        }
    }

    // The first runs end; the missing source counts as a not-found failure.
    daemon
        .wait_for_answer("every first run", "/metrics", |status, body| {
            status == 200 && body.lines().any(|l| l == "regmirror_first_runs_complete 1")
        })
        .await;
    let m = daemon.get("/metrics").await.unwrap().1;
    assert!(
        m.contains("regmirror_image_failures_total{kind=\"not-found\",mirror=\"missing\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("regmirror_image_failures_total{kind=\"not-found\",mirror=\"present\"} 0"),
        "{m}"
    );
}
