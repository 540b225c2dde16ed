//! Per-registry HTTP stack: host connections and pacing, authentication,
//! the request loop with its retries, the retry policy and wire helpers.

mod auth;
mod host;
mod retry;
mod send;
mod wire;

pub use host::USER_AGENT;
pub(crate) use host::{Host, client_builder};
pub(crate) use send::{Body, Request};
pub(crate) use wire::describe;
