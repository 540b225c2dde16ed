//! Per-registry HTTP stack: host connections and pacing, authentication,
//! one retry loop per request (with the body read inside it), the retry
//! policy and wire helpers.

mod answer;
mod auth;
mod host;
mod request;
mod retry;
mod send;
mod wire;

pub use host::USER_AGENT;
pub(crate) use host::{Host, client_builder};
pub(crate) use request::{Body, Request};
pub(crate) use wire::describe;
