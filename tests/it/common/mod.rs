//! Shared integration-test harness: real `docker-registry` processes, a Docker
//! token-auth issuer, deterministic test images with an independent pusher,
//! skopeo cross-checks, a counting/fault-injecting proxy and a tiny fake server.
//!
//! Every module of the integration-test binary (`tests/it/main.rs`) uses it
//! as `crate::common`.
//!
//! Typical use (inside `#[tokio::test(flavor = "multi_thread")]`):
//!
//! ```ignore
//! let issuer = TokenIssuer::start(TokenIssuerOptions::default()).await;
//! let src = TestRegistry::start(RegistryOptions::token(&issuer)).await;
//! let dst = TestRegistry::start(RegistryOptions::htpasswd("u", "p")).await;
//! let set = ImageSet::multi_arch("app", &["linux/amd64", "linux/arm64"], true, Format::Oci);
//! push(&src, "team/app", "1.0", &set).await?;          // children first, tag last
//! let proxy = TestProxy::start(&dst.base_url(), FaultPlan::none()).await;
//! // … run regmirror from src to proxy.host() …
//! assert_eq!(skopeo_raw_digest(&dst, "team/app:1.0").await?, set.digest());
//! let manifest_puts = proxy.count("PUT", "/v2/team/app/manifests/");
//! ```
//!
//! Pieces:
//! - [`registry`]: `docker-registry` processes (anonymous, htpasswd, token; TLS;
//!   foreign layers; delete), killed on drop and when the test process dies.
//! - [`token`]: Docker token-auth issuer (GET and OAuth2 POST), request/scope
//!   counters, `mint` for direct tokens, lifetime the registry really enforces.
//! - [`image`]: deterministic blobs, images, indexes, attestations, nested
//!   indexes, artifacts, foreign layers; OCI layout writer.
//! - [`push`]: independent `reqwest` pusher and reader.
//! - [`skopeo`]: `skopeo inspect --raw` digests and `copy --all --preserve-digests`.
//! - [`proxy`]: counting, fault-injecting streaming proxy.
//! - [`rules`]: a proxy playing the documented upload and request rules of
//!   ACR, ECR, Artifact Registry, nginx and `OCI-Chunk-Min-Length` registries.
//! - [`fake`]: axum router on a loopback port for behaviour no registry shows.
//! - [`malicious`]: a recording server playing a malicious registry, alone or
//!   in front of a real one.
//! - [`verify`]: independent check that a tag and its whole graph are in place.
//! - [`cosign`]: cosign key-based signatures (`sha256-<hex>.sig`) made and
//!   verified by the harness; [`cosign_attach`]: its `.att` (DSSE) and
//!   `.sbom` tags.
//! - [`ferro`]: an in-process ferro-oci-server, a registry with the
//!   referrers API; [`ferro::AnyRegistry`] takes either kind.
//! - [`artifacts`]: referrers with `subject` (SBOM, in-toto) pushed with the
//!   spec's fallback index, an independent referrers reader, the signed
//!   multi-arch fixture.
//! - [`serve`]: `regmirror serve` as a child process ([`serve::Daemon`]).
//! - [`referrers_fake`]: a read-only fake for paged referrer lists, ignored
//!   filters and `sha256-<hex>` tags resolved as digests.
#![allow(dead_code)]
#![allow(unused_imports)]

pub mod artifacts;
pub mod cli;
pub mod cloud_fakes;
pub mod cosign;
pub mod cosign_attach;
pub mod ecr_public;
pub mod fake;
pub mod ferro;
pub mod google_federation;
pub mod image;
pub mod malicious;
pub mod moto;
pub mod proxy;
pub mod push;
pub mod referrers_fake;
pub mod referrers_verify;
pub mod registry;
pub mod repo_apis;
pub mod rules;
pub mod sct;
pub mod serve;
pub mod sigstore;
pub mod sigstore_bundle;
pub mod skopeo;
pub mod tls;
pub mod token;
pub mod verify;

pub use cli::{
    Run, regmirror, regmirror_closed_stdout, regmirror_env, regmirror_isolated, regmirror_signalled,
};
pub use fake::FakeServer;
pub use image::{
    Blob, Format, Image, ImageBuilder, ImageSet, Index, IndexBuilder, Manifest, MultiArch, Node,
    Platform, write_oci_layout,
};
pub use malicious::{Answer, MaliciousServer, Recorded};
pub use proxy::{Fault, FaultPlan, FaultRule, TestProxy, Trigger};
pub use push::{PushAuth, Pusher, push};
pub use registry::{RegistryAuth, RegistryOptions, TestRegistry};
pub use rules::{Cut, Rules, RulesProxy};
pub use skopeo::{SkopeoLoc, skopeo_copy_all, skopeo_raw_digest};
pub use tls::TestCa;
pub use token::{TokenIssuer, TokenIssuerOptions};
pub use verify::graph_problems;

/// A `reqwest` client for talking to loopback test servers: no system proxy, no
/// redirects followed, optional extra root CA (PEM).
pub fn http_client(ca_pem: Option<&[u8]>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(60));
    if let Some(pem) = ca_pem {
        let cert =
            reqwest::Certificate::from_pem(pem).expect("test CA PEM should parse as a certificate");
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .expect("building a reqwest client for loopback tests")
}

/// Serves `router` on `listener` in the background until the returned
/// sender is dropped or used.
pub fn serve_until_dropped(
    listener: tokio::net::TcpListener,
    router: axum::Router,
) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    tx
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}
