//! A plain parallel copier: the floor of what two registries sustain.
//!
//! Copies every tag of the given repositories from one registry to another
//! with the fewest requests a copier that knows the target is empty can make,
//! and no checks: it lists each repository's tags, GETs each tag's manifest
//! and, for an index, each child manifest by digest; streams every distinct
//! blob once (the source GET's body piped into the target's monolithic upload:
//! POST, then PUT) into the first repository that needs it, and mounts it into
//! every other repository (POST ?mount=&from=; an upload if the registry
//! declines); then pushes manifests children first: a child manifest once its
//! blobs are in its repository, an index (by tag) once its children are.
//! Nothing is HEAD-checked, retried or verified: the registry checks digests
//! on PUT, and bench/registry_util.py checks the result afterwards.
//!
//! Everything runs at once under one limit of `--jobs` requests in flight
//! (default 16: regmirror's default of 4 images x 4 blobs at a time).
//!
//! Usage: plain-copier --src HOST:PORT --dst HOST:PORT --repo REPO [--repo REPO ...] [--jobs N]
//!
//! Plain HTTP only (the benchmark's loopback registries). Prints one JSON
//! line with what it did; exits 1 with a message naming the request on any
//! failure.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::future::{BoxFuture, FutureExt, Shared, try_join_all};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Body, Client, RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;
use tokio::sync::Semaphore;

const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";
const MAX_MANIFEST: usize = 4 << 20;

type Outcome = Result<(), String>;
/// One piece of work that several images may wait on: it runs once.
type Once = Shared<BoxFuture<'static, Outcome>>;

struct Copier {
    http: Client,
    src: String,
    dst: String,
    limit: Semaphore,
    // All of it lives for one run of the process.
    counts: Mutex<BTreeMap<&'static str, u64>>,
    /// Blob digest -> the repository it is uploaded into (the others mount it from there).
    owner: Mutex<HashMap<String, String>>,
    /// (repository, blob digest) -> its upload or mount.
    blobs: Mutex<HashMap<(String, String), Once>>,
    /// (repository, manifest digest) -> its GET and PUT.
    children: Mutex<HashMap<(String, String), Once>>,
}

struct Blob {
    digest: String,
    size: u64,
}

/// Sends one request; an answer other than `want` is an error naming the request (`what`).
async fn call(req: RequestBuilder, want: &[StatusCode], what: String) -> Result<Response, String> {
    let resp = req.send().await.map_err(|e| format!("{what}: {e}"))?;
    if want.contains(&resp.status()) {
        Ok(resp)
    } else {
        Err(format!(
            "{what}: HTTP {} (expected {want:?})",
            resp.status()
        ))
    }
}

fn blobs_of(manifest: &Value) -> Result<Vec<Blob>, String> {
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    std::iter::once(&manifest["config"])
        .chain(layers.iter())
        .map(|d| match (d["digest"].as_str(), d["size"].as_u64()) {
            (Some(digest), Some(size)) => Ok(Blob {
                digest: digest.to_string(),
                size,
            }),
            _ => Err(format!("descriptor without digest or size: {d}")),
        })
        .collect()
}

impl Copier {
    fn count(&self, what: &'static str) {
        *self.counts.lock().unwrap().entry(what).or_default() += 1;
    }

    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<(String, Vec<u8>), String> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.src);
        let _slot = self.limit.acquire().await.map_err(|e| e.to_string())?;
        self.count("source manifest GET");
        let mut resp = call(
            self.http.get(&url).header(ACCEPT, ACCEPT_MANIFESTS),
            &[StatusCode::OK],
            format!("GET {url}"),
        )
        .await?;
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_MANIFEST {
                return Err(format!(
                    "GET {url}: manifest larger than {MAX_MANIFEST} bytes"
                ));
            }
        }
        Ok((media_type, body))
    }

    async fn list_tags(&self, repo: &str) -> Result<Vec<String>, String> {
        let url = format!("{}/v2/{repo}/tags/list", self.src);
        let _slot = self.limit.acquire().await.map_err(|e| e.to_string())?;
        self.count("source tags GET");
        let resp = call(self.http.get(&url), &[StatusCode::OK], format!("GET {url}")).await?;
        if resp.headers().contains_key("link") {
            return Err(format!(
                "GET {url}: paged tag lists are not supported by this bench copier"
            ));
        }
        let body = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| format!("GET {url}: {e}"))?;
        Ok(v["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(String::from))
            .collect())
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: Vec<u8>,
    ) -> Outcome {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.dst);
        let _slot = self.limit.acquire().await.map_err(|e| e.to_string())?;
        self.count("target manifest PUT");
        call(
            self.http
                .put(&url)
                .header(CONTENT_TYPE, media_type)
                .body(body),
            &[StatusCode::CREATED],
            format!("PUT {url}"),
        )
        .await
        .map(drop)
    }

    /// Streams one blob from the source into `repo` (monolithic upload: POST, then PUT),
    /// into the upload session at `location` when one is already open.
    async fn upload(&self, repo: &str, blob: &Blob, location: Option<String>) -> Outcome {
        let _slot = self.limit.acquire().await.map_err(|e| e.to_string())?;
        let location = match location {
            Some(l) => l,
            None => {
                let url = format!("{}/v2/{repo}/blobs/uploads/", self.dst);
                self.count("target upload POST");
                let resp = call(
                    self.http.post(&url).header(CONTENT_LENGTH, 0),
                    &[StatusCode::ACCEPTED],
                    format!("POST {url}"),
                )
                .await?;
                location_of(&resp, &url)?
            }
        };
        let mut put_url = Url::parse(&format!("{}/", self.dst))
            .and_then(|base| base.join(&location))
            .map_err(|e| format!("upload location {location:?}: {e}"))?;
        put_url
            .query_pairs_mut()
            .append_pair("digest", &blob.digest);
        let get_url = format!("{}/v2/{repo}/blobs/{}", self.src, blob.digest);
        self.count("source blob GET");
        let source = call(
            self.http.get(&get_url),
            &[StatusCode::OK],
            format!("GET {get_url}"),
        )
        .await?;
        self.count("target upload PUT");
        let put = self
            .http
            .put(put_url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, blob.size)
            .body(Body::wrap_stream(source.bytes_stream()));
        let what = format!("PUT upload of {} into {repo}", blob.digest);
        call(put, &[StatusCode::CREATED], what).await.map(drop)
    }

    async fn mount(&self, repo: &str, blob: &Blob, from: &str) -> Outcome {
        let url = format!(
            "{}/v2/{repo}/blobs/uploads/?mount={}&from={from}",
            self.dst, blob.digest
        );
        let location = {
            let _slot = self.limit.acquire().await.map_err(|e| e.to_string())?;
            self.count("target mount POST");
            let resp = call(
                self.http.post(&url).header(CONTENT_LENGTH, 0),
                &[StatusCode::CREATED, StatusCode::ACCEPTED],
                format!("POST {url}"),
            )
            .await?;
            if resp.status() == StatusCode::CREATED {
                return Ok(());
            }
            location_of(&resp, &url)?
        };
        self.count("mount declined");
        self.upload(repo, blob, Some(location)).await
    }

    /// The one upload (first repository) or mount (every other one) that puts a blob into `repo`.
    fn blob(self: &Arc<Self>, repo: &str, blob: Blob) -> Once {
        let key = (repo.to_string(), blob.digest.clone());
        let mut blobs = self.blobs.lock().unwrap();
        if let Some(work) = blobs.get(&key) {
            return work.clone();
        }
        let owner = self
            .owner
            .lock()
            .unwrap()
            .entry(blob.digest.clone())
            .or_insert_with(|| repo.to_string())
            .clone();
        let (me, repo) = (Arc::clone(self), repo.to_string());
        let work: Once = if owner == repo {
            async move { me.upload(&repo, &blob, None).await }
                .boxed()
                .shared()
        } else {
            let first = blobs[&(owner.clone(), blob.digest.clone())].clone();
            async move {
                first.await?;
                me.mount(&repo, &blob, &owner).await
            }
            .boxed()
            .shared()
        };
        blobs.insert(key, work.clone());
        work
    }

    async fn push_image(self: Arc<Self>, repo: String, digest: String) -> Outcome {
        let (media_type, body) = self.get_manifest(&repo, &digest).await?;
        let manifest: Value =
            serde_json::from_slice(&body).map_err(|e| format!("{repo}@{digest}: {e}"))?;
        try_join_all(
            blobs_of(&manifest)?
                .into_iter()
                .map(|b| self.blob(&repo, b)),
        )
        .await?;
        self.put_manifest(&repo, &digest, &media_type, body).await
    }

    fn child(self: &Arc<Self>, repo: &str, digest: &str) -> Once {
        let key = (repo.to_string(), digest.to_string());
        self.children
            .lock()
            .unwrap()
            .entry(key)
            .or_insert_with(|| {
                Arc::clone(self)
                    .push_image(repo.to_string(), digest.to_string())
                    .boxed()
                    .shared()
            })
            .clone()
    }

    async fn tag(self: Arc<Self>, repo: String, tag: String) -> Outcome {
        let (media_type, body) = self.get_manifest(&repo, &tag).await?;
        let manifest: Value =
            serde_json::from_slice(&body).map_err(|e| format!("{repo}:{tag}: {e}"))?;
        if let Some(children) = manifest["manifests"].as_array() {
            let digests: Vec<&str> = children
                .iter()
                .filter_map(|c| c["digest"].as_str())
                .collect();
            if digests.len() != children.len() {
                return Err(format!("{repo}:{tag}: an index entry has no digest"));
            }
            try_join_all(digests.into_iter().map(|d| self.child(&repo, d))).await?;
        } else {
            try_join_all(
                blobs_of(&manifest)?
                    .into_iter()
                    .map(|b| self.blob(&repo, b)),
            )
            .await?;
        }
        self.put_manifest(&repo, &tag, &media_type, body).await?;
        self.count("tags copied");
        Ok(())
    }

    async fn repository(self: Arc<Self>, repo: String) -> Outcome {
        let tags = self.list_tags(&repo).await?;
        try_join_all(
            tags.into_iter()
                .map(|t| Arc::clone(&self).tag(repo.clone(), t)),
        )
        .await?;
        Ok(())
    }
}

fn location_of(resp: &Response, url: &str) -> Result<String, String> {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .ok_or_else(|| format!("POST {url}: no Location header"))
}

struct Args {
    src: String,
    dst: String,
    repos: Vec<String>,
    jobs: usize,
}

fn parse_args() -> Result<Args, String> {
    let (mut src, mut dst, mut repos, mut jobs) = (None, None, Vec::new(), 16usize);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--src" => src = Some(value()?),
            "--dst" => dst = Some(value()?),
            "--repo" => repos.push(value()?),
            "--jobs" => jobs = value()?.parse().map_err(|e| format!("--jobs: {e}"))?,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    match (src, dst) {
        (Some(src), Some(dst)) if !repos.is_empty() && jobs > 0 => Ok(Args { src, dst, repos, jobs }),
        _ => Err("usage: plain-copier --src HOST:PORT --dst HOST:PORT --repo REPO [--repo REPO ...] [--jobs N>0]".into()),
    }
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("plain-copier: {e}");
            std::process::exit(2);
        }
    };
    let http = Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(120))
        .pool_max_idle_per_host(2 * args.jobs)
        .build()
        .expect("HTTP client");
    let copier = Arc::new(Copier {
        http,
        src: format!("http://{}", args.src),
        dst: format!("http://{}", args.dst),
        limit: Semaphore::new(args.jobs),
        counts: Mutex::default(),
        owner: Mutex::default(),
        blobs: Mutex::default(),
        children: Mutex::default(),
    });
    let start = Instant::now();
    let result = try_join_all(
        args.repos
            .iter()
            .map(|r| Arc::clone(&copier).repository(r.clone())),
    )
    .await;
    if let Err(e) = result {
        eprintln!(
            "plain-copier: copy from {} to {} failed: {e}",
            args.src, args.dst
        );
        std::process::exit(1);
    }
    let mut summary = serde_json::Map::new();
    summary.insert(
        "seconds".into(),
        Value::from((start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0),
    );
    for (k, v) in copier.counts.lock().unwrap().iter() {
        summary.insert((*k).into(), Value::from(*v));
    }
    println!("{}", Value::Object(summary));
}
