//! `regmirror serve`: run mirrors on their schedules; SIGHUP reloads the
//! config, SIGTERM and SIGINT drain and exit.

use futures_util::StreamExt;

use regmirror::serve::{self, Settings};

use super::Exit;

/// Arguments of `regmirror serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

fn load(registry: &super::RegistryArgs) -> anyhow::Result<Settings> {
    let path = super::sync::config_path(registry, "serve")?;
    let config = super::sync::load_config(&path)?;
    let client_options = registry.client_options()?;
    Ok(Settings {
        config,
        client_options,
    })
}

/// Run the command.
pub async fn run(args: Args, _global: &super::GlobalArgs) -> anyhow::Result<Exit> {
    let settings = load(&args.registry)?;
    let reloads = reload_signals()?.map(move |()| {
        tracing::info!("SIGHUP: reloading the config");
        load(&args.registry).map_err(|e| format!("{e:#}"))
    });
    serve::run(settings, reloads, shutdown_signal()?).await?;
    Ok(Exit::Ok)
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
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
