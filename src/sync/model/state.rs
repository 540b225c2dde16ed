//! What a mirror lets the run-state store decide (see
//! [`crate::sync::state`]): tags trusted to stay put, how often everything is
//! checked anyway, and how long a new upstream digest waits.

use std::time::Duration;

use regex::Regex;

/// `full_check_every` unless the mirror sets it: a day.
pub const DEFAULT_FULL_CHECK_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The longest `min_age` and `full_check_every` accepted: the store keeps
/// entries 30 days (see [`crate::sync::state::tables`]).
pub const MAX_STATE_INTERVAL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A mirror's `immutable_tags`, `full_check_every` and `min_age`.
#[derive(Debug, Clone)]
pub struct StatePolicy {
    /// Tags whose recorded mirroring is trusted without a request, until
    /// `full_check_every` has passed since it was last checked.
    pub immutable_tags: Option<Regex>,
    /// How long a record of an immutable tag is trusted.
    pub full_check_every: Duration,
    /// How long a new upstream digest of a tag is seen before it is copied.
    pub min_age: Option<Duration>,
}

impl Default for StatePolicy {
    fn default() -> Self {
        StatePolicy {
            immutable_tags: None,
            full_check_every: DEFAULT_FULL_CHECK_EVERY,
            min_age: None,
        }
    }
}

impl StatePolicy {
    /// True when `tag` is declared immutable.
    pub fn is_immutable(&self, tag: &str) -> bool {
        self.immutable_tags
            .as_ref()
            .is_some_and(|r| r.is_match(tag))
    }
}
