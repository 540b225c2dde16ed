//! Metrics of a one-shot `sync` (a Kubernetes Job or CronJob), which no
//! Prometheus scrapes: written at the end of the run to a file for
//! node-exporter's textfile collector (`--metrics-file`) and/or pushed to a
//! Prometheus Pushgateway (`--pushgateway`).
//!
//! Both carry the whole exposition of the run, as `serve` would show it on
//! `/metrics`. A push replaces the group `job="regmirror"` (or the group the
//! URL names), so the last run's values are what Prometheus sees; the
//! Pushgateway adds `push_time_seconds`, the time of that last push.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the metrics of a run go (both optional).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JobMetricsArgs {
    /// Write the run's metrics (Prometheus text format) to FILE at the end
    /// (atomically: a temporary file in the same directory, then a rename),
    /// e.g. for node-exporter's textfile collector.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Push the run's metrics to this Prometheus Pushgateway at the end
    /// (HTTP PUT; http://HOST:9091 pushes to the group job="regmirror", or
    /// give the group's own URL, .../metrics/job/NAME[/LABEL/VALUE...]).
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
}

impl JobMetricsArgs {
    /// True when the run's metrics go anywhere.
    pub fn wanted(&self) -> bool {
        self.metrics_file.is_some() || self.pushgateway.is_some()
    }

    /// Zero the counters of `mirrors`, so every series an alert watches is
    /// in the export even for events that did not happen.
    pub fn prepare(&self, mirrors: &[regmirror::sync::Mirror]) {
        if self.wanted() {
            regmirror::metrics::zero(&regmirror::metrics::Scope {
                mirrors: mirrors.iter().map(|m| m.name.clone()).collect(),
                targets: mirrors
                    .iter()
                    .flat_map(|m| {
                        m.targets()
                            .filter(|t| !t.is_layout())
                            .map(|t| (m.name.clone(), t.to_string()))
                    })
                    .collect(),
                ..Default::default()
            });
        }
    }

    /// Export the metrics as asked; a failure is a warning (the run's own
    /// result and exit code stand).
    pub async fn export(&self) {
        let text = regmirror::metrics::render();
        if let Some(path) = &self.metrics_file
            && let Err(e) = write_file(path, &text)
        {
            super::out::warn(&format!(
                "cannot write the run's metrics to {}: {e}; check that the directory exists and is writable",
                path.display()
            ));
        }
        if let Some(url) = &self.pushgateway
            && let Err(e) = push(url, text).await
        {
            super::out::warn(&format!(
                "cannot push the run's metrics to the Pushgateway at {}: {e}",
                without_userinfo(url)
            ));
        }
    }
}

/// Write `text` to `path` through a new temporary file in its directory
/// (created exclusively, never through a planted link) and a rename.
fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".regmirror-metrics.")
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The group URL of `url`: `.../metrics/job/regmirror` unless it names one.
fn group_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.contains("/metrics/job/") {
        url.to_string()
    } else {
        format!("{url}/metrics/job/regmirror")
    }
}

/// `url` as it may be shown: no user name or password.
fn without_userinfo(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(an unparseable URL)".to_string(),
    }
}

/// PUT `text` to the Pushgateway group of `url`.
async fn push(url: &str, text: String) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = http
        .put(group_url(url))
        .header("content-type", "text/plain; version=0.0.4")
        .body(text)
        .send()
        .await
        .map_err(|e| format!("no answer ({e})"))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    Err(format!(
        "HTTP {status}: {}",
        regmirror::registry::escape::shown(body.chars().take(300).collect::<String>().trim())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_defaults_to_job_regmirror() {
        assert_eq!(
            group_url("http://pg:9091"),
            "http://pg:9091/metrics/job/regmirror"
        );
        assert_eq!(
            group_url("http://pg:9091/"),
            "http://pg:9091/metrics/job/regmirror"
        );
        assert_eq!(
            group_url("http://pg:9091/metrics/job/nightly/shard/0"),
            "http://pg:9091/metrics/job/nightly/shard/0"
        );
    }

    #[test]
    fn a_shown_url_has_no_credentials() {
        let shown = without_userinfo("https://u:secret@pg.example:9091/");
        assert!(
            !shown.contains("secret") && !shown.contains("u@"),
            "{shown}"
        );
        assert!(shown.contains("pg.example:9091"), "{shown}");
    }

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("regmirror.prom");
        std::fs::write(&path, "old").unwrap();
        write_file(&path, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
