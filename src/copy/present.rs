//! What one run already learnt about its target repositories, so that it
//! does not ask again: whether each blob is in each target repository (one
//! HEAD per blob and repository, shared by every image planning at once;
//! a blob sent or mounted is known present), and what a target tag held
//! when the sync's compare step asked.
//!
//! Lifetime: one run (it lives in the run's [`super::Copier`] memory and is
//! dropped with it); nothing here is trusted by a later run. Both are
//! bounded: past [`MAX_BLOBS`] blobs or [`MAX_HEADS`] tags nothing more is
//! remembered, and what is not remembered is asked of the registry as
//! before. A blob deleted from a target repository during the run makes the
//! manifest PUT that relies on it fail (`MANIFEST_BLOB_UNKNOWN`); the copy
//! is then planned once more with that repository's memory cleared (see
//! [`Present::forget_repository`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::registry::{Digest, Reference};

/// Most blobs remembered present, over every target repository of a run.
pub const MAX_BLOBS: usize = 65_536;
/// Most target tags whose compare answer waits for its copy.
pub const MAX_HEADS: usize = 4_096;

/// The memory (see the module docs).
#[derive(Default)]
pub(super) struct Present {
    blobs: Mutex<Blobs>,
    /// Target tag (`registry/repository:tag`) → the digest it held when the
    /// compare step asked (`None`: no such tag); taken by the copy's plan.
    heads: Mutex<HashMap<String, Option<Digest>>>,
}

#[derive(Default)]
struct Blobs {
    /// (registry, repository) → what the run knows of each blob there.
    by_repo: HashMap<(String, String), HashMap<Digest, Arc<Known>>>,
    count: usize,
}

/// What the run knows of one blob in one repository.
#[derive(Default)]
struct Known {
    /// Sent, mounted or found there.
    present: AtomicBool,
    /// The answer of the one HEAD asked (true: there); planners asking at
    /// once share it. Absent means "send it": the run's transfer of the
    /// blob (see [`super::work`]) is shared too.
    head: tokio::sync::OnceCell<bool>,
}

fn repo_key(repo: &Reference) -> (String, String) {
    (repo.registry().to_string(), repo.repository().to_string())
}

impl Present {
    /// What the run knows of `digest` in `repo`; `None` when the bound is
    /// reached.
    fn known(&self, repo: &Reference, digest: &Digest) -> Option<Arc<Known>> {
        let mut blobs = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        let full = blobs.count >= MAX_BLOBS;
        let in_repo = blobs.by_repo.entry(repo_key(repo)).or_default();
        if let Some(k) = in_repo.get(digest) {
            return Some(k.clone());
        }
        if full {
            return None;
        }
        let k = Arc::new(Known::default());
        in_repo.insert(digest.clone(), k.clone());
        blobs.count += 1;
        Some(k)
    }

    /// `digest` is in `repo` (found by a HEAD, sent, mounted).
    pub(super) fn note_blob(&self, repo: &Reference, digest: &Digest) {
        if let Some(k) = self.known(repo, digest) {
            k.present.store(true, Ordering::Relaxed);
        }
    }

    /// Whether `digest` is in `repo`: true when this run knows it is, else
    /// the answer of `head` (the registry's), asked once per run for every
    /// planner asking at once or later; a failed `head` is asked again by
    /// the next planner.
    pub(super) async fn blob_present<E, F>(
        &self,
        repo: &Reference,
        digest: &Digest,
        head: F,
    ) -> Result<bool, E>
    where
        F: Future<Output = Result<bool, E>>,
    {
        let Some(k) = self.known(repo, digest) else {
            return head.await;
        };
        if k.present.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let found = *k.head.get_or_try_init(|| head).await?;
        if found {
            k.present.store(true, Ordering::Relaxed);
        }
        Ok(found)
    }

    /// Forget every blob of `repo`'s repository; true when there were some.
    pub(super) fn forget_repository(&self, repo: &Reference) -> bool {
        let mut blobs = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        match blobs.by_repo.remove(&repo_key(repo)) {
            Some(gone) => {
                blobs.count -= gone.len();
                !gone.is_empty()
            }
            None => false,
        }
    }

    /// The compare step found `current` at the tag `target`.
    pub(super) fn note_head(&self, target: &Reference, current: Option<Digest>) {
        if target.tag().is_none() || target.digest().is_some() {
            return;
        }
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        if heads.len() < MAX_HEADS {
            heads.insert(target.to_string(), current);
        }
    }

    /// What the compare step found at `probe`, once: a later plan of the
    /// same tag asks the registry again.
    pub(super) fn take_head(&self, probe: &Reference) -> Option<Option<Digest>> {
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        heads.remove(&probe.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    /// Whether `p` answers for `digest` in `repo` without asking, and what.
    async fn ask(p: &Present, repo: &Reference, digest: &Digest, answer: bool) -> (bool, bool) {
        let asked = AtomicBool::new(false);
        let found = p
            .blob_present(repo, digest, async {
                asked.store(true, Ordering::Relaxed);
                Ok::<_, ()>(answer)
            })
            .await
            .unwrap();
        (found, asked.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn blobs_are_asked_once_per_repository_and_forgotten_by_repository() {
        let p = Present::default();
        let a = Reference::parse("localhost:1/a").unwrap();
        let b = Reference::parse("localhost:1/b").unwrap();
        p.note_blob(&a, &d(1));
        assert_eq!(ask(&p, &a, &d(1), false).await, (true, false));
        assert_eq!(
            ask(&p, &b, &d(1), true).await,
            (true, true),
            "per repository"
        );
        assert_eq!(ask(&p, &b, &d(1), false).await, (true, false), "asked once");
        assert_eq!(ask(&p, &a, &d(2), false).await, (false, true));
        assert_eq!(
            ask(&p, &a, &d(2), true).await,
            (false, false),
            "absent: send it"
        );
        p.note_blob(&a, &d(2));
        assert_eq!(ask(&p, &a, &d(2), false).await, (true, false), "sent since");
        assert!(p.forget_repository(&a));
        assert_eq!(
            ask(&p, &a, &d(1), false).await,
            (false, true),
            "asked again"
        );
        assert_eq!(ask(&p, &b, &d(1), false).await, (true, false), "b kept");
        let c = Reference::parse("localhost:1/c").unwrap();
        assert!(!p.forget_repository(&c), "nothing to forget");
    }

    #[tokio::test]
    async fn blobs_past_the_bound_are_asked_every_time() {
        let p = Present::default();
        let a = Reference::parse("localhost:1/a").unwrap();
        for i in 0..MAX_BLOBS {
            let digest = Digest::sha256_of(&(i as u64).to_le_bytes());
            p.note_blob(&a, &digest);
        }
        p.note_blob(&a, &d(1));
        assert_eq!(ask(&p, &a, &d(1), false).await, (false, true));
        assert_eq!(ask(&p, &a, &d(1), true).await, (true, true));
        p.forget_repository(&a);
        p.note_blob(&a, &d(1));
        assert_eq!(ask(&p, &a, &d(1), false).await, (true, false), "room again");
    }

    #[test]
    fn a_compare_answer_is_taken_once_and_only_for_tags() {
        let p = Present::default();
        let tag = Reference::parse("localhost:1/a:v1").unwrap();
        p.note_head(&tag, Some(d(1)));
        assert_eq!(p.take_head(&tag), Some(Some(d(1))));
        assert_eq!(p.take_head(&tag), None, "taken once");
        p.note_head(&tag, None);
        assert_eq!(p.take_head(&tag), Some(None));
        let by_digest = tag.with_digest(d(2));
        p.note_head(&by_digest, None);
        assert_eq!(p.take_head(&by_digest), None);
    }
}
