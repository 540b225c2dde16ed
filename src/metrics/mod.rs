//! Every metric regmirror exports, defined in one place: one list
//! ([`families`]) declares, registers and zero-initialises each family, and
//! the functions here record events.
//!
//! Names carry the `regmirror_` prefix and Prometheus suffixes (`_total`,
//! `_bytes`, `_seconds`). Labels come only from small fixed sets: mirror
//! name, registry, method, status class, result. Never tags, digests or
//! error text.

mod families;
mod family;
mod outbound;

pub use families::*;
pub use family::Scope;
pub use outbound::*;

/// Register every metric so that each family appears on `/metrics` from the
/// start, and zero-initialise the series whose labels take fixed values
/// only (see [`zero`] for the configured mirrors and hosts).
pub fn init() {
    zero(&Scope::default());
}

/// Zero-initialise the counter series of every family for the label values
/// `scope` knows (configured mirrors, registry hosts, pull-budget accounts)
/// and the fixed values of the other labels; series that exist keep their
/// value. `serve` calls it at start and after every accepted reload.
pub fn zero(scope: &Scope) {
    for (family, fixed) in families::all() {
        if !family.is_counter() {
            continue;
        }
        let (_, labels) = family.shape();
        if labels.is_empty() {
            continue;
        }
        for set in family::label_sets(&labels, fixed, scope) {
            family.touch(&set);
        }
    }
}

/// Zero-initialise the series of a registry's pull budget, whose account
/// (`anonymous`, a user name) is known once its credentials are read.
pub fn zero_account(registry: &str, account: &str) {
    zero(&Scope {
        accounts: vec![(registry.to_string(), account.to_string())],
        ..Scope::default()
    });
}

/// Names of every family regmirror registers (`process_*` aside).
pub fn family_names() -> Vec<String> {
    families::all().iter().map(|(f, _)| f.shape().0).collect()
}

/// Count one image by result (`copied`, `skipped`, `failed`, `conflict`).
pub fn record_image(mirror: &str, result: &str) {
    IMAGES.with_label_values(&[mirror, result]).inc();
}

/// Count one failed image by kind of failure (an
/// [`crate::registry::ErrorKind`] label).
pub fn record_image_failure(mirror: &str, kind: &str) {
    IMAGE_FAILURES.with_label_values(&[mirror, kind]).inc();
}

/// Observe one image copy's wall time.
pub fn observe_copy_duration(mirror: &str, seconds: f64) {
    IMAGE_COPY_DURATION
        .with_label_values(&[mirror])
        .observe(seconds);
}

/// Record a finished mirror run (`success`, `partial`, `failed`,
/// `deferred` or `interrupted`) ending at `now` (Unix seconds): the run
/// counter, the last-success time and the consecutive-failure gauge (a
/// deferred or interrupted run neither resets nor raises it, and moves no
/// last-success time).
pub fn record_run(mirror: &str, result: &str, now: f64) {
    SYNC_RUNS.with_label_values(&[mirror, result]).inc();
    let failures = MIRROR_CONSECUTIVE_FAILURES.with_label_values(&[mirror]);
    if result == "success" {
        MIRROR_LAST_SUCCESS.with_label_values(&[mirror]).set(now);
        failures.set(0);
    } else if result != "deferred" && result != "interrupted" {
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

/// Record how many images of `mirror` are in quarantine now.
pub fn set_quarantined(mirror: &str, count: usize) {
    QUARANTINED_TAGS
        .with_label_values(&[mirror])
        .set(i64::try_from(count).unwrap_or(i64::MAX));
}

/// Record what the mirror's last scheduled audit found (findings plus
/// images that could not be checked).
pub fn set_audit_missing(mirror: &str, count: usize) {
    AUDIT_MISSING
        .with_label_values(&[mirror])
        .set(i64::try_from(count).unwrap_or(i64::MAX));
}

/// Count one scheduled run skipped because the previous one was still going.
pub fn record_run_skipped(mirror: &str) {
    RUNS_SKIPPED.with_label_values(&[mirror]).inc();
}

/// Forget every series of a mirror (it left the config), in every family
/// with a `mirror` label, whatever its other labels: an alert on a mirror
/// that no longer exists would never clear. (Its last success would
/// otherwise age into a staleness alert; a mirror also leaves a replica's
/// config when it moves to another shard.)
pub fn forget_mirror(mirror: &str) {
    for (family, _) in families::all() {
        family.forget_mirror(mirror);
    }
}

/// Record the version in `regmirror_build_info`.
pub fn set_build_info(version: &str) {
    BUILD_INFO.reset();
    BUILD_INFO.with_label_values(&[version]).set(1);
}

/// Record whether every mirror of the starting config finished its first run.
pub fn set_first_runs_complete(done: bool) {
    FIRST_RUNS_COMPLETE.set(i64::from(done));
}

/// Record the start of a mirror's run at `now` (Unix seconds).
pub fn record_run_started(mirror: &str, now: f64) {
    MIRROR_RUNNING.with_label_values(&[mirror]).set(1);
    MIRROR_LAST_ATTEMPT.with_label_values(&[mirror]).set(now);
}

/// Record the end of a mirror's run that took `seconds`.
pub fn record_run_finished(mirror: &str, seconds: f64) {
    MIRROR_RUNNING.with_label_values(&[mirror]).set(0);
    MIRROR_LAST_RUN_DURATION
        .with_label_values(&[mirror])
        .set(seconds);
}

/// Zero `regmirror_mirror_running` for `mirrors` (configured, not running yet).
pub fn zero_running(mirrors: &[String]) {
    for m in mirrors {
        let _ = MIRROR_RUNNING.with_label_values(&[m.as_str()]);
    }
}

/// Record a config load or reload at `now` (Unix seconds): accepted, with
/// the short hash of its file, or rejected (`hash` `None`; the previous
/// config's hash stays).
pub fn record_config_load(hash: Option<&str>, now: f64) {
    CONFIG_RELOAD_TIME.set(now);
    match hash {
        Some(h) => {
            CONFIG_RELOAD_SUCCESSFUL.set(1);
            CONFIG_RELOAD_SUCCESS_TIME.set(now);
            CONFIG_INFO.reset();
            CONFIG_INFO.with_label_values(&[h]).set(1);
        }
        None => CONFIG_RELOAD_SUCCESSFUL.set(0),
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
pub fn record_response(registry: &str, method: &str, status: Option<u16>) {
    let class = status.map(status_class).unwrap_or("error");
    REGISTRY_RESPONSES
        .with_label_values(&[registry, method, class])
        .inc();
}

/// Count one retry.
pub fn record_retry(registry: &str) {
    REGISTRY_RETRIES.with_label_values(&[registry]).inc();
}

/// Add `seconds` a blob transfer of `registry` waited for its bandwidth cap.
pub fn record_bandwidth_wait(registry: &str, seconds: f64) {
    BANDWIDTH_WAIT
        .with_label_values(&[registry])
        .inc_by(seconds);
}

/// Count tags dropped from a listing of `registry` for breaking the tag grammar.
pub fn record_invalid_tags(registry: &str, n: u64) {
    INVALID_TAGS.with_label_values(&[registry]).inc_by(n);
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

/// Record what is known of a registry's allowance; `None` removes a series.
pub fn set_ratelimit(
    registry: &str,
    account: &str,
    limit: Option<u64>,
    remaining: Option<u64>,
    window: Option<std::time::Duration>,
) {
    let labels = [registry, account];
    let set = |g: &prometheus::IntGaugeVec, v: Option<u64>| match v {
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

/// Count one tag pruned at `target` (a target repository of `mirror`) by
/// result (`deleted`, `would-delete`, `failed`): for the mirror, and for
/// the target.
pub fn record_pruned(mirror: &str, target: &str, result: &str) {
    PRUNED_TAGS.with_label_values(&[mirror, result]).inc();
    TARGET_PRUNED_TAGS
        .with_label_values(&[mirror, target, result])
        .inc();
}

/// Count one prune of `target` (a target repository of `mirror`) stopped by
/// a guard rail: for the mirror, and for the target.
pub fn record_prune_refused(mirror: &str, target: &str) {
    PRUNE_REFUSED.with_label_values(&[mirror]).inc();
    TARGET_PRUNE_REFUSED
        .with_label_values(&[mirror, target])
        .inc();
}

/// Count one backup tag written.
pub fn record_backup(mirror: &str) {
    BACKUPS.with_label_values(&[mirror]).inc();
}

/// Count catalog names skipped because they break the repository grammar.
pub fn record_catalog_invalid_names(registry: &str, n: u64) {
    CATALOG_INVALID_NAMES
        .with_label_values(&[registry])
        .inc_by(n);
}

/// Count one event (or sync-now request) of the receiver: `source` is the
/// source kind or `api`, `result` `received`, `accepted` or `rejected`,
/// `reason` `none` or why it was rejected (a fixed word, never input).
pub fn record_event(source: &str, result: &str, reason: &str) {
    EVENTS.with_label_values(&[source, result, reason]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The family names `docs/metrics.md` lists in its table.
    fn documented() -> Vec<String> {
        include_str!("../../docs/metrics.md")
            .lines()
            .filter_map(|l| l.strip_prefix("| `regmirror_"))
            .filter_map(|l| l.split('`').next())
            .map(|n| format!("regmirror_{n}"))
            .collect()
    }

    #[test]
    fn every_family_is_documented_and_every_documented_one_exists() {
        let mut code = family_names();
        let mut docs = documented();
        code.sort();
        docs.sort();
        assert_eq!(code, docs);
    }

    #[test]
    fn counters_start_at_zero_for_the_configured_mirrors_and_hosts() {
        zero(&Scope {
            mirrors: vec!["zeroed".into()],
            hosts: vec!["zeroed.test".into()],
            accounts: vec![("zeroed.test".into(), "anonymous".into())],
            targets: vec![("zeroed".into(), "zeroed.test/app".into())],
        });
        let text = render();
        for line in [
            "regmirror_sync_runs_total{mirror=\"zeroed\",result=\"partial\"} 0",
            "regmirror_image_failures_total{kind=\"rate-limited\",mirror=\"zeroed\"} 0",
            "regmirror_registry_retries_total{registry=\"zeroed.test\"} 0",
            "regmirror_registry_responses_total{method=\"HEAD\",registry=\"zeroed.test\",status=\"429\"} 0",
            "regmirror_pull_budget_refused_total{account=\"anonymous\",registry=\"zeroed.test\"} 0",
            "regmirror_ratelimit_headers_malformed_total{registry=\"zeroed.test\"} 0",
            "regmirror_referrers_total{result=\"filtered\"} 0",
            "regmirror_cosign_tags_copied_total 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(
            !text.contains("regmirror_mirror_last_success_timestamp_seconds{mirror=\"zeroed\"}")
        );
        assert!(!text.contains(
            "regmirror_ratelimit_remaining{account=\"anonymous\",registry=\"zeroed.test\"}"
        ));
        for line in [
            "regmirror_target_pruned_tags_total{mirror=\"zeroed\",result=\"would-delete\",target=\"zeroed.test/app\"} 0",
            "regmirror_target_prune_refused_total{mirror=\"zeroed\",target=\"zeroed.test/app\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

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
