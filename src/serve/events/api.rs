//! The sync-now API on the events listener, for `regmirror trigger` and
//! scripts; every call carries `Authorization: Bearer TOKEN`, the token of
//! `[events] api_token_file` (or `api_token_env`), compared in constant time.
//!
//! - `POST /api/v1/mirrors/{name}/sync[?tag=T][&repository=R]`: queue a run
//!   of mirror `name` (only tag `T` of its repository, or of repository `R`
//!   for a discovering mirror); 202 with `{"id": N, "mirror": name}`.
//!   Requests for a mirror already queued join that run (same id).
//! - `GET /api/v1/runs/{id}`: the run's state (`queued`, `running`,
//!   `done`, `dropped`) and, once done, its report; 404 once it left the
//!   history of the last 100 runs.
//!
//! With `[shard]`, a replica asked about a mirror (or a run, whose id
//! names its shard) that another shard owns forwards the request to that
//! shard through `[events] peers` and answers with the owner's answer (see
//! [`super::shards`]); without `peers` it answers 404 naming the owner.
//!
//! Requests count in `regmirror_events_total{source="api"}`.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::shards::{self, FORWARDED, Sharding};
use super::{Shared, answer, refuse, verify};
use crate::metrics;
use crate::serve::trigger::owner_of;
use crate::sync::config::Config;
use crate::sync::run::Only;

/// The `source` label of API requests.
const LABEL: &str = "api";
/// API requests accepted per minute.
const RATE_PER_MINUTE: u32 = 600;

/// The config in force when the request is allowed; else the refusal.
fn allowed(shared: &Shared, request: &Request) -> Result<Arc<Config>, Box<Response>> {
    let config = shared.receiver.config();
    let Some(token) = &config.events.api_token else {
        return Err(Box::new(answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "the sync-now API is off: set [events] api_token_file or api_token_env" }),
        )));
    };
    metrics::record_event(LABEL, "received", "none");
    if !shared.receiver.within_rate(LABEL, RATE_PER_MINUTE) {
        let why = format!("more than {RATE_PER_MINUTE} API requests this minute");
        return Err(Box::new(refuse(
            LABEL,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &why,
        )));
    }
    let auth = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if verify::bearer(auth, token.expose()).is_err() {
        return Err(Box::new(refuse(
            LABEL,
            StatusCode::UNAUTHORIZED,
            "auth",
            "missing or wrong bearer token: send Authorization: Bearer TOKEN with the token of [events] api_token_file",
        )));
    }
    Ok(config)
}

/// `POST /api/v1/mirrors/{name}/sync`.
pub(in crate::serve) async fn sync_handler(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let config = match allowed(&shared, &request) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let Some(mirror) = config.mirrors.iter().find(|m| m.name == name) else {
        let owner = |s: &Sharding| {
            s.mirrors
                .iter()
                .any(|m| m.name == name)
                .then(|| crate::sync::shard::owner(&name, s.shard.count))
        };
        if let Some(r) = from_owner(&shared, &config, Asked::of(&request), owner).await {
            return r;
        }
        let why = format!(
            "no mirror named {:?} runs on this replica (check the name, or with [shard] ask the replica that owns it)",
            crate::registry::escape::shown(&name)
        );
        return refuse(LABEL, StatusCode::NOT_FOUND, "unknown_mirror", &why);
    };
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let get = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let (tag, repository) = (get("tag"), get("repository"));
    let only = match (repository, tag, mirror.discovery.is_some()) {
        (None, None, _) => None,
        (None, Some(_), true) => {
            return refuse(
                LABEL,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the mirror discovers its repositories: name the repository of the tag with ?repository=PATH",
            );
        }
        (None, Some(t), false) => Some(Only::repository(mirror.source.repository(), Some(t))),
        (Some(r), t, _) => Some(Only::repository(r, t)),
    };
    if let Some(r) = repository {
        let covered = match &mirror.discovery {
            Some(d) => d.selects(r),
            None => r == mirror.source.repository(),
        };
        if !covered {
            let why = format!(
                "mirror {name:?} does not cover repository {:?}",
                crate::registry::escape::shown(r)
            );
            return refuse(LABEL, StatusCode::BAD_REQUEST, "unknown_repository", &why);
        }
    }
    metrics::record_event(LABEL, "accepted", "none");
    let id = shared.triggers.request(&mirror.name, only, "api");
    answer(
        StatusCode::ACCEPTED,
        serde_json::json!({ "id": id, "mirror": mirror.name }),
    )
}

/// `GET /api/v1/runs/{id}`.
pub(in crate::serve) async fn run_handler(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let config = match allowed(&shared, &request) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let id = id.parse::<u64>().ok();
    let owner = |s: &Sharding| id.map(|id| owner_of(id, s.shard.count));
    if let Some(r) = from_owner(&shared, &config, Asked::of(&request), owner).await {
        return r;
    }
    let record = id.and_then(|id| shared.triggers.get(id));
    match record {
        Some(r) => answer(StatusCode::OK, serde_json::to_value(&r).unwrap_or_default()),
        None => answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "no such run: it never was, or it left the history of the last 100 runs" }),
        ),
    }
}

/// What a forward of a request carries (owned: the request's body is not
/// shared across threads).
struct Asked {
    post: bool,
    path_and_query: String,
    authorization: Option<Vec<u8>>,
    forwarded: bool,
}

impl Asked {
    fn of(request: &Request) -> Asked {
        Asked {
            post: request.method() == axum::http::Method::POST,
            path_and_query: request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            authorization: request
                .headers()
                .get("authorization")
                .map(|v| v.as_bytes().to_vec()),
            forwarded: request.headers().contains_key(FORWARDED),
        }
    }
}

/// With `[shard]`: the answer of the shard `owner` names, when that is
/// another shard, `[events] peers` says where it is and the request is not
/// itself a forward; `None`: answer here.
async fn from_owner(
    shared: &Shared,
    config: &Config,
    asked: Asked,
    owner: impl FnOnce(&Sharding) -> Option<u32>,
) -> Option<Response> {
    let sharding = shared.receiver.sharding()?;
    let index = owner(&sharding).filter(|i| *i != sharding.shard.index)?;
    let peers = config.events.peers.as_deref()?;
    if asked.forwarded {
        return None;
    }
    let path = asked.path_and_query.as_str();
    let auth = asked.authorization.as_deref();
    match shards::forward_api(peers, index, asked.post, path, auth).await {
        Ok((status, body)) => {
            metrics::record_event(LABEL, "accepted", "other_shard");
            let shown = path.split('?').next().unwrap_or_default();
            tracing::info!(
                shard = index,
                status,
                path = shown,
                "API request forwarded to the shard that owns it"
            );
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            Some(
                (
                    status,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response(),
            )
        }
        Err(e) => Some(answer(
            StatusCode::BAD_GATEWAY,
            serde_json::json!({ "error": format!(
                "shard {index} owns this but its answer to the forwarded request failed: {e}; check that replica (its pod, [events] listen) and [events] peers"
            ) }),
        )),
    }
}
