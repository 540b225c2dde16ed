//! The registry client: one `Client` shared by all tasks. It routes each
//! reference to the [`Transport`] that serves its location (the HTTP
//! registries, or the OCI layout or archive it names).

use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use url::Url;

use super::auth::Scopes;
use super::catalog::{CatalogError, RepositoryListing};
use super::digest::Digest;
use super::error::{Error, Op, Result};
use super::http::{Host, Remote, Request};
use super::layout::Layouts;
use super::limits::Limits;
use super::manifest::RawManifest;
use super::ratelimit::Allowance;
use super::reference::{Location, Reference};
use super::transport::{
    ApiAnswer, BlobReader, ByteStream, ManifestHead, ManifestPut, RetryPolicy, TagListing,
    Transport, UploadSession,
};

pub use super::http::ClientOptions;

/// The registry client. Clone is cheap; all clones share one connection
/// pool, one token cache, the per-registry limits and the layouts opened.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// The HTTP stack of every registry host.
    remote: Arc<Remote>,
    /// What serves registry references: `remote`, or a test double.
    registries: Arc<dyn Transport>,
    layouts: Layouts,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("registries", &self.inner.remote.options().registries)
            .finish()
    }
}

impl Client {
    /// Build a client. Per-registry settings are checked when a registry is
    /// first used.
    pub fn new(options: ClientOptions) -> Result<Client> {
        let remote = Arc::new(Remote::new(options)?);
        Ok(Client {
            inner: Arc::new(Inner {
                registries: remote.clone(),
                remote,
                layouts: Layouts::default(),
            }),
        })
    }

    /// A client whose registries are all served by `registries` (a test
    /// double such as an in-memory store) instead of HTTP; layouts are
    /// still read from disk.
    pub fn with_transport(
        options: ClientOptions,
        registries: Arc<dyn Transport>,
    ) -> Result<Client> {
        let mut client = Client::new(options)?;
        Arc::get_mut(&mut client.inner)
            .expect("not shared yet")
            .registries = registries;
        Ok(client)
    }

    /// The transport that serves `r`'s location.
    fn transport(&self, r: &Reference) -> Result<Arc<dyn Transport>> {
        Ok(match r.location() {
            Location::Registry(_) => self.inner.registries.clone(),
            Location::Layout(at) => self.inner.layouts.get(at, self.layout_wait())?,
        })
    }

    /// The retry policy requests of this client follow.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.remote.options().retry
    }

    /// The HTTP stack of `registry`.
    pub(super) fn host(&self, registry: &str) -> Result<Arc<Host>> {
        self.inner.remote.host(registry)
    }

    /// A request about `repo` (`""` for the API root `/v2/` itself).
    pub(super) fn request(
        op: Op,
        target: String,
        repo: &str,
        method: Method,
        url: Url,
        scopes: Scopes,
    ) -> Request {
        Remote::request(op, target, repo, method, url, scopes)
    }

    /// A new run begins (`serve` calls this before each run): credential
    /// files, variables and helpers are read again at next use, so a rotated
    /// Secret takes effect without a restart.
    pub async fn renew_credentials(&self) {
        self.inner.remote.renew_credentials().await;
    }

    /// Create the repository of `target`, after a push met `NAME_UNKNOWN`,
    /// when its registry has `create_repositories = true` and an API that
    /// creates then (ECR); once per repository per run. `Ok(true)`: it exists
    /// now, push again.
    pub async fn create_repository(&self, target: &Reference) -> Result<bool> {
        self.create_for_push(target, false).await
    }

    /// Before the first push into `target`: create what the push needs when
    /// its registry has `create_repositories = true` and an API that must
    /// act first (a Harbor project, an Artifact Registry repository); once
    /// per run.
    pub async fn prepare_repository(&self, target: &Reference) -> Result<()> {
        self.create_for_push(target, true).await.map(|_| ())
    }

    async fn create_for_push(&self, target: &Reference, before_push: bool) -> Result<bool> {
        match target.location() {
            Location::Registry(host) => {
                self.host(host)?
                    .create_repository(target.repository(), before_push)
                    .await
            }
            Location::Layout(_) => Ok(false),
        }
    }

    /// Repositories created since the last call (`host/repo`, sorted).
    pub fn take_created_repositories(&self) -> Vec<String> {
        self.inner.remote.take_created_repositories()
    }

    /// Check that the settings of `registry` are usable (credentials
    /// readable, CA file valid) without sending anything.
    pub fn check_registry(&self, registry: &str) -> Result<()> {
        self.host(registry).map(|_| ())
    }

    /// The caps and deadlines that apply to `r`'s location.
    pub fn limits(&self, r: &Reference) -> Result<Limits> {
        match r.location() {
            Location::Layout(_) => Ok(self.inner.remote.options().limits.clone()),
            Location::Registry(host) => Ok(self.host(host)?.limits.clone()),
        }
    }

    /// HEAD a manifest; `None` when it does not exist.
    pub async fn head_manifest(&self, r: &Reference) -> Result<Option<ManifestHead>> {
        self.transport(r)?.head_manifest(r).await
    }

    /// GET a manifest's raw bytes; verified when `r` has a digest, and
    /// checked against `Docker-Content-Digest` when the registry sends one.
    pub async fn get_manifest(&self, r: &Reference) -> Result<RawManifest> {
        self.transport(r)?.get_manifest(r).await
    }

    /// PUT a manifest's raw bytes under `r`'s tag, or its digest when `r` has
    /// no tag. Returns the digest the registry reports; an error if the
    /// registry reports another digest than that of the bytes sent.
    pub async fn put_manifest(&self, r: &Reference, m: &RawManifest) -> Result<Digest> {
        Ok(self.put_manifest_answered(r, m).await?.digest)
    }

    /// [`Client::put_manifest`], with the subject the registry confirmed
    /// (`OCI-Subject`) when it indexed the manifest as a referrer.
    pub async fn put_manifest_answered(
        &self,
        r: &Reference,
        m: &RawManifest,
    ) -> Result<ManifestPut> {
        self.transport(r)?.put_manifest(r, m).await
    }

    /// HEAD a blob; its size, or `None` when missing.
    pub async fn head_blob(&self, repo: &Reference, d: &Digest) -> Result<Option<u64>> {
        self.transport(repo)?.head_blob(repo, d).await
    }

    /// GET a blob as a stream. The bytes are not verified here; the
    /// uploader verifies them while they stream.
    pub async fn get_blob(&self, repo: &Reference, d: &Digest) -> Result<BlobReader> {
        self.transport(repo)?.get_blob(repo, d).await
    }

    /// GET a small blob whole (at most `max` bytes), verified against its digest.
    pub async fn get_blob_bytes(&self, repo: &Reference, d: &Digest, max: u64) -> Result<Bytes> {
        self.transport(repo)?.get_blob_bytes(repo, d, max).await
    }

    /// Open an upload session in `repo`.
    pub async fn start_upload(&self, repo: &Reference) -> Result<UploadSession> {
        self.transport(repo)?.start_upload(repo).await
    }

    /// Try to mount `d` from `from` (same registry) into `repo`. `Ok(None)`:
    /// mounted; `Ok(Some(session))`: the registry opened an upload instead
    /// (HTTP 202), to be finished with [`Client::upload_blob`].
    pub async fn mount_blob(
        &self,
        repo: &Reference,
        d: &Digest,
        from: &Reference,
    ) -> Result<Option<UploadSession>> {
        self.transport(repo)?.mount_blob(repo, d, from).await
    }

    /// Upload a blob's bytes into a session and commit it. The bytes are
    /// hashed while they stream; on a digest or size mismatch the upload is
    /// aborted before the commit, so nothing is written.
    pub async fn upload_blob(
        &self,
        session: UploadSession,
        d: &Digest,
        size: u64,
        body: ByteStream,
    ) -> Result<()> {
        let transport = self.transport(&session.repo)?;
        transport.upload_blob(session, d, size, body).await
    }

    /// Upload bytes held in memory (configs, small artifacts): POST, then one
    /// PUT with the body.
    pub async fn put_blob_bytes(&self, repo: &Reference, d: &Digest, data: Bytes) -> Result<()> {
        let actual = d.of_same_algorithm(&data);
        if &actual != d {
            return Err(Error::DigestMismatch {
                op: Op::PutBlob,
                target: format!("{}@{d}", repo.name()),
                expected: d.clone(),
                actual,
            });
        }
        let session = self.start_upload(repo).await?;
        let size = data.len() as u64;
        let stream = futures_util::stream::once(async move { Ok(data) });
        self.upload_blob(session, d, size, Box::pin(stream)).await
    }

    /// List a repository's valid tags, following `Link` pagination (see
    /// [`Client::list_tags_checked`]).
    pub async fn list_tags(&self, repo: &Reference) -> Result<Vec<String>> {
        Ok(self.list_tags_checked(repo).await?.tags)
    }

    /// List a repository's tags, following `Link` pagination, within the
    /// registry's caps (page size, pages, tags). Tags that break the tag
    /// grammar are dropped, counted, and logged once (escaped).
    pub async fn list_tags_checked(&self, repo: &Reference) -> Result<TagListing> {
        self.transport(repo)?.list_tags(repo, true).await
    }

    /// [`Client::list_tags_checked`] for a second listing of a repository
    /// in one run (the referrer lookup's): invalid tags are dropped the
    /// same way but not logged or counted again.
    pub async fn list_tags_unreported(&self, repo: &Reference) -> Result<TagListing> {
        self.transport(repo)?.list_tags(repo, false).await
    }

    /// Ask the referrers API of `repo` for the referrers of `subject`,
    /// following `Link` pages. `artifact_type`: a filter the registry may
    /// apply (see [`ApiAnswer::Listed`]). A layout has no such API.
    pub async fn referrers_api(
        &self,
        repo: &Reference,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<ApiAnswer> {
        let transport = self.transport(repo)?;
        transport.referrers(repo, subject, artifact_type).await
    }

    /// What is known now of `registry`'s pull allowance for this client's
    /// credential: the copy engine checks its cost estimate against it.
    pub fn pull_allowance(&self, registry: &str) -> Result<Allowance> {
        Ok(self.host(registry)?.pulls.allowance())
    }

    /// `DELETE` the manifest `r` names; the status, a success or one of `pass`.
    pub(super) async fn delete_manifest(&self, r: &Reference, pass: &'static [u16]) -> Result<u16> {
        self.transport(r)?.delete_manifest(r, pass).await
    }

    /// List the repositories of `registry` through `_catalog`, within the
    /// caps of [`super::catalog`]. `page_size` is clamped to 1..=1000.
    pub async fn list_repositories(
        &self,
        registry: &str,
        page_size: usize,
    ) -> Result<RepositoryListing, CatalogError> {
        self.inner
            .remote
            .list_repositories(registry, page_size)
            .await
    }

    /// How long a layout waits for another writer's lock.
    fn layout_wait(&self) -> std::time::Duration {
        self.inner.remote.options().limits.request_timeout
    }

    /// Every (repository, tag) of the layout `r` names, in `index.json`
    /// order; repository `""` is the unnamed one (bare-tag `ref.name`).
    /// Entries whose `ref.name` cannot be named are left out.
    pub async fn layout_names(&self, r: &Reference) -> Result<Vec<(String, String)>> {
        self.inner.layouts.names(r, self.layout_wait()).await
    }

    /// [`Self::layout_names`], with the number of entries left out.
    pub async fn layout_names_counted(
        &self,
        r: &Reference,
    ) -> Result<(Vec<(String, String)>, usize)> {
        self.inner
            .layouts
            .names_counted(r, self.layout_wait())
            .await
    }

    /// For a layout reference without tag or digest: the layout's only image
    /// as a full reference (repository and tag from its `ref.name`, or its
    /// digest when it has none). Other references come back unchanged.
    pub async fn resolve_layout_image(&self, r: &Reference) -> Result<Reference> {
        self.inner.layouts.only_image(r, self.layout_wait()).await
    }

    /// Pack every archive this client changed into its file (`oci-layout`
    /// first, then blobs, `index.json` last, renamed into place). Call at
    /// the end of a run; calling it again without new writes does nothing,
    /// and a layout directory needs nothing (its `index.json` is in place).
    pub async fn finish_layouts(&self) -> Result<()> {
        self.inner.layouts.finish_all().await
    }
}
