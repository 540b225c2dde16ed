//! Config-driven mirroring: list tags, filter, compare, copy.
//!
//! - [`config`]: the TOML config file, validated into [`Config`] and [`Mirror`]s;
//! - [`filter`]: tag filters (regexes, semver, newest N);
//! - [`schedule`]: cron schedules in a time zone;
//! - [`discover`]: mirrors of a whole registry or namespace, one job per repository;
//! - [`overlap`]: mirrors whose targets could write the same tag;
//! - [`run`]: running mirrors ([`Syncer`]) and their reports;
//! - [`shard`]: which replica of a sharded fleet runs which mirror;
//! - [`prune`]: deleting target tags the source no longer lists, with guard rails;
//! - [`backup`]: a backup tag for a tag's previous digest before it moves.

pub mod backup;
pub mod config;
mod config_error;
mod config_text;
pub mod discover;
mod discover_keys;
pub mod filter;
mod layouts;
mod limits;
mod mirror_keys;
pub mod model;
pub mod overlap;
pub mod prune;
mod referrer_keys;
pub mod run;
pub mod schedule;
pub mod shard;
pub mod source;

pub use config::ConfigError;
pub use filter::{TagFilter, lenient_version};
pub use model::{Config, Defaults, Mirror, Selection, ServerConfig};
pub use run::{ImageReport, ImageResult, MirrorReport, RunResult, SyncOptions, SyncReport, Syncer};
pub use schedule::{Schedule, ScheduleError};
