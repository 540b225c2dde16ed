//! The source's referrer reads of one fanned-out image, made once for
//! every target: the referrers API's answer about each subject, each
//! subject's fallback index (`sha256-<hex>` tag) and the digest each of
//! cosign's tags (`sha256-<hex>.sig`, `.att`, `.sbom`) names. The referrer
//! manifests themselves are fetched once by digest through the share's
//! manifests, and their blobs through its spool files, like the image's
//! own. Each target still asks itself what it lacks (its own listing, its
//! own HEADs), so only the source side is shared.
//!
//! A read that fails is not kept: the next target to need it asks again,
//! and only the targets that waited on it see the error. Lifetime: the
//! [`super::SourceShare`]'s (the copies of one source image to its
//! targets). Size: one entry per subject and cosign tag that the targets'
//! referrer walks visit, which the walk's limits bound (see
//! [`crate::copy::referrers::limits`]); each entry is an answer or a
//! manifest a single target's walk reads anyway.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::{SourceShare, lock};
use crate::registry::referrers::ApiAnswer;
use crate::registry::{Client, Digest, Error, RawManifest, Reference};

/// One read, made by the first target that needs it.
type Cell<T> = Arc<OnceCell<T>>;

/// (source repository, subject, `artifactType` filter asked for).
type ApiKey = (String, Digest, Option<String>);

/// (source repository, subject).
type SubjectKey = (String, Digest);

/// What the source answered about its referrers (see the module doc).
#[derive(Default)]
pub(super) struct ReferrerReads {
    /// The referrers API's answers.
    api: Mutex<HashMap<ApiKey, Cell<ApiAnswer>>>,
    /// Fallback indexes, per (repository, subject): `None` when there is none.
    fallback: Mutex<HashMap<SubjectKey, Cell<Option<RawManifest>>>>,
    /// The HEAD of a tag, per reference: `None` when the tag does not
    /// exist, `Some(None)` when the registry sent no digest.
    heads: Mutex<HashMap<String, Cell<Option<Option<Digest>>>>>,
}

/// The cell of `key` in `map`, made empty when missing.
fn cell<K: Eq + std::hash::Hash, T>(map: &Mutex<HashMap<K, Cell<T>>>, key: K) -> Cell<T> {
    lock(map).entry(key).or_default().clone()
}

impl SourceShare {
    /// The source's referrers API answer about `subject` in `repo` (with
    /// the `artifactType` `filter`), asked by `ask` once for every target.
    pub(in crate::copy) async fn referrers_api<F, Fut, E>(
        &self,
        repo: &Reference,
        subject: &Digest,
        filter: Option<&str>,
        ask: F,
    ) -> Result<ApiAnswer, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ApiAnswer, E>>,
    {
        let key = (repo.name(), subject.clone(), filter.map(str::to_string));
        cell(&self.referrers.api, key)
            .get_or_try_init(ask)
            .await
            .cloned()
    }

    /// The source's fallback index of `subject` in `repo` (see
    /// [`Client::fallback_index`]), read once for every target.
    pub(in crate::copy) async fn fallback_index(
        &self,
        client: &Client,
        repo: &Reference,
        subject: &Digest,
    ) -> Result<Option<RawManifest>, Error> {
        cell(&self.referrers.fallback, (repo.name(), subject.clone()))
            .get_or_try_init(|| client.fallback_index(repo, subject))
            .await
            .cloned()
    }

    /// The digest the source's tag `at` names, by one HEAD for every
    /// target: `None` when the tag does not exist, `Some(None)` when the
    /// registry sent no digest.
    pub(in crate::copy) async fn tag_digest(
        &self,
        client: &Client,
        at: &Reference,
    ) -> Result<Option<Option<Digest>>, Error> {
        cell(&self.referrers.heads, at.to_string())
            .get_or_try_init(|| async {
                Ok(client.head_manifest(at).await?.map(|head| head.digest))
            })
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::copy::SourceShares;

    #[tokio::test]
    async fn an_answer_is_asked_once_and_a_failure_is_not_kept() {
        let share = SourceShares::default().get("m", "src.example/app:1");
        let repo = Reference::parse("src.example/app").unwrap();
        let subject = Digest::sha256_of(b"subject");
        let asked = AtomicUsize::new(0);
        let ask = |ok: bool| {
            let asked = &asked;
            move || async move {
                asked.fetch_add(1, Ordering::SeqCst);
                if ok {
                    Ok(ApiAnswer::Absent)
                } else {
                    Err("the source broke off")
                }
            }
        };
        let failed = share.referrers_api(&repo, &subject, None, ask(false)).await;
        assert_eq!(failed, Err("the source broke off"));
        for _ in 0..3 {
            let answer = share.referrers_api(&repo, &subject, None, ask(true)).await;
            assert_eq!(answer, Ok(ApiAnswer::Absent));
        }
        assert_eq!(
            asked.load(Ordering::SeqCst),
            2,
            "the failure, then one answer"
        );
        let other = share
            .referrers_api(&repo, &subject, Some("application/spdx+json"), ask(true))
            .await;
        assert_eq!(other, Ok(ApiAnswer::Absent));
        assert_eq!(
            asked.load(Ordering::SeqCst),
            3,
            "another filter is another question"
        );
    }
}
