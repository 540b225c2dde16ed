//! The registry layer: references, digests, raw manifests, auth and HTTP.
//! It imports nothing from the layers above it.
//!
//! Inside, dependencies go one way:
//! - leaf data: [`reference`] (with its typed [`reference::Location`]),
//!   [`digest`], [`manifest`], [`error`], [`limits`], [`platform`];
//! - [`transport`]: the [`transport::Transport`] trait, one method per
//!   operation (manifest head/get/put, blob head/get, upload
//!   start/mount/write, tags, referrers, delete), and the I/O types;
//! - its implementations, which never import each other nor the client:
//!   `http` (the HTTP stack and, one file per registry resource, the
//!   registries as a transport) and [`layout`] (OCI layouts and archives);
//! - [`Client`]: routes each reference to its transport by its location,
//!   and adds the operations made of several round trips
//!   ([`Client::delete_tag`], [`Client::fallback_index`]).

pub mod config;
pub mod digest;
pub mod reference;

pub use config::{RegistryConfig, Secret, TlsMode};
pub use digest::Digest;
pub use reference::Reference;
pub mod catalog;
pub mod chunked;
pub mod client;
mod delete;
pub mod error;
pub mod escape;
mod guard;
mod http;
pub mod identity;
pub mod layout;
pub mod limits;
pub mod manifest;
#[cfg(test)]
pub(crate) mod memory;
pub mod ping;
pub mod platform;
pub mod profiles;
pub mod ratelimit;
pub mod rawjson;
pub mod referrers;
pub mod resume;
pub mod schema1;
mod tls_hint;
pub mod upload_plan;
pub mod warnings;

pub mod transport;

pub use client::{Client, ClientOptions};
pub use delete::TagDeletion;
pub use error::{Error, ErrorKind, Op};
pub(crate) use http::{Capped, read_capped, retry_wait};
pub use http::{USER_AGENT, auth, credentials, cut_retry_waits};
pub use limits::Limits;
pub use manifest::{Descriptor, Manifest, RawManifest};
pub use platform::{Platform, PlatformSpec};
pub use transport::{BlobReader, ByteStream, ManifestHead, RetryPolicy, TagListing, UploadSession};
