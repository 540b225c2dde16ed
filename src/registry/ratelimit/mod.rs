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
//! State lifetime: one pull budget per registry host of a
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

pub(crate) mod quota;

pub use super::http::pulls::is_pull_limit;
pub use quota::{
    Allowance, DEFAULT_PAUSE, DOCKER_HUB_DEFAULT_FLOOR, MAX_COUNT, MAX_HEADER_LEN, MAX_WINDOW,
    NO_WINDOW_LIFETIME, Quota, Refusal, parse_quota,
};
