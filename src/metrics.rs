//! Every metric regmirror exports, defined in one place.
//!
//! Names carry the `regmirror_` prefix and Prometheus suffixes (`_total`,
//! `_bytes`, `_seconds`). Labels come only from small fixed sets: mirror
//! name, registry host, method, status class, result. Never tags, digests or
//! error text.

use std::sync::LazyLock;

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// The registry every regmirror metric is registered in.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let r = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
    }
    r
});

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    REGISTRY
        .register(Box::new(g.clone()))
        .expect("metric registered once");
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

/// `regmirror_invalid_tags_total{host}`: listed tags dropped because they
/// break the tag grammar (a broken or malicious registry).
pub static INVALID_TAGS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_invalid_tags_total",
        "Tags listed by a registry that break the tag grammar and were skipped.",
        &["host"],
    )
});

/// `regmirror_http_connections_rejected_total`: connections to the metrics
/// endpoint closed at once because the connection cap was reached.
pub static HTTP_CONNECTIONS_REJECTED: LazyLock<IntCounter> = LazyLock::new(|| {
    let c = IntCounter::new(
        "regmirror_http_connections_rejected_total",
        "Connections to the metrics and health endpoint refused because too many were open.",
    )
    .expect("valid metric definition");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
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
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
});

/// `regmirror_sync_runs_total{mirror,result}`: mirror runs by result
/// (`success`, `partial`, `failed`).
pub static SYNC_RUNS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_sync_runs_total",
        "Mirror runs by result: success (every image ok), partial (some failed) or failed (all failed).",
        &["mirror", "result"],
    )
});

/// `regmirror_images_total{mirror,result}`: images by result (`copied`,
/// `skipped`, `failed`, `conflict`).
pub static IMAGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_images_total",
        "Images handled by result: copied, skipped (target up to date), failed, or conflict (target tag differs and force is off).",
        &["mirror", "result"],
    )
});

/// `regmirror_image_copy_duration_seconds{mirror}`: wall time of image copies.
pub static IMAGE_COPY_DURATION: LazyLock<HistogramVec> =
    LazyLock::new(|| {
        let h = HistogramVec::new(
        HistogramOpts::new(
            "regmirror_image_copy_duration_seconds",
            "Wall time of image copies that transferred content (up-to-date images are not timed).",
        )
        .buckets(vec![0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]),
        &["mirror"],
    )
    .expect("valid metric definition");
        REGISTRY
            .register(Box::new(h.clone()))
            .expect("metric registered once");
        h
    });

fn float_gauge_vec(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    REGISTRY
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

/// `regmirror_mirror_last_success_timestamp_seconds{mirror}`: end of the last
/// run in which every image succeeded (Unix time).
pub static MIRROR_LAST_SUCCESS: LazyLock<GaugeVec> = LazyLock::new(|| {
    float_gauge_vec(
        "regmirror_mirror_last_success_timestamp_seconds",
        "Unix time at which the mirror's last fully successful run ended.",
        &["mirror"],
    )
});

/// `regmirror_mirror_next_run_timestamp_seconds{mirror}`: next scheduled slot (Unix time).
pub static MIRROR_NEXT_RUN: LazyLock<GaugeVec> = LazyLock::new(|| {
    float_gauge_vec(
        "regmirror_mirror_next_run_timestamp_seconds",
        "Unix time of the mirror's next scheduled run (serve only).",
        &["mirror"],
    )
});

/// `regmirror_mirror_schedule_interval_seconds{mirror}`: seconds between the
/// mirror's next two scheduled slots (for "no success within N schedules" alerts).
pub static MIRROR_SCHEDULE_INTERVAL: LazyLock<GaugeVec> = LazyLock::new(|| {
    float_gauge_vec(
        "regmirror_mirror_schedule_interval_seconds",
        "Seconds between the mirror's next two scheduled runs (serve only).",
        &["mirror"],
    )
});

/// `regmirror_mirror_consecutive_failures{mirror}`: runs in a row that were not fully successful.
pub static MIRROR_CONSECUTIVE_FAILURES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "regmirror_mirror_consecutive_failures",
        "Runs in a row in which at least one image failed; 0 after a fully successful run.",
        &["mirror"],
    )
});

/// `regmirror_runs_skipped_total{mirror}`: scheduled runs skipped because the previous one was still going.
pub static RUNS_SKIPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_runs_skipped_total",
        "Scheduled runs skipped because the mirror's previous run was still going.",
        &["mirror"],
    )
});

/// `regmirror_copies_in_flight`: image copies running now.
pub static COPIES_IN_FLIGHT: LazyLock<IntGauge> = LazyLock::new(|| {
    let g = IntGauge::new(
        "regmirror_copies_in_flight",
        "Image copies running now, across all mirrors.",
    )
    .expect("valid metric definition");
    REGISTRY
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
});

/// `regmirror_shard_info{count,index}`: 1, labelled with the shard count and
/// this replica's index (`count="1",index="0"` when not sharded).
pub static SHARD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "regmirror_shard_info",
        "Always 1; the labels give the shard count and this replica's shard index.",
        &["count", "index"],
    )
});

/// `regmirror_shard_mirrors{shard}`: mirrors of the config each shard owns,
/// for every shard (every replica exports the whole split).
pub static SHARD_MIRRORS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "regmirror_shard_mirrors",
        "Mirrors of the config owned by each shard, as computed by this replica.",
        &["shard"],
    )
});

/// Touch every metric so that each appears on `/metrics` from the start.
pub fn init() {
    LazyLock::force(&REGISTRY_RESPONSES);
    LazyLock::force(&REGISTRY_RETRIES);
    LazyLock::force(&RATE_LIMITED);
    LazyLock::force(&RATELIMIT_REMAINING);
    LazyLock::force(&INVALID_TAGS);
    LazyLock::force(&HTTP_CONNECTIONS_REJECTED);
    LazyLock::force(&BLOBS);
    LazyLock::force(&BYTES_TRANSFERRED);
    LazyLock::force(&SYNC_RUNS);
    LazyLock::force(&IMAGES);
    LazyLock::force(&IMAGE_COPY_DURATION);
    LazyLock::force(&MIRROR_LAST_SUCCESS);
    LazyLock::force(&MIRROR_NEXT_RUN);
    LazyLock::force(&MIRROR_SCHEDULE_INTERVAL);
    LazyLock::force(&MIRROR_CONSECUTIVE_FAILURES);
    LazyLock::force(&RUNS_SKIPPED);
    LazyLock::force(&COPIES_IN_FLIGHT);
    LazyLock::force(&SHARD_INFO);
    LazyLock::force(&SHARD_MIRRORS);
    LazyLock::force(&RATELIMIT_MALFORMED);
    LazyLock::force(&PULLS_REFUSED);
    LazyLock::force(&PULL_CIRCUIT_OPENED);
    LazyLock::force(&IMAGES_DEFERRED);
    LazyLock::force(&PRUNED_TAGS);
    LazyLock::force(&PRUNE_REFUSED);
    LazyLock::force(&BACKUPS);
}

/// Count one image by result (`copied`, `skipped`, `failed`, `conflict`).
pub fn record_image(mirror: &str, result: &str) {
    IMAGES.with_label_values(&[mirror, result]).inc();
}

/// Observe one image copy's wall time.
pub fn observe_copy_duration(mirror: &str, seconds: f64) {
    IMAGE_COPY_DURATION
        .with_label_values(&[mirror])
        .observe(seconds);
}

/// Record a finished mirror run (`success`, `partial`, `failed` or
/// `deferred`) ending at `now` (Unix seconds): the run counter, the
/// last-success time and the consecutive-failure gauge (a deferred run
/// neither resets nor raises it).
pub fn record_run(mirror: &str, result: &str, now: f64) {
    SYNC_RUNS.with_label_values(&[mirror, result]).inc();
    let failures = MIRROR_CONSECUTIVE_FAILURES.with_label_values(&[mirror]);
    if result == "success" {
        MIRROR_LAST_SUCCESS.with_label_values(&[mirror]).set(now);
        failures.set(0);
    } else if result != "deferred" {
        failures.inc();
    }
}

/// Record a mirror's next scheduled run (Unix seconds) and the interval to
/// the slot after it (seconds).
pub fn set_next_run(mirror: &str, at: f64, interval: f64) {
    MIRROR_NEXT_RUN.with_label_values(&[mirror]).set(at);
    MIRROR_SCHEDULE_INTERVAL
        .with_label_values(&[mirror])
        .set(interval);
}

/// Count one scheduled run skipped because the previous one was still going.
pub fn record_run_skipped(mirror: &str) {
    RUNS_SKIPPED.with_label_values(&[mirror]).inc();
}

/// Forget every series of a mirror (it left the config), in every family
/// with a `mirror` label, whatever its other labels: an alert on a mirror
/// that no longer exists would never clear.
pub fn forget_mirror(mirror: &str) {
    remove_mirror_series(&SYNC_RUNS, mirror);
    remove_mirror_series(&IMAGES, mirror);
    remove_mirror_series(&IMAGE_COPY_DURATION, mirror);
    // Its last success would otherwise age into a staleness alert (a mirror
    // also leaves a replica's config when it moves to another shard).
    remove_mirror_series(&MIRROR_LAST_SUCCESS, mirror);
    remove_mirror_series(&MIRROR_NEXT_RUN, mirror);
    remove_mirror_series(&MIRROR_SCHEDULE_INTERVAL, mirror);
    remove_mirror_series(&MIRROR_CONSECUTIVE_FAILURES, mirror);
    remove_mirror_series(&RUNS_SKIPPED, mirror);
    remove_mirror_series(&IMAGES_DEFERRED, mirror);
    remove_mirror_series(&PRUNED_TAGS, mirror);
    remove_mirror_series(&PRUNE_REFUSED, mirror);
    remove_mirror_series(&BACKUPS, mirror);
}

/// Remove the series of `vec` whose `mirror` label is `mirror`.
fn remove_mirror_series<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    mirror: &str,
) {
    use prometheus::core::Collector as _;
    for family in vec.collect() {
        for m in family.get_metric() {
            let labels: std::collections::HashMap<&str, &str> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if labels.get("mirror") == Some(&mirror) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

/// Record this replica's shard (`count`, `index`) and how many mirrors each
/// shard owns (`per_shard[s]` for shard `s`); replaces earlier values.
pub fn set_shard(count: u32, index: u32, per_shard: &[usize]) {
    SHARD_INFO.reset();
    SHARD_INFO
        .with_label_values(&[count.to_string().as_str(), index.to_string().as_str()])
        .set(1);
    SHARD_MIRRORS.reset();
    for (s, n) in per_shard.iter().enumerate() {
        SHARD_MIRRORS
            .with_label_values(&[s.to_string().as_str()])
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
}

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
    RATELIMIT_REMAINING
        .with_label_values(&[host])
        .set(remaining);
}

/// Count tags dropped from a listing of `host` for breaking the tag grammar.
pub fn record_invalid_tags(host: &str, n: u64) {
    INVALID_TAGS.with_label_values(&[host]).inc_by(n);
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

/// `regmirror_referrers_total{result}`: referrers (signatures, SBOMs,
/// attestations) by outcome: `found` on a source, `copied`, `skipped`
/// (already at the target), `filtered` (left out by the type lists).
pub static REFERRERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_referrers_total",
        "Referrers by outcome: found, copied, skipped (already at the target) or filtered (type lists).",
        &["result"],
    )
});

/// `regmirror_fallback_index_updates_total{result}`: writes of a target's
/// referrers fallback index (`sha256-<hex>` tag): `written`, or `retried`
/// when a read-back found another writer's update had replaced it.
pub static FALLBACK_INDEX_UPDATES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_fallback_index_updates_total",
        "Referrers fallback index writes: written, or retried after a lost update.",
        &["result"],
    )
});

/// `regmirror_cosign_tags_copied_total`: cosign `.sig`/`.att`/`.sbom` tags copied or moved.
pub static COSIGN_TAGS_COPIED: LazyLock<IntCounter> = LazyLock::new(|| {
    let c = IntCounter::new(
        "regmirror_cosign_tags_copied_total",
        "cosign signature, attestation and SBOM tags copied or moved.",
    )
    .expect("valid metric definition");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
});

/// Count the referrers of one image copy (found, copied, skipped, filtered),
/// its fallback-index writes and cosign tags.
pub fn record_referrers(
    found: u64,
    copied: u64,
    skipped: u64,
    filtered: u64,
    index_writes: u64,
    cosign: u64,
) {
    for (result, n) in [
        ("found", found),
        ("copied", copied),
        ("skipped", skipped),
        ("filtered", filtered),
    ] {
        REFERRERS.with_label_values(&[result]).inc_by(n);
    }
    FALLBACK_INDEX_UPDATES
        .with_label_values(&["written"])
        .inc_by(index_writes);
    COSIGN_TAGS_COPIED.inc_by(cosign);
}

/// Count a fallback-index write retried after a lost update.
pub fn record_fallback_retry() {
    FALLBACK_INDEX_UPDATES.with_label_values(&["retried"]).inc();
}

/// `regmirror_ratelimit_limit{registry,account}`: the pull allowance per
/// window a registry last announced (`ratelimit-limit`).
pub static RATELIMIT_LIMIT: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "regmirror_ratelimit_limit",
        "Pull allowance per window announced by the registry (ratelimit-limit), per credential.",
        &["registry", "account"],
    )
});

/// `regmirror_ratelimit_remaining{registry,account}`: pulls left as
/// regmirror counts them (last `ratelimit-remaining`, GETs since taken off).
pub static RATELIMIT_REMAINING_PULLS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "regmirror_ratelimit_remaining",
        "Pulls left in the current window (ratelimit-remaining), per credential; removed when the window ends.",
        &["registry", "account"],
    )
});

/// `regmirror_ratelimit_window_seconds{registry,account}`: the announced window.
pub static RATELIMIT_WINDOW: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "regmirror_ratelimit_window_seconds",
        "Length of the rate-limit window announced by the registry (w=), per credential.",
        &["registry", "account"],
    )
});

/// `regmirror_ratelimit_headers_malformed_total{registry}`: `ratelimit-*`
/// headers ignored because they were malformed or out of bounds.
pub static RATELIMIT_MALFORMED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_ratelimit_headers_malformed_total",
        "ratelimit-* headers ignored because they were malformed or out of bounds.",
        &["registry"],
    )
});

/// `regmirror_pull_budget_refused_total{registry,account}`: manifest GETs
/// not sent because of the floor or an open circuit.
pub static PULLS_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_pull_budget_refused_total",
        "Manifest GETs not sent because they would cross pull_budget_floor or the pull-limit circuit was open.",
        &["registry", "account"],
    )
});

/// `regmirror_pull_limit_circuit_opened_total{registry,account}`: pull-limit 429s.
pub static PULL_CIRCUIT_OPENED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_pull_limit_circuit_opened_total",
        "Pull-limit 429 answers that stopped manifest GETs to a registry until its window resets.",
        &["registry", "account"],
    )
});

/// `regmirror_images_deferred_total{mirror}`: images left for later to keep a pull budget floor.
pub static IMAGES_DEFERRED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_images_deferred_total",
        "Images whose copy was deferred (not failed) to keep a registry's pull budget floor, counted once per run.",
        &["mirror"],
    )
});

/// `regmirror_pruned_tags_total{mirror,result}`: target tags pruned because
/// the source no longer has them (`deleted`, `would-delete` in a dry run,
/// `failed`).
pub static PRUNED_TAGS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_pruned_tags_total",
        "Target tags pruned because the source no longer lists them: deleted, would-delete (dry run) or failed.",
        &["mirror", "result"],
    )
});

/// `regmirror_prune_refused_total{mirror}`: mirror runs whose prune a guard
/// rail stopped (failed or empty source listing, more than `max_prune`).
pub static PRUNE_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_prune_refused_total",
        "Mirror runs in which prune deleted nothing because a guard rail stopped it (source listing failed or empty, target listing failed, more than max_prune tags).",
        &["mirror"],
    )
});

/// `regmirror_backups_total{mirror}`: backup tags written before a tag moved.
pub static BACKUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_backups_total",
        "Backup tags written for the previous digest of a target tag about to move.",
        &["mirror"],
    )
});

/// Record what is known of a registry's allowance; `None` removes a series.
pub fn set_ratelimit(
    registry: &str,
    account: &str,
    limit: Option<u64>,
    remaining: Option<u64>,
    window: Option<std::time::Duration>,
) {
    let labels = [registry, account];
    let set = |g: &IntGaugeVec, v: Option<u64>| match v {
        Some(v) => g
            .with_label_values(&labels)
            .set(i64::try_from(v).unwrap_or(i64::MAX)),
        None => {
            let _ = g.remove_label_values(&labels);
        }
    };
    set(&RATELIMIT_LIMIT, limit);
    set(&RATELIMIT_REMAINING_PULLS, remaining);
    set(&RATELIMIT_WINDOW, window.map(|w| w.as_secs()));
}

/// Count one malformed `ratelimit-*` header.
pub fn record_ratelimit_malformed(registry: &str) {
    RATELIMIT_MALFORMED.with_label_values(&[registry]).inc();
}

/// Count one manifest GET refused by the pull budget.
pub fn record_pull_refused(registry: &str, account: &str) {
    PULLS_REFUSED.with_label_values(&[registry, account]).inc();
}

/// Count one pull-limit circuit opened.
pub fn record_pull_circuit_opened(registry: &str, account: &str) {
    PULL_CIRCUIT_OPENED
        .with_label_values(&[registry, account])
        .inc();
}

/// Count images a mirror run left deferred.
pub fn record_images_deferred(mirror: &str, n: u64) {
    IMAGES_DEFERRED.with_label_values(&[mirror]).inc_by(n);
}

/// Count one pruned tag by result (`deleted`, `would-delete`, `failed`).
pub fn record_pruned(mirror: &str, result: &str) {
    PRUNED_TAGS.with_label_values(&[mirror, result]).inc();
}

/// Count one prune stopped by a guard rail.
pub fn record_prune_refused(mirror: &str) {
    PRUNE_REFUSED.with_label_values(&[mirror]).inc();
}

/// Count one backup tag written.
pub fn record_backup(mirror: &str) {
    BACKUPS.with_label_values(&[mirror]).inc();
}

/// `regmirror_catalog_invalid_names_total{host}`: repository names a
/// registry's catalog listed that break the repository grammar and were
/// skipped (a broken or malicious registry).
pub static CATALOG_INVALID_NAMES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "regmirror_catalog_invalid_names_total",
        "Repository names listed by a registry's catalog that break the repository grammar and were skipped.",
        &["host"],
    )
});

/// Count catalog names skipped because they break the repository grammar.
pub fn record_catalog_invalid_names(host: &str, n: u64) {
    CATALOG_INVALID_NAMES.with_label_values(&[host]).inc_by(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_mirror_has_no_series_left() {
        init();
        for m in ["gone", "kept"] {
            record_run(m, "success", 1.0);
            record_run(m, "failed", 2.0);
            record_image(m, "copied");
            record_image(m, "conflict");
            observe_copy_duration(m, 0.5);
            set_next_run(m, 3.0, 60.0);
            record_run_skipped(m);
        }
        assert!(render().contains("mirror=\"gone\""));
        forget_mirror("gone");
        let text = render();
        assert!(!text.contains("mirror=\"gone\""), "{text}");
        // Every family with a mirror label still has the other mirror.
        for family in [
            "regmirror_sync_runs_total",
            "regmirror_images_total",
            "regmirror_image_copy_duration_seconds_count",
            "regmirror_mirror_last_success_timestamp_seconds",
            "regmirror_mirror_next_run_timestamp_seconds",
            "regmirror_mirror_schedule_interval_seconds",
            "regmirror_mirror_consecutive_failures",
            "regmirror_runs_skipped_total",
        ] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(family) && l.contains("mirror=\"kept\"")),
                "{family}: {text}"
            );
        }
    }
}
