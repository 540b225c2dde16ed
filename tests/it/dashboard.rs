//! The Grafana dashboard (`deploy/grafana/regmirror.json`) against a real
//! Prometheus (Debian's `prometheus` package, on loopback) scraping a real
//! `serve`: every query of every panel is evaluated through `/api/v1/query`
//! and must succeed, and every panel must return data.

use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::serve::free_port;
use common::{Format, ImageSet, Node, RegistryOptions, TestRegistry, push};

/// The `prometheus` binary: `REGMIRROR_PROMETHEUS`, else the one on `PATH`.
pub(crate) fn prometheus_bin() -> String {
    std::env::var("REGMIRROR_PROMETHEUS").unwrap_or_else(|_| "prometheus".to_string())
}

pub(crate) fn spawn(program: &str, args: &[&str], log: &Path) -> tokio::process::Child {
    let log = std::fs::File::create(log).unwrap();
    tokio::process::Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {program}: {e} (install Debian's prometheus package, or set REGMIRROR_PROMETHEUS)")
        })
}

/// Every (panel title, expression) of the dashboard, with Grafana's range
/// variables replaced by a window that holds several 1 s scrapes.
fn queries() -> Vec<(String, Vec<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/regmirror.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dash["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    panels
        .iter()
        .map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            let exprs = p["targets"]
                .as_array()
                .unwrap_or_else(|| panic!("panel {title} has no targets"))
                .iter()
                .map(|t| {
                    t["expr"]
                        .as_str()
                        .unwrap()
                        .replace("$__rate_interval", "30s")
                        .replace("$__range", "5m")
                })
                .collect();
            (title, exprs)
        })
        .collect()
}

/// `s` percent-encoded for a form body.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The result series of `expr` at Prometheus `prom` (an error if the query fails).
pub(crate) async fn query(http: &reqwest::Client, prom: &str, expr: &str) -> Result<usize, String> {
    let r = http
        .post(format!("http://{prom}/api/v1/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("query={}", urlencode(expr)))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let text = r.text().await.map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if v["status"] != "success" {
        return Err(v.to_string());
    }
    Ok(v["data"]["result"].as_array().map_or(0, Vec::len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_returns_data_from_a_real_prometheus_scraping_serve() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    push(
        &src,
        "team/app",
        "1.0",
        Node::Image(ImageSet::image("app", "linux/amd64", Format::Oci)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("mirror.toml");
    // A sink nobody listens at: its notifications fail, and the
    // notifications panel has its series (zero until the first run ends).
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[mirror]]\nname = \"app\"\nsource = \"{}/team/app\"\ntarget = \"{}/mirror/app\"\nschedule = \"*/2 * * * * *\"\naudit_schedule = \"*/2 * * * * *\"\n\n\
             [[notify]]\nname = \"ops\"\nurl = \"http://127.0.0.1:{}/hook\"\n",
            src.host(),
            dst.host(),
            free_port()
        ),
    )
    .unwrap();
    let _serve = spawn(
        env!("CARGO_BIN_EXE_regmirror"),
        &["serve", "--config", config.to_str().unwrap()],
        &dir.path().join("serve.log"),
    );

    let prom_port = free_port();
    let prom = format!("127.0.0.1:{prom_port}");
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: regmirror\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("tsdb");
    let _prometheus = spawn(
        &prometheus_bin(),
        &[
            &format!("--config.file={}", prom_config.display()),
            &format!("--storage.tsdb.path={}", data.display()),
            &format!("--web.listen-address={prom}"),
        ],
        &dir.path().join("prometheus.log"),
    );

    let http = common::http_client(None);
    let panels = queries();
    // Wait until a success and a few scrapes after it are stored, then
    // every panel must have data.
    let start = Instant::now();
    let mut missing: Vec<String>;
    loop {
        missing = Vec::new();
        for (title, exprs) in &panels {
            let mut any = false;
            for e in exprs {
                match query(&http, &prom, e).await {
                    Ok(n) => any |= n > 0,
                    Err(err) if start.elapsed() > Duration::from_secs(5) => {
                        missing.push(format!("{title}: {e}: {err}"));
                    }
                    Err(_) => {}
                }
            }
            if !any {
                missing.push(format!("{title}: no data"));
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "panels without data after 45 s: {missing:#?}\nserve log:\n{}\nprometheus log:\n{}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every expression evaluates (some, like the pull budget's remaining
    // allowance, only have data once a registry announced a limit).
    for (title, exprs) in &panels {
        for e in exprs {
            query(&http, &prom, e)
                .await
                .unwrap_or_else(|err| panic!("{title}: {e}: {err}"));
        }
    }
}

#[test]
fn the_helm_chart_ships_the_same_dashboard() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
    assert_eq!(
        read("grafana/regmirror.json"),
        read("helm/regmirror/files/grafana-dashboard.json"),
        "copy deploy/grafana/regmirror.json to deploy/helm/regmirror/files/grafana-dashboard.json"
    );
}

/// The `prometheus-pushgateway` binary: `REGMIRROR_PUSHGATEWAY`, else the one on `PATH`.
fn pushgateway_bin() -> String {
    std::env::var("REGMIRROR_PUSHGATEWAY").unwrap_or_else(|_| "prometheus-pushgateway".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_job_pushes_its_metrics_to_a_real_pushgateway_and_writes_a_textfile() {
    let src = TestRegistry::start(RegistryOptions::anonymous()).await;
    let dst = TestRegistry::start(RegistryOptions::anonymous()).await;
    push(
        &src,
        "team/app",
        "1.0",
        Node::Image(ImageSet::image("job", "linux/amd64", Format::Oci)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pg = format!("127.0.0.1:{}", free_port());
    let _pushgateway = spawn(
        &pushgateway_bin(),
        &[&format!("--web.listen-address={pg}")],
        &dir.path().join("pushgateway.log"),
    );
    let http = common::http_client(None);
    let start = Instant::now();
    while http
        .get(format!("http://{pg}/-/ready"))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the Pushgateway never got ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let config = dir.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            "[[mirror]]\nname = \"nightly\"\nsource = \"{}/team/app:1.0\"\ntarget = \"{}/mirror/app\"\n",
            src.host(),
            dst.host()
        ),
    )
    .unwrap();
    let textfile = dir.path().join("regmirror.prom");
    let run = common::regmirror_isolated(
        &[
            "sync",
            "--config",
            config.to_str().unwrap(),
            "--pushgateway",
            &format!("http://{pg}"),
            "--metrics-file",
            textfile.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("cannot push"), "{}", run.stderr);
    let pushed = http
        .get(format!("http://{pg}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let success = pushed.lines().find(|l| {
        l.starts_with("regmirror_sync_runs_total{")
            && l.contains("job=\"regmirror\"")
            && l.contains("mirror=\"nightly\"")
            && l.contains("result=\"success\"")
    });
    assert_eq!(
        success.and_then(|l| l.rsplit(' ').next()),
        Some("1"),
        "pushed:\n{pushed}"
    );
    assert!(
        pushed.contains("push_time_seconds{") && pushed.contains("regmirror_images_total{"),
        "{pushed}"
    );
    let text = std::fs::read_to_string(&textfile).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("regmirror_sync_runs_total{")
                && l.contains("nightly")
                && l.contains("success")
                && l.ends_with(" 1")),
        "{text}"
    );
}
