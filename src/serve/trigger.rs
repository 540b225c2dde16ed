//! Runs asked for now, by a push event or the sync-now API: a queue per
//! mirror and the history of those runs.
//!
//! - A request names a mirror and optionally narrows it ([`Only`]: one
//!   repository, some tags). Requests that come while one for the same
//!   mirror is still queued join it: their narrowings are merged and they
//!   share its run id, so a burst of pushes (a push of 20 tags) is one run.
//! - Each mirror's trigger loop waits [`COALESCE`] after the first request
//!   of a burst, then takes the mirror's lock: a triggered run never runs
//!   at the same time as the mirror's scheduled run (it waits for it to
//!   end; requests that come meanwhile make the next run). Schedules stay.
//! - Triggered runs share the daemon's copy limit, pull budgets, quarantine
//!   and run-state store with the scheduled ones.
//! - The last [`HISTORY`] runs are kept with their state and report.
//! - With `[shard]` a run id names its replica: `id % count` is the index
//!   of the shard that runs it ([`owner_of`]), so any replica can hand a
//!   question about a run to its owner. With one shard ids are 1, 2, 3...

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use super::{InFlight, LoopCtx, run_caught};
use crate::metrics;
use crate::sync::config::Mirror;
use crate::sync::report::Report;
use crate::sync::run::{MirrorReport, Only};

/// How long a trigger loop waits after the first request of a burst.
pub const COALESCE: Duration = Duration::from_millis(300);
/// Runs kept in the history.
pub const HISTORY: usize = 100;

/// Where a triggered run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Waiting for its window, for the mirror's lock or for a copy slot.
    Queued,
    /// Running.
    Running,
    /// Finished (see the report's `result`).
    Done,
    /// Never ran: the daemon shut down or the mirror left the config.
    Dropped,
}

/// One triggered run, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Run id.
    pub id: u64,
    /// Mirror name.
    pub mirror: String,
    /// Where it is.
    pub state: RunState,
    /// Why it was asked for: `event:SOURCE` or `api`.
    pub reasons: Vec<String>,
    /// The repositories and tags it looks at (`repo:tag`, `repo:*`); empty: the whole mirror.
    pub only: Vec<String>,
    /// Requests merged into it.
    pub requests: usize,
    /// Unix time it was first asked for.
    pub queued_at: f64,
    /// Unix time it started, once it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<f64>,
    /// Unix time it finished, once it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<f64>,
    /// The mirror run's report, once done: the document of
    /// `docs/report.schema.json`, as `sync --output json` prints it for a
    /// sync of this mirror alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
}

/// A queued request of one mirror.
struct Pending {
    id: u64,
    /// `None`: the whole mirror.
    only: Option<Only>,
}

/// One mirror's queue.
#[derive(Default)]
struct Slot {
    wake: Arc<Notify>,
    pending: Option<Pending>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    /// This replica's shard index and the shard count (0: one shard).
    shard: (u32, u32),
    slots: HashMap<String, Slot>,
    history: VecDeque<RunRecord>,
}

/// The queues and the history; lives as long as the process.
#[derive(Default)]
pub(super) struct Triggers {
    inner: Mutex<Inner>,
}

impl Triggers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Take this replica's shard (`None`: one replica runs every mirror),
    /// for the ids of the runs asked for from now on.
    pub(super) fn set_shard(&self, shard: Option<crate::sync::shard::Shard>) {
        self.lock().shard = shard.map_or((0, 1), |s| (s.index, s.count.max(1)));
    }

    /// Ask for a run of `mirror` narrowed to `only` (`None`: all of it),
    /// for `reason`; the id of the run that will serve it.
    pub(super) fn request(&self, mirror: &str, only: Option<Only>, reason: &str) -> u64 {
        let mut inner = self.lock();
        let joined = inner
            .slots
            .get_mut(mirror)
            .and_then(|s| s.pending.as_mut())
            .map(|p| {
                match (&mut p.only, only.clone()) {
                    (Some(mine), Some(more)) => mine.merge(more),
                    (mine, _) => *mine = None,
                }
                (
                    p.id,
                    p.only.as_ref().map(Only::describe).unwrap_or_default(),
                )
            });
        let id = match joined {
            Some((id, described)) => {
                if let Some(r) = inner.history.iter_mut().find(|r| r.id == id) {
                    r.requests += 1;
                    r.only = described;
                    if !r.reasons.iter().any(|x| x == reason) {
                        r.reasons.push(reason.to_string());
                    }
                }
                id
            }
            None => {
                inner.next_id += 1;
                let (index, count) = inner.shard;
                let id = inner
                    .next_id
                    .saturating_mul(u64::from(count.max(1)))
                    .saturating_add(u64::from(index));
                let record = RunRecord {
                    id,
                    mirror: mirror.to_string(),
                    state: RunState::Queued,
                    reasons: vec![reason.to_string()],
                    only: only.as_ref().map(Only::describe).unwrap_or_default(),
                    requests: 1,
                    queued_at: crate::sync::run::unix_now(),
                    started_at: None,
                    finished_at: None,
                    report: None,
                };
                inner.history.push_back(record);
                while inner.history.len() > HISTORY {
                    inner.history.pop_front();
                }
                inner.slots.entry(mirror.to_string()).or_default().pending =
                    Some(Pending { id, only });
                id
            }
        };
        inner
            .slots
            .entry(mirror.to_string())
            .or_default()
            .wake
            .notify_one();
        tracing::info!(mirror, run = id, reason, "run asked for now");
        id
    }

    /// The notifier a mirror's trigger loop waits on.
    fn wake(&self, mirror: &str) -> Arc<Notify> {
        self.lock()
            .slots
            .entry(mirror.to_string())
            .or_default()
            .wake
            .clone()
    }

    fn take(&self, mirror: &str) -> Option<Pending> {
        self.lock()
            .slots
            .get_mut(mirror)
            .and_then(|s| s.pending.take())
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut RunRecord)) {
        if let Some(r) = self.lock().history.iter_mut().find(|r| r.id == id) {
            f(r);
        }
    }

    /// Drop the queued request of `mirror` (it left the config).
    pub(super) fn drop_pending(&self, mirror: &str) {
        if let Some(p) = self.take(mirror) {
            self.update(p.id, |r| r.state = RunState::Dropped);
        }
    }

    /// The run `id`, while the history holds it.
    pub(super) fn get(&self, id: u64) -> Option<RunRecord> {
        self.lock().history.iter().find(|r| r.id == id).cloned()
    }
}

/// The index of the shard that runs the run `id`, among `count` shards.
pub(super) fn owner_of(id: u64, count: u32) -> u32 {
    (id % u64::from(count.max(1))) as u32
}

/// One mirror's trigger loop: runs what is asked for now, until the
/// generation ends (a request still queued then waits for the next one).
pub(super) async fn trigger_loop(ctx: LoopCtx, mirror: Arc<Mirror>) {
    let triggers = &ctx.shared.triggers;
    let wake = triggers.wake(&mirror.name);
    let lock = ctx.shared.lock_for(&mirror.name);
    loop {
        let guard = tokio::select! {
            g = async {
                wake.notified().await;
                tokio::time::sleep(COALESCE).await;
                lock.clone().lock_owned().await
            } => g,
            _ = ctx.cancel.cancelled() => break,
            _ = ctx.shared.stop.cancelled() => break,
        };
        let Some(pending) = triggers.take(&mirror.name) else {
            continue;
        };
        spawn_triggered(&ctx, mirror.clone(), guard, pending);
    }
    // A request queued now is run by the next generation's loop, or
    // dropped if the mirror left the config or the daemon stops.
    let gone = !ctx.shared.is_configured(&mirror.name);
    if ctx.shared.stop.is_cancelled() || gone {
        triggers.drop_pending(&mirror.name);
    } else {
        wake.notify_one();
    }
}

fn spawn_triggered(
    ctx: &LoopCtx,
    mirror: Arc<Mirror>,
    guard: tokio::sync::OwnedMutexGuard<()>,
    pending: Pending,
) {
    let shared = ctx.shared.clone();
    let syncer = ctx.syncer.clone();
    let in_flight = InFlight::start(shared.clone(), None);
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let _guard = guard;
        let id = pending.id;
        if shared.stop.is_cancelled() {
            shared.triggers.update(id, |r| r.state = RunState::Dropped);
            return;
        }
        let now = crate::sync::run::unix_now();
        shared.triggers.update(id, |r| {
            r.state = RunState::Running;
            r.started_at = Some(now);
        });
        let name = mirror.name.clone();
        let started = std::time::Instant::now();
        metrics::record_run_started(&name, now);
        let out: Arc<Mutex<Option<MirrorReport>>> = Arc::default();
        let slot = out.clone();
        let only = pending.only;
        tracing::info!(mirror = %name, run = id, only = ?only.as_ref().map(Only::describe), "triggered run starts");
        run_caught(&name, async move {
            let report = syncer.run_mirror_only(&mirror, only.as_ref()).await;
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(report);
        })
        .await;
        metrics::record_run_finished(&name, started.elapsed().as_secs_f64());
        shared.forget_if_gone(&name);
        let report = out.lock().unwrap_or_else(PoisonError::into_inner).take();
        shared.triggers.update(id, |r| {
            r.state = RunState::Done;
            r.finished_at = Some(crate::sync::run::unix_now());
            r.report = report.as_ref().map(Report::mirror_run);
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_joins_the_queued_run_and_a_whole_mirror_absorbs_narrowings() {
        let t = Triggers::default();
        let first = t.request("m", Some(Only::repository("a/b", Some("v1"))), "event:up");
        for i in 2..=20 {
            let tag = format!("v{i}");
            assert_eq!(
                t.request("m", Some(Only::repository("a/b", Some(&tag))), "event:up"),
                first
            );
        }
        let r = t.get(first).unwrap();
        assert_eq!(
            (r.requests, r.only.len(), r.state),
            (20, 20, RunState::Queued)
        );
        assert_eq!(t.request("m", None, "api"), first);
        let r = t.get(first).unwrap();
        assert!(r.only.is_empty(), "the whole mirror: {:?}", r.only);
        assert_eq!(r.reasons, ["event:up", "api"]);
        assert!(t.take("m").unwrap().only.is_none());
        let second = t.request("m", None, "api");
        assert_ne!(
            second, first,
            "a request after the run was taken makes a new run"
        );
        assert!(t.get(second + 1).is_none());
    }

    #[test]
    fn with_shards_a_run_id_names_its_owner() {
        let t = Triggers::default();
        t.set_shard(Some(crate::sync::shard::Shard { count: 3, index: 2 }));
        let ids: Vec<u64> = ["a", "b", "c"]
            .iter()
            .map(|m| t.request(m, None, "api"))
            .collect();
        assert_eq!(ids, [5, 8, 11]);
        assert!(ids.iter().all(|id| owner_of(*id, 3) == 2));
        assert_eq!(t.get(8).unwrap().mirror, "b");
        t.set_shard(None);
        assert_eq!(t.request("d", None, "api"), 4, "one shard: 1, 2, 3...");
        assert_eq!(owner_of(4, 1), 0);
    }

    #[test]
    fn the_history_is_bounded() {
        let t = Triggers::default();
        for i in 0..(HISTORY + 5) {
            t.request(&format!("m{i}"), None, "api");
        }
        assert!(t.get(1).is_none());
        assert!(t.get((HISTORY + 5) as u64).is_some());
        assert_eq!(t.lock().history.len(), HISTORY);
    }
}
