//! A read-only fake registry (in memory, loopback) for referrer behaviour
//! that neither distribution 2.8 nor ferro-oci-server shows:
//! - a referrers list split into pages linked by `Link: <…>; rel="next"`
//!   (both real registries answer in one page);
//! - an `artifactType` filter the server ignores (no `OCI-Filters-Applied`),
//!   so the client must filter itself;
//! - `sha256-<hex>` tags resolved as digests: a GET of the fallback tag of a
//!   subject answers with the subject manifest itself, as some registries
//!   do (distribution answers 404, ferro serves its own tags);
//! - a referrer bomb ([`FakeRegistry::start_bomb`]): the referrers API lists
//!   `width` made-up referrers of every digest, `depth` levels deep, each
//!   made (and then served) when first listed;
//! - fallback indexes written as raw bytes ([`FakeRegistry::add_raw`]):
//!   thousands of entries, entries naming manifests it does not have (a
//!   deleted signature), or bytes that are no index at all.
//!
//! It serves `GET`/`HEAD` of `/v2/`, manifests (tag or digest), blobs,
//! `tags/list` and `referrers/<digest>`; it refuses every write with 405, so
//! it can only be a source. Every request is recorded for assertions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::artifacts::manifest_descriptor;
use super::fake::FakeServer;
use super::image::{Blob, Image, Manifest, Node, OCI_INDEX, OCI_MANIFEST};

/// How the fake behaves.
#[derive(Clone, Debug, Default)]
pub struct FakeReferrers {
    /// Serve the referrers API with this many descriptors per page
    /// (`None`: the API is absent, 404).
    pub page_size: Option<usize>,
    /// Apply an `artifactType` filter and say so with `OCI-Filters-Applied`
    /// (otherwise the filter is ignored and every referrer is listed).
    pub apply_filters: bool,
    /// Answer a manifest request for an untagged `sha256-<hex>` with the
    /// manifest whose digest is `sha256:<hex>`.
    pub resolve_digest_tags: bool,
}

/// The artifact type of the bomb's referrers.
pub const BOMB_TYPE: &str = "application/vnd.example.bomb";

#[derive(Default)]
struct Repo {
    manifests: BTreeMap<String, Manifest>,
    tags: BTreeMap<String, String>,
    blobs: BTreeMap<String, Bytes>,
}

struct Inner {
    behaviour: FakeReferrers,
    /// `(width, depth)`: the API lists `width` made-up referrers of every
    /// digest, and of theirs, `depth` levels deep.
    bomb: Option<(usize, usize)>,
    repos: Mutex<BTreeMap<String, Repo>>,
    /// The bomb's referrers made so far: digest → (manifest, level).
    made: Mutex<BTreeMap<String, (Manifest, usize)>>,
    requests: Mutex<Vec<String>>,
}

/// The running fake; stops when dropped.
pub struct FakeRegistry {
    server: FakeServer,
    inner: Arc<Inner>,
}

impl FakeRegistry {
    /// Starts an empty fake with `behaviour`.
    pub async fn start(behaviour: FakeReferrers) -> FakeRegistry {
        FakeRegistry::start_with(behaviour, None).await
    }

    /// Starts an empty fake with the referrers API that lists `width`
    /// made-up referrers of every digest it holds, and of those, `depth`
    /// levels deep (each made when first listed, then served).
    pub async fn start_bomb(width: usize, depth: usize) -> FakeRegistry {
        let behaviour = FakeReferrers {
            page_size: Some(usize::MAX),
            ..FakeReferrers::default()
        };
        FakeRegistry::start_with(behaviour, Some((width, depth))).await
    }

    async fn start_with(behaviour: FakeReferrers, bomb: Option<(usize, usize)>) -> FakeRegistry {
        let inner = Arc::new(Inner {
            behaviour,
            bomb,
            repos: Mutex::new(BTreeMap::new()),
            made: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(Vec::new()),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        FakeRegistry {
            server: FakeServer::start(router).await,
            inner,
        }
    }

    pub fn host(&self) -> String {
        self.server.host()
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Stores `node` (manifests and blobs) in `repo`, tagged `tag` if given.
    pub fn add_node(&self, repo: &str, node: &Node, tag: Option<&str>) {
        let mut repos = self.inner.repos.lock().unwrap();
        let r = repos.entry(repo.to_string()).or_default();
        for b in node.blobs() {
            r.blobs.insert(b.digest.clone(), b.data.clone());
        }
        for m in node.manifests_in_push_order() {
            r.manifests.insert(m.digest.clone(), m.clone());
        }
        if let Some(t) = tag {
            r.tags.insert(t.to_string(), node.digest().to_string());
        }
    }

    /// Stores an image (a referrer, a signature) in `repo`.
    pub fn add_image(&self, repo: &str, image: &Image, tag: Option<&str>) {
        self.add_node(repo, &Node::Image(image.clone()), tag);
    }

    /// Stores `bytes` as a manifest of `media_type` in `repo` under `tag`
    /// (anything: the fake does not read it); its digest.
    pub fn add_raw(&self, repo: &str, media_type: &str, bytes: Vec<u8>, tag: &str) -> String {
        let bytes = Bytes::from(bytes);
        let m = Manifest {
            media_type: media_type.to_string(),
            digest: super::sha256_digest(&bytes),
            bytes,
        };
        let mut repos = self.inner.repos.lock().unwrap();
        let r = repos.entry(repo.to_string()).or_default();
        r.tags.insert(tag.to_string(), m.digest.clone());
        r.manifests.insert(m.digest.clone(), m.clone());
        m.digest
    }

    /// How many of the bomb's referrers were listed so far.
    pub fn bomb_made(&self) -> usize {
        self.inner.made.lock().unwrap().len()
    }

    /// Requests seen so far, as `METHOD PATH?QUERY`.
    pub fn requests(&self) -> Vec<String> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// How many requests started with `METHOD PATH-PREFIX`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        let needle = format!("{method} {path_prefix}");
        self.requests()
            .iter()
            .filter(|r| r.starts_with(&needle))
            .count()
    }
}

async fn handle(State(inner): State<Arc<Inner>>, method: Method, uri: Uri) -> Response {
    inner.requests.lock().unwrap().push(format!(
        "{method} {}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
    ));
    if method != Method::GET && method != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "read-only fake",
        );
    }
    let path = uri.path();
    if path == "/v2/" || path == "/v2" {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response();
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "not a registry path");
    };
    let query = parse_query(uri.query().unwrap_or(""));
    let resp = route(&inner, rest, &query);
    if method == Method::HEAD {
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    resp
}

fn route(inner: &Inner, rest: &str, query: &BTreeMap<String, String>) -> Response {
    for (sep, kind) in [("/manifests/", "m"), ("/blobs/", "b"), ("/referrers/", "r")] {
        if let Some(i) = rest.rfind(sep) {
            let (name, arg) = (&rest[..i], &rest[i + sep.len()..]);
            return match kind {
                "m" => manifest(inner, name, arg),
                "b" => blob(inner, name, arg),
                _ => referrers(inner, name, arg, query),
            };
        }
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        let repos = inner.repos.lock().unwrap();
        let tags: Vec<&String> = repos
            .get(name)
            .map(|r| r.tags.keys().collect())
            .unwrap_or_default();
        return json_response(
            json!({"name": name, "tags": tags}),
            "application/json",
            HeaderMap::new(),
        );
    }
    error(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown path")
}

fn manifest(inner: &Inner, name: &str, reference: &str) -> Response {
    let repos = inner.repos.lock().unwrap();
    let Some(repo) = repos.get(name) else {
        return error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known",
        );
    };
    let digest = if reference.starts_with("sha256:") {
        Some(reference.to_string())
    } else if let Some(d) = repo.tags.get(reference) {
        Some(d.clone())
    } else if inner.behaviour.resolve_digest_tags && is_digest_tag(reference) {
        Some(reference.replacen('-', ":", 1))
    } else {
        None
    };
    let made = inner.made.lock().unwrap();
    let found = digest.and_then(|d| {
        repo.manifests
            .get(&d)
            .or_else(|| made.get(&d).map(|(m, _)| m))
    });
    let Some(m) = found else {
        return error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
        );
    };
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, hv(&m.media_type));
    h.insert("docker-content-digest", hv(&m.digest));
    (StatusCode::OK, h, m.bytes.clone()).into_response()
}

/// `sha256-` followed by exactly 64 lowercase hex digits (no suffix).
fn is_digest_tag(t: &str) -> bool {
    t.strip_prefix("sha256-")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn blob(inner: &Inner, name: &str, digest: &str) -> Response {
    let repos = inner.repos.lock().unwrap();
    let empty = Blob::empty_config();
    let bomb_blob = (inner.bomb.is_some() && digest == empty.digest).then_some(&empty.data);
    match repos
        .get(name)
        .and_then(|r| r.blobs.get(digest))
        .or(bomb_blob)
    {
        Some(b) => {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, hv("application/octet-stream"));
            h.insert("docker-content-digest", hv(digest));
            (StatusCode::OK, h, b.clone()).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown"),
    }
}

fn referrers(inner: &Inner, name: &str, subject: &str, q: &BTreeMap<String, String>) -> Response {
    let Some(page_size) = inner.behaviour.page_size else {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    };
    if let Some((width, depth)) = inner.bomb {
        let all = bomb_referrers(inner, name, subject, width, depth);
        return json_response(
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": all}),
            OCI_INDEX,
            HeaderMap::new(),
        );
    }
    let repos = inner.repos.lock().unwrap();
    let mut all: Vec<Value> = repos
        .get(name)
        .map(|r| {
            r.manifests
                .values()
                .filter_map(|m| {
                    let doc: Value = serde_json::from_slice(&m.bytes).ok()?;
                    (doc["subject"]["digest"] == subject).then(|| manifest_descriptor(m))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut h = HeaderMap::new();
    if let Some(t) = q.get("artifactType")
        && inner.behaviour.apply_filters
    {
        all.retain(|d| d["artifactType"] == t.as_str());
        h.insert("oci-filters-applied", hv("artifactType"));
    }
    let start = match q.get("last") {
        Some(last) => all
            .iter()
            .position(|d| d["digest"] == last.as_str())
            .map_or(all.len(), |i| i + 1),
        None => 0,
    };
    let end = (start + page_size.max(1)).min(all.len());
    if end < all.len() {
        let last = all[end - 1]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut link = format!("</v2/{name}/referrers/{subject}?last={last}");
        if let Some(t) = q.get("artifactType") {
            link.push_str(&format!("&artifactType={t}"));
        }
        link.push_str(">; rel=\"next\"");
        h.insert(header::LINK, hv(&link));
    }
    let page: Vec<Value> = all[start..end].to_vec();
    json_response(
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": page}),
        OCI_INDEX,
        h,
    )
}

/// The bomb's `width` referrers of `subject` (made and kept on first
/// listing), or none when `subject` is one of the deepest level.
fn bomb_referrers(
    inner: &Inner,
    name: &str,
    subject: &str,
    width: usize,
    depth: usize,
) -> Vec<Value> {
    let stored = {
        let repos = inner.repos.lock().unwrap();
        repos
            .get(name)
            .and_then(|r| r.manifests.get(subject))
            .cloned()
    };
    let mut made = inner.made.lock().unwrap();
    let (parent, level) = match (stored, made.get(subject)) {
        (Some(m), _) => (m, 0),
        (None, Some((m, l))) => (m.clone(), l + 1),
        (None, None) => return Vec::new(),
    };
    if level >= depth {
        return Vec::new();
    }
    let empty = Blob::empty_config();
    (0..width)
        .map(|i| {
            let doc = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": BOMB_TYPE,
                "config": empty.descriptor(),
                "layers": [empty.descriptor()],
                "subject": {"mediaType": parent.media_type, "digest": parent.digest, "size": parent.size()},
                "annotations": {"bomb": format!("{}-{level}-{i}", parent.digest)},
            });
            let m = Manifest::from_json(OCI_MANIFEST, &doc);
            let d = manifest_descriptor(&m);
            made.entry(m.digest.clone()).or_insert((m, level));
            d
        })
        .collect()
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("a header value the fake builds")
}

fn json_response(v: Value, content_type: &str, mut h: HeaderMap) -> Response {
    h.insert(header::CONTENT_TYPE, hv(content_type));
    (
        StatusCode::OK,
        h,
        serde_json::to_vec(&v).expect("serializing JSON"),
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut resp = json_response(
        json!({"errors": [{"code": code, "message": message}]}),
        "application/json",
        HeaderMap::new(),
    );
    *resp.status_mut() = status;
    resp
}
