//! Every metric regmirror exports, defined in one place.
//!
//! Names carry the `regmirror_` prefix and Prometheus suffixes (`_total`,
//! `_bytes`, `_seconds`). Labels come only from small fixed sets: mirror
//! name, registry host, method, status class, result. Never tags, digests or
//! error text.

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The registry every regmirror metric is registered in.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let r = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let _ = r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
    }
    r
});

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    REGISTRY.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    REGISTRY.register(Box::new(g.clone())).expect("metric registered once");
    g
}

/// `regmirror_registry_responses_total{host,method,status}`: registry answers
/// by status class (`2xx`, `3xx`, `4xx`, `429`, `5xx`, `error` for no answer).
pub static REGISTRY_RESPONSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_registry_responses_total",
        "Registry HTTP requests by host, method and status class.",
        &["host", "method", "status"],
    )
});

/// `regmirror_registry_retries_total{host}`: requests retried after a transient failure.
pub static REGISTRY_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_registry_retries_total",
        "Registry requests retried after a transient failure.",
        &["host"],
    )
});

/// `regmirror_rate_limited_total{host}`: 429 answers.
pub static RATE_LIMITED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_rate_limited_total",
        "HTTP 429 (too many requests) answers from registries.",
        &["host"],
    )
});

/// `regmirror_dockerhub_ratelimit_remaining{host}`: last `ratelimit-remaining` seen.
pub static RATELIMIT_REMAINING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "regmirror_dockerhub_ratelimit_remaining",
        "Pulls left in the current window, from the last ratelimit-remaining header (Docker Hub).",
        &["host"],
    )
});

/// `regmirror_blobs_total{result}`: blobs by outcome (`copied`, `skipped`, `mounted`).
pub static BLOBS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_blobs_total",
        "Blobs handled by outcome: copied, skipped (already present) or mounted.",
        &["result"],
    )
});

/// `regmirror_transferred_bytes_total`: blob bytes uploaded to targets.
pub static BYTES_TRANSFERRED: LazyLock<IntCounter> = LazyLock::new(|| {
    let c = IntCounter::new(
        "regmirror_transferred_bytes_total",
        "Blob bytes copied to target registries.",
    )
    .expect("valid metric definition");
    REGISTRY.register(Box::new(c.clone())).expect("metric registered once");
    c
});

/// Status class label for an HTTP status.
pub fn status_class(status: u16) -> &'static str {
    match status {
        429 => "429",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// Count one registry answer (`status` `None`: no answer).
pub fn record_response(host: &str, method: &str, status: Option<u16>) {
    let class = status.map(status_class).unwrap_or("error");
    REGISTRY_RESPONSES
        .with_label_values(&[host, method, class])
        .inc();
    if status == Some(429) {
        RATE_LIMITED.with_label_values(&[host]).inc();
    }
}

/// Count one retry.
pub fn record_retry(host: &str) {
    REGISTRY_RETRIES.with_label_values(&[host]).inc();
}

/// Record a `ratelimit-remaining` value.
pub fn set_ratelimit_remaining(host: &str, remaining: i64) {
    RATELIMIT_REMAINING.with_label_values(&[host]).set(remaining);
}

/// Count blobs by outcome (`copied`, `skipped`, `mounted`).
pub fn record_blobs(result: &str, n: u64) {
    BLOBS.with_label_values(&[result]).inc_by(n);
}

/// Count bytes uploaded.
pub fn record_bytes(n: u64) {
    BYTES_TRANSFERRED.inc_by(n);
}

/// The text exposition of every metric.
pub fn render() -> String {
    let encoder = prometheus::TextEncoder::new();
    encoder
        .encode_to_string(&REGISTRY.gather())
        .unwrap_or_else(|e| format!("# encoding metrics failed: {e}\n"))
}
