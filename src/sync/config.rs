//! The mirror config file (TOML): raw serde structs, validated into
//! [`Config`], [`Mirror`] and friends. Every key is documented in
//! `config.example.toml` and `docs/config.md`.
//!
//! Errors name the file, the line where known, the key and what was expected.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use regex::Regex;
use semver::VersionReq;
use serde::Deserialize;
use toml::Spanned;

use super::filter::TagFilter;
use super::schedule::Schedule;
use super::shard::{MAX_SHARDS, ShardConfig};
use crate::registry::{Digest, PlatformSpec, Reference, RegistryConfig};

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

// ---------------------------------------------------------------------------
// Raw, as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    docker_config: Option<PathBuf>,
    allow_empty: Option<bool>,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    registry: Vec<RegistryConfig>,
    #[serde(default)]
    mirror: Vec<Spanned<RawMirror>>,
    #[serde(default)]
    shard: RawShard,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShard {
    count: Option<Spanned<u32>>,
    index: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    schedule: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    platforms: Option<Vec<Spanned<String>>>,
    concurrency: Option<Spanned<usize>>,
    blob_concurrency: Option<Spanned<usize>>,
    jitter_seconds: Option<u64>,
    timeout_seconds: Option<Spanned<f64>>,
    blob_idle_timeout_seconds: Option<Spanned<f64>>,
    blob_min_bytes_per_second: Option<u64>,
    referrers: Option<bool>,
    referrer_types: Option<Vec<Spanned<String>>>,
    exclude_referrer_types: Option<Vec<Spanned<String>>>,
    cosign_tags: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    shutdown_grace_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMirror {
    name: Option<Spanned<String>>,
    source: Spanned<String>,
    target: Spanned<String>,
    tags: Option<Vec<Spanned<String>>>,
    include: Option<Vec<Spanned<String>>>,
    exclude: Option<Vec<Spanned<String>>>,
    semver: Option<Spanned<String>>,
    latest: Option<Spanned<usize>>,
    platforms: Option<Vec<Spanned<String>>>,
    schedule: Option<Spanned<String>>,
    force: Option<bool>,
    referrers: Option<bool>,
    referrer_types: Option<Vec<Spanned<String>>>,
    exclude_referrer_types: Option<Vec<Spanned<String>>>,
    cosign_tags: Option<bool>,
    prune: Option<Spanned<String>>,
    max_prune: Option<Spanned<usize>>,
    backup: Option<Spanned<String>>,
    backup_keep: Option<Spanned<usize>>,
    repositories: Option<Vec<Spanned<String>>>,
    exclude_repositories: Option<Vec<Spanned<String>>>,
    max_repositories: Option<Spanned<usize>>,
}

// ---------------------------------------------------------------------------
// Validated.

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
    /// `[shard]`: how many replicas split the mirrors (see [`super::shard`]).
    pub shard: ShardConfig,
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
        }
    }
}

/// `[defaults]`: settings every mirror inherits.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Schedule of mirrors without their own.
    pub schedule: Schedule,
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
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            schedule: Schedule::parse(DEFAULT_SCHEDULE, Tz::UTC)
                .expect("the default schedule is valid"),
            timezone: Tz::UTC,
            platforms: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            blob_concurrency: DEFAULT_BLOB_CONCURRENCY,
            jitter: Duration::ZERO,
            limits: crate::registry::Limits::default(),
            referrers: crate::copy::ReferrerOptions::all(),
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

/// Which images of the source a mirror copies.
#[derive(Debug, Clone)]
pub enum Selection {
    /// The source pins a digest: just that image.
    Digest(Digest),
    /// Exactly these tags; no tag listing needed.
    Tags(Vec<String>),
    /// List the source's tags and keep those the filter passes, plus `tags`.
    Filtered {
        /// Tags always copied, listed or not.
        tags: Vec<String>,
        /// The filter over listed tags.
        filter: TagFilter,
    },
    /// Every tag of the source repository.
    All,
}

impl Selection {
    /// True when the source's tags must be listed.
    pub fn needs_listing(&self) -> bool {
        matches!(self, Selection::Filtered { .. } | Selection::All)
    }
}

/// One `[[mirror]]`, validated.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// Unique name, used in logs and metric labels.
    pub name: String,
    /// Source repository (no tag or digest: those live in `selection`).
    pub source: Reference,
    /// Target repository (no tag or digest).
    pub target: Reference,
    /// Target tag for a single-image mirror whose target names a tag.
    pub target_tag: Option<String>,
    /// What to copy.
    pub selection: Selection,
    /// Platforms to keep; empty: every platform, index digest preserved.
    pub platforms: Vec<PlatformSpec>,
    /// When `serve` runs it.
    pub schedule: Schedule,
    /// Overwrite target tags that point at another digest.
    pub force: bool,
    /// Referrers and cosign tags copied with each image.
    pub referrers: crate::copy::ReferrerOptions,
    /// `prune` and `max_prune` (see [`super::prune`]).
    pub prune: super::prune::Prune,
    /// `backup` and `backup_keep` (see [`super::backup`]); `None`: no backups.
    pub backup: Option<super::backup::Backup>,
    /// `repositories`: the source is a registry or a namespace whose
    /// repositories are discovered at each run (see [`super::discover`]);
    /// `source` and `target` then stand for the namespace and the target
    /// prefix and are never requested themselves.
    pub discovery: Option<super::discover::Discovery>,
}

impl Mirror {
    /// The (source, target) image pair for one source tag; an error when
    /// the tag breaks the tag grammar.
    pub fn pair_for_tag(
        &self,
        tag: &str,
    ) -> Result<(Reference, Reference), crate::registry::reference::ReferenceError> {
        let target_tag = self.target_tag.as_deref().unwrap_or(tag);
        Ok((
            self.source.with_tag(tag)?,
            self.target.with_tag(target_tag)?,
        ))
    }

    /// The (source, target) pair of a digest-pinned mirror.
    pub fn pair_for_digest(
        &self,
        digest: &Digest,
        source_tag: Option<&str>,
    ) -> Result<(Reference, Reference), crate::registry::reference::ReferenceError> {
        let source = self.source.with_digest(digest.clone());
        let target = match self.target_tag.as_deref().or(source_tag) {
            Some(t) => self.target.with_tag(t)?,
            None => self.target.with_digest(digest.clone()),
        };
        Ok((source, target))
    }
}

// ---------------------------------------------------------------------------
// Errors.

/// An invalid or unreadable config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// The key concerned (`mirror[2].schedule`, `defaults.timezone`), where known.
    pub key: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", key {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Builds errors that point into one file's text.
struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, span: &Range<usize>) -> Option<usize> {
        let at = span.start.min(self.text.len());
        self.text.get(..at).map(|s| s.matches('\n').count() + 1)
    }

    fn err(
        &self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: span.as_ref().and_then(|s| self.line_of(s)),
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// The dotted key a position falls on: its table plus the `key =` of its line.
    fn key_at(&self, pos: usize) -> Option<String> {
        let table = self.table_at(pos);
        let start = self
            .text
            .get(..pos.min(self.text.len()))?
            .rfind('\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        let line = self.text[start..].lines().next().unwrap_or("");
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && !k.starts_with('[') && !k.starts_with('#'));
        match (table, key) {
            (Some(t), Some(k)) => Some(format!("{t}.{k}")),
            (None, Some(k)) => Some(k.to_string()),
            (t, None) => t,
        }
    }

    /// The table a position falls in (`[defaults]`, `[[mirror]] #2`), from the headers above it.
    fn table_at(&self, pos: usize) -> Option<String> {
        let pos = pos.min(self.text.len());
        let end = self.text[pos..]
            .find('\n')
            .map(|i| pos + i)
            .unwrap_or(self.text.len());
        let before = self.text.get(..end)?;
        let mut current = None;
        let mut counts: std::collections::HashMap<String, usize> = Default::default();
        for line in before.lines() {
            match super::config_text::header_name(line) {
                Some((name, true)) => {
                    let n = counts.entry(name.clone()).or_insert(0);
                    *n += 1;
                    current = Some(format!("{name}[{n}]"));
                }
                Some((name, false)) => current = Some(name),
                None => {}
            }
        }
        current
    }
}

// ---------------------------------------------------------------------------
// Loading.

impl Config {
    /// Load and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read it: {e}; check the path given with --config"),
        })?;
        Config::parse(path, &text)
    }

    /// Parse and validate config text; `path` is only used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let ctx = Ctx { file: path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span();
            let key = span.as_ref().and_then(|s| ctx.key_at(s.start));
            let line = span
                .as_ref()
                .and_then(|s| text.get(..s.start.min(text.len())))
                .map(|before| {
                    let start = before.rfind('\n').map_or(0, |i| i + 1);
                    text[start..].lines().next().unwrap_or("")
                })
                .unwrap_or("");
            let message = super::limits::redact_secret(key.as_deref(), line, e.message().trim());
            ConfigError {
                file: path.to_path_buf(),
                line: span.as_ref().and_then(|s| ctx.line_of(s)),
                key,
                message: super::config_text::humanize(&message),
            }
        })?;
        validate(&ctx, raw)
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

fn validate(ctx: &Ctx<'_>, raw: RawConfig) -> Result<Config, ConfigError> {
    // [defaults]
    let d = raw.defaults;
    let timezone = match &d.timezone {
        Some(tz) => tz.get_ref().parse::<Tz>().map_err(|_| {
            ctx.err(
                Some(tz.span()),
                "defaults.timezone",
                format!(
                    "unknown time zone {:?}: expected an IANA name such as \"UTC\" or \"Europe/Paris\"",
                    tz.get_ref()
                ),
            )
        })?,
        None => Tz::UTC,
    };
    let schedule = match &d.schedule {
        Some(s) => Schedule::parse(s.get_ref(), timezone)
            .map_err(|e| ctx.err(Some(s.span()), "defaults.schedule", e.to_string()))?,
        None => Schedule::parse(DEFAULT_SCHEDULE, timezone).expect("the default schedule is valid"),
    };
    let platforms = parse_platforms(ctx, "defaults.platforms", d.platforms.as_deref())?;
    let concurrency = positive(
        ctx,
        "defaults.concurrency",
        d.concurrency.as_ref(),
        DEFAULT_CONCURRENCY,
    )?;
    let blob_concurrency = positive(
        ctx,
        "defaults.blob_concurrency",
        d.blob_concurrency.as_ref(),
        DEFAULT_BLOB_CONCURRENCY,
    )?;
    let limits = super::limits::default_limits(
        d.timeout_seconds.as_ref(),
        d.blob_idle_timeout_seconds.as_ref(),
        d.blob_min_bytes_per_second,
    )
    .map_err(|(key, span, message)| ctx.err(Some(span), key, message))?;
    let referrers = super::referrer_keys::resolve(
        &crate::copy::ReferrerOptions::all(),
        "defaults",
        &super::referrer_keys::Keys {
            referrers: d.referrers,
            referrer_types: d.referrer_types.as_deref(),
            exclude_referrer_types: d.exclude_referrer_types.as_deref(),
            cosign_tags: d.cosign_tags,
        },
    )
    .map_err(|(key, span, message)| ctx.err(Some(span), key, message))?;
    let defaults = Defaults {
        referrers,
        schedule,
        timezone,
        platforms,
        concurrency,
        blob_concurrency,
        jitter: Duration::from_secs(d.jitter_seconds.unwrap_or(0)),
        limits,
    };

    // [server]
    let listen = match &raw.server.listen {
        Some(l) => l.get_ref().parse::<SocketAddr>().map_err(|_| {
            ctx.err(
                Some(l.span()),
                "server.listen",
                format!(
                    "{:?} is not an address: expected IP:PORT such as \"0.0.0.0:9090\" or \"127.0.0.1:9090\"",
                    l.get_ref()
                ),
            )
        })?,
        None => ServerConfig::default().listen,
    };
    let server = ServerConfig {
        listen,
        shutdown_grace: raw
            .server
            .shutdown_grace_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
    };

    // [[registry]]
    let mut hosts = HashSet::new();
    for (i, r) in raw.registry.iter().enumerate() {
        let key = format!("registry[{}].host", i + 1);
        if r.host.is_empty() {
            return Err(ctx.err(
                None,
                key,
                "host is empty: expected a registry host such as \"ghcr.io\"",
            ));
        }
        if !hosts.insert(r.host.clone()) {
            return Err(ctx.err(
                None,
                key,
                format!(
                    "registry {:?} is configured twice: merge the two [[registry]] tables",
                    r.host
                ),
            ));
        }
        let set = [
            r.password.is_some(),
            r.password_env.is_some(),
            r.password_file.is_some(),
        ];
        if set.iter().filter(|b| **b).count() > 1 {
            return Err(ctx.err(
                None,
                format!("registry[{}]", i + 1),
                format!(
                    "registry {:?}: set only one of password, password_env and password_file",
                    r.host
                ),
            ));
        }
        if let Err((k, message)) = r.check_numbers() {
            return Err(ctx.err(
                None,
                format!("registry[{}].{k}", i + 1),
                format!("registry {:?}: {message}", r.host),
            ));
        }
    }

    // [[mirror]]
    let mut mirrors: Vec<Mirror> = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut target_spans = Vec::new();
    for (i, m) in raw.mirror.into_iter().enumerate() {
        let table_span = m.span();
        let mirror = validate_mirror(ctx, i + 1, m.into_inner(), &defaults)?;
        if !names.insert(mirror.name.clone()) {
            return Err(ctx.err(
                Some(table_span),
                format!("mirror[{}].name", i + 1),
                format!(
                    "duplicate mirror name {:?}: names must be unique; set `name` on one of the mirrors",
                    mirror.name
                ),
            ));
        }
        mirrors.push(mirror);
        target_spans.push(table_span);
    }
    if let Some((i, j, what)) =
        super::overlap::find_conflict(&mirrors).or_else(|| super::discover::find_conflict(&mirrors))
    {
        return Err(ctx.err(
            Some(target_spans[j].clone()),
            format!("mirror[{}].target", j + 1),
            format!(
                "mirrors {:?} (mirror[{}]) and {:?} (mirror[{}]) both write to {} and can write \
                 the same tag ({what}): the tag would move between them on every run; give them \
                 different target repositories, or tags that cannot overlap (see \"Mirrors that \
                 share a target\" in docs/config.md)",
                mirrors[i].name,
                i + 1,
                mirrors[j].name,
                j + 1,
                mirrors[j].target,
            ),
        ));
    }

    let shard = validate_shard(ctx, &raw.shard)?;
    let mirrors_in_file = mirrors.len();
    Ok(Config {
        path: ctx.file.to_path_buf(),
        registries: raw.registry,
        docker_config: raw.docker_config,
        defaults,
        server,
        mirrors,
        allow_empty: raw.allow_empty.unwrap_or(false),
        mirrors_in_file,
        shard,
    })
}

/// `[shard]`: count 1 to [`MAX_SHARDS`], index below count when both are set.
fn validate_shard(ctx: &Ctx<'_>, raw: &RawShard) -> Result<ShardConfig, ConfigError> {
    let count = raw.count.as_ref().map(|c| (*c.get_ref(), c.span()));
    if let Some((n, span)) = &count
        && !(1..=MAX_SHARDS).contains(n)
    {
        return Err(ctx.err(
            Some(span.clone()),
            "shard.count",
            format!("{n} shards: expected 1 to {MAX_SHARDS} (the number of replicas)"),
        ));
    }
    let index = raw.index.as_ref().map(|i| (*i.get_ref(), i.span()));
    if let (Some((n, _)), Some((i, span))) = (&count, &index)
        && i >= n
    {
        return Err(ctx.err(
            Some(span.clone()),
            "shard.index",
            format!(
                "index {i} is not below count {n}: indexes run from 0 to {}",
                n - 1
            ),
        ));
    }
    Ok(ShardConfig {
        count: count.map(|c| c.0),
        index: index.map(|i| i.0),
    })
}

fn positive(
    ctx: &Ctx<'_>,
    key: &str,
    v: Option<&Spanned<usize>>,
    default: usize,
) -> Result<usize, ConfigError> {
    match v {
        Some(v) if *v.get_ref() == 0 => {
            Err(ctx.err(Some(v.span()), key, "0 is not allowed: expected at least 1"))
        }
        Some(v) => Ok(*v.get_ref()),
        None => Ok(default),
    }
}

fn parse_platforms(
    ctx: &Ctx<'_>,
    key: &str,
    list: Option<&[Spanned<String>]>,
) -> Result<Vec<PlatformSpec>, ConfigError> {
    let mut out: Vec<PlatformSpec> = Vec::new();
    for p in list.unwrap_or_default() {
        let spec = p
            .get_ref()
            .parse::<PlatformSpec>()
            .map_err(|e| ctx.err(Some(p.span()), key, e.to_string()))?;
        if !out.contains(&spec) {
            out.push(spec);
        }
    }
    Ok(out)
}

/// True for a target written as a registry host alone (`registry.example.com`,
/// `localhost:5000`): the source path is kept under it.
fn is_registry_only(s: &str) -> bool {
    !Reference::parse(s).is_ok_and(|r| r.is_layout())
        && !s.contains('/')
        && (s.contains('.') || s.contains(':') || s == "localhost")
        && !s.contains('@')
}

fn validate_mirror(
    ctx: &Ctx<'_>,
    n: usize,
    m: RawMirror,
    defaults: &Defaults,
) -> Result<Mirror, ConfigError> {
    let key = |k: &str| format!("mirror[{n}].{k}");

    // Discovery: a registry or namespace source stands in as a repository.
    let discovered = super::discover_keys::from_keys(&super::discover_keys::DiscoveryKeys {
        source: m.source.get_ref(),
        target: m.target.get_ref(),
        repositories: m.repositories.as_deref(),
        exclude_repositories: m.exclude_repositories.as_deref(),
        max_repositories: m.max_repositories.as_ref(),
    })
    .map_err(|(k, span, message)| {
        ctx.err(
            Some(span.unwrap_or_else(|| m.source.span())),
            key(k),
            message,
        )
    })?;
    let (discovery, source_text, target_text) = match discovered {
        Some((d, s, t)) => (Some(d), s, t),
        None => (None, m.source.get_ref().clone(), m.target.get_ref().clone()),
    };

    // Source.
    if let Some(e) = super::source::registry_only_error(&source_text) {
        return Err(ctx.err(Some(m.source.span()), key("source"), e));
    }
    let source_full = Reference::parse(source_text.trim()).map_err(|e| {
        ctx.err(
            Some(m.source.span()),
            key("source"),
            format!("{e}; expected an image or repository such as \"docker.io/library/nginx\" or \"ghcr.io/org/app:1.2\""),
        )
    })?;
    let source = source_full.repository_only();
    if let Some(e) = super::source::port_error(&source) {
        return Err(ctx.err(Some(m.source.span()), key("source"), e));
    }

    // Selection.
    let has_filters =
        m.include.is_some() || m.exclude.is_some() || m.semver.is_some() || m.latest.is_some();
    let selection_keys = if m.tags.is_some() || has_filters {
        Some(
            m.tags
                .as_ref()
                .map(|_| "tags")
                .unwrap_or(if m.include.is_some() {
                    "include"
                } else if m.exclude.is_some() {
                    "exclude"
                } else if m.semver.is_some() {
                    "semver"
                } else {
                    "latest"
                }),
        )
    } else {
        None
    };
    let selection = if let Some(d) = source_full.digest() {
        if let Some(k) = selection_keys {
            return Err(ctx.err(
                Some(m.source.span()),
                key(k),
                format!(
                    "source {:?} pins a digest, so `{k}` has nothing to select: drop `{k}` or the digest",
                    m.source.get_ref()
                ),
            ));
        }
        Selection::Digest(d.clone())
    } else if let Some(t) = source_full.tag() {
        if let Some(k) = selection_keys {
            return Err(ctx.err(
                Some(m.source.span()),
                key(k),
                format!(
                    "source {:?} names a tag, so `{k}` has nothing to select: drop `{k}` or the tag from source",
                    m.source.get_ref()
                ),
            ));
        }
        Selection::Tags(vec![t.to_string()])
    } else {
        let mut tags: Vec<String> = Vec::new();
        for t in m.tags.as_deref().unwrap_or_default() {
            let tag = t.get_ref();
            if Reference::parse(&format!("x:{tag}")).is_err() {
                return Err(ctx.err(
                    Some(t.span()),
                    key("tags"),
                    format!(
                        "{tag:?} is not a valid tag: expected 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
                    ),
                ));
            }
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        if m.tags.is_some() && tags.is_empty() && !has_filters {
            return Err(ctx.err(
                Some(m.source.span()),
                key("tags"),
                "tags is empty: list at least one tag, or drop the key to mirror every tag",
            ));
        }
        if has_filters {
            let regexes =
                |k: &str, list: Option<&Vec<Spanned<String>>>| -> Result<Vec<Regex>, ConfigError> {
                    list.map(|l| l.as_slice())
                        .unwrap_or_default()
                        .iter()
                        .map(|r| {
                            Regex::new(r.get_ref()).map_err(|e| {
                                ctx.err(
                                    Some(r.span()),
                                    key(k),
                                    format!("invalid regular expression {:?}: {e}", r.get_ref()),
                                )
                            })
                        })
                        .collect()
                };
            let include = regexes("include", m.include.as_ref())?;
            let exclude = regexes("exclude", m.exclude.as_ref())?;
            let semver = match &m.semver {
                Some(s) => Some(VersionReq::parse(s.get_ref()).map_err(|e| {
                    ctx.err(
                        Some(s.span()),
                        key("semver"),
                        format!(
                            "invalid semver requirement {:?}: {e}; expected e.g. \">=1.25, <2\" or \"~1.27\"",
                            s.get_ref()
                        ),
                    )
                })?),
                None => None,
            };
            let latest = match &m.latest {
                Some(l) if *l.get_ref() == 0 => {
                    return Err(ctx.err(
                        Some(l.span()),
                        key("latest"),
                        "latest = 0 would select no tag: expected at least 1, or drop the key",
                    ));
                }
                Some(l) => Some(*l.get_ref()),
                None => None,
            };
            Selection::Filtered {
                tags,
                filter: TagFilter {
                    include,
                    exclude,
                    semver,
                    latest,
                },
            }
        } else if m.tags.is_some() {
            Selection::Tags(tags)
        } else {
            Selection::All
        }
    };

    // Target.
    let target_text = target_text.trim();
    let (target, target_tag) = if is_registry_only(target_text) {
        let t = Reference::new_repository(target_text, source.repository()).map_err(|e| {
            ctx.err(
                Some(m.target.span()),
                key("target"),
                format!("{e}; expected a registry host or repository such as \"registry.example.com/mirror/nginx\""),
            )
        })?;
        (t, None)
    } else {
        let t = Reference::parse(target_text).map_err(|e| {
            ctx.err(
                Some(m.target.span()),
                key("target"),
                format!("{e}; expected a registry host or repository such as \"registry.example.com/mirror/nginx\""),
            )
        })?;
        if t.digest().is_some() {
            return Err(ctx.err(
                Some(m.target.span()),
                key("target"),
                format!(
                    "target {target_text:?} has a digest: a target is a repository (optionally with a tag), the digest comes from the source"
                ),
            ));
        }
        let single = matches!(&selection, Selection::Digest(_))
            || matches!(&selection, Selection::Tags(t) if t.len() == 1);
        if t.tag().is_some() && !single {
            return Err(ctx.err(
                Some(m.target.span()),
                key("target"),
                format!(
                    "target {target_text:?} names a tag but the mirror selects several tags: drop the tag from target (each source tag keeps its name)"
                ),
            ));
        }
        (t.repository_only(), t.tag().map(str::to_string))
    };
    let target = super::discover_keys::name_in_layout(target, target_tag.as_deref(), &source);
    if let Some(e) = super::source::port_error(&target) {
        return Err(ctx.err(Some(m.target.span()), key("target"), e));
    }
    if source.registry() == target.registry() && source.repository() == target.repository() {
        let same_tag = match (&selection, &target_tag) {
            (_, None) => true,
            (Selection::Tags(t), Some(tt)) => t.first() == Some(tt),
            (Selection::Digest(_), Some(tt)) => source_full.tag() == Some(tt.as_str()),
            _ => true,
        };
        if same_tag {
            return Err(ctx.err(
                Some(m.target.span()),
                key("target"),
                "target is the source itself: expected another repository or registry",
            ));
        }
    }

    // Platforms, schedule, force, name.
    let platforms = match &m.platforms {
        Some(list) => parse_platforms(ctx, &key("platforms"), Some(list))?,
        None => defaults.platforms.clone(),
    };
    if matches!(selection, Selection::Digest(_))
        && !platforms.is_empty()
        && target_tag.is_none()
        && source_full.tag().is_none()
    {
        return Err(ctx.err(
            Some(m.target.span()),
            key("target"),
            "a digest-pinned source with a platform filter produces a new index digest: give the target a tag (e.g. \"registry.example.com/app:pinned\")",
        ));
    }
    let schedule = match &m.schedule {
        Some(s) => Schedule::parse(s.get_ref(), defaults.timezone)
            .map_err(|e| ctx.err(Some(s.span()), key("schedule"), e.to_string()))?,
        None => defaults.schedule.clone(),
    };
    let name = match &m.name {
        Some(n) => {
            let v = n.get_ref().trim();
            if v.is_empty() || v.len() > 128 || v.chars().any(|c| c.is_control()) {
                return Err(ctx.err(
                    Some(n.span()),
                    key("name"),
                    "expected 1 to 128 printable characters",
                ));
            }
            v.to_string()
        }
        None if let Some(d) = &discovery => super::discover_keys::default_name(d),
        None => default_name(
            &target,
            target_tag.as_deref(),
            &selection,
            source_full.tag(),
        ),
    };

    if matches!(selection, Selection::All)
        && !source.is_layout()
        && !super::source::names_registry(&source_text)
    {
        // `nginx` means nginx:latest on the command line; here it would mean
        // every tag of Docker Hub's nginx. Make the author say which.
        let short = m.source.get_ref().trim();
        return Err(ctx.err(
            Some(m.source.span()),
            key("source"),
            format!(
                "source {short:?} names neither a tag nor a registry: on the command line it means \
                 {short}:latest, but a mirror without a tag selects every tag. Write \
                 source = \"{short}:latest\" (or tags = [\"latest\"]) for one tag, or the full \
                 name source = \"{source}\" to mirror every tag"
            ),
        ));
    }
    let referrers = super::referrer_keys::resolve(
        &defaults.referrers,
        &format!("mirror[{n}]"),
        &super::referrer_keys::Keys {
            referrers: m.referrers,
            referrer_types: m.referrer_types.as_deref(),
            exclude_referrer_types: m.exclude_referrer_types.as_deref(),
            cosign_tags: m.cosign_tags,
        },
    )
    .map_err(|(key, span, message)| ctx.err(Some(span), key, message))?;
    let (prune, backup) = prune_and_backup(ctx, n, &m, &selection)?;
    if discovery.is_some()
        && prune.mode != super::prune::PruneMode::Off
        && let Some(p) = &m.prune
    {
        return Err(ctx.err(
            Some(p.span()),
            key("prune"),
            "prune is not supported for a mirror that discovers its repositories (a registry, \
             namespace or layout source): write one [[mirror]] per repository to prune",
        ));
    }
    if target.is_layout()
        && prune.mode != super::prune::PruneMode::Off
        && let Some(p) = &m.prune
    {
        return Err(ctx.err(
            Some(p.span()),
            key("prune"),
            "prune is not supported for an OCI layout or archive target (it deletes tags through \
             the registry API): set prune = \"off\" for this mirror",
        ));
    }
    Ok(Mirror {
        referrers,
        name,
        source,
        target,
        target_tag,
        selection,
        platforms,
        schedule,
        force: m.force.unwrap_or(true),
        prune,
        backup,
        discovery,
    })
}

/// `prune`, `max_prune`, `backup` and `backup_keep` of mirror `n`.
fn prune_and_backup(
    ctx: &Ctx<'_>,
    n: usize,
    m: &RawMirror,
    selection: &Selection,
) -> Result<(super::prune::Prune, Option<super::backup::Backup>), ConfigError> {
    let key = |k: &str| format!("mirror[{n}].{k}");
    let mut prune = super::prune::Prune::default();
    if let Some(p) = &m.prune {
        prune.mode = super::prune::PruneMode::parse(p.get_ref())
            .map_err(|e| ctx.err(Some(p.span()), key("prune"), e))?;
        if prune.mode != super::prune::PruneMode::Off && !selection.needs_listing() {
            return Err(ctx.err(
                Some(p.span()),
                key("prune"),
                "prune needs a mirror that lists the source's tags (no tag or digest in source, \
                 no `tags`-only selection): a mirror of named tags has nothing to prune",
            ));
        }
    }
    if let Some(max) = &m.max_prune {
        if *max.get_ref() == 0 {
            return Err(ctx.err(
                Some(max.span()),
                key("max_prune"),
                "max_prune = 0 would never delete anything: expected at least 1, or set prune = \"off\"",
            ));
        }
        prune.max = *max.get_ref();
    }
    let backup = match (&m.backup, &m.backup_keep) {
        (Some(t), keep) => Some(
            super::backup::Backup::new(t.get_ref(), keep.as_ref().map_or(1, |k| *k.get_ref()))
                .map_err(|e| {
                    let at = keep.as_ref().filter(|_| e.starts_with("backup_keep"));
                    match at {
                        Some(k) => ctx.err(Some(k.span()), key("backup_keep"), e),
                        None => ctx.err(Some(t.span()), key("backup"), e),
                    }
                })?,
        ),
        (None, Some(k)) => {
            return Err(ctx.err(
                Some(k.span()),
                key("backup_keep"),
                "backup_keep without backup: set backup = \"{tag}-prev{n}\" too, or drop backup_keep",
            ));
        }
        (None, None) => None,
    };
    Ok((prune, backup))
}

/// A mirror's name when none is given: the target repository path, plus the
/// tag (or a short digest) for a single-image mirror.
fn default_name(
    target: &Reference,
    target_tag: Option<&str>,
    selection: &Selection,
    source_tag: Option<&str>,
) -> String {
    let base = target.repository().to_string();
    match selection {
        Selection::Tags(t) if t.len() == 1 && !selection.needs_listing() => {
            format!("{base}:{}", target_tag.unwrap_or(&t[0]))
        }
        Selection::Digest(d) => match target_tag.or(source_tag) {
            Some(t) => format!("{base}:{t}"),
            None => format!(
                "{base}@{}",
                &d.to_string().chars().take(19).collect::<String>()
            ),
        },
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn minimal_mirror() {
        let c = parse(
            r#"
[[mirror]]
source = "docker.io/library/nginx"
target = "registry.example.com/mirror/nginx"
"#,
        )
        .unwrap();
        let m = &c.mirrors[0];
        assert_eq!(m.name, "mirror/nginx");
        assert!(matches!(m.selection, Selection::All));
        assert!(m.force);
        assert_eq!(m.schedule.pattern(), DEFAULT_SCHEDULE);
        assert_eq!(c.defaults.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(c.server.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        let (s, t) = m.pair_for_tag("1.27").unwrap();
        assert_eq!(s.to_string(), "docker.io/library/nginx:1.27");
        assert_eq!(t.to_string(), "registry.example.com/mirror/nginx:1.27");
    }

    #[test]
    fn an_empty_file_needs_consent_but_an_empty_share_does_not() {
        assert!(parse("").unwrap().empty_without_consent().is_some());
        assert!(
            parse("allow_empty = true\n")
                .unwrap()
                .empty_without_consent()
                .is_none()
        );
        // A replica whose share of the mirrors is empty still has a file with mirrors.
        let mut c = parse(
            "[[mirror]]\nsource = \"docker.io/library/nginx\"\ntarget = \"r.example.com/n\"\n",
        )
        .unwrap();
        c.mirrors.clear();
        assert!(c.empty_without_consent().is_none());
    }

    #[test]
    fn registry_only_target_keeps_source_path() {
        let c = parse(
            r#"
[[mirror]]
source = "ghcr.io/org/app:v1"
target = "localhost:5000"
"#,
        )
        .unwrap();
        let m = &c.mirrors[0];
        assert_eq!(m.target.to_string(), "localhost:5000/org/app");
        assert_eq!(m.name, "org/app:v1");
        let (_, t) = m.pair_for_tag("v1").unwrap();
        assert_eq!(t.to_string(), "localhost:5000/org/app:v1");
    }

    #[test]
    fn target_tag_renames_a_single_tag() {
        let c = parse(
            r#"
[[mirror]]
source = "ghcr.io/org/app:v1"
target = "registry.example.com/app:stable"
"#,
        )
        .unwrap();
        let (s, t) = c.mirrors[0].pair_for_tag("v1").unwrap();
        assert_eq!(s.to_string(), "ghcr.io/org/app:v1");
        assert_eq!(t.to_string(), "registry.example.com/app:stable");
    }

    #[test]
    fn errors_carry_line_and_key() {
        let e = parse("[defaults]\nconcurrency = 0\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.key.as_deref(), Some("defaults.concurrency"));
        let e = parse("[[mirror]]\nsource = \"a\"\ntarget = \"b.io/a\"\n\n[[mirror]]\nsource = \"a\"\ntarget = \"b.io/a\"\nbogus = 1\n")
            .unwrap_err();
        assert_eq!(e.line, Some(8), "{e}");
        assert_eq!(e.key.as_deref(), Some("mirror[2].bogus"), "{e}");
        assert!(e.message.contains("bogus"), "{e}");
    }
}
