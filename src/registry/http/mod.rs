//! Registries over HTTP. The per-registry stack: host connections and
//! pacing, authentication, one retry loop per request (with the body read
//! inside it), the retry policy and wire helpers. Above it, [`Remote`]: the
//! registries as a [`crate::registry::transport::Transport`], one file per
//! registry resource (manifests, blobs, uploads, tags, referrers, catalog,
//! delete).

mod answer;
pub mod auth;
mod connect;
pub mod credentials;
mod host;
mod origin;
pub(crate) mod probe;
pub(crate) mod pulls;
mod request;
mod retry;
mod send;
mod token;
mod trace;
mod wire;

// The registry as a transport, one file per resource.
mod adaptive;
pub(crate) mod bandwidth;
mod blob_resume;
mod blobs;
mod catalog;
mod delete;
mod manifests;
mod referrers;
mod remote;
mod tags;
mod upload_guard;
mod uploads;

pub use connect::USER_AGENT;
pub(crate) use connect::client_builder;
pub(crate) use host::Host;
pub(crate) use request::{Body, Request};
pub use retry::cut_retry_waits;
pub(crate) use retry::wait as retry_wait;
pub(crate) use wire::{Capped, describe, read_capped};

pub use referrers::{MAX_REFERRER_PAGES, MAX_REFERRERS};
pub use remote::ClientOptions;
pub(crate) use remote::Remote;
