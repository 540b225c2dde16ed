//! The time the run-state store and `min_age` go by, in Unix seconds.
//!
//! It is the system clock. Builds with debug assertions (the ones `cargo
//! test` runs) also read `REGMIRROR_TEST_CLOCK` (Unix seconds), so that
//! integration tests can move time past a `min_age` or a
//! `full_check_every` without waiting. Release builds do not contain that
//! code at all: no environment, flag or file can shift the clock of a
//! production binary, so a hold or a full check cannot be skipped by
//! setting a variable on a deployed process.

use std::time::{SystemTime, UNIX_EPOCH};

/// The variable debug builds read as the current time (see the module doc).
pub const TEST_CLOCK_VAR: &str = "REGMIRROR_TEST_CLOCK";

/// Now, in Unix seconds.
pub fn now() -> u64 {
    #[cfg(debug_assertions)]
    if let Some(t) = std::env::var(TEST_CLOCK_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return t;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `secs` (Unix seconds) as RFC 3339 UTC, for reports.
pub fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(
            || secs.to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
}
