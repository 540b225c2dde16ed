//! regmirror: copy container images, multi-arch images above all, between
//! registries without a Docker daemon.
//!
//! Layers, each importing only those before it:
//! - [`registry`]: references, digests, raw manifests, and the places images
//!   live behind one [`registry::transport::Transport`] trait (registries over
//!   HTTP, OCI layouts and archives), routed by [`registry::Client`];
//! - [`copy`]: plan an image graph, then execute it;
//! - [`sync`]: config-driven jobs (list tags, filter, compare, copy);
//! - [`serve`]: the daemon (schedules, metrics and health endpoints).
//!
//! [`metrics`] holds every metric the layers update.

pub mod copy;
pub mod metrics;
pub mod registry;
pub mod serve;
pub mod sync;
