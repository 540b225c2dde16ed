//! A second registry implementation, with the referrers API: the
//! `ferro-oci-server` crate served in-process on a loopback port.
//!
//! distribution 2.8 has no referrers API, so the tests need another
//! registry to cover both directions of conversion (tag scheme → API and
//! API → tag scheme). ferro-oci-server implements
//! `GET /v2/<name>/referrers/<digest>` (with `artifactType` filtering and
//! `OCI-Filters-Applied`) and answers a manifest PUT that has a `subject`
//! with `OCI-Subject`. Its metadata and blobs live in memory.
//!
//! Limits worth knowing when writing a test against it:
//! - its blob `HEAD` is not scoped per repository (a blob pushed to one
//!   repository is found in every one), so it cannot prove mounts or
//!   per-repository blob checks;
//! - it answers a cross-repository mount with a plain upload session (202);
//! - it has no authentication (anonymous only).
//!
//! [`FerroRegistry`] mirrors the parts of [`super::TestRegistry`]'s API that
//! tests use (`host`, `base_url`, `pusher`, `credentials`), and
//! [`AnyRegistry`] lets a test take either kind.

use std::sync::Arc;

use super::push::Pusher;
use super::registry::TestRegistry;
use super::skopeo::SkopeoLoc;

/// An in-process ferro-oci-server; stops when dropped.
pub struct FerroRegistry {
    addr: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for FerroRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FerroRegistry")
            .field("base_url", &self.base_url())
            .finish()
    }
}

impl FerroRegistry {
    /// Starts an empty registry on a free loopback port. Needs a Tokio
    /// runtime that keeps running while the test awaits other work (use
    /// `#[tokio::test(flavor = "multi_thread")]`).
    pub async fn start() -> FerroRegistry {
        Self::serve(Arc::new(ferro_blob_store::InMemoryBlobStore::new())).await
    }

    /// Starts an empty registry whose blobs are files under `root`
    /// (ferro's `FsBlobStore`: `<root>/sha256/<first two hex digits>/<the
    /// rest of the hex>`), so that a test can damage them.
    pub async fn start_on_disk(root: &std::path::Path) -> FerroRegistry {
        let store = ferro_blob_store::FsBlobStore::new(root).expect("ferro's blob directory");
        Self::serve(Arc::new(store)).await
    }

    async fn serve(store: ferro_blob_store::SharedBlobStore) -> FerroRegistry {
        let app = ferro_oci_server::build_app(store);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding ferro-oci-server to 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("local address of the ferro listener");
        let shutdown = Some(super::serve_until_dropped(listener, app));
        let reg = FerroRegistry { addr, shutdown };
        reg.wait_ready().await;
        reg
    }

    async fn wait_ready(&self) {
        let client = super::http_client(None);
        let url = format!("{}/v2/", self.base_url());
        for _ in 0..200 {
            if let Ok(r) = client.get(&url).send().await
                && r.status().as_u16() == 200
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("ferro-oci-server did not answer GET {url} within 2 s");
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Always `None`: the server has no authentication.
    pub fn credentials(&self) -> Option<(String, String)> {
        None
    }

    /// An anonymous pusher/reader for this registry.
    pub fn pusher(&self) -> Pusher {
        Pusher::new(&self.base_url(), super::push::PushAuth::Anonymous, None)
    }
}

impl Drop for FerroRegistry {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Either registry kind, for tests that run the same scenario on both.
#[derive(Clone, Copy, Debug)]
pub enum AnyRegistry<'a> {
    /// distribution 2.8: no referrers API, fallback tags.
    Distribution(&'a TestRegistry),
    /// ferro-oci-server: the referrers API and `OCI-Subject`.
    Ferro(&'a FerroRegistry),
}

impl AnyRegistry<'_> {
    pub fn host(&self) -> String {
        match self {
            AnyRegistry::Distribution(r) => r.host(),
            AnyRegistry::Ferro(r) => r.host(),
        }
    }

    pub fn base_url(&self) -> String {
        match self {
            AnyRegistry::Distribution(r) => r.base_url(),
            AnyRegistry::Ferro(r) => r.base_url(),
        }
    }

    pub fn credentials(&self) -> Option<(String, String)> {
        match self {
            AnyRegistry::Distribution(r) => r.credentials(),
            AnyRegistry::Ferro(r) => r.credentials(),
        }
    }

    pub fn pusher(&self) -> Pusher {
        match self {
            AnyRegistry::Distribution(r) => Pusher::for_registry(r),
            AnyRegistry::Ferro(r) => r.pusher(),
        }
    }

    /// Whether the registry serves the referrers API.
    pub fn has_referrers_api(&self) -> bool {
        matches!(self, AnyRegistry::Ferro(_))
    }

    /// `docker://HOST/REFERENCE` for skopeo.
    pub fn skopeo(&self, reference: &str) -> SkopeoLoc {
        SkopeoLoc::Docker {
            host: self.host(),
            reference: reference.to_string(),
            creds: self.credentials(),
        }
    }

    /// A short name for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyRegistry::Distribution(_) => "distribution",
            AnyRegistry::Ferro(_) => "ferro",
        }
    }
}

impl<'a> From<&'a TestRegistry> for AnyRegistry<'a> {
    fn from(r: &'a TestRegistry) -> Self {
        AnyRegistry::Distribution(r)
    }
}

impl<'a> From<&'a FerroRegistry> for AnyRegistry<'a> {
    fn from(r: &'a FerroRegistry) -> Self {
        AnyRegistry::Ferro(r)
    }
}
