//! Per-registry HTTP stack: host connections and pacing, authentication,
//! one retry loop per request (with the body read inside it), the retry
//! policy and wire helpers.

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
mod wire;

pub use connect::USER_AGENT;
pub(crate) use connect::client_builder;
pub(crate) use host::Host;
pub(crate) use request::{Body, Request};
pub(crate) use wire::describe;
