//! Command-line interface: raw arguments, validated into library objects
//! before any registry is contacted (bad input exits 2).

pub mod auth;
pub mod catalog;
pub mod check;
pub mod completions;
pub mod convert;
pub mod delete;
pub mod digest;
pub mod help;
pub mod import;
pub mod index;
pub mod inspect;
pub mod job_metrics;
pub mod man_sections;
pub mod oneshot;
pub mod out;
pub mod progress;
pub mod referrer_args;
pub mod report;
pub mod serve;
pub mod shard;
pub mod state_args;
pub mod sync;
pub mod sync_args;
pub mod tag;
pub mod tags;
pub mod trigger;
pub mod validate;
pub mod verify;
mod verify_report;

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use regmirror::registry::credentials::{self, Helpers, Source};
use regmirror::registry::{ClientOptions, Reference, RegistryConfig, TlsMode};

/// Exit codes, documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Everything asked for was done.
    Ok = 0,
    /// The operation failed (for `sync`: every image failed).
    Failed = 1,
    /// Bad arguments or an invalid config file; nothing was contacted.
    Usage = 2,
    /// Some images failed, others succeeded (`sync`).
    Partial = 3,
    /// Nothing copied: the target tag holds another digest and `--force` was not given.
    Conflict = 4,
    /// `sync`: images were deferred to keep a pull budget floor, none failed.
    Deferred = 5,
    /// Interrupted by SIGINT or SIGTERM (128 + SIGINT, as shells report it).
    Interrupted = 130,
}

/// An error that carries its own exit code (bad usage or config).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A command stopped by SIGINT or SIGTERM; says what state it left.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM; never when the
/// signals cannot be listened for.
pub async fn interrupt() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                () = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    ctrl_c.await;
}

/// A hint naming this command's flags for an error that reached `main`:
/// the registry layer's messages name only its own `[[registry]]` keys.
pub fn flag_hint(e: &anyhow::Error) -> Option<&'static str> {
    match report::error_kind(e)? {
        regmirror::registry::ErrorKind::Timeout => Some(
            "hint: --timeout DURATION raises the deadline of each request and blob-stream pause \
             for this command",
        ),
        _ => None,
    }
}

/// The exit code for an error that reached `main`.
pub fn exit_for_error(e: &anyhow::Error) -> Exit {
    if e.downcast_ref::<Interrupted>().is_some() {
        return Exit::Interrupted;
    }
    if e.downcast_ref::<UsageError>().is_some()
        || e.downcast_ref::<regmirror::registry::reference::ReferenceError>()
            .is_some()
    {
        Exit::Usage
    } else {
        Exit::Failed
    }
}

/// regmirror copies container images, multi-arch images above all, between
/// registries without a Docker daemon, digests preserved.
#[derive(Debug, Parser)]
#[command(
    name = "regmirror",
    version,
    about,
    max_term_width = 100,
    after_help = help::TOP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for everything written to stderr.
    Json,
}

/// Flags every command takes.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Format of everything written to stderr: logs, errors, summaries of failures.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter: a level (error, warn, info, debug, trace, off) or TARGET=LEVEL pairs,
    /// comma-separated (`regmirror=debug,info`); overrides RUST_LOG. A bare level applies
    /// to libraries too; the default, `regmirror=info`, logs regmirror's own events only.
    #[arg(long, global = true, value_name = "FILTER", value_parser = validate::log_filter)]
    pub log_level: Option<String>,
    /// Debug logging of regmirror itself, the same as `--log-level regmirror=debug`: every
    /// registry request (method, URL without credentials or query secrets, status, time,
    /// attempt, redirect, auth challenge) and every token request, never a secret.
    #[arg(long, global = true, conflicts_with = "log_level")]
    pub debug: bool,
}

/// The log filter without `--log-level`, `--debug` or `RUST_LOG`: regmirror's
/// own events at info, no library's.
pub const DEFAULT_LOG_FILTER: &str = "regmirror=info";

/// The log filter `--debug` stands for.
pub const DEBUG_LOG_FILTER: &str = "regmirror=debug";

/// Registry settings shared by the one-shot commands: a config file's
/// `[[registry]]` tables and flags, the flags winning.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryArgs {
    /// Config file whose `[[registry]]` tables (TLS, CA, credentials, limits) and
    /// `docker_config` apply; its mirrors are ignored.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Talk plain HTTP to this registry host (repeatable). Loopback hosts default to it.
    #[arg(long, value_name = "HOST", value_parser = validate::host)]
    pub plain_http: Vec<String>,
    /// Talk verified HTTPS to this host even if it is a loopback host (repeatable).
    #[arg(long, value_name = "HOST", value_parser = validate::host)]
    pub https: Vec<String>,
    /// Use HTTPS without verifying this host's certificate (repeatable; testing only).
    #[arg(long, value_name = "HOST", value_parser = validate::host)]
    pub skip_verify: Vec<String>,
    /// Trust this CA file for a host, HOST=PATH (repeatable); implies HTTPS for that host.
    #[arg(long, value_name = "HOST=PATH", value_parser = validate::host_value)]
    pub ca_file: Vec<(String, String)>,
    /// User name for a host: HOST=USER (repeatable).
    #[arg(long, value_name = "HOST=USER", value_parser = validate::host_value)]
    pub username: Vec<(String, String)>,
    /// Environment variable holding a host's password or token: HOST=VAR (repeatable).
    #[arg(long, value_name = "HOST=VAR", value_parser = validate::host_value)]
    pub password_env: Vec<(String, String)>,
    /// File holding a host's password or token: HOST=PATH (repeatable).
    #[arg(long, value_name = "HOST=PATH", value_parser = validate::host_value)]
    pub password_file: Vec<(String, String)>,
    /// Docker config.json to read credentials from, instead of $DOCKER_CONFIG/config.json
    /// or ~/.docker/config.json (containers auth.json files are still read after it).
    #[arg(long, value_name = "FILE")]
    pub docker_config: Option<PathBuf>,
    /// Deadline of each registry request, and of each pause in a blob stream
    /// (`30s`, `2m`, `500ms`; a bare number is seconds; default 60s).
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<std::time::Duration>,
}

/// `--timeout`: `30s`, `2m`, `500ms` or a number of seconds.
fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: expected e.g. 30s, 2m or 500ms"))?;
    regmirror::registry::limits::check_seconds(v * scale)
}

/// The subcommands, in the order a new user meets them.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy one image, every platform by default, digests preserved.
    #[command(long_about = import::LONG_ABOUT, after_help = help::IMPORT, visible_alias = "copy")]
    Import(import::Args),
    /// Print a manifest as the registry serves it (like `docker manifest inspect`).
    #[command(long_about = inspect::LONG_ABOUT, after_help = help::INSPECT)]
    Inspect(inspect::Args),
    /// List a repository's tags.
    #[command(long_about = tags::LONG_ABOUT, after_help = help::TAGS)]
    Tags(tags::Args),
    /// Print the digest of an image's manifest (like `crane digest`).
    #[command(long_about = digest::LONG_ABOUT, after_help = help::DIGEST)]
    Digest(digest::Args),
    /// List a registry's repositories through its catalog API.
    #[command(long_about = catalog::LONG_ABOUT, after_help = help::CATALOG)]
    Catalog(catalog::Args),
    /// Tag an image again in its repository, without copying blobs (like `crane tag`).
    #[command(long_about = tag::LONG_ABOUT, after_help = help::TAG)]
    Tag(tag::Args),
    /// Delete a tag, or a manifest by digest, from a registry (needs --yes).
    #[command(long_about = delete::LONG_ABOUT, after_help = help::DELETE)]
    Delete(delete::Args),
    /// Multi-arch index commands: combine single-platform images into one tag.
    #[command(subcommand)]
    Index(index::Command),
    /// Audit a mirror: every tag, manifest, blob and referrer present; --heal repairs.
    #[command(long_about = verify::LONG_ABOUT, after_help = verify::EXAMPLES)]
    Verify(verify::Args),
    /// Validate a mirror config file and print each mirror's next runs; touches no registry.
    #[command(long_about = check::LONG_ABOUT, after_help = help::CHECK)]
    Check(check::Args),
    /// Run every mirror of a config file, or one given on the command line, once, then exit.
    #[command(long_about = format!("{}\n\n{}", sync::LONG_ABOUT, sync_args::LONG_ABOUT),
              after_help = help::SYNC)]
    Sync(Box<sync::Args>),
    /// Run mirrors on their schedules and serve metrics and health endpoints.
    #[command(long_about = serve::LONG_ABOUT, after_help = help::SERVE)]
    Serve(serve::Args),
    /// Ask a running serve to sync one mirror now (its sync-now API), optionally waiting for the run.
    #[command(long_about = trigger::LONG_ABOUT, after_help = trigger::AFTER_HELP)]
    Trigger(trigger::Args),
    /// Config commands: convert a skopeo sync YAML or a regsync config.
    #[command(subcommand)]
    Config(convert::Command),
    /// Credentials commands: say where a host's credentials come from.
    #[command(subcommand)]
    Auth(auth::Command),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(long_about = completions::LONG_ABOUT, after_help = help::COMPLETIONS)]
    Completions(completions::Args),
    /// Print the man page (roff) of regmirror and its commands.
    #[command(long_about = completions::MAN_LONG_ABOUT, after_help = help::MAN)]
    Man,
}

/// Parse the command line, noting where clap took a value from where a
/// command needs to know it: `sync`'s `REGMIRROR_CONFIG` only is a default
/// that mirrors given on the command line override, `--config` is not.
pub fn parse() -> Result<Cli, clap::Error> {
    let matches = Cli::command().try_get_matches()?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut Cli::command()))?;
    if let Command::Sync(args) = &mut cli.command {
        args.config_from_env = matches
            .subcommand_matches("sync")
            .and_then(|m| m.value_source("config"))
            == Some(ValueSource::EnvVariable);
    }
    Ok(cli)
}

/// Run a parsed command line.
pub async fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Import(a) => import::run(a).await,
        Command::Inspect(a) => inspect::run(a).await,
        Command::Tags(a) => tags::run(a).await,
        Command::Digest(a) => digest::run(a).await,
        Command::Catalog(a) => catalog::run(a).await,
        Command::Tag(a) => tag::run(a).await,
        Command::Delete(a) => delete::run(a).await,
        Command::Index(c) => index::run(c).await,
        Command::Check(a) => check::run(a).await,
        Command::Verify(a) => verify::run(a).await,
        Command::Sync(a) => sync::run(*a, &cli.global).await,
        Command::Serve(a) => serve::run(a, &cli.global).await,
        Command::Trigger(a) => trigger::run(a).await,
        Command::Config(c) => convert::run(c),
        Command::Auth(c) => auth::run(c).await,
        Command::Completions(a) => completions::run(a),
        Command::Man => completions::man(),
    }
}

/// Start logging to stderr; every diagnostic of [`out`] follows the format.
pub fn init_tracing(global: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    out::set_format(global.log_format);
    let mut bad_env = None;
    let asked = if global.debug {
        Some(DEBUG_LOG_FILTER)
    } else {
        global.log_level.as_deref()
    };
    let filter = match asked {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER)),
        None => match std::env::var("RUST_LOG") {
            Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).unwrap_or_else(|e| {
                bad_env = Some(format!(
                    "RUST_LOG={v:?} is not a log filter ({e}); logging at info"
                ));
                EnvFilter::new(DEFAULT_LOG_FILTER)
            }),
            _ => EnvFilter::new(DEFAULT_LOG_FILTER),
        },
    };
    use std::io::IsTerminal;
    // Log lines go around any progress bar on the terminal (see `progress`).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(progress::log_writer);
    match global.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    if let Some(w) = bad_env {
        out::warn(&w);
    }
}

impl RegistryArgs {
    /// Client options from the config file (if any) overlaid with the flags.
    /// A flag setting a host's password source replaces the config file's
    /// (`--password-env` wins over `password`), as the README says.
    pub fn client_options(&self) -> anyhow::Result<ClientOptions> {
        let config = match &self.config {
            Some(path) => Some(
                regmirror::sync::config::Config::load(path)
                    .map_err(|e| UsageError(e.to_string()))?,
            ),
            None => None,
        };
        Ok(self.client_options_from(config.as_ref()))
    }

    /// [`RegistryArgs::client_options`] from a config already loaded.
    pub fn client_options_from(
        &self,
        config: Option<&regmirror::sync::config::Config>,
    ) -> ClientOptions {
        let mut options = ClientOptions::default();
        if let Some(config) = config {
            options.registries = config.registries.clone();
            options.docker_config = config.docker_config.clone();
            options.limits = config.defaults.limits.clone();
        }
        if let Some(t) = self.timeout {
            options.limits.request_timeout = t;
            options.limits.blob_idle_timeout = t;
            for r in &mut options.registries {
                r.timeout_seconds = None;
                r.blob_idle_timeout_seconds = None;
            }
        }
        self.overlay(&mut options);
        options
    }

    /// Apply the flags to `options`.
    pub fn overlay(&self, options: &mut ClientOptions) {
        if self.docker_config.is_some() {
            options.docker_config = self.docker_config.clone();
        }
        let regs = &mut options.registries;
        for (host, path) in &self.ca_file {
            registry_entry(regs, host).ca_file = Some(PathBuf::from(path));
        }
        for (host, user) in &self.username {
            registry_entry(regs, host).username = Some(user.clone());
        }
        for (host, var) in &self.password_env {
            let r = registry_entry(regs, host);
            r.password = None;
            r.password_file = None;
            r.identity_token = None;
            r.password_env = Some(var.clone());
        }
        for (host, path) in &self.password_file {
            let r = registry_entry(regs, host);
            r.password = None;
            r.password_env = None;
            r.identity_token = None;
            r.password_file = Some(PathBuf::from(path));
        }
        for (hosts, mode) in [
            (&self.plain_http, TlsMode::PlainHttp),
            (&self.https, TlsMode::Verify),
            (&self.skip_verify, TlsMode::SkipVerify),
        ] {
            for host in hosts {
                registry_entry(regs, host).tls = Some(mode);
            }
        }
        // A CA or client certificate only means something over HTTPS: a
        // loopback host given one is spoken to over HTTPS, not plain HTTP.
        for r in regs.iter_mut() {
            if r.tls.is_none() && (r.ca_file.is_some() || r.client_cert_file.is_some()) {
                r.tls = Some(TlsMode::Verify);
            }
        }
    }

    /// Hosts whose credentials come from flags.
    pub fn flag_credential_hosts(&self) -> Vec<&str> {
        self.username
            .iter()
            .chain(&self.password_env)
            .chain(&self.password_file)
            .map(|(h, _)| h.as_str())
            .collect()
    }
}

/// Resolve the credentials of every configured host and of `hosts`,
/// without running credential helpers, so that an unset `password_env`, a
/// missing `password_file` or a Docker config that is not JSON is a usage
/// error before any registry is contacted. Returns each host's source.
pub fn check_credentials(
    options: &ClientOptions,
    hosts: &[&str],
) -> Result<Vec<(String, Source)>, UsageError> {
    let (sources, problems) = credential_problems(options, hosts);
    match problems.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(sources),
    }
}

/// [`check_credentials`] of every host: the sources found and every
/// problem, not only the first (for `check`).
pub fn credential_problems(
    options: &ClientOptions,
    hosts: &[&str],
) -> (Vec<(String, Source)>, Vec<UsageError>) {
    let mut all: Vec<&str> = options.registries.iter().map(|r| r.host.as_str()).collect();
    for h in hosts {
        if !all.contains(h) {
            all.push(h);
        }
    }
    let (mut sources, mut problems) = (Vec::new(), Vec::new());
    for host in all {
        let cfg = options.registries.iter().find(|r| r.host == host);
        match credentials::resolve_with_identity(
            host,
            cfg,
            options.docker_config.as_deref(),
            Helpers::Skip,
        ) {
            Ok(resolved) => sources.push((host.to_string(), resolved.source)),
            Err(e) => problems.push(UsageError(e.to_string())),
        }
    }
    (sources, problems)
}

/// Where credentials come from, for `check` and `auth check`.
pub fn describe_source(source: &Source, from_flags: bool) -> String {
    match source {
        Source::Registry { how } if from_flags => format!("command-line flags ({how})"),
        Source::Registry { how } => format!("config file [[registry]] ({how})"),
        other => other.to_string(),
    }
}

/// Parse an image reference given on the command line: Docker's grammar,
/// plus a port range check and a hint for a registry given alone.
pub fn parse_image(what: &str, text: &str) -> anyhow::Result<Reference> {
    if let Some(e) = regmirror::sync::source::registry_only_error(text) {
        return Err(UsageError(format!("{what} {e}")).into());
    }
    let r = Reference::parse(text)?;
    if let Some(e) = regmirror::sync::source::port_error(&r) {
        return Err(UsageError(format!("{what} {text:?}: {e}")).into());
    }
    Ok(r)
}

/// The `[[registry]]` entry for `host`, added when missing.
fn registry_entry<'a>(regs: &'a mut Vec<RegistryConfig>, host: &str) -> &'a mut RegistryConfig {
    match regs.iter().position(|r| r.host == host) {
        Some(i) => &mut regs[i],
        None => {
            regs.push(RegistryConfig {
                host: host.to_string(),
                ..Default::default()
            });
            regs.last_mut().expect("just pushed")
        }
    }
}
