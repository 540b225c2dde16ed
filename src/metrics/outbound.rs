//! Recording what leaves the process after a run: run notifications by
//! sink (`regmirror_notifications_total`) and the replication lag of each
//! tag written (`regmirror_replication_lag_seconds`).

use super::families::{NOTIFICATION_RESULTS, NOTIFICATIONS, REPLICATION_LAG};

/// Zero `regmirror_notifications_total` for `sinks` (their names), so a
/// sink's series exist before its first delivery.
pub fn zero_notifications(sinks: &[String]) {
    for sink in sinks {
        for result in NOTIFICATION_RESULTS {
            let _ = NOTIFICATIONS.with_label_values(&[sink.as_str(), result]);
        }
    }
}

/// Count one notification of `sink` by outcome (`delivered`, `failed`,
/// `dropped`).
pub fn record_notification(sink: &str, result: &str) {
    NOTIFICATIONS.with_label_values(&[sink, result]).inc();
}

/// Observe the replication lag of one tag of `mirror` written at its target.
pub fn observe_replication_lag(mirror: &str, seconds: f64) {
    REPLICATION_LAG
        .with_label_values(&[mirror])
        .observe(seconds.max(0.0));
}
