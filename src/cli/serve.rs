//! `regmirror serve`: run mirrors on their schedules; SIGHUP (and, with
//! `--watch-config`, a change of the file) reloads the config, SIGTERM and
//! SIGINT drain and exit.

use futures_util::StreamExt;

use regmirror::serve::{self, Settings};

use super::Exit;

/// Long help of `regmirror serve`.
pub const LONG_ABOUT: &str = "Run every mirror at start and then on its cron schedule, sharing \
one concurrency limit, and serve /metrics, /healthz and /readyz on [server] listen. SIGHUP \
(or, with --watch-config, a change of the file) reloads the config; a bad new config is \
reported and the running one kept. SIGTERM and SIGINT stop new copies, let running ones \
finish within [server] shutdown_grace_seconds, and exit 0.

Sources and targets in the config are written [REGISTRY[:PORT]/]REPOSITORY[:TAG][@DIGEST].";

/// Arguments of `regmirror serve`.
#[derive(Debug, clap::Args)]
#[command(mut_arg("config", |a| a.help(super::help::MIRROR_CONFIG).required(true).env("REGMIRROR_CONFIG")))]
pub struct Args {
    #[command(flatten)]
    pub registry: super::RegistryArgs,
    /// Also reload when the config file's content changes (checked every
    /// --watch-interval seconds; suits Kubernetes ConfigMaps mounted as files).
    #[arg(long)]
    pub watch_config: bool,
    /// Seconds between checks of the config file with --watch-config.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub watch_interval: u64,
    #[command(flatten)]
    pub shard: super::shard::ShardArgs,
    /// Keep a copy of every config accepted (at start or by a reload) in
    /// DIR/last-good.toml; when the config is invalid at start, run that
    /// copy instead of exiting, and report the rejected config (metrics,
    /// /readyz body, log). DIR is created if missing. Suits an emptyDir in
    /// a pod: a container restarted with a bad ConfigMap keeps mirroring.
    #[arg(long, value_name = "DIR")]
    pub keep_last_good: Option<std::path::PathBuf>,
    /// Images copied at once, across all mirrors: overrides `[defaults] concurrency`
    /// (at start and at every reload).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    #[command(flatten)]
    pub state: super::state_args::StateArgs,
}

/// Name of the copy of the last good config in the --keep-last-good directory.
const LAST_GOOD: &str = "last-good.toml";

fn load(args: &Args) -> anyhow::Result<Settings> {
    let path = super::sync::config_path(&args.registry, "serve")?;
    load_from(&path, args)
}

fn load_from(path: &std::path::Path, args: &Args) -> anyhow::Result<Settings> {
    let (registry, shard) = (&args.registry, &args.shard);
    let mut config = super::sync::load_config(path)?;
    if let Some(n) = args.concurrency {
        config.defaults.concurrency = n as usize;
    }
    // The [[registry]] tables come from the same file.
    let registry = super::RegistryArgs {
        config: Some(path.to_path_buf()),
        ..registry.clone()
    };
    let client_options = registry.client_options()?;
    // The daemon runs only this replica's mirrors; the split is exported.
    let (r, owned) = shard.keep_owned(&config, config.mirrors.clone())?;
    let per_shard = super::shard::per_shard(&config, r.shard.count);
    let sharding = (r.shard.count > 1).then(|| serve::Sharding {
        shard: r.shard,
        mirrors: std::mem::replace(&mut config.mirrors, owned.clone()),
    });
    config.mirrors = owned;
    super::check_credentials(&client_options, &super::sync::mirror_hosts(&config))?;
    regmirror::metrics::set_shard(r.shard.count, r.shard.index, &per_shard);
    Ok(Settings {
        config,
        client_options,
        sharding,
    })
}

/// The settings to start with: the config's, or with --keep-last-good and
/// an invalid config, the last good copy's (with why the config was
/// rejected).
fn load_at_start(args: &Args) -> anyhow::Result<(Settings, Option<String>)> {
    let error = match load(args) {
        Ok(settings) => {
            keep_copy(args.keep_last_good.as_deref(), &settings);
            return Ok((settings, None));
        }
        Err(e) => e,
    };
    let Some(dir) = &args.keep_last_good else {
        return Err(error);
    };
    let copy = dir.join(LAST_GOOD);
    if !copy.is_file() {
        tracing::error!(dir = %dir.display(), "no last good config to fall back on");
        return Err(error);
    }
    let settings = load_from(&copy, args).map_err(|e| {
        anyhow::anyhow!(
            "{error:#}; the last good copy {} is unusable too: {e:#}",
            copy.display()
        )
    })?;
    let why = format!("{error:#}");
    tracing::error!(error = %why, running = %copy.display(),
        "the config is invalid; running the last good config until a valid one is loaded");
    Ok((settings, Some(why)))
}

/// With --keep-last-good DIR, copy the file of accepted `settings` to
/// DIR/last-good.toml (a new file, checked to load, renamed over it); a
/// failure is logged.
fn keep_copy(dir: Option<&std::path::Path>, settings: &Settings) {
    use std::io::Write;
    let Some(dir) = dir else { return };
    let source = &settings.config.path;
    if source.parent() == Some(dir) && source.file_name() == Some(LAST_GOOD.as_ref()) {
        return;
    }
    let saved = std::fs::read(source).and_then(|bytes| {
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".last-good.")
            .tempfile_in(dir)?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        // The file may have changed since it was accepted (the kubelet swaps
        // a ConfigMap at any time): only bytes that load again are kept.
        regmirror::sync::Config::load(tmp.path()).map_err(|e| {
            std::io::Error::other(format!("the file changed since it was accepted: {e:#}"))
        })?;
        tmp.persist(dir.join(LAST_GOOD)).map_err(|e| e.error)?;
        Ok(())
    });
    if let Err(e) = saved {
        tracing::warn!(dir = %dir.display(), error = %e,
            "cannot keep a copy of the accepted config; a restart with a bad config will exit");
    }
}

/// Run the command.
pub async fn run(args: Args, _global: &super::GlobalArgs) -> anyhow::Result<Exit> {
    let (settings, rejected) = load_at_start(&args)?;
    let path = super::sync::config_path(&args.registry, "serve")?;
    // Opened once for the process: reloads keep it (a new state_dir takes
    // effect after a restart).
    let state = args
        .state
        .open_for_config(&settings.config.path, settings.config.state_dir.as_deref());
    let hup = reload_signals()?.map(|()| "SIGHUP");
    let changes = if args.watch_config {
        watch_file(path, std::time::Duration::from_secs(args.watch_interval)).boxed()
    } else {
        futures_util::stream::pending().boxed()
    };
    let reloads = futures_util::stream::select(hup, changes).map(move |why| {
        tracing::info!(trigger = why, "reloading the config");
        let loaded = load(&args).map_err(|e| format!("{e:#}"));
        if let Ok(settings) = &loaded {
            keep_copy(args.keep_last_good.as_deref(), settings);
        }
        loaded
    });
    serve::run_with_state(settings, state, rejected, reloads, shutdown_signal()?).await?;
    Ok(Exit::Ok)
}

/// Yields whenever the file's content differs from the last content seen.
/// Reading the whole file (rather than its modification time) also catches
/// Kubernetes' symlink swaps of mounted ConfigMaps.
fn watch_file(
    path: std::path::PathBuf,
    every: std::time::Duration,
) -> impl futures_util::Stream<Item = &'static str> {
    let first = std::fs::read(&path).ok();
    futures_util::stream::unfold((path, first), move |(path, mut last)| async move {
        loop {
            tokio::time::sleep(every).await;
            match tokio::fs::read(&path).await {
                Ok(now) if Some(&now) != last.as_ref() => {
                    last = Some(now);
                    return Some(("config file changed", (path, last)));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "cannot read the config file; keeping the running config");
                }
            }
        }
    })
}

#[cfg(unix)]
fn reload_signals() -> anyhow::Result<impl futures_util::Stream<Item = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let hup = signal(SignalKind::hangup())
        .map_err(|e| anyhow::anyhow!("cannot listen for SIGHUP: {e}"))?;
    Ok(futures_util::stream::unfold(hup, |mut s| async move {
        s.recv().await.map(|()| ((), s))
    }))
}

#[cfg(not(unix))]
fn reload_signals() -> anyhow::Result<impl futures_util::Stream<Item = ()>> {
    Ok(futures_util::stream::pending())
}

#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| anyhow::anyhow!("cannot listen for SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| anyhow::anyhow!("cannot listen for SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        // Runs drain within the grace period: no retry wait holds them.
        regmirror::registry::cut_retry_waits();
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        regmirror::registry::cut_retry_waits();
    })
}
