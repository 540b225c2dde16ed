//! Healing an audited image from its source: missing blobs copied again,
//! damaged blobs deleted at the target and copied again, missing child
//! manifests and referrers copied by digest (each with what it needs),
//! missing cosign tags copied, then the image
//! itself copied again with its referrers and the tag set last (a moved
//! tag goes back to the source's digest). The image is then audited again:
//! what is no longer found was repaired.

use serde::Serialize;

use crate::registry::{Client, Digest, Reference};

use super::super::{Copier, CopyOptions, ReferrerOptions};
use super::finding::{AuditError, AuditOptions, Finding, FindingKind, ImageAudit};
use super::image::audit_image;

/// A finding a heal did not repair, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Unrepaired {
    /// What is still wrong.
    pub finding: Finding,
    /// Why it is still wrong, and what to do.
    pub reason: String,
}

/// What a heal did.
#[derive(Debug, Clone, Serialize)]
pub struct HealOutcome {
    /// The findings gone after the heal.
    pub repaired: Vec<Finding>,
    /// The findings left (with why).
    pub unrepaired: Vec<Unrepaired>,
    /// The audit after the heal.
    pub after: ImageAudit,
}

/// Repair what `audit` found in `target` from `source`. `copy`: how the
/// image is copied (its platforms, referrers); the tag is forced back.
pub async fn heal(
    copier: &Copier,
    source: &Reference,
    target: &Reference,
    audit: &ImageAudit,
    copy: &CopyOptions,
    options: &AuditOptions,
) -> Result<HealOutcome, AuditError> {
    let mut failed = repair_parts(copier, source, target, audit, copy).await;
    // The image again, its referrers, and the tag last.
    let again = CopyOptions {
        force: true,
        ..copy.clone()
    };
    let from = match &audit.expected_digest {
        Some(d) if target.tag().is_some() => source.with_digest(d.clone()),
        _ => source.clone(),
    };
    if let Err(e) = copier.new_run().copy(&from, target, &again).await {
        let reason = format!("copying {from} to {target} again failed: {e}");
        for f in audit.findings.iter().filter(|f| f.parent.is_none()) {
            failed.push((f.clone(), reason.clone()));
        }
    }
    let after = audit_image(
        copier.client(),
        Some(source),
        target,
        audit.expected_digest.as_ref(),
        options,
    )
    .await?;
    Ok(outcome(&audit.findings, after, &failed))
}

/// Repair each finding below the tag: blobs, child manifests, referrers
/// and cosign tags. The findings that could not be, with why.
async fn repair_parts(
    copier: &Copier,
    source: &Reference,
    target: &Reference,
    audit: &ImageAudit,
    copy: &CopyOptions,
) -> Vec<(Finding, String)> {
    let (src, dst) = (source.repository_only(), target.repository_only());
    let by_digest = CopyOptions {
        platforms: Vec::new(),
        force: false,
        referrers: ReferrerOptions::default(),
        ..copy.clone()
    };
    let mut failed = Vec::new();
    for f in &audit.findings {
        let done = match (f.kind, &f.digest, &f.tag) {
            (FindingKind::MissingBlob, Some(d), _) => {
                copy_blob(copier.client(), &src, &dst, d).await
            }
            (FindingKind::BlobDigest | FindingKind::BlobSize, Some(d), _) => {
                replace_blob(copier.client(), &src, &dst, d).await
            }
            (FindingKind::MissingReferrer, _, Some(tag)) => {
                let tagged = CopyOptions {
                    force: true,
                    ..by_digest.clone()
                };
                match (src.with_tag(tag), dst.with_tag(tag)) {
                    (Ok(from), Ok(to)) => copier.copy(&from, &to, &tagged).await.map(|_| ()),
                    _ => Ok(()),
                }
                .map_err(|e| e.to_string())
            }
            (FindingKind::MissingReferrer, Some(d), None)
            | (FindingKind::MissingManifest, Some(d), None)
                if f.parent.is_some() =>
            {
                copier
                    .copy(&src.with_digest(d.clone()), &dst, &by_digest)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            _ => Ok(()),
        };
        if let Err(reason) = done {
            failed.push((f.clone(), reason));
        }
    }
    failed
}

/// What the heal repaired: the findings of `before` that `after` lacks,
/// and those left with the reason their repair failed, if it did.
fn outcome(before: &[Finding], after: ImageAudit, failed: &[(Finding, String)]) -> HealOutcome {
    let repaired = before
        .iter()
        .filter(|f| !after.findings.iter().any(|a| same(a, f)))
        .cloned()
        .collect();
    let unrepaired = after
        .findings
        .iter()
        .map(|f| Unrepaired {
            finding: f.clone(),
            reason: failed
                .iter()
                .find(|(g, _)| same(g, f))
                .map(|(_, r)| r.clone())
                .unwrap_or_else(|| still_found(f)),
        })
        .collect();
    HealOutcome {
        repaired,
        unrepaired,
        after,
    }
}

/// Why `f` is still found when its repair raised no error.
fn still_found(f: &Finding) -> String {
    match (f.kind, &f.digest) {
        (FindingKind::BlobDigest | FindingKind::BlobSize, Some(d)) => format!(
            "blob {d} was deleted at the target and uploaded again, but the registry still \
             serves the damaged bytes: it keeps a blob's stored file after a delete (until \
             garbage collection) and does not replace it with an upload of the same digest \
             (Distribution's registry behaves so); delete blob {d}'s file in the registry's storage \
             (filesystem: docker/registry/v2/blobs/sha256/<first two hex digits>/<hex>/data), \
             then run `regmirror verify --heal` again"
        ),
        _ => "still found after the repair".to_string(),
    }
}

/// The same finding (kind, digest and tag) in two audits.
fn same(a: &Finding, b: &Finding) -> bool {
    a.kind == b.kind && a.digest == b.digest && a.tag == b.tag
}

/// Replace the damaged blob `d` at `dst`: DELETE it there, then copy it
/// again from `src`. A registry that refuses deletes is reported with its
/// own words and what to do.
async fn replace_blob(
    client: &Client,
    src: &Reference,
    dst: &Reference,
    d: &Digest,
) -> Result<(), String> {
    if let Err(e) = client.delete_blob(dst, d).await {
        let what = match (e.status(), e.to_string()) {
            (Some(405), _) => "the registry does not allow deletes (HTTP 405)",
            (_, text) if text.contains("UNSUPPORTED") => {
                "the registry does not allow deletes (UNSUPPORTED)"
            }
            (Some(401 | 403), _) => "the credentials lack delete permission for this repository",
            _ => "the registry refused the delete",
        };
        return Err(format!(
            "the damaged blob {d} must be deleted at {} before it can be copied again, but \
             {what} ({e}): enable deletes (distribution: storage.delete.enabled: true) and run \
             `regmirror verify --heal` again, or delete blob {d}'s file in the registry's \
             storage and run it again",
            dst.name()
        ));
    }
    copy_blob(client, src, dst, d).await
}

/// Copy blob `d` from `src` to `dst`, streamed (the upload verifies it).
async fn copy_blob(
    client: &Client,
    src: &Reference,
    dst: &Reference,
    d: &Digest,
) -> Result<(), String> {
    let size = client
        .head_blob(src, d)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the source {} no longer has blob {d}", src.name()))?;
    let reader = client.get_blob(src, d).await.map_err(|e| e.to_string())?;
    let session = client.start_upload(dst).await.map_err(|e| e.to_string())?;
    client
        .upload_blob(session, d, size, reader.stream)
        .await
        .map_err(|e| e.to_string())
}
