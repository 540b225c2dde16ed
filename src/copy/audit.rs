//! Auditing a mirrored image where it was written: the tag's digest against
//! the source's (or a digest the caller expects), every child manifest and
//! blob of the graph present with the size its parent lists (HEAD; with
//! `deep`, every blob read again and hashed as it streams, in bounded
//! memory), and every referrer the source lists (signatures, SBOMs,
//! attestations, cosign's tags, of the index and of each platform
//! manifest, and their own referrers) present at the target.
//!
//! Requests: the source is asked by HEAD (its tag), by its tag list and by
//! its referrer listings (the referrers API, else the fallback index of a
//! subject whose `sha256-<hex>` tag it lists); never a manifest GET for the
//! image itself. Only the target's manifests are read by GET, where their
//! children must be walked. [`heal`] copies back what an audit found missing.

mod finding;
mod heal;
mod image;
mod referrers;
mod walk;

pub use finding::{
    AuditError, AuditOptions, Checked, Finding, FindingKind, ImageAudit, PolicyStatus, Verdict,
};
pub use heal::{HealOutcome, Unrepaired, heal};
pub use image::audit_image;
