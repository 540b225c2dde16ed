//! The images a run has finished so far, kept as they finish, so that a
//! command abandoned half-way (a second interrupt) can still report what
//! it wrote.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::{ImageReport, MirrorReport, RunResult, SyncReport};
use crate::sync::model::Mirror;

/// Finished image reports, shared by the clones of a [`super::Syncer`]
/// given it with [`super::Syncer::with_journal`]. Clone is cheap.
#[derive(Clone)]
pub struct Journal {
    started: Instant,
    done: Arc<Mutex<Vec<(String, ImageReport)>>>,
}

impl Default for Journal {
    fn default() -> Self {
        Journal::new()
    }
}

impl Journal {
    /// An empty journal; durations in its reports count from now.
    pub fn new() -> Journal {
        Journal {
            started: Instant::now(),
            done: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Note the final report of one image of `mirror`; a later report of
    /// the same image (a deferred image retried) replaces the earlier one.
    pub(super) fn record(&self, mirror: &str, report: &ImageReport) {
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let same = |(m, r): &(String, ImageReport)| {
            m == mirror && r.source == report.source && r.target == report.target
        };
        match done.iter_mut().find(|e| same(e)) {
            Some(entry) => entry.1 = report.clone(),
            None => done.push((mirror.to_string(), report.clone())),
        }
    }

    /// The report of a run of `mirrors` abandoned now: each mirror holds
    /// the images it finished and is `interrupted`.
    pub fn interrupted_report(&self, mirrors: &[Mirror]) -> SyncReport {
        let done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let seconds = self.started.elapsed().as_secs_f64();
        let mirrors = mirrors
            .iter()
            .map(|m| MirrorReport {
                name: m.name.clone(),
                result: RunResult::Interrupted,
                errors: Vec::new(),
                images: done
                    .iter()
                    .filter(|(name, _)| *name == m.name)
                    .map(|(_, r)| r.clone())
                    .collect(),
                invalid_tags: 0,
                duration_seconds: seconds,
                prune: None,
                discovered: None,
            })
            .collect();
        SyncReport { mirrors }
    }
}
