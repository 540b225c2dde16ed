//! The `serve` daemon: runs mirrors on cron schedules and exposes metrics and
//! health endpoints.
//!
//! [`run`] takes the validated settings, a stream of reloaded settings and a
//! shutdown future, so that it can be driven without signals; the binary
//! wires SIGHUP to reloads and SIGTERM/SIGINT to shutdown.
//!
//! - Each mirror runs once at start, then at every slot of its schedule. A
//!   slot that comes while the mirror's previous run is still going is
//!   skipped and counted (`regmirror_runs_skipped_total`). A random delay of
//!   up to `[defaults] jitter_seconds` precedes scheduled runs.
//! - One limit on images copied at once (`[defaults] concurrency`) is shared
//!   by every mirror.
//! - Reload: settings that fail validation are reported and the running ones
//!   stay; so are settings whose file has no mirror, unless it says
//!   `allow_empty = true` (an emptied file must not stop every mirror).
//!   Accepted settings replace the schedules; every mirror of the new
//!   settings runs once at once (a no-op run costs two HEADs per tag), unless
//!   its previous run is still going. `[server] listen` changes need a restart.
//! - Quarantine: an image that failed several runs in a row for a reason
//!   another try will not fix is skipped by its mirror's next runs, with a
//!   growing backoff (see [`crate::sync::run::Quarantine`]); the state lives
//!   as long as the process, across reloads.
//! - Notifications: each run's report goes to the `[[notify]]` sinks of
//!   its generation's config (see [`crate::sync::notify`]), delivered in
//!   the background.
//! - Shutdown: nothing new starts; runs in flight get `[server]
//!   shutdown_grace_seconds` to finish; notifications still queued get
//!   [`crate::sync::notify::FLUSH_BOUND`]; then `run` returns.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::Utc;
use futures_util::{Stream, StreamExt};
use rand::Rng;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

mod audit;
mod endpoint;
mod events;
mod trigger;

pub use events::shards::Sharding;

use crate::copy::Engine;
use crate::metrics;
use crate::registry::{Client, ClientOptions};
use crate::sync::config::{Config, Mirror};
use crate::sync::notify::Notifier;
use crate::sync::run::{Quarantine, SyncOptions, Syncer};

/// Prometheus metrics endpoint.
pub const METRICS_PATH: &str = "/metrics";
/// Liveness: answers 200 while the process is alive.
pub const HEALTH_PATH: &str = "/healthz";
/// Readiness: 200 once the config is loaded and the listener is up (mirrors'
/// first runs are not waited for: see `regmirror_first_runs_complete`); 503
/// during shutdown.
pub const READY_PATH: &str = "/readyz";
/// Address `serve` listens on unless `[server] listen` says otherwise.
pub const DEFAULT_LISTEN: &str = crate::sync::config::DEFAULT_LISTEN;

/// What the daemon runs: a validated config and the registry client options
/// built from it (plus any command-line overrides).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The validated config.
    pub config: Config,
    /// Registry client options.
    pub client_options: ClientOptions,
    /// With more than one shard: this replica's shard and every mirror of
    /// the file, so that events for another shard's mirrors reach it.
    pub sharding: Option<Sharding>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The HTTP endpoint could not listen.
    #[error(
        "cannot listen on {addr} for /metrics, /healthz and /readyz: {source}; pick a free address with [server] listen"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The event receiver could not listen.
    #[error(
        "cannot listen on {addr} for the event receiver and sync-now API: {source}; pick a free address with [events] listen (its own port, not [server] listen's)"
    )]
    EventsBind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The registry client could not be built from the settings.
    #[error("cannot set up the registry client: {0}")]
    Client(#[from] crate::registry::Error),
}

/// State shared by the scheduler, the runs and the HTTP handlers.
struct Shared {
    /// True once every mirror of the first config has finished a run
    /// (exported as `regmirror_first_runs_complete`; readiness does not wait
    /// for it).
    first_runs_done: AtomicBool,
    /// Cancelled at shutdown: no new run or copy starts.
    stop: CancellationToken,
    /// One lock per mirror name: held while the mirror runs.
    running: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Runs in flight.
    in_flight: watch::Sender<usize>,
    /// Names of the mirrors of the config in force: a mirror that left it
    /// loses its metric series, also when a run or schedule of it that was
    /// still going records one after the reload.
    configured: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Images failing run after run, skipped for a while: kept for the
    /// life of the process, across reloads (a mirror that leaves the config
    /// loses its entries).
    quarantine: Quarantine,
    /// Why the config asked for at start was rejected, while the last good
    /// one runs in its place (until a reload is accepted).
    rejected: std::sync::Mutex<Option<String>>,
    /// The run-state store of every run of the process, across reloads.
    state: Option<Arc<crate::sync::state::StateStore>>,
    /// Runs asked for now (events, the sync-now API) and their history.
    triggers: trigger::Triggers,
    /// The event receiver's view of the config in force.
    receiver: events::Receiver,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            first_runs_done: AtomicBool::new(false),
            stop: CancellationToken::new(),
            running: std::sync::Mutex::new(HashMap::new()),
            in_flight: watch::channel(0usize).0,
            configured: Default::default(),
            quarantine: Quarantine::default(),
            rejected: Default::default(),
            state: None,
            triggers: Default::default(),
            receiver: Default::default(),
        }
    }

    /// A new state whose runs share the run-state store `state`.
    fn with_state(state: Option<Arc<crate::sync::state::StateStore>>) -> Shared {
        Shared {
            state,
            ..Shared::new()
        }
    }

    fn set_rejected(&self, why: Option<String>) {
        *self.rejected.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    fn is_configured(&self, name: &str) -> bool {
        let names = self.configured.lock().unwrap_or_else(|e| e.into_inner());
        names.contains(name)
    }

    /// Take `settings` as the ones in force (for metrics, the receiver).
    fn set_configured(&self, settings: &Settings) {
        let config = &settings.config;
        self.receiver.set_config(config);
        self.receiver.set_sharding(settings.sharding.as_ref());
        self.triggers
            .set_shard(settings.sharding.as_ref().map(|s| s.shard));
        let mut names = self.configured.lock().unwrap_or_else(|e| e.into_inner());
        *names = config.mirrors.iter().map(|m| m.name.clone()).collect();
    }

    /// Drop `name`'s metric series if it is no longer configured.
    fn forget_if_gone(&self, name: &str) {
        let names = self.configured.lock().unwrap_or_else(|e| e.into_inner());
        if !names.contains(name) {
            metrics::forget_mirror(name);
            self.quarantine.forget_mirror(name);
        }
    }

    fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.running.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_string()).or_default().clone()
    }
}

/// One applied config: its syncer and the token that ends its schedules.
///
/// State lifetime: the generation lives until the next accepted reload, but
/// it holds no memory of registry content: every scheduled run of a mirror
/// is a run of its own ([`Syncer::run_mirror`] makes a fresh copier and drops
/// it when the run ends), so a target that lost its data or a repository
/// deleted by hand is healed by the next scheduled run, with no restart.
/// The copy [`Engine`] (writes in flight) outlives generations: it lives as
/// long as the process, so a run of a new generation never writes a
/// repository link that a run of the old one is still writing.
struct Generation {
    syncer: Syncer,
    jitter: Duration,
    cancel: CancellationToken,
    /// The `[[notify]]` sinks of this config, told of every run.
    notifier: Option<Notifier>,
}

impl Generation {
    /// Wait for the notifications still queued, at most
    /// [`crate::sync::notify::FLUSH_BOUND`].
    async fn flush_notifications(&self) {
        if let Some(n) = &self.notifier {
            n.flush(crate::sync::notify::FLUSH_BOUND).await;
        }
    }
}

/// Run the daemon until `shutdown` completes. `reloads` yields newly loaded
/// settings (or why loading failed) whenever a reload is asked for.
pub async fn run(
    settings: Settings,
    reloads: impl Stream<Item = Result<Settings, String>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    run_with(settings, None, reloads, shutdown).await
}

pub async fn run_with(
    settings: Settings,
    rejected: Option<String>,
    reloads: impl Stream<Item = Result<Settings, String>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    run_with_state(settings, None, rejected, reloads, shutdown).await
}

/// [`run_with`], with the run-state store every run of the process shares,
/// across reloads (see [`crate::sync::state`]); `None`: runs remember
/// nothing.
pub async fn run_with_state(
    settings: Settings,
    state: Option<Arc<crate::sync::state::StateStore>>,
    rejected: Option<String>,
    reloads: impl Stream<Item = Result<Settings, String>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    metrics::init();
    metrics::set_build_info(env!("CARGO_PKG_VERSION"));
    metrics::set_first_runs_complete(false);
    let client = Client::new(settings.client_options.clone())?;
    let (listener, bound) = bind(settings.config.server.listen).await?;
    let shared = Arc::new(Shared::with_state(state));
    shared.set_configured(&settings);
    record_config_load(Some(&settings.config));
    if let Some(why) = rejected {
        record_config_load(None);
        shared.set_rejected(Some(why));
    }

    let server_stop = CancellationToken::new();
    let events_server =
        events::start(&settings.config, shared.clone(), server_stop.clone()).await?;
    tracing::info!(listen = %bound, mirrors = settings.config.mirrors.len(), config = %settings.config.path.display(), "serve started");

    if let Some(why) = settings.config.empty_without_consent() {
        tracing::warn!(warning = %why, "serve started without any mirror");
    }
    let mut current = settings;
    // Lives as long as the process: every run of every generation shares it.
    let engine = Engine::new();
    let mut generation = start_generation(&shared, &engine, client, &current.config, true);
    // Served once the series are zeroed (a scrape waits on the listener).
    let app = health_router(shared.clone());
    let server = tokio::spawn(endpoint::serve(listener, app, server_stop.clone()));

    tokio::pin!(shutdown);
    let reloads = reloads.fuse();
    tokio::pin!(reloads);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            next = reloads.next() => match next {
                Some(Ok(new)) => {
                    if let Some(g) = reload(&shared, &engine, &current, &generation, &new) {
                        generation = g;
                        current = new;
                        record_config_load(Some(&current.config));
                        shared.set_rejected(None);
                    } else {
                        record_config_load(None);
                    }
                }
                Some(Err(message)) => {
                    tracing::error!(error = %message, "reload rejected; the previous config keeps running");
                    record_config_load(None);
                }
                None => {}
            },
        }
    }

    // Shutdown: start nothing new, drain runs in flight within the grace period.
    shared.stop.cancel();
    generation.cancel.cancel();
    drain(&shared, current.config.server.shutdown_grace).await;
    generation.flush_notifications().await;
    server_stop.cancel();
    for server in [Some(server), events_server].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }
    Ok(())
}

/// The listener of `[server] listen`, and the address it is bound to.
async fn bind(
    listen: std::net::SocketAddr,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), ServeError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: listen,
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(listen);
    Ok((listener, bound))
}

/// The routes of `[server] listen`: metrics and health.
fn health_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(METRICS_PATH, get(metrics_handler))
        .route(HEALTH_PATH, get(|| async { "ok\n" }))
        .route(READY_PATH, get(ready_handler))
        .with_state(shared)
}

/// Record a config load: `config` accepted (with the hash of its file), or
/// `None` for a rejected one.
fn record_config_load(config: Option<&Config>) {
    let hash = config.map(|c| config_hash(&c.path));
    metrics::record_config_load(hash.as_deref(), crate::sync::run::unix_now());
}

/// First 12 hex digits of the SHA-256 of the file at `path`, as read now
/// (`unreadable` if it cannot be read any more).
fn config_hash(path: &std::path::Path) -> String {
    use sha2::Digest;
    match std::fs::read(path) {
        Ok(bytes) => hex::encode(sha2::Sha256::digest(&bytes))[..12].to_string(),
        Err(_) => "unreadable".to_string(),
    }
}

/// Apply reloaded settings `new` over `current`: the generation that
/// replaces `old` (whose schedules are cancelled), or `None` when the
/// settings are rejected (logged) and the running ones stay.
fn reload(
    shared: &Arc<Shared>,
    engine: &Engine,
    current: &Settings,
    old: &Generation,
    new: &Settings,
) -> Option<Generation> {
    if let Some(why) = new.config.empty_without_consent() {
        tracing::error!(error = %why, "reload rejected: every mirror would stop; the previous config keeps running");
        return None;
    }
    let client = match Client::new(new.client_options.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(config = %new.config.path.display(), error = %e,
                "reload rejected: cannot set up the registry client; the previous config keeps running");
            return None;
        }
    };
    if new.config.events.listen != current.config.events.listen {
        tracing::warn!(old = ?current.config.events.listen, new = ?new.config.events.listen,
            "[events] listen changed; the new address takes effect after a restart");
    }
    if new.config.server.listen != current.config.server.listen {
        tracing::warn!(old = %current.config.server.listen, new = %new.config.server.listen,
            "[server] listen changed; the new address takes effect after a restart");
    }
    old.cancel.cancel();
    shared.set_configured(new);
    for m in &current.config.mirrors {
        shared.forget_if_gone(&m.name);
    }
    let generation = start_generation(shared, engine, client, &new.config, false);
    tracing::info!(config = %new.config.path.display(), mirrors = new.config.mirrors.len(), "config reloaded");
    Some(generation)
}

/// Wait for the runs in flight to finish, at most `grace`.
async fn drain(shared: &Shared, grace: Duration) {
    let running = *shared.in_flight.borrow();
    tracing::info!(
        runs_in_flight = running,
        grace_seconds = grace.as_secs(),
        "shutting down: waiting for runs in flight"
    );
    let mut rx = shared.in_flight.subscribe();
    match tokio::time::timeout(grace, rx.wait_for(|n| *n == 0)).await {
        Ok(_) => tracing::info!("every run finished; exiting"),
        Err(_) => tracing::warn!(
            runs_in_flight = *shared.in_flight.borrow(),
            grace_seconds = grace.as_secs(),
            "runs still going after the grace period are abandoned; raise [server] shutdown_grace_seconds to wait longer"
        ),
    }
}

/// Start the schedules of `config`; with `first`,
/// `regmirror_first_runs_complete` follows the completion of every mirror's
/// first run.
fn start_generation(
    shared: &Arc<Shared>,
    engine: &Engine,
    client: Client,
    config: &Config,
    first: bool,
) -> Generation {
    let options = SyncOptions {
        concurrency: config.defaults.concurrency,
        blob_concurrency: config.defaults.blob_concurrency,
        dry_run: false,
        record_metrics: true,
    };
    zero_metrics(&client, config);
    let names: Vec<String> = config.mirrors.iter().map(|m| m.name.clone()).collect();
    metrics::zero_running(&names);
    for name in &names {
        metrics::set_quarantined(name, shared.quarantine.count(name));
    }
    let mut syncer = Syncer::new(client.clone(), options, shared.stop.clone())
        .with_copy_limit(Arc::new(Semaphore::new(config.defaults.concurrency.max(1))))
        .with_engine(engine.clone())
        .with_quarantine(shared.quarantine.clone())
        .with_state(shared.state.clone());
    let notifier = Notifier::start(&config.notify, "serve");
    if let Some(n) = &notifier {
        syncer = syncer.on_mirror_done(n.hook());
    }
    let generation = Generation {
        syncer,
        jitter: config.defaults.jitter,
        cancel: CancellationToken::new(),
        notifier,
    };
    let pending = Arc::new(AtomicUsize::new(config.mirrors.len()));
    if first && config.mirrors.is_empty() {
        shared.first_runs_done.store(true, Ordering::SeqCst);
        metrics::set_first_runs_complete(true);
    }
    for mirror in &config.mirrors {
        let ctx = LoopCtx {
            shared: shared.clone(),
            syncer: generation.syncer.clone(),
            jitter: generation.jitter,
            cancel: generation.cancel.clone(),
            pending: first.then(|| pending.clone()),
        };
        tokio::spawn(trigger::trigger_loop(ctx.clone(), Arc::new(mirror.clone())));
        tokio::spawn(schedule_loop(ctx, mirror.clone()));
        let audit = audit::AuditCtx {
            client: client.clone(),
            syncer: generation.syncer.clone(),
            running: shared.lock_for(&mirror.name),
            cancel: generation.cancel.clone(),
            stop: shared.stop.clone(),
        };
        audit::spawn(audit, mirror.clone());
    }
    generation
}

/// Zero-initialise the counters of `config`'s mirrors and registry hosts,
/// so that every series an alert may watch exists before its first event.
/// Each host's credentials are read now (nothing is sent), which names the
/// account of its pull budget; a host whose settings are unusable is
/// reported by the first run that uses it.
fn zero_metrics(client: &Client, config: &Config) {
    let mut scope = metrics::Scope {
        mirrors: config.mirrors.iter().map(|m| m.name.clone()).collect(),
        ..Default::default()
    };
    for m in &config.mirrors {
        let targets = m.targets().filter(|t| !t.is_layout());
        scope
            .targets
            .extend(targets.map(|t| (m.name.clone(), t.to_string())));
        for r in std::iter::once(&m.source).chain(m.targets()) {
            let host = r.registry().to_string();
            if !r.is_layout() && !scope.hosts.contains(&host) {
                scope.hosts.push(host);
            }
        }
    }
    for host in &scope.hosts {
        if let Err(e) = client.check_registry(host) {
            tracing::debug!(host = %host, error = %e, "registry settings not usable yet");
        }
    }
    metrics::zero(&scope);
}

#[derive(Clone)]
struct LoopCtx {
    shared: Arc<Shared>,
    syncer: Syncer,
    jitter: Duration,
    cancel: CancellationToken,
    /// First-run countdown of the first config, for `regmirror_first_runs_complete`.
    pending: Option<Arc<AtomicUsize>>,
}

/// One mirror's schedule: a run at once, then one per slot.
async fn schedule_loop(ctx: LoopCtx, mirror: Mirror) {
    let mirror = Arc::new(mirror);
    let lock = ctx.shared.lock_for(&mirror.name);
    match lock.clone().try_lock_owned() {
        Ok(guard) => spawn_run(
            &ctx,
            mirror.clone(),
            guard,
            Duration::ZERO,
            ctx.pending.clone(),
        ),
        Err(_) => {
            metrics::record_run_skipped(&mirror.name);
            tracing::info!(mirror = %mirror.name, "previous run still going; the initial run is skipped");
            if let Some(p) = &ctx.pending {
                first_run_done(&ctx.shared, p);
            }
        }
    }
    let mut last_slot = Utc::now();
    loop {
        let now = Utc::now().max(last_slot);
        let Some(next) = mirror.schedule.next_after(now) else {
            tracing::warn!(mirror = %mirror.name, schedule = %mirror.schedule, "schedule has no further slot");
            return;
        };
        last_slot = next;
        if ctx.cancel.is_cancelled() {
            ctx.shared.forget_if_gone(&mirror.name);
            return;
        }
        let interval = mirror
            .schedule
            .next_after(next)
            .map(|after| (after - next).num_milliseconds() as f64 / 1000.0)
            .unwrap_or(0.0);
        metrics::set_next_run(
            &mirror.name,
            next.timestamp_millis() as f64 / 1000.0,
            interval,
        );
        let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.cancel.cancelled() => {
                ctx.shared.forget_if_gone(&mirror.name);
                return;
            }
            _ = ctx.shared.stop.cancelled() => return,
        }
        match lock.clone().try_lock_owned() {
            Ok(guard) => {
                let delay = if ctx.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    Duration::from_millis(
                        rand::rng().random_range(0..=ctx.jitter.as_millis() as u64),
                    )
                };
                spawn_run(&ctx, mirror.clone(), guard, delay, None);
            }
            Err(_) => {
                metrics::record_run_skipped(&mirror.name);
                tracing::warn!(mirror = %mirror.name, slot = %next, "previous run still going; this slot is skipped");
            }
        }
    }
}

fn spawn_run(
    ctx: &LoopCtx,
    mirror: Arc<Mirror>,
    guard: tokio::sync::OwnedMutexGuard<()>,
    delay: Duration,
    pending: Option<Arc<AtomicUsize>>,
) {
    let shared = ctx.shared.clone();
    let syncer = ctx.syncer.clone();
    let in_flight = InFlight::start(shared.clone(), pending);
    tokio::spawn(async move {
        // Dropped last, whatever happens below (a panic included): the
        // in-flight count and the first-run countdown never leak.
        let _in_flight = in_flight;
        let _guard = guard;
        let go = if delay.is_zero() {
            true
        } else {
            tracing::debug!(mirror = %mirror.name, delay_ms = delay.as_millis() as u64, "jitter before run");
            tokio::select! {
                _ = tokio::time::sleep(delay) => true,
                _ = shared.stop.cancelled() => false,
            }
        };
        if go && !shared.stop.is_cancelled() {
            let name = mirror.name.clone();
            let started = std::time::Instant::now();
            metrics::record_run_started(&name, crate::sync::run::unix_now());
            run_caught(&name, async move {
                syncer.run_mirror(&mirror).await;
            })
            .await;
            metrics::record_run_finished(&name, started.elapsed().as_secs_f64());
            shared.forget_if_gone(&name);
        }
    });
}

/// Run one mirror's run `fut` in its own task, so that a panic inside it is
/// caught here: logged, and counted as a failed run of `mirror`. True when
/// it panicked.
async fn run_caught(mirror: &str, fut: impl Future<Output = ()> + Send + 'static) -> bool {
    match tokio::spawn(fut).await {
        Err(e) if e.is_panic() => {
            let message = panic_text(e.into_panic());
            tracing::error!(mirror = %mirror, panic = %crate::registry::escape::shown(&message),
                "the mirror run panicked; it counts as a failed run and the next slot runs as usual");
            metrics::record_run(mirror, "failed", crate::sync::run::unix_now());
            true
        }
        _ => false,
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    crate::sync::run::panic_words(payload.as_ref())
}

/// One run in flight: counted while it lives; on drop, uncounted and, for a
/// first run, counted towards `regmirror_first_runs_complete`.
struct InFlight {
    shared: Arc<Shared>,
    pending: Option<Arc<AtomicUsize>>,
}

impl InFlight {
    fn start(shared: Arc<Shared>, pending: Option<Arc<AtomicUsize>>) -> InFlight {
        shared.in_flight.send_modify(|n| *n += 1);
        InFlight { shared, pending }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(p) = &self.pending {
            first_run_done(&self.shared, p);
        }
        self.shared
            .in_flight
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

fn first_run_done(shared: &Shared, pending: &AtomicUsize) {
    if pending.fetch_sub(1, Ordering::SeqCst) == 1 {
        shared.first_runs_done.store(true, Ordering::SeqCst);
        metrics::set_first_runs_complete(true);
        tracing::info!("every mirror finished its first run");
    }
}

async fn metrics_handler() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(),
    )
}

async fn ready_handler(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.stop.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_string(),
        );
    }
    let mut body = if shared.first_runs_done.load(Ordering::SeqCst) {
        "ready\n".to_string()
    } else {
        "ready; first runs are still going\n".to_string()
    };
    let rejected = shared.rejected.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = rejected.as_deref() {
        body.push_str(&format!(
            "running the last good config: the config was rejected at start: {}\n",
            crate::registry::escape::shown(why)
        ));
    }
    (StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            first_runs_done: AtomicBool::new(false),
            stop: CancellationToken::new(),
            running: std::sync::Mutex::new(HashMap::new()),
            in_flight: watch::channel(0usize).0,
            configured: Default::default(),
            quarantine: Quarantine::default(),
            rejected: Default::default(),
            state: None,
            triggers: Default::default(),
            receiver: Default::default(),
        })
    }

    #[tokio::test]
    async fn a_panicking_run_is_caught_counted_and_leaks_nothing() {
        let shared = shared();
        let pending = Arc::new(AtomicUsize::new(1));
        let task = {
            let shared = shared.clone();
            let pending = pending.clone();
            tokio::spawn(async move {
                let _in_flight = InFlight::start(shared, Some(pending));
                run_caught("panicking-mirror", async { panic!("boom \u{1b}[31m") }).await
            })
        };
        assert!(task.await.unwrap(), "the panic is reported");
        assert_eq!(*shared.in_flight.borrow(), 0);
        assert!(
            shared.first_runs_done.load(Ordering::SeqCst),
            "first-run completion follows the failed first run"
        );
        let text = metrics::render();
        assert!(
            text.lines()
                .any(|l| l.starts_with("regmirror_sync_runs_total")
                    && l.contains("panicking-mirror")
                    && l.contains("failed")
                    && l.ends_with(" 1")),
            "{text}"
        );
        assert!(!run_caught("calm-mirror", async {}).await);
    }

    #[tokio::test]
    async fn in_flight_is_released_when_the_run_task_itself_panics() {
        let shared = shared();
        let s2 = shared.clone();
        let r = tokio::spawn(async move {
            let _in_flight = InFlight::start(s2, None);
            panic!("outside the caught run");
        })
        .await;
        assert!(r.unwrap_err().is_panic());
        assert_eq!(*shared.in_flight.borrow(), 0);
    }
}
