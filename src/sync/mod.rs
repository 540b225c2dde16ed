//! Config-driven mirroring: list tags, filter, compare, copy.

pub mod config;
