//! Per-registry HTTP stack: host connections and pacing, authentication,
//! one retry loop per request (with the body read inside it), the retry
//! policy and wire helpers.

mod answer;
mod auth;
mod connect;
mod host;
mod request;
mod retry;
mod send;
mod wire;

pub use connect::USER_AGENT;
pub(crate) use connect::client_builder;
pub(crate) use host::Host;
pub(crate) use request::{Body, Request};
pub(crate) use wire::describe;
