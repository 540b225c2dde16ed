//! Work deduplication: one blob transfer and one manifest push per
//! (target registry, repository, digest), shared by every image that needs it.
//!
//! Two pieces of state, with two lifetimes:
//!
//! - [`Table`] (one per kind of work, in [`Tables`], owned by a
//!   [`super::Engine`]): the work *in flight* in every run sharing that
//!   engine (in `serve`, the whole process), so that two runs going at once
//!   (two mirrors of `serve` on their own schedules, a reload that overlaps
//!   a run) never write the same repository link concurrently. It holds
//!   only weak references: an entry lives as long as some run holds it, and
//!   is dropped with the last such run.
//! - [`RunWork`] (one per run, owned by the run's [`super::Copier`]): the
//!   work this run started or joined, finished or not. It lives exactly as
//!   long as one run of one command or one scheduled cycle of `serve`; it is
//!   what makes a second image of the same run skip a push that is done.
//!   A run joins another run's *finished* work only if it finished after this
//!   run started, so no run trusts a result older than itself: a target that
//!   lost data (wiped, repository deleted) is written again by the next run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use sha2::{Digest as _, Sha256};

use crate::registry::digest::Algorithm;
use crate::registry::{Digest, Reference};

/// The key of one record of a run or an engine, such as (target registry,
/// target repository, digest): the SHA-256 of its parts, each prefixed with
/// its length, so that a record kept per tag costs 32 bytes however long the
/// names are, and no two lists of parts share a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) struct WorkKey([u8; 32]);

impl WorkKey {
    /// The key of (registry, repository, digest).
    pub(super) fn new(registry: &str, repository: &str, digest: &Digest) -> WorkKey {
        let algorithm = match digest.algorithm() {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        };
        WorkKey::of(&[registry, repository, algorithm, digest.hex()])
    }

    /// The key of (`at`'s registry, `at`'s repository, digest).
    pub(super) fn at(at: &Reference, digest: &Digest) -> WorkKey {
        WorkKey::new(at.registry(), at.repository(), digest)
    }

    /// The key of a list of parts.
    pub(super) fn of(parts: &[&str]) -> WorkKey {
        let mut hash = Sha256::new();
        for part in parts {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        WorkKey(hash.finalize().into())
    }
}

/// One piece of work: its shared result and when it finished.
pub(super) struct Work<T> {
    /// Set once by whichever caller runs the work; waiters share it.
    pub(super) cell: tokio::sync::OnceCell<T>,
    /// When the result was set.
    done_at: OnceLock<Instant>,
}

impl<T> Work<T> {
    fn new() -> Work<T> {
        Work {
            cell: tokio::sync::OnceCell::new(),
            done_at: OnceLock::new(),
        }
    }

    /// Record that the result is set.
    pub(super) fn finished(&self) {
        let _ = self.done_at.set(Instant::now());
    }

    /// True while in flight, or when it finished at or after `since`.
    fn usable_since(&self, since: Instant) -> bool {
        self.done_at.get().is_none_or(|t| *t >= since)
    }
}

/// Work in flight in the runs of one engine, by key; weak references only.
pub(super) struct Table<T> {
    map: Mutex<TableInner<T>>,
}

struct TableInner<T> {
    entries: HashMap<WorkKey, Weak<Work<T>>>,
    /// Dead entries are swept when the map reaches this size.
    sweep_at: usize,
}

const FIRST_SWEEP: usize = 1024;

impl<T> Table<T> {
    fn new() -> Table<T> {
        Table {
            map: Mutex::new(TableInner {
                entries: HashMap::new(),
                sweep_at: FIRST_SWEEP,
            }),
        }
    }

    /// Entries whose work some run still holds (for tests and metrics).
    #[cfg(test)]
    fn live(&self) -> usize {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entries
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

/// The tables of blob transfers and manifest pushes in flight, owned by a
/// [`super::Engine`] (see the module docs for their lifetime).
pub(super) struct Tables {
    pub(super) blobs: Table<super::BlobResult>,
    pub(super) manifests: Table<super::ManifestResult>,
}

impl Default for Tables {
    fn default() -> Tables {
        Tables {
            blobs: Table::new(),
            manifests: Table::new(),
        }
    }
}

/// One lock per key, kept only while some task holds it or waits for it:
/// entries nobody holds are swept as the map grows, so the map stays within
/// about twice the locks in use.
pub(super) struct Locks {
    /// The locks, and the size at which unused ones are swept next.
    map: Mutex<(LockMap, usize)>,
}

type LockMap = HashMap<WorkKey, Weak<tokio::sync::Mutex<()>>>;

impl Default for Locks {
    fn default() -> Locks {
        Locks {
            map: Mutex::new((HashMap::new(), FIRST_SWEEP)),
        }
    }
}

impl Locks {
    /// The lock of `key`: the one in use, else a new one.
    pub(super) fn of(&self, key: WorkKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut guard = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (map, sweep_at) = &mut *guard;
        if let Some(lock) = map.get(&key).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key, Arc::downgrade(&lock));
        if map.len() >= *sweep_at {
            map.retain(|_, l| l.strong_count() > 0);
            *sweep_at = (map.len() * 2).max(FIRST_SWEEP);
        }
        lock
    }

    /// Keys whose lock is in use (for tests).
    #[cfg(test)]
    fn live(&self) -> usize {
        let guard = self.map.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.values().filter(|l| l.strong_count() > 0).count()
    }
}

/// The work one run started or joined. Dropped with the run.
pub(super) struct RunWork<T> {
    started: Instant,
    held: Mutex<HashMap<WorkKey, Arc<Work<T>>>>,
}

impl<T> RunWork<T> {
    pub(super) fn new(started: Instant) -> RunWork<T> {
        RunWork {
            started,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// The work for `key`: this run's own, else work of another run that is
    /// in flight or finished since this run started, else new work.
    pub(super) fn join(&self, table: &Table<T>, key: &WorkKey) -> Arc<Work<T>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = held.get(key) {
            return w.clone();
        }
        let mut map = table.map.lock().unwrap_or_else(|p| p.into_inner());
        let work = match map.entries.get(key).and_then(Weak::upgrade) {
            Some(w) if w.usable_since(self.started) => w,
            _ => {
                let w = Arc::new(Work::new());
                map.entries.insert(*key, Arc::downgrade(&w));
                if map.entries.len() >= map.sweep_at {
                    map.entries.retain(|_, w| w.strong_count() > 0);
                    map.sweep_at = (map.entries.len() * 2).max(FIRST_SWEEP);
                }
                w
            }
        };
        held.insert(*key, work.clone());
        work
    }

    /// This run's own finished work for `key`, if any.
    pub(super) fn finished(&self, key: &WorkKey) -> Option<Arc<Work<T>>> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(key).filter(|w| w.cell.initialized()).cloned()
    }

    /// Forget failed work so that later requests (not those already
    /// waiting on it) try again.
    pub(super) fn forget(&self, table: &Table<T>, key: &WorkKey, work: &Arc<Work<T>>) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.get(key).is_some_and(|w| Arc::ptr_eq(w, work)) {
            held.remove(key);
        }
        let mut map = table.map.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .entries
            .get(key)
            .and_then(Weak::upgrade)
            .is_some_and(|w| Arc::ptr_eq(&w, work))
        {
            map.entries.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> WorkKey {
        WorkKey::new("r", "repo", &Digest::sha256_of(&[n]))
    }

    #[tokio::test]
    async fn runs_share_work_in_flight_but_not_older_results() {
        let table: Table<u32> = Table::new();
        let a = RunWork::new(Instant::now());
        let b = RunWork::new(Instant::now());
        let wa = a.join(&table, &key(1));
        // In flight: another run joins the same work.
        let wb = b.join(&table, &key(1));
        assert!(Arc::ptr_eq(&wa, &wb));
        wa.cell.get_or_init(|| async { 7 }).await;
        wa.finished();
        // A run started after the work finished starts afresh.
        let c = RunWork::new(Instant::now());
        let wc = c.join(&table, &key(1));
        assert!(!Arc::ptr_eq(&wa, &wc));
        assert!(wc.cell.get().is_none());
        // The same run keeps its own result.
        assert!(Arc::ptr_eq(&a.join(&table, &key(1)), &wa));
        drop((a, b, c, wa, wb, wc));
        assert_eq!(table.live(), 0, "entries die with the runs that held them");
    }

    #[tokio::test]
    async fn a_lock_is_shared_while_in_use_and_swept_after() {
        let locks = Locks::default();
        let a = locks.of(key(1));
        let guard = a.clone().lock_owned().await;
        assert!(
            Arc::ptr_eq(&a, &locks.of(key(1))),
            "one lock per key in use"
        );
        assert!(locks.of(key(1)).try_lock().is_err(), "held by the guard");
        drop((guard, a));
        for n in 0..2 * FIRST_SWEEP + 5 {
            let _ = locks.of(WorkKey::of(&[&n.to_string()]));
        }
        assert_eq!(locks.live(), 0);
        let guard = locks.map.lock().unwrap();
        assert!(guard.0.len() < FIRST_SWEEP, "unused locks are swept");
    }

    #[tokio::test]
    async fn forgotten_work_is_started_again() {
        let table: Table<u32> = Table::new();
        let a = RunWork::new(Instant::now());
        let w = a.join(&table, &key(2));
        a.forget(&table, &key(2), &w);
        assert!(!Arc::ptr_eq(&a.join(&table, &key(2)), &w));
    }
}
