//! The run-state store: what runs remember across runs and processes, in
//! one `redb` file (`state.redb`) under the config's `state_dir`.
//!
//! It is a cache. Deleting it, or a file that cannot be read (moved aside
//! as `state.redb.corrupt-<unix time>` and started anew, with a warning),
//! costs requests, never correctness: every entry (see [`tables`], each
//! with its lifetime) only lets a run skip a check it could make, or try a
//! mount that falls back to an upload.
//!
//! One process at a time: `redb` locks the file. A second process (two
//! `sync`s, a CLI run beside `serve`) finds it locked and works without the
//! store, with a warning: it checks every tag and mounts only within its own
//! run. A per-process file would not be shared with any later run and
//! would be left behind by every process that died; sharing one writer
//! across processes is what the lock forbids. Give each long-lived process
//! (each shard) its own `state_dir` to give each its own memory.
//!
//! Writes are buffered in memory and committed in one transaction at the
//! end of each mirror run (and every [`FLUSH_EVERY`] entries): a process
//! killed mid-run loses that run's entries, never the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redb::{Database, DatabaseError, ReadableDatabase};

pub mod clock;
pub mod tables;

use tables::{BLOBS, FIRST_SEEN, NO_REFERRERS, OLD_TAGS, TAGS, blob_key, repository_key, tag_key};

use crate::copy::{BlobLocations, ReferrerMemory};
use crate::registry::Digest;

/// The store's file name under `state_dir`.
pub const FILE_NAME: &str = "state.redb";

/// Buffered entries past which a write commits before the run ends.
pub const FLUSH_EVERY: usize = 1024;

/// Repositories returned for one blob at most (the most recently seen).
const MAX_LOCATIONS: usize = 4;

/// What a run recorded of one tag it mirrored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    /// When it was last checked or copied (Unix seconds).
    pub checked: u64,
    /// The source digest then.
    pub source_digest: String,
    /// The target digest then.
    pub target_digest: String,
    /// The shape of the copy then: a fingerprint of the mirror's settings
    /// that change what a copy writes (empty when unknown).
    pub shape: String,
}

/// Why an image was held (result `held`): its source digest is younger
/// than the mirror's `min_age`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Held {
    /// When this run's source digest of the tag was first seen (RFC 3339).
    pub first_seen: String,
    /// When it becomes eligible for copying (RFC 3339): the first run from
    /// then on copies it.
    pub eligible_at: String,
}

/// Entries not committed yet.
#[derive(Default)]
struct Pending {
    blobs: HashMap<String, u64>,
    tags: HashMap<String, TagRecord>,
    first_seen: HashMap<String, (u64, u64, String)>,
    /// `None`: drop the entry.
    no_referrers: HashMap<String, Option<u64>>,
}

impl Pending {
    fn len(&self) -> usize {
        self.blobs.len() + self.tags.len() + self.first_seen.len() + self.no_referrers.len()
    }
}

/// The run-state store (see the module doc).
pub struct StateStore {
    db: Database,
    path: PathBuf,
    pending: Mutex<Pending>,
}

/// Why the file could not be opened.
enum OpenError {
    /// Another process holds it.
    InUse,
    /// It is not a store this version can read.
    Unreadable(String),
}

impl StateStore {
    /// Open (or create) the store in `dir`, dropping expired entries. `None`,
    /// with a warning, when the store cannot be had: the run then works
    /// without it. A file that cannot be read is moved aside and replaced.
    pub fn open(dir: &Path) -> Option<Arc<StateStore>> {
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::warn!(state_dir = %dir.display(), error = %e,
                "cannot create the run-state directory; this run works without it (every tag is checked, no mount across runs): make state_dir writable or set another");
            return None;
        }
        let path = dir.join(FILE_NAME);
        match try_open(&path) {
            Ok(store) => Some(Arc::new(store)),
            Err(OpenError::InUse) => {
                tracing::warn!(path = %path.display(),
                    "the run-state store is in use by another regmirror process; this run works without it (every tag is checked, no mount across runs): give each concurrent process its own state_dir to keep one for each");
                None
            }
            Err(OpenError::Unreadable(e)) => recover(&path, &e),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record of `source` mirrored to `target` (tags included).
    pub fn tag(&self, source: &str, target: &str) -> Option<TagRecord> {
        let key = tag_key(source, target);
        let read = || -> Result<Option<TagRecord>, redb::Error> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(TAGS)?;
            Ok(table.get(key.as_str())?.map(|v| {
                let (checked, s, t, shape) = v.value();
                TagRecord {
                    checked,
                    source_digest: s.to_string(),
                    target_digest: t.to_string(),
                    shape: shape.to_string(),
                }
            }))
        };
        self.logged(read())
    }

    /// Note that `source` was found mirrored to `target` now, by a copy of
    /// `shape` (see [`TagRecord::shape`]).
    pub fn note_tag(
        &self,
        source: &str,
        target: &str,
        source_digest: &str,
        target_digest: &str,
        shape: &str,
    ) {
        let entry = TagRecord {
            checked: clock::now(),
            source_digest: source_digest.to_string(),
            target_digest: target_digest.to_string(),
            shape: shape.to_string(),
        };
        self.buffer(|p| {
            p.tags.insert(tag_key(source, target), entry);
        });
    }

    /// When `digest` was first seen under `source` (tag included), noting
    /// it seen now: a digest other than the one recorded is first seen now.
    pub fn first_seen(&self, source: &str, digest: &str) -> u64 {
        let now = clock::now();
        let pending = self.lock().first_seen.get(source).cloned();
        let known = pending.or_else(|| {
            let read = || -> Result<Option<(u64, u64, String)>, redb::Error> {
                let txn = self.db.begin_read()?;
                let table = txn.open_table(FIRST_SEEN)?;
                Ok(table.get(source)?.map(|v| {
                    let (first, last, d) = v.value();
                    (first, last, d.to_string())
                }))
            };
            self.logged(read())
        });
        let first = match known {
            Some((first, _, d)) if d == digest => first.min(now),
            _ => now,
        };
        self.buffer(|p| {
            p.first_seen
                .insert(source.to_string(), (first, now, digest.to_string()));
        });
        first
    }

    /// Commit the buffered entries; a failure is logged (the entries are
    /// lost, which costs later runs requests only).
    pub fn flush(&self) {
        let pending = std::mem::take(&mut *self.lock());
        if pending.len() == 0 {
            return;
        }
        if let Err(e) = commit(&self.db, pending) {
            tracing::warn!(path = %self.path.display(), error = %e,
                "could not write the run-state store; later runs may repeat checks this one made");
        }
    }

    /// Buffer an entry; commit when enough are buffered.
    fn buffer(&self, add: impl FnOnce(&mut Pending)) {
        let full = {
            let mut p = self.lock();
            add(&mut p);
            p.len() >= FLUSH_EVERY
        };
        if full {
            self.flush();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A read's value, or nothing (logged) when the store failed it.
    fn logged<T>(&self, r: Result<Option<T>, redb::Error>) -> Option<T> {
        r.unwrap_or_else(|e| {
            tracing::debug!(path = %self.path.display(), error = %e, "run-state store read failed; treated as unknown");
            None
        })
    }
}

impl BlobLocations for StateStore {
    fn record(&self, registry: &str, repository: &str, digest: &Digest) {
        let key = blob_key(registry, &digest.to_string(), repository);
        let now = clock::now();
        self.buffer(|p| {
            p.blobs.insert(key, now);
        });
    }

    fn find(&self, registry: &str, digest: &Digest) -> Vec<String> {
        let prefix = blob_key(registry, &digest.to_string(), "");
        let read = || -> Result<Option<Vec<(u64, String)>>, redb::Error> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(BLOBS)?;
            let mut found = Vec::new();
            for entry in table.range(prefix.as_str()..)? {
                let (k, v) = entry?;
                let Some(repo) = k.value().strip_prefix(prefix.as_str()) else {
                    break;
                };
                found.push((v.value(), repo.to_string()));
            }
            Ok(Some(found))
        };
        let mut found = self.logged(read()).unwrap_or_default();
        found.sort_by_key(|(seen, _)| std::cmp::Reverse(*seen));
        found.truncate(MAX_LOCATIONS);
        found.into_iter().map(|(_, r)| r).collect()
    }
}

impl ReferrerMemory for StateStore {
    fn remembers_none(&self, registry: &str, repository: &str, max_age: Duration) -> bool {
        let key = repository_key(registry, repository);
        let pending = self.lock().no_referrers.get(&key).cloned();
        let found = pending.unwrap_or_else(|| {
            let read = || -> Result<Option<u64>, redb::Error> {
                let txn = self.db.begin_read()?;
                let table = txn.open_table(NO_REFERRERS)?;
                Ok(table.get(key.as_str())?.map(|v| v.value()))
            };
            self.logged(read())
        });
        let trusted = max_age.as_secs().min(tables::NO_REFERRERS_LIFETIME);
        found.is_some_and(|at| {
            clock::now()
                .checked_sub(at)
                .is_some_and(|age| age < trusted)
        })
    }

    fn note(&self, registry: &str, repository: &str, none: bool) {
        let key = repository_key(registry, repository);
        let entry = none.then(clock::now);
        self.buffer(|p| {
            p.no_referrers.insert(key, entry);
        });
    }
}

/// Open the file at `path` and drop its expired entries.
fn try_open(path: &Path) -> Result<StateStore, OpenError> {
    let db = Database::create(path).map_err(|e| match e {
        DatabaseError::DatabaseAlreadyOpen => OpenError::InUse,
        e => OpenError::Unreadable(e.to_string()),
    })?;
    expire(&db, clock::now()).map_err(|e| OpenError::Unreadable(e.to_string()))?;
    Ok(StateStore {
        db,
        path: path.to_path_buf(),
        pending: Mutex::default(),
    })
}

/// Move an unreadable file aside and start a new one.
fn recover(path: &Path, error: &str) -> Option<Arc<StateStore>> {
    let aside = path.with_file_name(format!("{FILE_NAME}.corrupt-{}", clock::now()));
    if let Err(e) = std::fs::rename(path, &aside) {
        tracing::warn!(path = %path.display(), error = %e, "could not move the unreadable run-state store aside; this run works without it: delete the file");
        return None;
    }
    tracing::warn!(path = %path.display(), moved_to = %aside.display(), error = %error,
        "the run-state store could not be read; it was moved aside and a new one started (this run checks every tag and mounts only within itself)");
    match try_open(path) {
        Ok(store) => Some(Arc::new(store)),
        Err(OpenError::InUse) => None,
        Err(OpenError::Unreadable(e)) => {
            tracing::warn!(path = %path.display(), error = %e, "could not start a new run-state store; this run works without it");
            None
        }
    }
}

/// Drop the entries past their lifetime (this also creates missing tables
/// and fails on tables of another type: an unreadable store).
fn expire(db: &Database, now: u64) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let fresh = |seen: u64, lifetime: u64| seen.saturating_add(lifetime) > now;
        txn.open_table(BLOBS)?
            .retain(|_, seen| fresh(seen, tables::BLOB_LIFETIME))?;
        txn.delete_table(OLD_TAGS)?;
        txn.open_table(TAGS)?
            .retain(|_, (checked, _, _, _)| fresh(checked, tables::TAG_LIFETIME))?;
        txn.open_table(FIRST_SEEN)?
            .retain(|_, (_, last, _)| fresh(last, tables::FIRST_SEEN_LIFETIME))?;
        txn.open_table(NO_REFERRERS)?
            .retain(|_, at| fresh(at, tables::NO_REFERRERS_LIFETIME))?;
    }
    txn.commit()?;
    Ok(())
}

/// Write `pending` in one transaction.
fn commit(db: &Database, pending: Pending) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut blobs = txn.open_table(BLOBS)?;
        for (k, v) in &pending.blobs {
            blobs.insert(k.as_str(), *v)?;
        }
        let mut tags = txn.open_table(TAGS)?;
        for (k, r) in &pending.tags {
            let value = (
                r.checked,
                r.source_digest.as_str(),
                r.target_digest.as_str(),
                r.shape.as_str(),
            );
            tags.insert(k.as_str(), value)?;
        }
        let mut first = txn.open_table(FIRST_SEEN)?;
        for (k, (f, l, d)) in &pending.first_seen {
            first.insert(k.as_str(), (*f, *l, d.as_str()))?;
        }
        let mut none = txn.open_table(NO_REFERRERS)?;
        for (k, at) in &pending.no_referrers {
            match at {
                Some(at) => none.insert(k.as_str(), *at)?,
                None => none.remove(k.as_str())?,
            };
        }
    }
    txn.commit()?;
    Ok(())
}

impl Drop for StateStore {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests;
