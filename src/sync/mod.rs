//! Config-driven mirroring: list tags, filter, compare, copy.
//!
//! - [`model`]: the validated sync model ([`Config`], [`Mirror`] and its
//!   [`Selection`], discovery, prune and backup settings); it depends on no
//!   parser and no run;
//! - [`config`]: the TOML config file, parsed and validated into the model
//!   (one `[[mirror]]` table in `mirror_keys`, the keys of discovery,
//!   referrers and limits in `discover_keys`, `referrer_keys` and `limits`,
//!   errors that point into the file in `config_error`);
//! - [`filter`]: tag filters (regexes, semver, newest N);
//! - [`schedule`]: cron schedules in a time zone;
//! - [`source`]: rules about how an image reference was written, shared by
//!   the config file and the command line;
//! - [`overlap`]: mirrors whose targets could write the same tag;
//! - [`discover`]: mirrors of a whole registry or namespace, one job per repository;
//! - [`run`]: running mirrors ([`Syncer`]), image by image, and their reports;
//! - [`shard`]: which replica of a sharded fleet runs which mirror;
//! - [`prune`]: deleting target tags the source no longer lists, with guard rails;
//! - [`report`]: the JSON report of a run (`docs/report.schema.json`), for
//!   the command line and the sync-now API;
//! - [`backup`]: a backup tag for a tag's previous digest before it moves.
//! - [`notify`]: one notification per mirror run to the `[[notify]]` sinks
//!   (their keys in `notify_keys`), delivered in the background.
//!
//! Imports run one way: `model` imports only `filter`, `schedule` and
//! `shard`, which import nothing of `sync`; `config` imports the model, its
//! key files and `overlap` (to refuse mirrors that would fight over a tag);
//! `run` imports the model, `discover`, `prune` and `backup`; `report`
//! imports `run` and `prune`; `notify`
//! imports the model and `run` (a syncer is handed its hook; `run` never
//! imports it).

pub mod backup;
pub mod config;
mod config_error;
mod config_text;
pub mod discover;
mod discover_keys;
pub mod events_config;
pub mod filter;
mod limits;
mod mirror_keys;
pub mod model;
pub mod notify;
mod notify_keys;
pub mod overlap;
pub mod policy_keys;
pub mod prune;
mod referrer_keys;
pub mod report;
pub mod run;
pub mod schedule;
pub mod shard;
pub mod source;
pub mod state;
mod state_keys;
mod target_keys;

pub use config::ConfigError;
pub use filter::{TagFilter, lenient_version};
pub use model::{Config, Defaults, Mirror, Selection, ServerConfig};
pub use run::{ImageReport, ImageResult, MirrorReport, RunResult, SyncOptions, SyncReport, Syncer};
pub use schedule::{Schedule, ScheduleError};
