//! Pull budget of a copy: before the manifest GETs of each level of an image
//! graph, their cost (one GET per manifest the target lacks) is checked
//! against the source registry's announced allowance and its
//! `pull_budget_floor`; an image that would spend into the floor is
//! deferred, not failed. Planning writes nothing, so a deferred image left
//! nothing half-written at the target. The registry layer refuses any
//! single manifest GET below the floor as well, so concurrent images never
//! spend it together (one of them is deferred mid-plan instead).
//!
//! Nothing is remembered here: the allowance lives in the client (see
//! [`crate::registry::ratelimit`]).

use std::collections::HashSet;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt, TryStreamExt};

use crate::registry::ratelimit::Refusal;
use crate::registry::{Descriptor, Digest, Error, Reference};

use super::{Copier, CopyError};

/// Turn a registry's pull-budget refusal into a deferral of `image`.
pub(super) fn as_deferral(e: CopyError, image: &str) -> CopyError {
    match e {
        CopyError::Registry(Error::PullBudget { refusal, .. }) => CopyError::Deferred {
            image: image.to_string(),
            refusal,
        },
        other => other,
    }
}

impl CopyError {
    /// The pull-budget refusal when this error is a deferral.
    pub fn deferral(&self) -> Option<&Refusal> {
        match self {
            CopyError::Deferred { refusal, .. } => Some(refusal),
            CopyError::Registry(Error::PullBudget { refusal, .. }) => Some(refusal),
            CopyError::Shared(inner) => inner.deferral(),
            _ => None,
        }
    }
}

impl Copier {
    /// Defer `image` when `needed` manifest GETs from `source`'s registry
    /// would spend into its floor.
    pub(super) fn check_pulls(
        &self,
        source: &Reference,
        image: &str,
        needed: u64,
    ) -> Result<(), CopyError> {
        if needed == 0 {
            return Ok(());
        }
        let allowance = self.client.pull_allowance(source.registry())?;
        match allowance.refuse(needed) {
            Some(refusal) => {
                tracing::info!(image, registry = %refusal.registry, needed, available = ?refusal.available, floor = refusal.floor, "image deferred: pull budget");
                Err(CopyError::Deferred {
                    image: image.to_string(),
                    refusal,
                })
            }
            None => Ok(()),
        }
    }
}

/// The manifests of `level` the target repository already holds (one HEAD
/// each, `concurrency` at once).
pub(super) async fn present_at_target(
    copier: &Copier,
    dst_repo: &Reference,
    level: &[Descriptor],
    concurrency: usize,
) -> Result<HashSet<Digest>, CopyError> {
    let client = &copier.client;
    // Boxed so that the futures are `Send` for any caller (see `execute`).
    let jobs: Vec<BoxFuture<'_, Result<Option<Digest>, CopyError>>> = level
        .iter()
        .map(|d| {
            async move {
                let at = dst_repo.with_digest(d.digest.clone());
                Ok(client.head_manifest(&at).await?.map(|_| d.digest.clone()))
            }
            .boxed()
        })
        .collect();
    let found: Vec<Option<Digest>> = futures_util::stream::iter(jobs)
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}
