//! The push-event receiver of `serve` (`POST /events/{source}`) and the
//! sync-now API (see [`api`]), on `[events] listen`: its own listener,
//! never the metrics port, served by the same capped endpoint (connection
//! cap, header timeout, connection lifetime) plus:
//!
//! - a body cap of [`MAX_BODY`] bytes, read within [`BODY_TIMEOUT`];
//! - a rate limit per source (`rate_per_minute`), answered 429;
//! - each source's secret checked in constant time (see [`verify`]);
//! - an event maps only to mirrors whose source is on the source's
//!   registry and covers the repository (and tag) it names: it can narrow
//!   what a mirror writes, never widen it ([`mirrors_for`]); an unsigned
//!   source (Quay, Docker Hub) only ever makes a configured repository be
//!   checked again.
//!
//! Every request to a configured source counts in
//! `regmirror_events_total{source,result="received"}`, then as `accepted`
//! (runs asked for) or `rejected` with a reason. An event that names no
//! push (a ping, a pull) is answered 200 and counted only as received.
//! A distribution envelope is answered 2xx even when a repository of it
//! is not mirrored (counted as rejected, `unknown_repository`): the
//! registry retries a refused envelope until it is accepted, which would
//! hold every later notification back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub(super) mod api;
mod payload;
pub mod shards;
pub mod verify;

use super::Shared;
use crate::metrics;
use crate::sync::config::{Config, Mirror, Selection};
use crate::sync::events_config::{EventSource, SourceKind};
use crate::sync::run::Only;
use payload::{Named, Payload};
use verify::Refusal;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// Time a client has to send the whole body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the receiver knows: the config in force and each source's rate.
#[derive(Default)]
pub(super) struct Receiver {
    config: RwLock<Arc<Config>>,
    sharding: RwLock<Option<Arc<shards::Sharding>>>,
    /// Per source (or `api`): the minute and the requests seen in it.
    rates: Mutex<HashMap<String, (u64, u32)>>,
}

impl Receiver {
    /// Take `config` as the one in force (at start and at each accepted reload).
    pub(super) fn set_config(&self, config: &Config) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config.clone());
    }

    /// Take `sharding` (with more than one shard) as the one in force.
    pub(super) fn set_sharding(&self, sharding: Option<&shards::Sharding>) {
        *self
            .sharding
            .write()
            .unwrap_or_else(PoisonError::into_inner) = sharding.cloned().map(Arc::new);
    }

    fn sharding(&self) -> Option<Arc<shards::Sharding>> {
        self.sharding
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// True while `key` stays within `per_minute` requests this minute.
    fn within_rate(&self, key: &str, per_minute: u32) -> bool {
        let minute = (crate::sync::run::unix_now() / 60.0) as u64;
        let mut rates = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = rates.entry(key.to_string()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= per_minute
    }
}

/// Start the events listener of `config` (`[events] listen`), if any,
/// until `stop` is cancelled.
pub(super) async fn start(
    config: &Config,
    shared: Arc<Shared>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, super::ServeError> {
    let Some(addr) = config.events.listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| super::ServeError::EventsBind { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let names: Vec<&str> = config
        .events
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    tracing::info!(listen = %bound, sources = ?names, api = config.events.api_token.is_some(), "event receiver started");
    let app = router(shared);
    Ok(Some(tokio::spawn(super::endpoint::serve(
        listener, app, stop,
    ))))
}

/// The routes of the events listener.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/events/{source}", post(event_handler))
        .route("/api/v1/mirrors/{name}/sync", post(api::sync_handler))
        .route("/api/v1/runs/{id}", get(api::run_handler))
        .with_state(shared)
}

/// A JSON answer.
pub(super) fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

/// A refusal: counted under `label` with `reason`, answered `status` with `message`.
pub(super) fn refuse(label: &str, status: StatusCode, reason: &str, message: &str) -> Response {
    metrics::record_event(label, "rejected", reason);
    tracing::warn!(
        source = label,
        reason,
        status = status.as_u16(),
        message,
        "event refused"
    );
    answer(
        status,
        serde_json::json!({ "error": message, "reason": reason }),
    )
}

/// The body, at most [`MAX_BODY`] bytes within [`BODY_TIMEOUT`]; else the
/// refusal's status, reason and words.
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, (StatusCode, &'static str, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is over {MAX_BODY} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
        Ok(Err(_)) => Err(too_large()),
        Ok(Ok(b)) => Ok(b),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn event_handler(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let config = shared.receiver.config();
    let Some(source) = config.events.sources.iter().find(|s| s.name == name) else {
        return answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "no such event source: the path is /events/NAME with NAME an [[events.source]] name" }),
        );
    };
    let label = source.kind.label();
    metrics::record_event(label, "received", "none");
    if !shared
        .receiver
        .within_rate(&source.name, source.rate_per_minute)
    {
        let why = format!(
            "more than {} events this minute from source {:?}",
            source.rate_per_minute, source.name
        );
        return refuse(label, StatusCode::TOO_MANY_REQUESTS, "rate_limited", &why);
    }
    let (parts, body) = request.into_parts();
    let body = match read_body(&parts.headers, body).await {
        Ok(b) => b,
        Err((status, reason, why)) => return refuse(label, status, reason, &why),
    };
    if let Err(r) = authentic(source, &parts.headers, &body) {
        let why = format!("source {:?}: {}", source.name, refusal_words(source, r));
        return refuse(label, StatusCode::UNAUTHORIZED, r.reason(), &why);
    }
    let event = header_str(&parts.headers, "x-github-event");
    let named = match payload::parse(source.kind, event, &body) {
        Ok(Payload::Pushes(n)) => n,
        Ok(Payload::Nothing(why)) => {
            return answer(
                StatusCode::OK,
                serde_json::json!({ "runs": [], "ignored": why }),
            );
        }
        Err(why) => return refuse(label, StatusCode::BAD_REQUEST, "bad_payload", &why),
    };
    let request = (&parts.headers, &body);
    act(&shared, &config, source, named, request).await
}

/// What the source's check says of the request.
fn authentic(source: &EventSource, headers: &HeaderMap, body: &[u8]) -> Result<(), Refusal> {
    let Some(secret) = &source.secret else {
        return Ok(()); // An unsigned kind: only configured repositories, re-checked.
    };
    let secret = secret.expose();
    let auth = header_str(headers, "authorization");
    match source.kind {
        SourceKind::Distribution | SourceKind::Harbor => verify::authorization(auth, secret),
        SourceKind::Github => {
            verify::signature(header_str(headers, "x-hub-signature-256"), secret, body)
        }
        SourceKind::Cloudevents if source.bearer => verify::bearer(auth, secret),
        SourceKind::Cloudevents => {
            let stamp = header_str(headers, "x-regmirror-timestamp");
            let now = crate::sync::run::unix_now() as i64;
            let t = verify::fresh(stamp, now)?;
            let mut signed = format!("{t}.").into_bytes();
            signed.extend_from_slice(body);
            verify::signature(
                header_str(headers, "x-regmirror-signature"),
                secret,
                &signed,
            )
        }
        SourceKind::Quay | SourceKind::Dockerhub => Ok(()),
    }
}

fn refusal_words(source: &EventSource, r: Refusal) -> &'static str {
    match (source.kind, r) {
        (SourceKind::Github, Refusal::Signature) => {
            "X-Hub-Signature-256 is missing or does not match the body under the configured secret"
        }
        (_, Refusal::Signature) => {
            "X-Regmirror-Signature is missing or does not match the timestamp and body under the configured secret"
        }
        (_, Refusal::Replay) => {
            "X-Regmirror-Timestamp is missing or more than 300 s from now (a replayed or delayed event); check the sender's clock"
        }
        (_, Refusal::Auth) => "the Authorization header is missing or is not the configured secret",
    }
}

/// Ask for the runs `named` maps to on this replica, hand the rest to the
/// replicas that own it (see [`shards`]); answer which.
async fn act(
    shared: &Shared,
    config: &Config,
    source: &EventSource,
    named: Vec<Named>,
    request: (&HeaderMap, &Bytes),
) -> Response {
    let label = source.kind.label();
    let reason = format!("event:{}", source.name);
    let sharding = shared.receiver.sharding();
    let (mut runs, mut unknown, mut owners) = (Vec::new(), Vec::new(), Vec::new());
    for mut n in named {
        if source.kind.unsigned() {
            n.tag = None; // Unsigned: the tags it names are not trusted.
        }
        let allowed = source.repositories.is_empty() || source.repositories.contains(&n.repository);
        let (targets, elsewhere) = match (allowed, &sharding) {
            (false, _) => (Vec::new(), Vec::new()),
            (true, None) => (mirrors_for(&config.mirrors, source, &n), Vec::new()),
            (true, Some(s)) => {
                let all = mirrors_for(&s.mirrors, source, &n);
                (
                    mirrors_for(&config.mirrors, source, &n),
                    s.other_owners(all.iter().map(|(m, _)| m.as_str())),
                )
            }
        };
        match (targets.is_empty(), elsewhere.is_empty()) {
            (true, true) => {
                metrics::record_event(label, "rejected", "unknown_repository");
                unknown.push(n.repository.clone());
            }
            (true, false) => metrics::record_event(label, "accepted", "other_shard"),
            (false, _) => metrics::record_event(label, "accepted", "none"),
        }
        owners.extend(elsewhere);
        for (mirror, only) in targets {
            let id = shared.triggers.request(&mirror, Some(only), &reason);
            runs.push(serde_json::json!({ "mirror": mirror, "id": id }));
        }
    }
    owners.sort_unstable();
    owners.dedup();
    if !unknown.is_empty() {
        tracing::warn!(source = %source.name, repositories = ?unknown, registry = %source.registry,
            "event names repositories no mirror covers; nothing runs for them");
    }
    if runs.is_empty() && owners.is_empty() && source.kind != SourceKind::Distribution {
        let why = format!(
            "no mirror covers {} on {} (or the source's repositories list leaves it out)",
            unknown.join(", "),
            source.registry
        );
        return answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": why, "reason": "unknown_repository" }),
        );
    }
    if let Err(why) = hand_over(config, source, &owners, request).await {
        return refuse(label, StatusCode::BAD_GATEWAY, "forward_failed", &why);
    }
    answer(
        StatusCode::ACCEPTED,
        serde_json::json!({ "runs": runs, "other_shards": owners, "unknown": unknown }),
    )
}

/// Forward the request to the replicas `owners` (unless it was forwarded
/// itself or no `[events] peers` is set: then they got it from the sender).
async fn hand_over(
    config: &Config,
    source: &EventSource,
    owners: &[u32],
    (headers, body): (&HeaderMap, &Bytes),
) -> Result<(), String> {
    let Some(peers) = &config.events.peers else {
        return Ok(());
    };
    if owners.is_empty() || headers.contains_key(shards::FORWARDED) {
        return Ok(());
    }
    for &index in owners {
        match shards::forward(peers, index, &source.name, headers, body).await {
            Ok(status) if (200..300).contains(&status) => {
                tracing::info!(source = %source.name, shard = index, status, "event forwarded to the shard that owns its mirror");
            }
            Ok(status) => {
                return Err(format!(
                    "shard {index} answered the forwarded event with HTTP {status}"
                ));
            }
            Err(e) => return Err(format!("forwarding the event to shard {index} failed: {e}")),
        }
    }
    Ok(())
}

/// The mirrors of `mirrors` an event of `source` naming `n` runs, each
/// narrowed to it: the mirror's source is on the source's registry and is
/// the repository (or, discovering, selects it), and a mirror of listed
/// tags lists the tag. The run itself still applies the mirror's filters.
pub(super) fn mirrors_for(
    mirrors: &[Mirror],
    source: &EventSource,
    n: &Named,
) -> Vec<(String, Only)> {
    let mut out = Vec::new();
    for m in mirrors {
        if m.source.is_layout() {
            continue;
        }
        let covers = match &m.discovery {
            Some(d) => {
                d.source_layout.is_none()
                    && d.registry == source.registry
                    && d.selects(&n.repository)
            }
            None => m.source.registry() == source.registry && m.source.repository() == n.repository,
        };
        if !covers {
            continue;
        }
        let tag = match (&m.selection, n.tag.as_deref()) {
            (Selection::Tags(listed), Some(t)) if !listed.iter().any(|l| l == t) => continue,
            (Selection::Digest(_), _) => None,
            (_, t) => t,
        };
        out.push((m.name.clone(), Only::repository(&n.repository, tag)));
    }
    out
}
