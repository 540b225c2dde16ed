//! The validated sync model: what a config file means once it is read.
//!
//! [`Config`] holds the `[defaults]` ([`Defaults`]), `[server]`
//! ([`ServerConfig`]), `[[registry]]` and `[shard]` settings and the
//! [`Mirror`]s; a mirror's parts live beside it: its [`Selection`] of tags,
//! its [`Discovery`] of repositories, its [`Prune`] rules and its
//! [`Backup`] template. The TOML parser ([`super::config`]) builds these;
//! the model depends on no parser and no run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;

use crate::registry::{PlatformSpec, RegistryConfig};
use crate::sync::schedule::Schedule;
use crate::sync::shard::ShardConfig;

pub mod backup;
pub mod discovery;
mod mirror;
pub mod notify;
pub mod prune;
pub mod state;

pub use backup::{Backup, MAX_BACKUP_KEEP};
pub use discovery::{DEFAULT_MAX_REPOSITORIES, Discovery, WHOLE_REGISTRY, without_host};
pub use mirror::{Mirror, Selection};
pub use prune::{DEFAULT_MAX_PRUNE, Prune, PruneMode};
pub use state::StatePolicy;

/// Address `serve` listens on unless `[server] listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9090";
/// Schedule used when neither the mirror nor `[defaults]` sets one.
pub const DEFAULT_SCHEDULE: &str = "0 */6 * * *";
/// Images copied at once unless `[defaults] concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Blobs of one image transferred at once unless `[defaults] blob_concurrency` says otherwise.
pub const DEFAULT_BLOB_CONCURRENCY: usize = 4;
/// Grace period for in-flight copies at shutdown unless `[server] shutdown_grace_seconds` says otherwise.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(120);

/// A loaded, validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[[registry]]` tables.
    pub registries: Vec<RegistryConfig>,
    /// Docker config.json to read credentials from.
    pub docker_config: Option<PathBuf>,
    /// `[defaults]`.
    pub defaults: Defaults,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[[mirror]]` tables, in file order.
    pub mirrors: Vec<Mirror>,
    /// `allow_empty = true`: a config without any mirror is meant (a
    /// reload of `serve` to such a config is refused otherwise).
    pub allow_empty: bool,
    /// How many `[[mirror]]` tables the file has: `mirrors` may be narrowed
    /// later (to a shard's share, to `--mirror` names), this stays.
    pub mirrors_in_file: usize,
    /// `[shard]`: how many replicas split the mirrors (see [`crate::sync::shard`]).
    pub shard: ShardConfig,
    /// `[events]`: the push-event receiver and sync-now API of `serve`.
    pub events: crate::sync::events_config::EventsConfig,
    /// `state_dir`, resolved against the config file's directory: where the
    /// run-state store lives (see [`crate::sync::state`]); `None`: the
    /// default of the command.
    pub state_dir: Option<PathBuf>,
    /// `[[notify]]` sinks: where a message about each mirror run goes
    /// (see [`notify`]).
    pub notify: Vec<notify::NotifySink>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: PathBuf::new(),
            registries: Vec::new(),
            docker_config: None,
            defaults: Defaults::default(),
            server: ServerConfig::default(),
            mirrors: Vec::new(),
            allow_empty: false,
            mirrors_in_file: 0,
            shard: ShardConfig::default(),
            events: Default::default(),
            state_dir: None,
            notify: Vec::new(),
        }
    }
}

/// `[defaults]`: settings every mirror inherits.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Schedule of mirrors without their own.
    pub schedule: Schedule,
    /// When `serve` audits mirrors without their own `audit_schedule`; `None`: never.
    pub audit_schedule: Option<Schedule>,
    /// Time zone schedules are evaluated in.
    pub timezone: Tz,
    /// Platforms of mirrors without their own; empty: all.
    pub platforms: Vec<PlatformSpec>,
    /// Images copied at once, across all mirrors.
    pub concurrency: usize,
    /// Blobs of one image transferred at once.
    pub blob_concurrency: usize,
    /// Largest random delay before a scheduled run.
    pub jitter: Duration,
    /// Deadlines and caps of registries without their own settings.
    pub limits: crate::registry::Limits,
    /// Referrers of mirrors without their own keys (default: all, cosign tags too).
    pub referrers: crate::copy::ReferrerOptions,
    /// `convert_schema1` of mirrors without their own.
    pub convert_schema1: bool,
    /// `target_groups`: named lists of targets a mirror names as
    /// `targets = ["@name"]`, each entry as written.
    pub target_groups: std::collections::BTreeMap<String, Vec<String>>,
    /// `[defaults.policy]`: the signature policy of mirrors without their own.
    pub policy: Option<std::sync::Arc<crate::copy::policy::Policy>>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            schedule: Schedule::parse(DEFAULT_SCHEDULE, Tz::UTC)
                .expect("the default schedule is valid"),
            audit_schedule: None,
            timezone: Tz::UTC,
            platforms: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            blob_concurrency: DEFAULT_BLOB_CONCURRENCY,
            jitter: Duration::ZERO,
            limits: crate::registry::Limits::default(),
            referrers: crate::copy::ReferrerOptions::all(),
            convert_schema1: false,
            target_groups: std::collections::BTreeMap::new(),
            policy: None,
        }
    }
}

/// `[server]`: the `serve` daemon's HTTP endpoint and shutdown.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
    /// How long in-flight copies may run after SIGTERM.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("the default listen address is valid"),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl Config {
    /// Warnings about keys that are valid but likely not meant (see
    /// [`Mirror::target_warnings`]), one line each.
    pub fn warnings(&self) -> Vec<String> {
        self.mirrors
            .iter()
            .flat_map(Mirror::target_warnings)
            .collect()
    }

    /// The mirror called `name`.
    pub fn mirror(&self, name: &str) -> Option<&Mirror> {
        self.mirrors.iter().find(|m| m.name == name)
    }

    /// Why this config must not replace a running one: its file has no
    /// mirror and does not say `allow_empty = true` (an emptied or truncated
    /// file would otherwise stop every mirror). `None` when the file has
    /// mirrors (even if none of them is this replica's share) or says so.
    pub fn empty_without_consent(&self) -> Option<String> {
        (self.mirrors_in_file == 0 && !self.allow_empty).then(|| {
            format!(
                "config file {} has no [[mirror]] table, so nothing would be mirrored; add a \
                 mirror, or set `allow_empty = true` at the top of the file if a config without \
                 mirrors is meant",
                self.path.display()
            )
        })
    }
}
