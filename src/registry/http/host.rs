//! One registry host: its connection (TLS, client certificates), request
//! pacing and concurrency cap, URL checks, and the state the rest of the
//! stack keeps per host (token cache, retry policy, limits, pull budget).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Semaphore};
use url::Url;

use super::auth::AuthState;
use super::connect::own_client;
use super::credentials::LiveCredentials;
use super::origin::classify;
use crate::registry::config::{RegistryConfig, TlsMode};
use crate::registry::error::{Error, Op, Result};
use crate::registry::limits::Limits;
use crate::registry::reference::api_host;
use crate::registry::transport::RetryPolicy;

const DEFAULT_MAX_CONCURRENT: usize = 32;

/// State for one registry host.
pub(crate) struct Host {
    /// Registry name as in references.
    pub name: String,
    pub base: Url,
    pub(super) http: reqwest::Client,
    pub(super) limit: Semaphore,
    pub(super) rate: Option<std::sync::Mutex<(Instant, Duration)>>,
    pub(super) credentials: LiveCredentials,
    pub(super) auth: Mutex<AuthState>,
    pub(super) retry: RetryPolicy,
    /// The `[[registry]]` upload settings (overrides of the profile).
    pub uploads: crate::registry::config::UploadSettings,
    /// Caps and deadlines of this registry.
    pub limits: Limits,
    /// The pull allowance of this registry and credential.
    pub pulls: super::pulls::PullBudget,
    /// `Warning` texts of this registry already logged.
    pub(super) warnings: crate::registry::warnings::WarningLog,
    /// The caps on bytes to and from this registry (`max_bytes_per_second`,
    /// `max_total_bytes_per_second`).
    pub(super) bandwidth: super::bandwidth::Caps,
}

impl Host {
    pub fn new(
        name: &str,
        cfg: Option<&RegistryConfig>,
        docker_config: Option<&std::path::Path>,
        retry: &RetryPolicy,
        limits: &Limits,
        shared: &reqwest::Client,
    ) -> Result<Host> {
        let default_cfg = RegistryConfig {
            host: name.to_string(),
            ..Default::default()
        };
        let cfg = cfg.unwrap_or(&default_cfg);
        let cfg_err = |detail: String| Error::Config {
            host: name.to_string(),
            detail,
        };
        let tls = cfg.tls_mode(name);
        let scheme = cfg.scheme(name);
        let base = Url::parse(&format!("{scheme}://{}/", api_host(name)))
            .map_err(|e| cfg_err(format!("cannot form a URL for this host: {e}")))?;
        let shared_idle = limits.blob_idle_timeout;
        let limits = limits.overlaid(cfg);
        if let Err((key, message)) = cfg.check_numbers() {
            return Err(cfg_err(format!("{key}: {message}")));
        }
        // The shared client's read timeout follows the default idle timeout;
        // a registry with its own gets its own client.
        let custom = tls == TlsMode::SkipVerify
            || cfg.ca_file.is_some()
            || cfg.client_cert_file.is_some()
            || limits.blob_idle_timeout != shared_idle;
        let http = if custom {
            own_client(cfg, tls, limits.blob_idle_timeout).map_err(cfg_err)?
        } else {
            shared.clone()
        };
        let credentials = LiveCredentials::new(name, cfg, docker_config)?;
        let rate = cfg
            .requests_per_second
            .filter(|r| *r > 0.0)
            .and_then(|r| Duration::try_from_secs_f64(1.0 / r).ok())
            .map(|gap| std::sync::Mutex::new((Instant::now(), gap)));
        let bandwidth = super::bandwidth::Caps::new(
            name,
            cfg.max_bytes_per_second,
            limits.max_total_bytes_per_second,
        );
        let pulls =
            super::pulls::PullBudget::new(name, &credentials.snapshot(), cfg.pull_budget_floor);
        Ok(Host {
            pulls,
            name: name.to_string(),
            base,
            http,
            limit: Semaphore::new(
                cfg.max_concurrent_requests
                    .unwrap_or(DEFAULT_MAX_CONCURRENT)
                    .max(1),
            ),
            rate,
            credentials,
            auth: Mutex::new(AuthState::default()),
            retry: retry.clone(),
            uploads: cfg.upload_settings(),
            limits,
            warnings: crate::registry::warnings::WarningLog::new(),
            bandwidth,
        })
    }

    /// `https://host/v2/<repo>/<segments…>`, built from percent-encoded segments.
    pub fn url(&self, repo: &str, segments: &[&str]) -> Url {
        super::origin::registry_url(&self.base, repo, segments)
    }

    /// Check a URL a registry named (`Location`, `Link`) for a request about
    /// `repo`: `Err` when it must not be requested.
    pub fn check_url(&self, op: Op, target: &str, repo: &str, url: &Url, what: &str) -> Result<()> {
        classify(&self.base, repo, url)
            .map(|_| ())
            .map_err(|why| Error::BadResponse {
                op,
                target: target.to_string(),
                detail: format!(
                    "registry {} sent a {what} URL that regmirror refuses because {why}",
                    self.name
                ),
            })
    }

    pub(super) async fn pace(&self) {
        let Some(rate) = &self.rate else { return };
        let wait = {
            let mut g = rate.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = g.0.max(now);
            g.0 = slot.checked_add(g.1).unwrap_or(slot);
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .field("credentials", &self.credentials)
            .finish()
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Host>();
    is::<Arc<Host>>();
}
