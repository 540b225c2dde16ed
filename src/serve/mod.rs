//! The `serve` daemon: runs mirrors on cron schedules and exposes metrics and
//! health endpoints.

/// Prometheus metrics endpoint.
pub const METRICS_PATH: &str = "/metrics";
/// Liveness: answers 200 while the process is alive.
pub const HEALTH_PATH: &str = "/healthz";
/// Readiness: 200 once the config is loaded and every mirror's first run has finished.
pub const READY_PATH: &str = "/readyz";
/// Address `serve` listens on unless `[server] listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9090";
