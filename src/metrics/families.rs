//! The one list of metric families: each entry defines the static, and the
//! same list registers every family and zero-initialises its series (see
//! [`super::family`]), so a family added here cannot be left out of either.
//! `docs/metrics.md` documents each; a test checks the two agree.

use std::sync::LazyLock;

use prometheus::core::Collector;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use super::family::{Family, Fixed};

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

fn registered<C: Collector + Clone + 'static>(c: C) -> C {
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition")
}

fn float_counter_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::CounterVec {
    prometheus::CounterVec::new(Opts::new(name, help), labels).expect("valid metric definition")
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition")
}

fn float_gauge_vec(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition")
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid metric definition")
}

/// Registry answers by status class.
const STATUS_CLASSES: &[&str] = &["2xx", "3xx", "4xx", "429", "5xx", "other", "error"];
/// Outcomes of a run notification.
pub const NOTIFICATION_RESULTS: &[&str] = &["delivered", "failed", "dropped"];
/// HTTP methods regmirror sends.
const METHODS: &[&str] = &["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"];

macro_rules! families {
    ($( $(#[$doc:meta])* $name:ident: $ty:ty = $make:expr, zero $fixed:expr; )*) => {
        $(
            $(#[$doc])*
            pub static $name: LazyLock<$ty> = LazyLock::new(|| registered($make));
        )*

        /// Every family, registered on first call, with the fixed values of
        /// its labels for zero-initialisation.
        pub(super) fn all() -> Vec<(&'static dyn Family, Fixed)> {
            vec![$( (&*$name as &'static dyn Family, $fixed), )*]
        }
    };
}

families! {
    /// `regmirror_registry_responses_total{registry,method,status}`: registry answers
    /// by status class (`2xx`, `3xx`, `4xx`, `429`, `5xx`, `error` for no answer).
    REGISTRY_RESPONSES: IntCounterVec = counter_vec(
        "regmirror_registry_responses_total",
        "Registry HTTP requests by registry, method and status class (error: no answer).",
        &["registry", "method", "status"],
    ), zero &[("method", METHODS), ("status", STATUS_CLASSES)];

    /// `regmirror_registry_retries_total{registry}`: requests retried after a transient failure.
    REGISTRY_RETRIES: IntCounterVec = counter_vec(
        "regmirror_registry_retries_total",
        "Registry requests retried after a transient failure.",
        &["registry"],
    ), zero &[];

    /// `regmirror_bandwidth_wait_seconds_total{registry}`: time transfers
    /// waited to keep to the registry's `max_bytes_per_second`, or
    /// (`registry="*"`) to `max_total_bytes_per_second`.
    BANDWIDTH_WAIT: prometheus::CounterVec = float_counter_vec(
        "regmirror_bandwidth_wait_seconds_total",
        "Seconds transfers waited to keep to the registry's max_bytes_per_second, or (registry *) to max_total_bytes_per_second.",
        &["registry"],
    ), zero &[];

    /// `regmirror_invalid_tags_total{registry}`: listed tags dropped because they
    /// break the tag grammar (a broken or malicious registry).
    INVALID_TAGS: IntCounterVec = counter_vec(
        "regmirror_invalid_tags_total",
        "Tags a registry listed that break the tag grammar and were skipped.",
        &["registry"],
    ), zero &[];

    /// `regmirror_catalog_invalid_names_total{registry}`: repository names a
    /// registry's catalog listed that break the repository grammar and were
    /// skipped (a broken or malicious registry).
    CATALOG_INVALID_NAMES: IntCounterVec = counter_vec(
        "regmirror_catalog_invalid_names_total",
        "Repository names a registry's catalog listed that break the repository grammar and were skipped.",
        &["registry"],
    ), zero &[];

    /// `regmirror_http_connections_rejected_total`: connections to the metrics
    /// endpoint closed at once because the connection cap was reached.
    HTTP_CONNECTIONS_REJECTED: IntCounter = counter(
        "regmirror_http_connections_rejected_total",
        "Connections to the metrics and health endpoint closed by its connection cap.",
    ), zero &[];

    /// `regmirror_blobs_total{result}`: blobs by outcome (`copied`, `skipped`, `mounted`).
    BLOBS: IntCounterVec = counter_vec(
        "regmirror_blobs_total",
        "Blobs handled by outcome: copied, skipped (already at the target) or mounted (from another repository of the target registry).",
        &["result"],
    ), zero &[("result", &["copied", "skipped", "mounted"])];

    /// `regmirror_transferred_bytes_total`: blob bytes uploaded to targets.
    BYTES_TRANSFERRED: IntCounter = counter(
        "regmirror_transferred_bytes_total",
        "Blob bytes copied to target registries.",
    ), zero &[];

    /// `regmirror_sync_runs_total{mirror,result}`: mirror runs by result
    /// (`success`, `partial`, `failed`, `deferred`, `interrupted`).
    SYNC_RUNS: IntCounterVec = counter_vec(
        "regmirror_sync_runs_total",
        "Mirror runs by result: success, partial, failed, deferred or interrupted.",
        &["mirror", "result"],
    ), zero &[("result", &["success", "partial", "failed", "deferred", "interrupted"])];

    /// `regmirror_images_total{mirror,result}`: images by result (`copied`,
    /// `skipped`, `failed`, `conflict`, `deferred`).
    IMAGES: IntCounterVec = counter_vec(
        "regmirror_images_total",
        "Images handled by result: copied, skipped (target up to date), failed, conflict (target tag differs and force is off) or deferred (left for later to keep a pull budget floor).",
        &["mirror", "result"],
    ), zero &[("result", &["copied", "skipped", "failed", "conflict", "deferred"])];

    /// `regmirror_image_failures_total{mirror,kind}`: failed images by kind
    /// of failure (see [`crate::registry::ErrorKind`]).
    IMAGE_FAILURES: IntCounterVec = counter_vec(
        "regmirror_image_failures_total",
        "Failed images by kind of failure, as error_kind of the JSON report gives it.",
        &["mirror", "kind"],
    ), zero &[("kind", &crate::registry::ErrorKind::LABELS)];

    /// `regmirror_image_copy_duration_seconds{mirror}`: wall time of image copies.
    IMAGE_COPY_DURATION: HistogramVec = HistogramVec::new(
        HistogramOpts::new(
            "regmirror_image_copy_duration_seconds",
            "Wall time of image copies that transferred content (up-to-date images are not timed).",
        )
        .buckets(vec![0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]),
        &["mirror"],
    )
    .expect("valid metric definition"), zero &[];

    /// `regmirror_mirror_last_success_timestamp_seconds{mirror}`: end of the last
    /// run in which every image succeeded (Unix time).
    MIRROR_LAST_SUCCESS: GaugeVec = float_gauge_vec(
        "regmirror_mirror_last_success_timestamp_seconds",
        "Unix time at which the mirror's last fully successful run ended.",
        &["mirror"],
    ), zero &[];

    /// `regmirror_mirror_next_run_timestamp_seconds{mirror}`: next scheduled slot (Unix time).
    MIRROR_NEXT_RUN: GaugeVec = float_gauge_vec(
        "regmirror_mirror_next_run_timestamp_seconds",
        "Unix time of the mirror's next scheduled run (serve only).",
        &["mirror"],
    ), zero &[];

    /// `regmirror_mirror_schedule_interval_seconds{mirror}`: seconds between the
    /// mirror's next two scheduled slots (for "no success within N schedules" alerts).
    MIRROR_SCHEDULE_INTERVAL: GaugeVec = float_gauge_vec(
        "regmirror_mirror_schedule_interval_seconds",
        "Seconds between the mirror's next two scheduled runs (serve only).",
        &["mirror"],
    ), zero &[];

    /// `regmirror_mirror_consecutive_failures{mirror}`: runs in a row that were not fully successful.
    MIRROR_CONSECUTIVE_FAILURES: IntGaugeVec = gauge_vec(
        "regmirror_mirror_consecutive_failures",
        "Runs in a row in which at least one image failed; 0 after a fully successful run.",
        &["mirror"],
    ), zero &[];

    /// `regmirror_quarantined_tags{mirror}`: images skipped by the mirror's
    /// runs for now because they failed several runs in a row.
    QUARANTINED_TAGS: IntGaugeVec = gauge_vec(
        "regmirror_quarantined_tags",
        "Images of the mirror in quarantine: they failed in several runs in a row for a reason another try will not fix, and are tried again only every few runs (serve only).",
        &["mirror"],
    ), zero &[];

    /// `regmirror_audit_missing{mirror}`: what the mirror's last scheduled
    /// audit found missing or damaged at the target.
    AUDIT_MISSING: IntGaugeVec = gauge_vec(
        "regmirror_audit_missing",
        "Findings of the mirror's last scheduled audit (audit_schedule): moved tags, missing or damaged manifests, blobs and referrers at the target, plus images that could not be checked; 0 when the mirror was complete (serve only).",
        &["mirror"],
    ), zero &[];

    /// `regmirror_runs_skipped_total{mirror}`: scheduled runs skipped because the previous one was still going.
    RUNS_SKIPPED: IntCounterVec = counter_vec(
        "regmirror_runs_skipped_total",
        "Scheduled runs skipped because the mirror's previous run was still going.",
        &["mirror"],
    ), zero &[];

    /// `regmirror_copies_in_flight`: image copies running now.
    COPIES_IN_FLIGHT: IntGauge = IntGauge::new(
        "regmirror_copies_in_flight",
        "Image copies running now, across all mirrors.",
    )
    .expect("valid metric definition"), zero &[];

    /// `regmirror_shard_info{count,index}`: 1, labelled with the shard count and
    /// this replica's index (`count="1",index="0"` when not sharded).
    SHARD_INFO: IntGaugeVec = gauge_vec(
        "regmirror_shard_info",
        "Always 1; the labels give the shard count and this replica's shard index.",
        &["count", "index"],
    ), zero &[];

    /// `regmirror_shard_mirrors{shard}`: mirrors of the config each shard owns,
    /// for every shard (every replica exports the whole split).
    SHARD_MIRRORS: IntGaugeVec = gauge_vec(
        "regmirror_shard_mirrors",
        "Mirrors of the config owned by each shard, as computed by this replica.",
        &["shard"],
    ), zero &[];

    /// `regmirror_referrers_total{result}`: referrers (signatures, SBOMs,
    /// attestations) by outcome: `found` on a source, `copied`, `skipped`
    /// (already at the target), `filtered` (left out by the type lists).
    REFERRERS: IntCounterVec = counter_vec(
        "regmirror_referrers_total",
        "Referrers of copied images by outcome: found, copied, skipped (already at the target) or filtered (left out by the type lists).",
        &["result"],
    ), zero &[("result", &["found", "copied", "skipped", "filtered"])];

    /// `regmirror_fallback_index_updates_total{result}`: writes of a target's
    /// referrers fallback index (`sha256-<hex>` tag): `written`, or `retried`
    /// when a read-back found another writer's update had replaced it.
    FALLBACK_INDEX_UPDATES: IntCounterVec = counter_vec(
        "regmirror_fallback_index_updates_total",
        "Referrers fallback index writes: written, or retried after a lost update.",
        &["result"],
    ), zero &[("result", &["written", "retried"])];

    /// `regmirror_cosign_tags_copied_total`: cosign `.sig`/`.att`/`.sbom` tags copied or moved.
    COSIGN_TAGS_COPIED: IntCounter = counter(
        "regmirror_cosign_tags_copied_total",
        "cosign signature, attestation and SBOM tags copied, or copied again because they moved.",
    ), zero &[];

    /// `regmirror_ratelimit_limit{registry,account}`: the pull allowance per
    /// window a registry last announced (`ratelimit-limit`).
    RATELIMIT_LIMIT: IntGaugeVec = gauge_vec(
        "regmirror_ratelimit_limit",
        "Pull allowance per window the registry last announced (ratelimit-limit), per credential.",
        &["registry", "account"],
    ), zero &[];

    /// `regmirror_ratelimit_remaining{registry,account}`: pulls left as
    /// regmirror counts them (last `ratelimit-remaining`, GETs since taken off).
    RATELIMIT_REMAINING_PULLS: IntGaugeVec = gauge_vec(
        "regmirror_ratelimit_remaining",
        "Pulls left in the current window as regmirror counts them (the last ratelimit-remaining, manifest GETs since taken off), per credential.",
        &["registry", "account"],
    ), zero &[];

    /// `regmirror_ratelimit_window_seconds{registry,account}`: the announced window.
    RATELIMIT_WINDOW: IntGaugeVec = gauge_vec(
        "regmirror_ratelimit_window_seconds",
        "Length of the rate-limit window the registry announced (w=), per credential.",
        &["registry", "account"],
    ), zero &[];

    /// `regmirror_ratelimit_headers_malformed_total{registry}`: `ratelimit-*`
    /// headers ignored because they were malformed or out of bounds.
    RATELIMIT_MALFORMED: IntCounterVec = counter_vec(
        "regmirror_ratelimit_headers_malformed_total",
        "ratelimit-* headers ignored because they were malformed or out of bounds.",
        &["registry"],
    ), zero &[];

    /// `regmirror_pull_budget_refused_total{registry,account}`: manifest GETs
    /// not sent because of the floor or an open circuit.
    PULLS_REFUSED: IntCounterVec = counter_vec(
        "regmirror_pull_budget_refused_total",
        "Manifest GETs not sent because they would spend into pull_budget_floor or the pull-limit circuit was open.",
        &["registry", "account"],
    ), zero &[];

    /// `regmirror_pull_limit_circuit_opened_total{registry,account}`: pull-limit 429s.
    PULL_CIRCUIT_OPENED: IntCounterVec = counter_vec(
        "regmirror_pull_limit_circuit_opened_total",
        "Pull-limit 429 answers that stopped manifest GETs to a registry until its window resets.",
        &["registry", "account"],
    ), zero &[];

    /// `regmirror_pruned_tags_total{mirror,result}`: target tags pruned because
    /// the source no longer has them (`deleted`, `would-delete` in a dry run,
    /// `failed`).
    PRUNED_TAGS: IntCounterVec = counter_vec(
        "regmirror_pruned_tags_total",
        "Target tags pruned because the source no longer lists them: deleted, would-delete (dry run) or failed.",
        &["mirror", "result"],
    ), zero &[("result", &["deleted", "would-delete", "failed"])];

    /// `regmirror_prune_refused_total{mirror}`: mirror runs whose prune a guard
    /// rail stopped (failed or empty source listing, more than `max_prune`).
    PRUNE_REFUSED: IntCounterVec = counter_vec(
        "regmirror_prune_refused_total",
        "Mirror runs in which a guard rail stopped prune, so nothing was deleted.",
        &["mirror"],
    ), zero &[];

    /// `regmirror_target_pruned_tags_total{mirror,target,result}`: the tags
    /// of `regmirror_pruned_tags_total` by target repository (each target of
    /// a mirror with `targets` is pruned on its own).
    TARGET_PRUNED_TAGS: IntCounterVec = counter_vec(
        "regmirror_target_pruned_tags_total",
        "Target tags pruned, by target repository of the mirror: deleted, would-delete (dry run) or failed.",
        &["mirror", "target", "result"],
    ), zero &[("result", &["deleted", "would-delete", "failed"])];

    /// `regmirror_target_prune_refused_total{mirror,target}`: prunes of one
    /// target repository that a guard rail stopped.
    TARGET_PRUNE_REFUSED: IntCounterVec = counter_vec(
        "regmirror_target_prune_refused_total",
        "Prunes of a target repository that a guard rail stopped, so nothing was deleted there.",
        &["mirror", "target"],
    ), zero &[];

    /// `regmirror_backups_total{mirror}`: backup tags written before a tag moved.
    BACKUPS: IntCounterVec = counter_vec(
        "regmirror_backups_total",
        "Backup tags written for the previous digest of a target tag about to move.",
        &["mirror"],
    ), zero &[];

    /// `regmirror_build_info{version}`: always 1; the label gives the version.
    BUILD_INFO: IntGaugeVec = gauge_vec(
        "regmirror_build_info",
        "Always 1; the version label gives the regmirror version.",
        &["version"],
    ), zero &[];

    /// `regmirror_first_runs_complete`: 1 once every mirror of the config
    /// `serve` started with has finished its first run (serve only).
    FIRST_RUNS_COMPLETE: IntGauge = IntGauge::new(
        "regmirror_first_runs_complete",
        "1 once every mirror of the config serve started with has finished its first run, else 0.",
    )
    .expect("valid metric definition"), zero &[];

    /// `regmirror_mirror_running{mirror}`: 1 while a run of the mirror is going.
    MIRROR_RUNNING: IntGaugeVec = gauge_vec(
        "regmirror_mirror_running",
        "1 while a run of the mirror is going, else 0 (serve only).",
        &["mirror"],
    ), zero &[];

    /// `regmirror_mirror_last_attempt_timestamp_seconds{mirror}`: start of the
    /// mirror's last run, whatever its result (Unix time).
    MIRROR_LAST_ATTEMPT: GaugeVec = float_gauge_vec(
        "regmirror_mirror_last_attempt_timestamp_seconds",
        "Unix time at which the mirror's last run started, whatever its result (serve only).",
        &["mirror"],
    ), zero &[];

    /// `regmirror_mirror_last_run_duration_seconds{mirror}`: wall time of the
    /// mirror's last finished run.
    MIRROR_LAST_RUN_DURATION: GaugeVec = float_gauge_vec(
        "regmirror_mirror_last_run_duration_seconds",
        "Wall time of the mirror's last finished run, whatever its result (serve only).",
        &["mirror"],
    ), zero &[];

    /// `regmirror_config_last_reload_successful`: 1 when the last config load
    /// or reload was accepted, 0 when it was rejected (the previous config runs).
    CONFIG_RELOAD_SUCCESSFUL: IntGauge = IntGauge::new(
        "regmirror_config_last_reload_successful",
        "1 when the last config load or reload was accepted, 0 when it was rejected and the previous config kept running (serve only).",
    )
    .expect("valid metric definition"), zero &[];

    /// `regmirror_config_last_reload_success_timestamp_seconds`: when a config
    /// was last accepted (Unix time).
    CONFIG_RELOAD_SUCCESS_TIME: prometheus::Gauge = prometheus::Gauge::new(
        "regmirror_config_last_reload_success_timestamp_seconds",
        "Unix time at which a config was last accepted, at start or by a reload (serve only).",
    )
    .expect("valid metric definition"), zero &[];

    /// `regmirror_config_last_reload_timestamp_seconds`: when a config was
    /// last loaded or reloaded, accepted or not (Unix time).
    CONFIG_RELOAD_TIME: prometheus::Gauge = prometheus::Gauge::new(
        "regmirror_config_last_reload_timestamp_seconds",
        "Unix time of the last config load or reload, accepted or rejected (serve only).",
    )
    .expect("valid metric definition"), zero &[];

    /// `regmirror_notifications_total{sink,result}`: run notifications by
    /// sink and outcome (`delivered`, `failed` after every try, `dropped`
    /// from a full queue or left unsent at exit).
    NOTIFICATIONS: IntCounterVec = counter_vec(
        "regmirror_notifications_total",
        "Run notifications by sink and outcome: delivered, failed (every try failed or was refused) or dropped (queue full, or still queued when the process exited).",
        &["sink", "result"],
    ), zero &[("result", NOTIFICATION_RESULTS)];

    /// `regmirror_replication_lag_seconds{mirror}`: from a new upstream
    /// digest (its event, or its first sighting by a run) to its tag written
    /// at the target.
    REPLICATION_LAG: HistogramVec = HistogramVec::new(
        HistogramOpts::new(
            "regmirror_replication_lag_seconds",
            "Seconds from a new upstream digest (the time of the event that triggered the run, else its first sighting by a run) to its tag written at the target.",
        )
        .buckets(vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0]),
        &["mirror"],
    )
    .expect("valid metric definition"), zero &[];

    /// `regmirror_config_info{hash}`: 1, labelled with the first 12 hex digits
    /// of the SHA-256 of the config file in force.
    CONFIG_INFO: IntGaugeVec = gauge_vec(
        "regmirror_config_info",
        "Always 1; the hash label gives the first 12 hex digits of the SHA-256 of the config file in force (serve only).",
        &["hash"],
    ), zero &[];

    /// `regmirror_events_total{source,result,reason}`: push events and
    /// sync-now requests of `serve`'s receiver by source kind, result
    /// (`received`, `accepted`, `rejected`) and reason (`none`, or why one
    /// was rejected).
    EVENTS: IntCounterVec = counter_vec(
        "regmirror_events_total",
        "Push events and sync-now requests by source kind (or api), result (received, accepted, rejected) and reason (none, or why it was rejected) (serve only).",
        &["source", "result", "reason"],
    ), zero &[
        ("source", &["distribution", "harbor", "github", "quay", "dockerhub", "cloudevents", "api"]),
        ("result", &["received", "accepted", "rejected"]),
        ("reason", &["none"]),
    ];
}
