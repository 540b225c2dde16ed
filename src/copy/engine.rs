//! The copy engine's shared state: what copies running at the same time
//! must agree on, whatever run they belong to.
//!
//! An [`Engine`] holds the work in flight (one blob transfer and one
//! manifest push per target repository and digest, see [`super::work`]) and
//! the locks of the referrers fallback-index writers (one writer per target
//! repository and subject). Its lifetime is chosen by whoever creates it:
//! `serve` creates one for the whole process and hands it to every run of
//! every mirror, across reloads, so that two mirrors (or a run and a reload
//! that overlaps it) never write the same repository link at once; a CLI
//! command creates one for the command. Entries are weak: each lives while
//! some run holds it, so an engine that lives for months stays small.
//!
//! What one run remembers (work done, blobs known present, tag listings)
//! is not here but in the run's [`super::Copier`].

use std::sync::Arc;

use super::referrers::WriterLocks;
use super::work::Tables;

/// The state copies share across runs (see the module docs for its
/// lifetime). Cheap to clone: clones share the same state.
#[derive(Clone, Default)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    tables: Tables,
    writers: WriterLocks,
}

impl Engine {
    /// A new engine, sharing nothing with any other.
    pub fn new() -> Engine {
        Engine::default()
    }

    /// The work in flight, by kind.
    pub(super) fn tables(&self) -> &Tables {
        &self.inner.tables
    }

    /// The locks of the referrers fallback-index writers.
    pub(super) fn writers(&self) -> &WriterLocks {
        &self.inner.writers
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}
