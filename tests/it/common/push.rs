//! An image pusher on plain `reqwest`, independent of regmirror's own client,
//! so tests have an outside reference for what the registry holds.
//!
//! Blobs go up monolithically (`POST /blobs/uploads/` then `PUT <location>&digest=`),
//! manifests are `PUT` with their exact bytes and media type, children before
//! the index that lists them, the tag last.

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use reqwest::header;

use super::image::{Blob, Image, Index, Manifest, Node};
use super::registry::{RegistryAuth, TestRegistry};
use super::token::TokenIssuer;

/// How the pusher authenticates.
#[derive(Clone)]
pub enum PushAuth {
    Anonymous,
    Basic {
        user: String,
        password: String,
    },
    /// Tokens are minted directly from the issuer (not counted as token requests).
    Token(TokenIssuer),
}

impl std::fmt::Debug for PushAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushAuth::Anonymous => f.write_str("Anonymous"),
            PushAuth::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            PushAuth::Token(issuer) => f.debug_tuple("Token").field(issuer).finish(),
        }
    }
}

impl From<Index> for Node {
    fn from(i: Index) -> Node {
        Node::Index(i)
    }
}

impl From<Image> for Node {
    fn from(i: Image) -> Node {
        Node::Image(i)
    }
}

impl From<&Index> for Node {
    fn from(i: &Index) -> Node {
        Node::Index(i.clone())
    }
}

impl From<&Image> for Node {
    fn from(i: &Image) -> Node {
        Node::Image(i.clone())
    }
}

impl From<&Node> for Node {
    fn from(n: &Node) -> Node {
        n.clone()
    }
}

/// Pushes test images to one registry endpoint.
#[derive(Clone, Debug)]
pub struct Pusher {
    client: reqwest::Client,
    base_url: String,
    auth: PushAuth,
}

impl Pusher {
    pub fn new(base_url: &str, auth: PushAuth, ca_pem: Option<&[u8]>) -> Pusher {
        Pusher {
            client: super::http_client(ca_pem),
            base_url: base_url.trim_end_matches('/').to_string(),
            auth,
        }
    }

    /// A pusher for `reg` with its own credentials.
    pub fn for_registry(reg: &TestRegistry) -> Pusher {
        Pusher::via(&reg.base_url(), reg)
    }

    /// A pusher talking to `base_url` (e.g. a [`super::TestProxy`] in front of
    /// `reg`) with `reg`'s credentials.
    pub fn via(base_url: &str, reg: &TestRegistry) -> Pusher {
        let auth = match &reg.options().auth {
            RegistryAuth::Anonymous => PushAuth::Anonymous,
            RegistryAuth::Htpasswd { user, password } => PushAuth::Basic {
                user: user.clone(),
                password: password.clone(),
            },
            RegistryAuth::Token(issuer) => PushAuth::Token(issuer.clone()),
        };
        Pusher::new(base_url, auth, reg.ca_pem().map(str::as_bytes))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    fn authorize(&self, req: reqwest::RequestBuilder, repo: &str) -> reqwest::RequestBuilder {
        match &self.auth {
            PushAuth::Anonymous => req,
            PushAuth::Basic { user, password } => req.basic_auth(user, Some(password)),
            PushAuth::Token(issuer) => {
                let token = issuer.mint(&[&format!("repository:{repo}:pull,push,delete")]);
                req.bearer_auth(token)
            }
        }
    }

    pub async fn blob_exists(&self, repo: &str, digest: &str) -> anyhow::Result<bool> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self
            .authorize(self.client.head(&url), repo)
            .send()
            .await
            .with_context(|| format!("HEAD {url}"))?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            s => bail!("HEAD {url} answered {s}"),
        }
    }

    /// Uploads `blob` unless the repository already has it.
    pub async fn push_blob(&self, repo: &str, blob: &Blob) -> anyhow::Result<()> {
        if blob.is_foreign() {
            return Ok(());
        }
        if self.blob_exists(repo, &blob.digest).await? {
            return Ok(());
        }
        let start = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self
            .authorize(self.client.post(&start), repo)
            .header(header::CONTENT_LENGTH, "0")
            .send()
            .await
            .with_context(|| format!("POST {start}"))?;
        if resp.status().as_u16() != 202 {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            bail!(
                "POST {start} to start an upload of {} answered {status}: {body}",
                blob.digest
            );
        }
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("POST {start} answered 202 without a Location header"))?
            .to_string();
        let mut put_url = if location.starts_with("http://") || location.starts_with("https://") {
            location
        } else {
            self.url(&location)
        };
        put_url.push(if put_url.contains('?') { '&' } else { '?' });
        put_url.push_str(&format!("digest={}", blob.digest));
        let resp = self
            .authorize(self.client.put(&put_url), repo)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, blob.data.len().to_string())
            .body(blob.data.clone())
            .send()
            .await
            .with_context(|| format!("PUT {put_url}"))?;
        if resp.status().as_u16() != 201 {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            bail!(
                "PUT of blob {} to {repo} answered {status}: {body}",
                blob.digest
            );
        }
        Ok(())
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with the exact bytes.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> anyhow::Result<()> {
        self.put_manifest_headers(repo, reference, manifest)
            .await
            .map(|_| ())
    }

    /// [`Pusher::push_manifest`], returning the answer's headers (a
    /// registry with the referrers API answers a manifest with a `subject`
    /// with `OCI-Subject`).
    pub async fn put_manifest_headers(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> anyhow::Result<header::HeaderMap> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .authorize(self.client.put(&url), repo)
            .header(header::CONTENT_TYPE, &manifest.media_type)
            .body(manifest.bytes.clone())
            .send()
            .await
            .with_context(|| format!("PUT {url}"))?;
        if resp.status().as_u16() != 201 {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            bail!(
                "PUT manifest {} ({}) to {url} answered {status}: {body}",
                manifest.digest,
                manifest.media_type
            );
        }
        let got = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !got.is_empty() && got != manifest.digest {
            bail!(
                "registry stored manifest under {got}, expected {}",
                manifest.digest
            );
        }
        Ok(resp.headers().clone())
    }

    /// Pushes every blob, then every manifest by digest (children first), then
    /// the top manifest under `tag` (if given).
    pub async fn push_node(
        &self,
        repo: &str,
        node: &Node,
        tag: Option<&str>,
    ) -> anyhow::Result<()> {
        for blob in node.blobs() {
            self.push_blob(repo, blob)
                .await
                .with_context(|| format!("pushing blob {} to {repo}", blob.digest))?;
        }
        for m in node.manifests_in_push_order() {
            self.push_manifest(repo, &m.digest, m).await?;
        }
        if let Some(tag) = tag {
            self.push_manifest(repo, tag, node.manifest()).await?;
        }
        Ok(())
    }

    /// `GET` a manifest: (content type, exact bytes).
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> anyhow::Result<(String, Bytes)> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let accept = [
            super::image::OCI_INDEX,
            super::image::OCI_MANIFEST,
            super::image::DOCKER_LIST,
            super::image::DOCKER_MANIFEST,
        ]
        .join(", ");
        let resp = self
            .authorize(self.client.get(&url), repo)
            .header(header::ACCEPT, accept)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if !resp.status().is_success() {
            bail!("GET {url} answered {}", resp.status());
        }
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Ok((
            ct,
            resp.bytes()
                .await
                .with_context(|| format!("reading {url}"))?,
        ))
    }

    /// `GET /v2/<repo>/blobs/<digest>`: the bytes, checked against `digest`.
    pub async fn get_blob(&self, repo: &str, digest: &str) -> anyhow::Result<Bytes> {
        let (status, _, body) = self
            .get_raw(&format!("/v2/{repo}/blobs/{digest}"), repo, None)
            .await?;
        if status != 200 {
            bail!("GET blob {digest} from {repo} answered {status}");
        }
        if super::sha256_digest(&body) != digest {
            bail!("blob {digest} from {repo}: the bytes do not match the digest");
        }
        Ok(body)
    }

    /// `GET path` (with `accept` if given): status, headers and body, whatever
    /// the status.
    pub async fn get_raw(
        &self,
        path: &str,
        repo: &str,
        accept: Option<&str>,
    ) -> anyhow::Result<(u16, header::HeaderMap, Bytes)> {
        let url = self.url(path);
        let mut req = self.authorize(self.client.get(&url), repo);
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let resp = req.send().await.with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("reading {url}"))?;
        Ok((status, headers, body))
    }

    /// Whether `reference` (tag or digest) resolves in `repo` (`HEAD` 200).
    pub async fn manifest_exists(&self, repo: &str, reference: &str) -> anyhow::Result<bool> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .authorize(self.client.head(&url), repo)
            .header(
                header::ACCEPT,
                [
                    super::image::OCI_INDEX,
                    super::image::OCI_MANIFEST,
                    super::image::DOCKER_LIST,
                    super::image::DOCKER_MANIFEST,
                ]
                .join(", "),
            )
            .send()
            .await
            .with_context(|| format!("HEAD {url}"))?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            s => bail!("HEAD {url} answered {s}"),
        }
    }

    /// `GET /v2/<repo>/tags/list` (first page; test repositories are small).
    pub async fn tags(&self, repo: &str) -> anyhow::Result<Vec<String>> {
        let url = self.url(&format!("/v2/{repo}/tags/list?n=1000"));
        let resp = self
            .authorize(self.client.get(&url), repo)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if resp.status().as_u16() == 404 {
            return Ok(Vec::new());
        }
        if !resp.status().is_success() {
            bail!("GET {url} answered {}", resp.status());
        }
        let body = resp.bytes().await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).with_context(|| format!("tag list from {url}"))?;
        Ok(v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// Pushes `node` (an [`Index`], [`Image`] or [`Node`]) to `reg` as `repo:tag`.
pub async fn push(
    reg: &TestRegistry,
    repo: &str,
    tag: &str,
    node: impl Into<Node>,
) -> anyhow::Result<()> {
    let node = node.into();
    Pusher::for_registry(reg)
        .push_node(repo, &node, Some(tag))
        .await
        .with_context(|| format!("pushing {repo}:{tag} to {}", reg.base_url()))
}
