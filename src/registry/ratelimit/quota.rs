//! What a registry announces of its pull allowance (`ratelimit-*`
//! headers), what regmirror knows of it, and why a manifest GET was
//! refused: the data the copy engine and the run report read.

use std::time::Duration;

use serde::Serialize;

/// Pulls kept in reserve on Docker Hub when `pull_budget_floor` is not set:
/// a tenth of the anonymous allowance (100 per 6 hours), enough for a few
/// manual multi-arch pulls from the same address during an incident.
pub const DOCKER_HUB_DEFAULT_FLOOR: u64 = 10;
/// Largest count accepted in a header.
pub const MAX_COUNT: u64 = 1_000_000_000;
/// Longest window accepted (7 days).
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest header value read.
pub const MAX_HEADER_LEN: usize = 256;
/// How long an allowance announced without a window is remembered.
pub const NO_WINDOW_LIFETIME: Duration = Duration::from_secs(60);
/// How long the circuit stays open after a pull-limit 429 that names no
/// window and no `Retry-After`, when no window is known either.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(3600);

/// One parsed `ratelimit-*` header: a count and its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// The allowance or the pulls left.
    pub count: u64,
    /// The window, when given (`w=`).
    pub window: Option<Duration>,
}

/// Parse `N` or `N;w=SECONDS` (other parameters ignored). `None` for
/// anything malformed or out of bounds.
pub fn parse_quota(value: &[u8]) -> Option<Quota> {
    if value.len() > MAX_HEADER_LEN {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split(';');
    let count = bounded_int(parts.next()?.trim(), MAX_COUNT)?;
    let mut window = None;
    for p in parts {
        let (k, v) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("w") {
            let secs = bounded_int(v.trim(), MAX_WINDOW.as_secs())?;
            if secs == 0 || window.is_some() {
                return None;
            }
            window = Some(Duration::from_secs(secs));
        }
    }
    Some(Quota { count, window })
}

fn bounded_int(s: &str, max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().filter(|v| *v <= max)
}

/// Why a manifest GET was not sent (the image is deferred, not failed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    /// The registry whose allowance it is.
    pub registry: String,
    /// Manifest GETs the work needed.
    pub needed: u64,
    /// Pulls left in the window as regmirror counts them (the last answer
    /// minus GETs in flight); `None` when the circuit is open.
    pub available: Option<u64>,
    /// The `pull_budget_floor` kept in reserve.
    pub floor: u64,
    /// True when a pull-limit 429 opened the circuit.
    pub circuit: bool,
    /// Seconds until the window resets (the circuit closes), when known.
    pub retry_in_seconds: Option<f64>,
}

impl Refusal {
    /// When to try again, when known.
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry_in_seconds
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let when = match self.retry_in_seconds {
            Some(s) => format!("in about {}s", s.ceil() as u64),
            None => "when the registry announces a new allowance".to_string(),
        };
        if self.circuit {
            write!(
                f,
                "registry {} answered that its pull limit is reached (HTTP 429); regmirror sends \
                 it no manifest GET until the window resets ({when}), so nothing of this image \
                 was written; try again then, or authenticate for a higher allowance",
                self.registry
            )
        } else {
            write!(
                f,
                "registry {} has {} pulls left in this window and pull_budget_floor keeps {} in \
                 reserve, so the next {} manifest GET(s) of this image were not sent and nothing \
                 of it was written; try again when the window resets ({when}), lower \
                 pull_budget_floor for this registry, or authenticate for a higher allowance",
                self.registry,
                self.available.unwrap_or(0),
                self.floor,
                self.needed
            )
        }
    }
}

/// What regmirror knows of a registry's allowance now (see [`crate::registry::Client::pull_allowance`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Allowance {
    /// The registry.
    pub registry: String,
    /// The allowance per window, when announced.
    pub limit: Option<u64>,
    /// Pulls left, GETs in flight already taken off; `None`: not known
    /// (no headers seen, or the window ended), which means no limit.
    pub available: Option<u64>,
    /// The reserve kept.
    pub floor: u64,
    /// True while a pull-limit 429's circuit is open.
    pub circuit: bool,
    /// Time until the window ends or the circuit closes, when known.
    pub retry_in: Option<Duration>,
}

impl Allowance {
    /// `None` when `needed` manifest GETs fit above the floor, else why not.
    pub fn refuse(&self, needed: u64) -> Option<Refusal> {
        let short = match self.available {
            _ if self.circuit => true,
            Some(a) => a < self.floor.saturating_add(needed),
            None => false,
        };
        short.then(|| Refusal {
            registry: self.registry.clone(),
            needed,
            available: if self.circuit { None } else { self.available },
            floor: self.floor,
            circuit: self.circuit,
            retry_in_seconds: self.retry_in.map(|d| d.as_secs_f64()),
        })
    }
}
