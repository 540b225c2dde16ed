//! `regmirror serve` as a child process for the integration tests: start it
//! on a free loopback port, read its endpoints and log, signal it and wait
//! for it; plus a reader for one sample of a text exposition.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `regmirror serve`, killed on drop.
pub struct Daemon {
    pub child: tokio::process::Child,
    pub port: u16,
    pub stderr_path: PathBuf,
    pub http: reqwest::Client,
}

impl Daemon {
    /// `serve --config CONFIG` logging at debug level, its log in `DIR/serve.log`.
    pub fn start(config: &Path, dir: &Path, port: u16) -> Daemon {
        Daemon::start_with(config, dir, port, &[])
    }

    /// [`Daemon::start`] with extra arguments.
    pub fn start_with(config: &Path, dir: &Path, port: u16, extra: &[&str]) -> Daemon {
        let mut args = vec!["--log-level", "regmirror=debug,info"];
        args.extend_from_slice(extra);
        Daemon::spawn(config, dir, port, &args, false)
    }

    /// `serve --config CONFIG` at the default log level (`RUST_LOG` unset).
    pub fn start_quiet(config: &Path, dir: &Path, port: u16) -> Daemon {
        Daemon::spawn(config, dir, port, &[], true)
    }

    fn spawn(config: &Path, dir: &Path, port: u16, extra: &[&str], quiet: bool) -> Daemon {
        let stderr_path = dir.join("serve.log");
        let log = std::fs::File::create(&stderr_path).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_regmirror"));
        cmd.args(["serve", "--config", config.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        if quiet {
            cmd.env_remove("RUST_LOG");
        }
        let child = cmd.spawn().expect("spawning regmirror serve");
        Daemon {
            child,
            port,
            stderr_path,
            http: super::http_client(None),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("daemon still running")
    }

    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// GET `path`: status and body, `None` when no answer came.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = self
            .http
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.unwrap_or_default()))
    }

    /// The `/metrics` text (asserted to answer 200).
    pub async fn metrics(&self) -> String {
        let (status, body) = self
            .get("/metrics")
            .await
            .expect("metrics endpoint answers");
        assert_eq!(status, 200);
        body
    }

    /// Poll `check` every 200 ms until it holds; panic with the log after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl AsyncFnMut() -> bool,
    ) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("timed out waiting for {what}; daemon log:\n{}", self.log());
    }

    /// Poll GET `path` every 100 ms until `check(status, body)` holds (at
    /// most 30 s): that body.
    pub async fn wait_for_answer(
        &self,
        what: &str,
        path: &str,
        check: impl Fn(u16, &str) -> bool,
    ) -> String {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Some((status, body)) = self.get(path).await
                && check(status, &body)
            {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}; daemon log:\n{}", self.log());
    }

    /// Wait for the exit code, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> i32 {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.unwrap().code().expect("exit code"),
            Err(_) => panic!(
                "daemon did not exit within {timeout:?}; log:\n{}",
                self.log()
            ),
        }
    }
}

/// The value of the sample `name{labels...}` in a text exposition.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
