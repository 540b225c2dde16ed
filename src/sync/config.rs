//! The mirror config file (TOML): raw serde structs, validated into
//! [`Config`], [`Mirror`] and friends. Every key is documented in
//! `config.example.toml` and `docs/config.md`.
//!
//! Errors name the file, the line where known, the key and what was expected.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use super::config_error::Ctx;
use super::mirror_keys::{
    RawMirror, audit_schedule_key, parse_platforms, schedule_keys, validate_mirror,
};
use super::schedule::Schedule;
use super::shard::{MAX_SHARDS, ShardConfig};
use crate::registry::RegistryConfig;

pub use super::config_error::ConfigError;
pub use super::model::{
    Config, DEFAULT_BLOB_CONCURRENCY, DEFAULT_CONCURRENCY, DEFAULT_LISTEN, DEFAULT_SCHEDULE,
    DEFAULT_SHUTDOWN_GRACE, Defaults, Mirror, Selection, ServerConfig,
};

// ---------------------------------------------------------------------------
// Raw, as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    docker_config: Option<PathBuf>,
    allow_empty: Option<bool>,
    state_dir: Option<PathBuf>,
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
    #[serde(default)]
    notify: Vec<Spanned<super::notify_keys::RawNotify>>,
    #[serde(default)]
    events: super::events_config::RawEvents,
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
    interval: Option<Spanned<String>>,
    audit_schedule: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    platforms: Option<Vec<Spanned<String>>>,
    concurrency: Option<Spanned<usize>>,
    blob_concurrency: Option<Spanned<usize>>,
    jitter_seconds: Option<u64>,
    timeout_seconds: Option<Spanned<f64>>,
    blob_idle_timeout_seconds: Option<Spanned<f64>>,
    blob_min_bytes_per_second: Option<u64>,
    max_total_bytes_per_second: Option<Spanned<u64>>,
    referrers: Option<bool>,
    referrer_types: Option<Vec<Spanned<String>>>,
    exclude_referrer_types: Option<Vec<Spanned<String>>>,
    cosign_tags: Option<bool>,
    max_referrers_per_subject: Option<Spanned<usize>>,
    max_referrers_per_image: Option<Spanned<usize>>,
    max_referrer_depth: Option<Spanned<usize>>,
    convert_schema1: Option<bool>,
    target_groups: Option<std::collections::BTreeMap<String, Spanned<Vec<String>>>>,
    policy: Option<Spanned<super::policy_keys::RawPolicy>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    shutdown_grace_seconds: Option<u64>,
}

// ---------------------------------------------------------------------------
// Loading.

impl Config {
    /// Load and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_all(path).and_then(first_problem)
    }

    /// Load a config file and find every problem of it, not only the first:
    /// `Err` when it cannot be read or is not TOML of the expected shape,
    /// else the valid part (invalid mirrors left out) and the problems of
    /// the rest, in the order [`Config::load`] finds them.
    pub fn load_all(path: &Path) -> Result<(Config, Vec<ConfigError>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: None,
            message: format!(
                "cannot read it: {e}; check the path given with --config or REGMIRROR_CONFIG"
            ),
        })?;
        Config::parse_all(path, &text)
    }

    /// Parse and validate config text; `path` is only used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_all(path, text).and_then(first_problem)
    }

    /// [`Config::load_all`] of config text; `path` is only used in errors.
    pub fn parse_all(path: &Path, text: &str) -> Result<(Config, Vec<ConfigError>), ConfigError> {
        let ctx = Ctx { file: path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(&ctx, &e))?;
        Ok(validate(&ctx, raw))
    }
}

/// The config when it has no problem, else its first problem.
fn first_problem((config, problems): (Config, Vec<ConfigError>)) -> Result<Config, ConfigError> {
    match problems.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(config),
    }
}

/// A TOML syntax or shape error, at its line and key, worded for a config
/// author (no Rust types; the nearest key for a typo; single quotes for a
/// bad escape), the value of a secret key left out.
fn toml_error(ctx: &Ctx<'_>, e: &toml::de::Error) -> ConfigError {
    let text = ctx.text;
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
    let mut message = super::config_text::humanize(&super::config_text::suggest_key(&message));
    if let Some(hint) = super::config_text::escape_hint(&message) {
        message = format!("{message}; {hint}");
    }
    ConfigError {
        file: ctx.file.to_path_buf(),
        line: span.as_ref().and_then(|s| ctx.line_of(s)),
        key,
        message,
    }
}

/// The valid part of the config and every problem found, each group of
/// keys checked even when an earlier one failed (a failed `[defaults]`
/// or `[server]` stands in as the built-in defaults).
fn validate(ctx: &Ctx<'_>, raw: RawConfig) -> (Config, Vec<ConfigError>) {
    let mut problems = Vec::new();
    let defaults = validate_defaults(ctx, &raw.defaults)
        .map_err(|e| problems.push(e))
        .unwrap_or_default();
    let server = validate_server(ctx, &raw.server)
        .map_err(|e| problems.push(e))
        .unwrap_or_default();
    problems.extend(validate_registries(ctx, &raw.registry));
    let mirrors_in_file = raw.mirror.len();
    let (mirrors, mirror_problems) = validate_mirrors(ctx, raw.mirror, &defaults);
    problems.extend(mirror_problems);
    let names: HashSet<String> = mirrors.iter().map(|m| m.name.clone()).collect();
    let (notify, notify_problems) = super::notify_keys::validate_notify(ctx, raw.notify, &names);
    problems.extend(notify_problems);
    let shard = validate_shard(ctx, &raw.shard)
        .map_err(|e| problems.push(e))
        .unwrap_or_default();
    let events = super::events_config::validate_events(ctx, &raw.events)
        .map_err(|e| problems.push(e))
        .unwrap_or_default();
    let config = Config {
        path: ctx.file.to_path_buf(),
        registries: raw.registry,
        docker_config: raw.docker_config,
        defaults,
        server,
        mirrors,
        allow_empty: raw.allow_empty.unwrap_or(false),
        mirrors_in_file,
        shard,
        notify,
        events,
        state_dir: raw.state_dir.map(|d| match ctx.file.parent() {
            Some(dir) if d.is_relative() => dir.join(d),
            _ => d,
        }),
    };
    (config, problems)
}

/// `[defaults]`.
fn validate_defaults(ctx: &Ctx<'_>, d: &RawDefaults) -> Result<Defaults, ConfigError> {
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
    let schedule = match schedule_keys(
        ctx,
        "defaults",
        d.schedule.as_ref(),
        d.interval.as_ref(),
        timezone,
    )? {
        Some(s) => s,
        None => Schedule::parse(DEFAULT_SCHEDULE, timezone).expect("the default schedule is valid"),
    };
    let audit_schedule = audit_schedule_key(ctx, "defaults", d.audit_schedule.as_ref(), timezone)?;
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
        d.max_total_bytes_per_second.as_ref(),
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
            max_referrers_per_subject: d.max_referrers_per_subject.as_ref(),
            max_referrers_per_image: d.max_referrers_per_image.as_ref(),
            max_referrer_depth: d.max_referrer_depth.as_ref(),
        },
    )
    .map_err(|(key, span, message)| ctx.err(Some(span), key, message))?;
    let policy = super::policy_keys::resolve(ctx, "defaults", d.policy.as_ref(), None)?;
    let target_groups = super::target_keys::groups(ctx, d.target_groups.as_ref())?;
    Ok(Defaults {
        convert_schema1: d.convert_schema1.unwrap_or(false),
        target_groups,
        policy,
        referrers,
        schedule,
        audit_schedule,
        timezone,
        platforms,
        concurrency,
        blob_concurrency,
        jitter: Duration::from_secs(d.jitter_seconds.unwrap_or(0)),
        limits,
    })
}

/// `[server]`.
fn validate_server(ctx: &Ctx<'_>, raw: &RawServer) -> Result<ServerConfig, ConfigError> {
    let listen = match &raw.listen {
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
    Ok(ServerConfig {
        listen,
        shutdown_grace: raw
            .shutdown_grace_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
    })
}

/// `[[registry]]`: hosts set and unique, one password source, numbers in
/// range; the first problem of each table.
fn validate_registries(ctx: &Ctx<'_>, registries: &[RegistryConfig]) -> Vec<ConfigError> {
    let mut hosts = HashSet::new();
    registries
        .iter()
        .enumerate()
        .filter_map(|(i, r)| validate_registry(ctx, i + 1, r, &mut hosts).err())
        .collect()
}

/// `[[registry]]` table `n` (1-based); `hosts` holds the hosts of those before it.
fn validate_registry(
    ctx: &Ctx<'_>,
    n: usize,
    r: &RegistryConfig,
    hosts: &mut HashSet<String>,
) -> Result<(), ConfigError> {
    let key = format!("registry[{n}].host");
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
            format!("registry[{n}]"),
            format!(
                "registry {:?}: set only one of password, password_env and password_file",
                r.host
            ),
        ));
    }
    if let Err((k, message)) = r.check_numbers() {
        return Err(ctx.err(
            None,
            format!("registry[{n}].{k}"),
            format!("registry {:?}: {message}", r.host),
        ));
    }
    Ok(())
}

/// `[[mirror]]`, in file order: each valid, names unique, and no two that
/// can write the same tag (see [`super::overlap`]).
fn validate_mirrors(
    ctx: &Ctx<'_>,
    raw: Vec<Spanned<RawMirror>>,
    defaults: &Defaults,
) -> (Vec<Mirror>, Vec<ConfigError>) {
    let mut mirrors: Vec<Mirror> = Vec::new();
    let mut problems = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut target_spans = Vec::new();
    let mut numbers = Vec::new();
    for (i, m) in raw.into_iter().enumerate() {
        let table_span = m.span();
        let mirror = match validate_mirror(ctx, i + 1, m.into_inner(), defaults) {
            Ok(m) => m,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if !names.insert(mirror.name.clone()) {
            problems.push(ctx.err(
                Some(table_span),
                format!("mirror[{}].name", i + 1),
                format!(
                    "duplicate mirror name {:?}: names must be unique; set `name` on one of the mirrors",
                    mirror.name
                ),
            ));
            continue;
        }
        mirrors.push(mirror);
        target_spans.push(table_span);
        numbers.push(i + 1);
    }
    if let Some((i, j, what)) = super::overlap::find_conflict(&mirrors) {
        problems.push(ctx.err(
            Some(target_spans[j].clone()),
            format!("mirror[{}].target", numbers[j]),
            format!(
                "mirrors {:?} (mirror[{}]) and {:?} (mirror[{}]) both write to {} and can write \
                 the same tag ({what}): the tag would move between them on every run; give them \
                 different target repositories, or tags that cannot overlap (see \"Mirrors that \
                 share a target\" in docs/config.md)",
                mirrors[i].name, numbers[i], mirrors[j].name, numbers[j], mirrors[j].target,
            ),
        ));
    }
    (mirrors, problems)
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
    fn registry_aliases_do_not_defeat_the_guards() {
        let e = parse("[[mirror]]\nsource = \"localhost:5000/a\"\ntarget = \"127.0.0.1:5000/a\"\n")
            .unwrap_err();
        assert!(e.message.contains("target is the source itself"), "{e}");
        let e = parse(
            "[[mirror]]\nsource = \"ghcr.io/o/a:1\"\ntarget = \"localhost:5000/m/a\"\n\n\
             [[mirror]]\nname = \"b\"\nsource = \"quay.io/o/a:1\"\ntarget = \"[::1]:5000/m/a\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("mirror[2].target"), "{e}");
        assert!(e.message.contains("can write the same tag"), "{e}");
    }

    #[test]
    fn typos_and_escapes_get_hints() {
        let e = parse("[[mirror]]\nsource = \"a.io/b\"\ntarget = \"c.io/b\"\nsemvar = \"1\"\n")
            .unwrap_err();
        assert!(e.message.contains("did you mean `semver`?"), "{e}");
        assert!(!e.message.contains("`source`"), "{e}");
        let e = parse("[defaults]\nschedle = \"@daily\"\n").unwrap_err();
        assert!(e.message.contains("did you mean `schedule`?"), "{e}");
        let e =
            parse("[[mirror]]\nsource = \"a.io/b\"\ntarget = \"c.io/b\"\ninclude = [\"v\\d+\"]\n")
                .unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("single quotes"), "{e}");
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
