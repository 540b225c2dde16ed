//! Scheduled audits in `serve`: a mirror with an `audit_schedule` is
//! verified at each slot of it (the images a run of it selects now,
//! checked at the target against the source, as `regmirror verify --config`
//! does), and `regmirror_audit_missing{mirror}` holds what the last audit
//! found: its findings plus the images it could not check. A slot that
//! comes while the mirror runs is skipped (the target is changing), as is
//! a slot that comes while the previous audit is still going.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::copy::audit::{AuditOptions, PolicyStatus, audit_image};
use crate::metrics;
use crate::registry::Client;
use crate::sync::{Mirror, Syncer};

/// Images audited at once per mirror.
const AUDIT_CONCURRENCY: usize = 4;

/// What an audit loop needs from the daemon.
pub(super) struct AuditCtx {
    pub(super) client: Client,
    pub(super) syncer: Syncer,
    /// The mirror's run lock: held while the mirror runs.
    pub(super) running: Arc<tokio::sync::Mutex<()>>,
    /// Ends the loop (the generation was replaced).
    pub(super) cancel: CancellationToken,
    /// Ends the loop (shutdown).
    pub(super) stop: CancellationToken,
}

/// Start `mirror`'s audit schedule, when it has one. Its gauge starts at 0
/// (nothing found yet) so that the series exists before the first audit.
pub(super) fn spawn(ctx: AuditCtx, mirror: Mirror) {
    if mirror.audit_schedule.is_none() {
        return;
    }
    metrics::set_audit_missing(&mirror.name, 0);
    tokio::spawn(audit_loop(ctx, mirror));
}

async fn audit_loop(ctx: AuditCtx, mirror: Mirror) {
    let Some(schedule) = mirror.audit_schedule.clone() else {
        return;
    };
    let mut last_slot = Utc::now();
    loop {
        let now = Utc::now().max(last_slot);
        let Some(next) = schedule.next_after(now) else {
            tracing::warn!(mirror = %mirror.name, audit_schedule = %schedule, "audit schedule has no further slot");
            return;
        };
        last_slot = next;
        let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.cancel.cancelled() => return,
            _ = ctx.stop.cancelled() => return,
        }
        if ctx.running.try_lock().is_err() {
            tracing::info!(mirror = %mirror.name, slot = %next, "the mirror is running: this audit slot is skipped");
            continue;
        }
        tokio::select! {
            missing = audit_mirror(&ctx, &mirror) => {
                metrics::set_audit_missing(&mirror.name, missing);
            }
            _ = ctx.cancel.cancelled() => return,
            _ = ctx.stop.cancelled() => return,
        }
    }
}

/// Audit every image `mirror` selects now; the findings plus the images
/// (and tag listings) that could not be checked. Each is logged.
async fn audit_mirror(ctx: &AuditCtx, mirror: &Mirror) -> usize {
    let (pairs, errors) = ctx.syncer.selected_pairs(mirror).await;
    for e in &errors {
        tracing::warn!(mirror = %mirror.name, error = %e, "audit: the mirror's images could not be listed");
    }
    let options = AuditOptions {
        referrers: mirror.referrers.clone(),
        policy: mirror.policy.clone(),
        ..AuditOptions::default()
    };
    let images = pairs.len();
    let counts: Vec<usize> = futures_util::stream::iter(pairs)
        .map(|(source, target)| {
            let options = &options;
            async move {
                match audit_image(&ctx.client, Some(&source), &target, None, options).await {
                    Ok(a) => {
                        for f in &a.findings {
                            tracing::warn!(mirror = %mirror.name, target_ref = %target, finding = f.kind.label(), detail = %f.detail, "audit finding");
                        }
                        if let PolicyStatus::Rejected { reason, .. } = &a.policy {
                            tracing::warn!(mirror = %mirror.name, target_ref = %target, reason = %reason, "audit: the signature policy is not satisfied at the target");
                        }
                        a.findings.len() + usize::from(matches!(a.policy, PolicyStatus::Rejected { .. }))
                    }
                    Err(e) => {
                        tracing::warn!(mirror = %mirror.name, target_ref = %target, error = %e, "audit: the image could not be checked");
                        1
                    }
                }
            }
        })
        .buffer_unordered(AUDIT_CONCURRENCY)
        .collect()
        .await;
    let missing = counts.iter().sum::<usize>() + errors.len();
    tracing::info!(mirror = %mirror.name, images, missing, "audit finished");
    missing
}
