//! Command-line interface: raw arguments, validated into library objects.

pub mod check;
pub mod import;
pub mod index;
pub mod inspect;
pub mod serve;
pub mod shard;
pub mod sync;
pub mod tags;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use regmirror::registry::{ClientOptions, RegistryConfig, TlsMode};

/// Exit codes, documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Everything asked for was done.
    Ok = 0,
    /// The operation failed (for `sync`: every image failed).
    Failed = 1,
    /// Bad arguments or an invalid config file.
    Usage = 2,
    /// Some images failed, others succeeded (`sync`).
    Partial = 3,
    /// Nothing copied: the target tag holds another digest and `--force` was not given.
    Conflict = 4,
}

/// An error that carries its own exit code (bad usage or config).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for an error that reached `main`.
pub fn exit_for_error(e: &anyhow::Error) -> Exit {
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
/// registries without a Docker daemon.
#[derive(Debug, Parser)]
#[command(name = "regmirror", version, about, max_term_width = 100)]
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
    /// One JSON object per line.
    Json,
}

/// Flags every command takes.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter (`info`, `debug`, `regmirror=trace`); overrides RUST_LOG.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
}

/// Registry settings shared by the one-shot commands: a config file's
/// `[[registry]]` tables and flags, the flags winning.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryArgs {
    /// Config file whose `[[registry]]` tables (TLS, CA, credentials, limits) apply.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Talk plain HTTP to this registry host (repeatable). Loopback hosts default to it.
    #[arg(long, value_name = "HOST")]
    pub plain_http: Vec<String>,
    /// Use HTTPS without verifying this host's certificate (repeatable).
    #[arg(long, value_name = "HOST")]
    pub skip_verify: Vec<String>,
    /// Trust this CA file for a host: HOST=PATH (repeatable).
    #[arg(long, value_name = "HOST=PATH")]
    pub ca_file: Vec<String>,
    /// User name for a host: HOST=USER (repeatable).
    #[arg(long, value_name = "HOST=USER")]
    pub username: Vec<String>,
    /// Environment variable holding a host's password: HOST=VAR (repeatable).
    #[arg(long, value_name = "HOST=VAR")]
    pub password_env: Vec<String>,
    /// File holding a host's password: HOST=PATH (repeatable).
    #[arg(long, value_name = "HOST=PATH")]
    pub password_file: Vec<String>,
    /// Docker config.json to read credentials from (default: none).
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

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a manifest as the registry serves it (like `docker manifest inspect`).
    Inspect(inspect::Args),
    /// List a repository's tags.
    Tags(tags::Args),
    /// Copy one image, every platform by default, digests preserved.
    Import(import::Args),
    /// Multi-arch index commands.
    #[command(subcommand)]
    Index(index::Command),
    /// Run every mirror of a config file once, then exit.
    Sync(sync::Args),
    /// Validate a config file and print each mirror's next runs; touches no registry.
    Check(check::Args),
    /// Run mirrors on their schedules and serve metrics and health endpoints.
    Serve(serve::Args),
}

/// Run a parsed command line.
pub async fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Inspect(a) => inspect::run(a).await,
        Command::Tags(a) => tags::run(a).await,
        Command::Import(a) => import::run(a).await,
        Command::Index(c) => index::run(c).await,
        Command::Sync(a) => sync::run(a, &cli.global).await,
        Command::Check(a) => check::run(a).await,
        Command::Serve(a) => serve::run(a, &cli.global).await,
    }
}

/// Start logging to stderr.
pub fn init_tracing(global: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let filter = match &global.log_level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match global.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

impl RegistryArgs {
    /// Client options from the config file (if any) overlaid with the flags.
    pub fn client_options(&self) -> anyhow::Result<ClientOptions> {
        let mut options = ClientOptions::default();
        if let Some(path) = &self.config {
            let config = regmirror::sync::config::Config::load(path)
                .map_err(|e| UsageError(e.to_string()))?;
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
        if self.docker_config.is_some() {
            options.docker_config = self.docker_config.clone();
        }
        let regs = &mut options.registries;
        for (flag, values) in [
            ("ca-file", &self.ca_file),
            ("username", &self.username),
            ("password-env", &self.password_env),
            ("password-file", &self.password_file),
        ] {
            for v in values {
                let (host, value) = v
                    .split_once('=')
                    .ok_or_else(|| UsageError(format!("--{flag} {v:?}: expected HOST=VALUE")))?;
                let r = registry_entry(regs, host);
                match flag {
                    "ca-file" => r.ca_file = Some(PathBuf::from(value)),
                    "username" => r.username = Some(value.to_string()),
                    "password-env" => r.password_env = Some(value.to_string()),
                    _ => r.password_file = Some(PathBuf::from(value)),
                }
            }
        }
        for host in &self.plain_http {
            registry_entry(regs, host).tls = Some(TlsMode::PlainHttp);
        }
        for host in &self.skip_verify {
            registry_entry(regs, host).tls = Some(TlsMode::SkipVerify);
        }
        Ok(options)
    }
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
