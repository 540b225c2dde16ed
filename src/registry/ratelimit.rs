//! Pull allowances announced by registries, the floor kept in reserve, and
//! the circuit a pull-limit 429 opens.
//!
//! Docker Hub counts manifest GETs (not HEADs) against an allowance per
//! window and announces it on manifest answers: `ratelimit-limit: 100;w=21600`
//! and `ratelimit-remaining: 76;w=21600` (allowance or pulls left; window in
//! seconds). regmirror reads them from every manifest answer, keeps
//! `pull_budget_floor` pulls in reserve, and refuses a manifest GET that
//! would spend into that reserve: the copy engine defers the image instead
//! of failing it.
//!
//! State lifetime: one [`PullBudget`] per registry host of a
//! [`super::Client`], that is per registry and credential (a client holds
//! one credential per registry; a new client, such as `serve` builds after a
//! reload, starts with nothing remembered). What it remembers goes stale by
//! itself:
//! - an allowance lives until its window ends (`w` seconds after the answer
//!   that announced it, at most [`MAX_WINDOW`]; [`NO_WINDOW_LIFETIME`] when
//!   no window was given); after that the registry is unknown again, which
//!   means no limit, until the next answer;
//! - a later answer replaces it when its request was sent after the
//!   remembered answer arrived (so the registry counted everything before),
//!   or when it shows fewer pulls left or another limit; a higher count from
//!   a request that overlapped the remembered answer may be stale (answers
//!   of concurrent requests overtake each other), so it is not trusted;
//! - a registry that never sends the headers never has state: no limit;
//! - the circuit a pull-limit 429 opened closes at its deadline.
//!
//! Every value is bounded: counts above [`MAX_COUNT`], windows above
//! [`MAX_WINDOW`], headers longer than [`MAX_HEADER_LEN`] or not of the
//! form `N[;w=SECONDS]` are ignored and counted in
//! `regmirror_ratelimit_headers_malformed_total`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde::Serialize;

use super::auth::Credentials;
use super::error::{Error, Op, RegistryErrorCode};
use crate::metrics;

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

/// What regmirror knows of a registry's allowance now (see [`super::Client::pull_allowance`]).
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

#[derive(Debug, Clone, Copy)]
struct Window {
    limit: Option<u64>,
    remaining: u64,
    ends_at: Instant,
    length: Option<Duration>,
    /// When the answer that announced it arrived.
    seen_at: Instant,
}

#[derive(Debug, Default)]
struct State {
    window: Option<Window>,
    /// Manifest GETs sent and not yet answered.
    in_flight: u64,
    circuit_until: Option<Instant>,
}

impl State {
    fn expire(&mut self, now: Instant) {
        if self.window.is_some_and(|w| w.ends_at <= now) {
            self.window = None;
        }
        if self.circuit_until.is_some_and(|t| t <= now) {
            self.circuit_until = None;
        }
    }
}

/// The pull allowance of one registry and credential.
pub(crate) struct PullBudget {
    registry: String,
    /// Metrics label for the credential: `anonymous`, the user name, or
    /// `identity-token`; never a secret.
    account: String,
    floor: u64,
    state: Mutex<State>,
}

/// A manifest GET admitted by [`PullBudget::admit`]; dropping it without
/// [`Ticket::answered`] (no answer, or an answer without headers) counts the
/// GET as spent.
pub(crate) struct Ticket<'a> {
    budget: &'a PullBudget,
    fresh: bool,
    sent_at: Instant,
}

impl Ticket<'_> {
    /// The GET was answered: learn from the answer's headers.
    pub fn answered(&mut self, headers: &HeaderMap) {
        self.fresh = self.budget.observe(headers, self.sent_at);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut s = self.budget.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if !self.fresh
            && let Some(w) = &mut s.window
        {
            w.remaining = w.remaining.saturating_sub(1);
        }
        self.budget.export(&s);
    }
}

impl PullBudget {
    /// The budget of `registry` with `credentials`; `floor`: the configured
    /// `pull_budget_floor`, else [`DOCKER_HUB_DEFAULT_FLOOR`] for Docker Hub
    /// and 0 elsewhere.
    pub fn new(registry: &str, credentials: &Credentials, floor: Option<u64>) -> PullBudget {
        let account = match credentials {
            Credentials::Anonymous => "anonymous".to_string(),
            Credentials::Basic { username, .. } => username.clone(),
            Credentials::IdentityToken {
                username: Some(u), ..
            } => u.clone(),
            Credentials::IdentityToken { .. } => "identity-token".to_string(),
        };
        let default = if registry == super::reference::DOCKER_HUB {
            DOCKER_HUB_DEFAULT_FLOOR
        } else {
            0
        };
        PullBudget {
            registry: registry.to_string(),
            account,
            floor: floor.unwrap_or(default),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is known now.
    pub fn allowance(&self) -> Allowance {
        self.allowance_in(&mut self.lock(), Instant::now())
    }

    fn allowance_in(&self, s: &mut State, now: Instant) -> Allowance {
        s.expire(now);
        let circuit = s.circuit_until.is_some();
        let retry_in = s
            .circuit_until
            .or(s.window.map(|w| w.ends_at))
            .map(|t| t.saturating_duration_since(now));
        Allowance {
            registry: self.registry.clone(),
            limit: s.window.and_then(|w| w.limit),
            available: s.window.map(|w| w.remaining.saturating_sub(s.in_flight)),
            floor: self.floor,
            circuit,
            retry_in,
        }
    }

    /// Admit one manifest GET, or refuse it (circuit open, or the floor
    /// would be crossed). Other requests are always admitted (`None`).
    pub fn admit(&self, op: Op, target: &str) -> Result<Option<Ticket<'_>>, Error> {
        if op != Op::GetManifest {
            return Ok(None);
        }
        // Checked and counted under one lock: two GETs racing for the last
        // pull above the floor cannot both pass.
        let mut s = self.lock();
        if let Some(refusal) = self.allowance_in(&mut s, Instant::now()).refuse(1) {
            drop(s);
            metrics::record_pull_refused(&self.registry, &self.account);
            return Err(Error::PullBudget {
                op,
                target: target.to_string(),
                refusal,
            });
        }
        s.in_flight += 1;
        drop(s);
        Ok(Some(Ticket {
            budget: self,
            fresh: false,
            sent_at: Instant::now(),
        }))
    }

    /// Learn from the headers of a manifest answer to a request sent at
    /// `sent_at`; true when they carried a usable `ratelimit-remaining`.
    pub fn observe(&self, headers: &HeaderMap, sent_at: Instant) -> bool {
        let read = |name: &str| -> Option<Option<Quota>> {
            let v = headers.get(name)?;
            let q = parse_quota(v.as_bytes());
            if q.is_none() {
                metrics::record_ratelimit_malformed(&self.registry);
            }
            Some(q)
        };
        let Some(Some(remaining)) = read("ratelimit-remaining") else {
            return false;
        };
        let limit = read("ratelimit-limit").flatten();
        let length = remaining.window.or(limit.and_then(|l| l.window));
        let now = Instant::now();
        let new = Window {
            limit: limit.map(|l| l.count),
            remaining: remaining.count,
            ends_at: now + length.unwrap_or(NO_WINDOW_LIFETIME),
            length,
            seen_at: now,
        };
        let mut s = self.lock();
        s.expire(now);
        let replace = match &s.window {
            None => true,
            Some(old) => {
                sent_at > old.seen_at || old.limit != new.limit || new.remaining <= old.remaining
            }
        };
        if replace {
            s.window = Some(new);
        }
        self.export(&s);
        true
    }

    /// A 429 on a manifest GET: when its headers or body say the pull limit
    /// is reached, open the circuit until the window resets and return the
    /// error to give instead of retrying.
    pub fn on_too_many_requests(
        &self,
        op: Op,
        target: &str,
        headers: &HeaderMap,
        codes: &[RegistryErrorCode],
        retry_after: Option<Duration>,
    ) -> Option<Error> {
        if op != Op::GetManifest || !is_pull_limit(headers, codes) {
            return None;
        }
        // The ticket of this GET already learnt from these headers.
        let now = Instant::now();
        let mut s = self.lock();
        s.expire(now);
        let window = headers
            .get("ratelimit-remaining")
            .and_then(|v| parse_quota(v.as_bytes()))
            .and_then(|q| q.window);
        let pause = retry_after
            .filter(|d| *d <= MAX_WINDOW)
            .or(window)
            .or(s.window.map(|w| w.ends_at.saturating_duration_since(now)))
            .unwrap_or(DEFAULT_PAUSE);
        s.circuit_until = Some(now + pause);
        if let Some(w) = &mut s.window {
            w.remaining = 0;
        }
        self.export(&s);
        drop(s);
        metrics::record_pull_circuit_opened(&self.registry, &self.account);
        tracing::warn!(registry = %self.registry, pause_seconds = pause.as_secs(), "pull limit reached: no manifest GET to this registry until its window resets");
        Some(Error::PullBudget {
            op,
            target: target.to_string(),
            refusal: Refusal {
                registry: self.registry.clone(),
                needed: 1,
                available: None,
                floor: self.floor,
                circuit: true,
                retry_in_seconds: Some(pause.as_secs_f64()),
            },
        })
    }

    fn export(&self, s: &State) {
        let w = s.window;
        metrics::set_ratelimit(
            &self.registry,
            &self.account,
            w.and_then(|w| w.limit),
            w.map(|w| w.remaining),
            w.and_then(|w| w.length),
        );
    }
}

/// True when a 429 says the pull limit was reached: `ratelimit-remaining`
/// is 0, or the body has `TOOMANYREQUESTS` with a message about the pull
/// rate limit (Docker Hub: "You have reached your pull rate limit").
pub fn is_pull_limit(headers: &HeaderMap, codes: &[RegistryErrorCode]) -> bool {
    let zero = headers
        .get("ratelimit-remaining")
        .and_then(|v| parse_quota(v.as_bytes()))
        .is_some_and(|q| q.count == 0);
    zero || codes.iter().any(|c| {
        c.code.eq_ignore_ascii_case("TOOMANYREQUESTS")
            && c.message.to_ascii_lowercase().contains("pull rate limit")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(remaining: &str, limit: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "ratelimit-remaining",
            HeaderValue::from_str(remaining).unwrap(),
        );
        if let Some(l) = limit {
            h.insert("ratelimit-limit", HeaderValue::from_str(l).unwrap());
        }
        h
    }

    #[test]
    fn parses_docker_hub_headers_and_refuses_hostile_ones() {
        assert_eq!(
            parse_quota(b"100;w=21600"),
            Some(Quota {
                count: 100,
                window: Some(Duration::from_secs(21600))
            })
        );
        assert_eq!(
            parse_quota(b" 7 ; W=60 ; comment=\"x\""),
            Some(Quota {
                count: 7,
                window: Some(Duration::from_secs(60))
            })
        );
        assert_eq!(parse_quota(b"5").unwrap().window, None);
        for bad in [
            &b""[..],
            b"-1;w=60",
            b"1e3",
            b"abc",
            b"10;w=0",
            b"10;w=-5",
            b"10;w=60;w=61",
            b"10;w",
            b"99999999999999999999",
            b"1000000001",
            b"10;w=604801",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_quota(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            parse_quota(format!("1;{}", "x".repeat(300)).as_bytes()),
            None
        );
    }

    #[test]
    fn the_floor_is_never_crossed_and_answers_replace_the_state() {
        let b = PullBudget::new("hub.test", &Credentials::Anonymous, Some(3));
        let early = Instant::now();
        // No headers yet: no limit.
        assert!(b.allowance().refuse(1000).is_none());
        assert!(b.observe(&headers("5;w=60", Some("100;w=60")), early));
        let a = b.allowance();
        assert_eq!((a.limit, a.available), (Some(100), Some(5)));
        assert!(a.refuse(2).is_none());
        let r = a.refuse(3).unwrap();
        assert_eq!((r.available, r.floor, r.needed), (Some(5), 3, 3));
        // Two GETs in flight take the two pulls above the floor.
        let t1 = b.admit(Op::GetManifest, "x").unwrap();
        let t2 = b.admit(Op::GetManifest, "x").unwrap();
        assert!(matches!(
            b.admit(Op::GetManifest, "x"),
            Err(Error::PullBudget { .. })
        ));
        // HEADs are never gated.
        assert!(b.admit(Op::HeadManifest, "x").unwrap().is_none());
        // An answer without headers counts the GET as spent.
        drop(t1);
        assert_eq!(b.allowance().available, Some(3));
        drop(t2);
        assert_eq!(b.allowance().available, Some(3));
        assert!(b.admit(Op::GetManifest, "x").is_err());
        // A higher count from a request that overlapped the last answer
        // may be stale: not trusted; a lower one is.
        b.observe(&headers("50;w=60", Some("100;w=60")), early);
        assert_eq!(b.allowance().available, Some(3));
        b.observe(&headers("1;w=60", Some("100;w=60")), early);
        assert_eq!(b.allowance().available, Some(1));
        // A request sent after the last answer arrived sees the registry's
        // current count (a sliding window gave pulls back).
        std::thread::sleep(Duration::from_millis(5));
        b.observe(&headers("40;w=60", Some("100;w=60")), Instant::now());
        assert_eq!(b.allowance().available, Some(40));
        // Another limit (a login, another plan) replaces it.
        b.observe(&headers("200;w=60", Some("200;w=60")), early);
        assert_eq!(b.allowance().available, Some(200));
        // Malformed headers are ignored, and counted.
        assert!(!b.observe(&headers("lots", None), Instant::now()));
        assert_eq!(b.allowance().available, Some(200));
        let text = metrics::render();
        for line in [
            "regmirror_ratelimit_remaining{account=\"anonymous\",registry=\"hub.test\"} 200",
            "regmirror_ratelimit_limit{account=\"anonymous\",registry=\"hub.test\"} 200",
            "regmirror_ratelimit_window_seconds{account=\"anonymous\",registry=\"hub.test\"} 60",
            "regmirror_ratelimit_headers_malformed_total{registry=\"hub.test\"} 1",
            "regmirror_pull_budget_refused_total{account=\"anonymous\",registry=\"hub.test\"} 2",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
    }

    /// Many GETs racing for the last pulls above the floor, many times:
    /// exactly as many pass as there are pulls above it.
    #[test]
    fn racing_gets_never_cross_the_floor_repeated() {
        for round in 0..50 {
            let b = PullBudget::new("hub-race.test", &Credentials::Anonymous, Some(4));
            b.observe(&headers("7;w=60", None), Instant::now());
            let barrier = std::sync::Barrier::new(16);
            let admitted = std::sync::atomic::AtomicU64::new(0);
            std::thread::scope(|scope| {
                for _ in 0..16 {
                    scope.spawn(|| {
                        barrier.wait();
                        let t = b.admit(Op::GetManifest, "x").ok().flatten();
                        if t.is_some() {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        // Held until every thread has tried.
                        barrier.wait();
                        drop(t);
                    });
                }
            });
            assert_eq!(admitted.into_inner(), 3, "round {round}");
        }
    }

    #[test]
    fn a_window_ends_by_itself() {
        let b = PullBudget::new("hub-window.test", &Credentials::Anonymous, None);
        assert_eq!(b.floor, 0);
        b.observe(&headers("0;w=1", None), Instant::now());
        assert!(b.allowance().refuse(1).is_some());
        std::thread::sleep(Duration::from_millis(1100));
        let a = b.allowance();
        assert_eq!(a.available, None);
        assert!(a.refuse(1).is_none());
    }

    #[test]
    fn a_pull_limit_429_opens_the_circuit_until_the_window_resets() {
        let b = PullBudget::new("docker.io", &Credentials::Anonymous, None);
        assert_eq!(b.floor, DOCKER_HUB_DEFAULT_FLOOR);
        let codes = Error::parse_codes(
            br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"}]}"#,
        );
        assert!(is_pull_limit(&HeaderMap::new(), &codes));
        let slow_down =
            Error::parse_codes(br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#);
        assert!(!is_pull_limit(&HeaderMap::new(), &slow_down));
        assert!(is_pull_limit(&headers("0;w=21600", None), &slow_down));
        // Not for HEADs, nor for other throttling.
        assert!(
            b.on_too_many_requests(Op::HeadManifest, "x", &HeaderMap::new(), &codes, None)
                .is_none()
        );
        assert!(
            b.on_too_many_requests(Op::GetManifest, "x", &HeaderMap::new(), &slow_down, None)
                .is_none()
        );
        let e = b
            .on_too_many_requests(
                Op::GetManifest,
                "x",
                &HeaderMap::new(),
                &codes,
                Some(Duration::from_secs(1)),
            )
            .unwrap();
        assert!(e.to_string().contains("pull limit is reached"), "{e}");
        assert!(b.allowance().circuit);
        assert!(b.admit(Op::GetManifest, "x").is_err());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(!b.allowance().circuit);
        assert!(b.admit(Op::GetManifest, "x").unwrap().is_some());
        assert!(
            metrics::render()
                .contains("regmirror_pull_limit_circuit_opened_total{account=\"anonymous\",registry=\"docker.io\"}"),
        );
        // Without Retry-After, the announced window sets the pause.
        let e = b
            .on_too_many_requests(
                Op::GetManifest,
                "x",
                &headers("0;w=120", None),
                &codes,
                None,
            )
            .unwrap();
        let Error::PullBudget { refusal, .. } = e else {
            panic!("{e}")
        };
        assert_eq!(refusal.retry_in_seconds, Some(120.0));
    }
}
