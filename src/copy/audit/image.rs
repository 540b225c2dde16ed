//! The audit of one image: its tag against the source's digest, then its
//! graph and its referrers at the target.

use crate::copy::ANNOTATION_SOURCE_DIGEST;
use crate::copy::policy::{self, Verdict as PolicyVerdict};
use crate::registry::manifest::Manifest;
use crate::registry::{Client, Digest, RawManifest, Reference};

use super::finding::{
    AuditError, AuditOptions, Finding, FindingKind, ImageAudit, PolicyStatus, Verdict,
};
use super::{referrers, walk};

/// Audit `target` (a tag or a digest). `source`: the image it mirrors,
/// whose tag is resolved by HEAD and whose referrers must be at the target;
/// `None`: the target alone (its own graph and the referrers it lists).
/// `expected`: the digest the target must hold, instead of the source's.
pub async fn audit_image(
    client: &Client,
    source: Option<&Reference>,
    target: &Reference,
    expected: Option<&Digest>,
    options: &AuditOptions,
) -> Result<ImageAudit, AuditError> {
    let expected = match (expected, source) {
        (Some(d), _) => Some(d.clone()),
        (None, Some(s)) => Some(source_digest(client, s).await?),
        (None, None) => None,
    };
    let mut walker = walk::Walker::new(client, target.repository_only(), options);
    let root = walker.root(target, expected.as_ref()).await?;
    let target_digest = root.as_ref().map(|r| r.digest.clone());
    if let (Some(root), Some(want)) = (&root, &expected)
        && root.digest != *want
        && !filtered_from(root, want)
    {
        walker.found(Finding {
            kind: FindingKind::TagMoved,
            digest: Some(want.clone()),
            tag: target.tag().map(str::to_string),
            expected: Some(want.to_string()),
            actual: Some(root.digest.to_string()),
            parent: None,
            detail: format!(
                "{target} holds {} instead of {want}{}",
                root.digest,
                source.map_or(String::new(), |s| format!(" ({s} now)"))
            ),
        });
    }
    let mut policy = PolicyStatus::NotConfigured;
    if let Some(root) = root {
        policy = policy_status(client, target, &root, options).await?;
        let subjects = walker.graph(root).await?;
        let listing = source.map_or_else(|| target.repository_only(), Reference::repository_only);
        referrers::check(&mut walker, &listing, source.is_some(), subjects).await?;
    }
    let (findings, checked) = walker.finish();
    Ok(ImageAudit {
        source: source.map(ToString::to_string),
        target: target.to_string(),
        expected_digest: expected,
        target_digest,
        verdict: if findings.is_empty() && !matches!(policy, PolicyStatus::Rejected { .. }) {
            Verdict::Complete
        } else {
            Verdict::Incomplete
        },
        findings,
        checked,
        policy,
    })
}

/// The signature policy's verdict at the target, judged by
/// [`policy::check`] in the target repository: the signatures of the
/// digest the tag holds (of the source digest a platform-filtered index
/// records, when it records one), else of each platform manifest it lists.
async fn policy_status(
    client: &Client,
    target: &Reference,
    root: &RawManifest,
    options: &AuditOptions,
) -> Result<PolicyStatus, AuditError> {
    let Some(p) = &options.policy else {
        return Ok(PolicyStatus::NotConfigured);
    };
    let judged = recorded_source(root).unwrap_or_else(|| root.digest.clone());
    Ok(
        match policy::check(p, client, target, &judged, root).await? {
            PolicyVerdict::Accepted { .. } => PolicyStatus::Satisfied,
            PolicyVerdict::Rejected { reason, detail } => PolicyStatus::Rejected { reason, detail },
        },
    )
}

/// The source digest a platform-filtered index records, if `root` is one.
fn recorded_source(root: &RawManifest) -> Option<Digest> {
    match root.parse() {
        Ok(Manifest::Index(i)) => i
            .annotations
            .get(ANNOTATION_SOURCE_DIGEST)
            .and_then(|d| d.parse().ok()),
        _ => None,
    }
}

/// The digest `source` names now: by HEAD (a GET only when the registry
/// sends no digest with its answer).
async fn source_digest(client: &Client, source: &Reference) -> Result<Digest, AuditError> {
    if let Some(d) = source.digest() {
        return Ok(d.clone());
    }
    let unreachable = |e| AuditError::SourceUnreachable(source.to_string(), e);
    match client.head_manifest(source).await.map_err(unreachable)? {
        None => Err(AuditError::SourceMissing(source.to_string())),
        Some(head) => match head.digest {
            Some(d) => Ok(d),
            None => Ok(client
                .get_manifest(source)
                .await
                .map_err(unreachable)?
                .digest),
        },
    }
}

/// True when `root` is a platform-filtered index made from `source_digest`.
fn filtered_from(root: &RawManifest, source_digest: &Digest) -> bool {
    recorded_source(root).is_some_and(|d| d == *source_digest)
}
