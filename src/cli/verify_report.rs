//! The report of `regmirror verify`: each image's entry (verdict,
//! findings, policy, heal), the totals, the JSON document of `--report`
//! and the readable summary.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use regmirror::copy::audit::{Checked, Finding, ImageAudit, PolicyStatus, Unrepaired, Verdict};
use regmirror::copy::policy::RejectReason;
use regmirror::registry::Digest;

use super::Exit;
use super::oneshot::{OneShot, word};
use super::out::outln;
use super::report::SCHEMA_VERSION;

/// One image's entry in the report.
#[derive(Debug, Serialize)]
pub(super) struct Entry {
    pub(super) mirror: Option<String>,
    pub(super) source: Option<String>,
    pub(super) target: String,
    /// `complete`, `incomplete`, or `error` (the audit could not be made).
    pub(super) verdict: &'static str,
    pub(super) expected_digest: Option<Digest>,
    /// What `expected_digest` is: `source`, `last_mirrored`, `unknown` or `none`.
    pub(super) expected_from: &'static str,
    /// Why the source could not be asked, when it could not.
    pub(super) source_error: Option<String>,
    pub(super) target_digest: Option<Digest>,
    pub(super) findings: Vec<Finding>,
    pub(super) checked: Checked,
    /// `satisfied`, `rejected` or `not_configured`.
    pub(super) policy: &'static str,
    /// With `policy` = `rejected`: why.
    pub(super) policy_rejection: Option<PolicyRejection>,
    pub(super) error: Option<String>,
    pub(super) heal: Option<HealEntry>,
}

/// Why the signatures at the target do not satisfy the policy.
#[derive(Debug, Serialize)]
pub(super) struct PolicyRejection {
    pub(super) reason: RejectReason,
    pub(super) detail: String,
}

/// What `--heal` did for one image.
#[derive(Debug, Serialize)]
pub(super) struct HealEntry {
    pub(super) repaired: Vec<Finding>,
    pub(super) unrepaired: Vec<Unrepaired>,
}

/// Counts over every image.
#[derive(Debug, Default, Serialize)]
pub(super) struct Totals {
    pub(super) images: usize,
    pub(super) complete: usize,
    pub(super) incomplete: usize,
    pub(super) errors: usize,
    pub(super) findings: usize,
    pub(super) repaired: usize,
    pub(super) policy_rejected: usize,
}

/// The command's own part of the report.
#[derive(Debug, Serialize)]
pub(super) struct Detail {
    pub(super) totals: Totals,
    pub(super) images: Vec<Entry>,
    /// Mirror-level failures (a tag listing that failed).
    pub(super) errors: Vec<String>,
}

pub(super) fn entry_of(
    mirror: Option<String>,
    a: &ImageAudit,
    expected_from: &'static str,
    source_error: Option<String>,
) -> Entry {
    let (policy, policy_rejection) = policy_of(&a.policy);
    Entry {
        mirror,
        source: a.source.clone(),
        target: a.target.clone(),
        verdict: verdict_word(a.verdict),
        expected_digest: a.expected_digest.clone(),
        expected_from,
        source_error,
        target_digest: a.target_digest.clone(),
        findings: a.findings.clone(),
        checked: a.checked.clone(),
        policy,
        policy_rejection,
        error: None,
        heal: None,
    }
}

/// The report's words for a policy status.
pub(super) fn policy_of(p: &PolicyStatus) -> (&'static str, Option<PolicyRejection>) {
    let rejection = match p {
        PolicyStatus::Rejected { reason, detail } => Some(PolicyRejection {
            reason: *reason,
            detail: detail.clone(),
        }),
        _ => None,
    };
    (p.label(), rejection)
}

pub(super) fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Complete => "complete",
        Verdict::Incomplete => "incomplete",
    }
}

/// What the target tag was compared with, in words.
pub(super) fn compared_with(e: &Entry) -> String {
    match (e.expected_from, &e.expected_digest) {
        ("last_mirrored", Some(d)) => format!("the digest last mirrored there, {d}"),
        _ => "nothing: the run-state store has no record of the tag (unknown)".to_string(),
    }
}

/// Write the JSON document to `path` (also when the command failed).
pub(super) fn write_report(
    path: &Path,
    started: Instant,
    result: &anyhow::Result<(Exit, Detail)>,
) -> anyhow::Result<()> {
    let (exit, detail, error) = match result {
        Ok((exit, detail)) => (*exit, Some(detail), None),
        Err(e) => (
            super::exit_for_error(e),
            None,
            Some(super::out::error_chain(e)),
        ),
    };
    let doc = OneShot {
        schema_version: SCHEMA_VERSION,
        command: "verify",
        result: word(exit),
        exit_code: exit as u8,
        error,
        duration_seconds: started.elapsed().as_secs_f64(),
        detail,
    };
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(path, text + "\n").map_err(|e| {
        anyhow::anyhow!(
            "writing the report to {} failed: {e}; check that its directory exists and is \
             writable",
            path.display()
        )
    })
}

/// The readable summary: one line per image, its findings under it.
pub(super) fn print_text(d: &Detail) -> anyhow::Result<()> {
    for e in &d.images {
        let what = match e.verdict {
            "complete" => format!(
                "complete ({} manifests, {} blobs, {} referrers checked{})",
                e.checked.manifests,
                e.checked.blobs,
                e.checked.referrers,
                if e.checked.bytes_hashed > 0 {
                    format!(", {} bytes hashed", e.checked.bytes_hashed)
                } else {
                    String::new()
                }
            ),
            "incomplete" => format!("incomplete ({} findings)", e.findings.len()),
            _ => "not verified".to_string(),
        };
        outln!("{}: {what}", e.target)?;
        if let Some(err) = &e.error {
            outln!("  error: {err}")?;
        }
        if let Some(err) = &e.source_error {
            outln!(
                "  source not asked ({err}): compared with {}",
                compared_with(e)
            )?;
        }
        if let Some(r) = &e.policy_rejection {
            outln!("  signature policy rejected ({}): {}", r.reason, r.detail)?;
        } else if e.policy == "satisfied" {
            outln!("  signature policy satisfied at the target")?;
        }
        for f in &e.findings {
            outln!("  {}: {}", f.kind.label(), f.detail)?;
        }
        if let Some(h) = &e.heal {
            for f in &h.repaired {
                outln!("  repaired {}: {}", f.kind.label(), f.detail)?;
            }
            for u in &h.unrepaired {
                outln!(
                    "  not repaired {}: {} ({})",
                    u.finding.kind.label(),
                    u.finding.detail,
                    u.reason
                )?;
            }
        }
    }
    for err in &d.errors {
        super::out::error(err);
    }
    let t = &d.totals;
    outln!(
        "verified {} images: {} complete, {} incomplete, {} not verified; {} findings{}",
        t.images,
        t.complete,
        t.incomplete,
        t.errors,
        t.findings,
        if t.repaired > 0 {
            format!(", {} repaired", t.repaired)
        } else {
            String::new()
        }
    )?;
    Ok(())
}
