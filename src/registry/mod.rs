//! The registry layer: references, digests, raw manifests, auth and HTTP.
//! It imports nothing from the layers above it.

pub mod config;
pub mod digest;
pub mod reference;

pub use config::{RegistryConfig, Secret, TlsMode};
pub use digest::Digest;
pub use reference::Reference;
pub mod auth;
pub mod catalog;
pub mod chunked;
pub mod client;
pub mod credentials;
mod delete;
pub mod error;
pub mod escape;
mod guard;
mod http;
pub mod layout;
pub mod limits;
pub mod manifest;
#[cfg(test)]
pub(crate) mod memory;
mod origin;
pub mod ping;
pub mod platform;
pub mod profiles;
pub mod ratelimit;
pub mod referrers;
mod remote;
pub mod resume;
pub mod upload_plan;
pub mod warnings;

pub mod transport;

pub use client::{Client, ClientOptions};
pub use delete::TagDeletion;
pub use error::{Error, Op};
pub use http::USER_AGENT;
pub use limits::Limits;
pub use manifest::{Descriptor, Manifest, RawManifest};
pub use platform::{Platform, PlatformSpec};
pub use transport::{BlobReader, ByteStream, ManifestHead, RetryPolicy, TagListing, UploadSession};
