//! Events with `[shard]`: an event that reaches any replica is acted on by
//! exactly the replica that owns each mirror it maps to.
//!
//! The receiver forwards: a replica acts on the mirrors it owns and sends
//! the very same request (body and the sender's signature headers, plus
//! `X-Regmirror-Forwarded: 1`) to each other owner at `[events] peers`
//! (`http://regmirror-{index}.regmirror-headless:9102`: the StatefulSet's
//! pods through its headless Service), which checks it again with the same
//! secrets and acts on what it owns; a forwarded request is never forwarded
//! again. Forwarding rather than fan-out because the hosted senders
//! (GitHub, Harbor, Docker Hub, Quay) post to one URL, which a Service
//! hands to any one replica. Senders that can post to every replica (a
//! distribution endpoint per pod) may do so without `peers`: each replica
//! acts on what it owns and acknowledges the rest.
//!
//! The sync-now API forwards the same way ([`forward_api`]): a request
//! about a mirror, or a run (see `owner_of`), that another shard owns is
//! sent to that shard at `peers` with its bearer token, and the owner's
//! answer is the answer. The token goes only to the configured `peers`.
//! The owner's answer is read up to [`MAX_ANSWER`] bytes within
//! [`FORWARD_TIMEOUT`]: a larger one is refused (the caller gets 502
//! naming the peer), so a misbehaving peer cannot fill this replica's memory.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;

use crate::registry::Capped;
use crate::sync::config::Mirror;
use crate::sync::shard::{Shard, owner};

/// The header that marks a forwarded request.
pub const FORWARDED: &str = "x-regmirror-forwarded";
/// Headers a forward carries over (what the sender's check reads).
const CARRIED: &[&str] = &[
    "authorization",
    "content-type",
    "x-github-event",
    "x-hub-signature-256",
    "x-regmirror-timestamp",
    "x-regmirror-signature",
];
/// Time a peer has to answer a forward.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer of a peer to a forwarded API request read: the cap the
/// receiver puts on request bodies ([`super::MAX_BODY`]); a run's report
/// is far smaller.
pub const MAX_ANSWER: usize = super::MAX_BODY;

/// This replica's shard and every mirror of the file (the other shards'
/// included), for the receiver; only with more than one shard.
#[derive(Debug, Clone)]
pub struct Sharding {
    /// This replica's shard.
    pub shard: Shard,
    /// Every mirror of the config file, whoever owns it.
    pub mirrors: Vec<Mirror>,
}

impl Sharding {
    /// The shards other than this one that own a mirror of `names`.
    pub(super) fn other_owners<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<u32> {
        let mut out: Vec<u32> = names
            .into_iter()
            .map(|n| owner(n, self.shard.count))
            .filter(|s| *s != self.shard.index)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The client of forwards.
static HTTP: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(|| {
    reqwest::Client::builder()
        .timeout(FORWARD_TIMEOUT)
        .build()
        .unwrap_or_default()
});

/// The URL of `path` (`/events/...`, `/api/...`) on shard `index` through
/// the `peers` template.
fn peer_url(peers: &str, index: u32, path: &str) -> String {
    let base = peers.replace("{index}", &index.to_string());
    format!("{}{path}", base.trim_end_matches('/'))
}

/// Send the request (`headers`, `body`) for source `source` to shard
/// `index` through the `peers` template; the peer's status, or why no
/// answer came.
pub(super) async fn forward(
    peers: &str,
    index: u32,
    source: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<u16, String> {
    let url = peer_url(peers, index, &format!("/events/{source}"));
    let mut request = HTTP.post(&url).header(FORWARDED, "1").body(body.clone());
    for name in CARRIED {
        if let Some(v) = headers.get(*name) {
            request = request.header(*name, v.as_bytes());
        }
    }
    match request.send().await {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => Err(format!("{url}: no answer ({e})")),
    }
}

/// Send a sync-now API request (`post`: a POST, else a GET of
/// `path_and_query`, with the caller's `authorization`) to shard `index`
/// through the `peers` template; the peer's status and body, or why no
/// answer came.
pub(super) async fn forward_api(
    peers: &str,
    index: u32,
    post: bool,
    path_and_query: &str,
    authorization: Option<&[u8]>,
) -> Result<(u16, Bytes), String> {
    let url = peer_url(peers, index, path_and_query);
    let mut request = if post {
        HTTP.post(&url)
    } else {
        HTTP.get(&url)
    };
    request = request.header(FORWARDED, "1");
    if let Some(auth) = authorization {
        request = request.header("authorization", auth);
    }
    let shown = url.split('?').next().unwrap_or_default();
    let fail = |e: reqwest::Error| format!("{shown}: no answer ({e})");
    let response = request.send().await.map_err(fail)?;
    let status = response.status().as_u16();
    match crate::registry::read_capped(response, MAX_ANSWER).await {
        Ok(body) => Ok((status, body)),
        Err(Capped::Broken(e)) => Err(fail(e)),
        Err(Capped::TooBig) => Err(format!(
            "{shown}: answered HTTP {status} with a body over {MAX_ANSWER} bytes, refused (a regmirror serve answers far less: is peers pointing at another service?)"
        )),
    }
}
