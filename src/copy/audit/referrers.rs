//! The referrers of an audited image: for each manifest of the graph, the
//! referrers the listing repository names (the source's, or the target's
//! own when it is audited alone) and cosign's `sha256-<hex>.sig`, `.att`
//! and `.sbom` tags, each looked for at the target, walked like an image,
//! and their own referrers after them, to the referrer depth limit.

use std::collections::HashSet;

use crate::registry::referrers::{
    ApiAnswer, fallback_index_of, fallback_tag, listed_descriptors, type_unknown,
};
use crate::registry::{Client, Descriptor, Digest, Error, Reference};

use super::super::referrers::COSIGN_SUFFIXES;
use super::finding::{Finding, FindingKind};
use super::walk::Walker;

/// Where referrers are listed: a repository, its tags (listed once; `None`
/// when the listing failed) and whether it has the referrers API.
struct Listing<'a> {
    client: &'a Client,
    repo: &'a Reference,
    tags: Option<HashSet<String>>,
    api: Option<bool>,
    /// True when `repo` is the source (the target must hold what it lists).
    source: bool,
}

/// Check the referrers of `subjects` (and theirs, level by level).
pub(super) async fn check(
    walker: &mut Walker<'_>,
    repo: &Reference,
    source: bool,
    subjects: Vec<Digest>,
) -> Result<(), Error> {
    let ro = walker.options.referrers.clone();
    if !ro.active() {
        return Ok(());
    }
    let client = walker.client;
    let tags = match client.list_tags_unreported(repo).await {
        Ok(l) => Some(l.tags.into_iter().collect()),
        Err(e) => {
            tracing::debug!(repository = %repo.name(), error = %e, "tags not listed: referrer tags looked up one by one");
            None
        }
    };
    let mut listing = Listing {
        client,
        repo,
        tags,
        api: None,
        source,
    };
    let mut level = subjects;
    for _ in 0..ro.limits.depth.max(1) {
        let mut next = Vec::new();
        for subject in &level {
            if ro.cosign_tags {
                cosign_tags(walker, &listing, subject).await?;
            }
            if ro.enabled {
                next.extend(listed(walker, &mut listing, subject).await?);
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    Ok(())
}

impl Listing<'_> {
    /// True when the tag list is known and lacks `tag`.
    fn lacks(&self, tag: &str) -> bool {
        self.tags.as_ref().is_some_and(|t| !t.contains(tag))
    }

    /// The referrers listed for `subject`: the API's answer, else the
    /// fallback index's entries (one GET, only when its tag is listed).
    async fn of(&mut self, subject: &Digest) -> Result<Vec<Descriptor>, Error> {
        if self.api != Some(false) {
            match self.client.referrers_api(self.repo, subject, None).await? {
                ApiAnswer::Listed { descriptors, .. } => {
                    self.api = Some(true);
                    return Ok(descriptors);
                }
                ApiAnswer::Absent => self.api = Some(false),
            }
        }
        if self.lacks(&fallback_tag(subject)) {
            return Ok(Vec::new());
        }
        let Some(raw) = self.client.fallback_index(self.repo, subject).await? else {
            return Ok(Vec::new());
        };
        match fallback_index_of(&raw) {
            Ok(index) => Ok(listed_descriptors(&index)),
            Err(why) => {
                tracing::warn!(repository = %self.repo.name(), subject = %subject, reason = %why, "the fallback index of this subject cannot be read: its referrers were not checked");
                Ok(Vec::new())
            }
        }
    }
}

/// The listed referrers of `subject`: each read at the target and walked;
/// a missing one is a finding. The digests found, for the next level.
async fn listed(
    walker: &mut Walker<'_>,
    listing: &mut Listing<'_>,
    subject: &Digest,
) -> Result<Vec<Digest>, Error> {
    let mut found = Vec::new();
    for d in listing.of(subject).await? {
        let refused = !type_unknown(&d)
            && d.artifact_type
                .as_deref()
                .is_some_and(|t| !walker.options.referrers.wants(t));
        if d.digest == *subject || refused || !walker.first_visit(&d.digest) {
            continue;
        }
        walker.checked.referrers += 1;
        let at = walker.repo.with_digest(d.digest.clone());
        match walker.client.get_manifest(&at).await {
            Ok(raw) => {
                walker.graph(raw).await?;
                found.push(d.digest);
            }
            Err(e) if e.is_not_found() => walker.found(Finding {
                kind: FindingKind::MissingReferrer,
                detail: format!(
                    "referrer {at} ({}) of {subject}, listed by {}, is missing",
                    d.artifact_type.as_deref().unwrap_or(&d.media_type),
                    listing.repo.name()
                ),
                digest: Some(d.digest),
                tag: None,
                expected: None,
                actual: None,
                parent: Some(subject.clone()),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}

/// cosign's tags of `subject` the listing repository has: the target must
/// hold each at the same digest (compared by HEAD), then it is walked.
async fn cosign_tags(
    walker: &mut Walker<'_>,
    listing: &Listing<'_>,
    subject: &Digest,
) -> Result<(), Error> {
    for suffix in COSIGN_SUFFIXES {
        let tag = format!("{}.{suffix}", fallback_tag(subject));
        if listing.lacks(&tag) {
            continue;
        }
        let (Ok(listed), Ok(at)) = (listing.repo.with_tag(&tag), walker.repo.with_tag(&tag)) else {
            continue;
        };
        let Some(head) = walker.client.head_manifest(&listed).await? else {
            continue;
        };
        walker.checked.referrers += 1;
        if listing.source {
            let there = walker.client.head_manifest(&at).await?;
            let held = there.as_ref().and_then(|h| h.digest.clone());
            let same = match (&head.digest, &held) {
                (Some(want), Some(got)) => want == got,
                (None, _) => there.is_some(),
                (Some(_), None) => false,
            };
            if !same {
                walker.found(cosign_finding(&at, subject, &tag, head.digest, held));
                continue;
            }
        }
        match walker.client.get_manifest(&at).await {
            Ok(raw) if walker.first_visit(&raw.digest) => {
                walker.graph(raw).await?;
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn cosign_finding(
    at: &Reference,
    subject: &Digest,
    tag: &str,
    want: Option<Digest>,
    held: Option<Digest>,
) -> Finding {
    let detail = match (&want, &held) {
        (Some(w), Some(h)) => {
            format!("cosign tag {at} of {subject} holds {h}; the source's holds {w}")
        }
        _ => format!("cosign tag {at} of {subject} is missing"),
    };
    Finding {
        kind: FindingKind::MissingReferrer,
        expected: want.as_ref().map(ToString::to_string),
        digest: want,
        tag: Some(tag.to_string()),
        actual: held.map(|d| d.to_string()),
        parent: Some(subject.clone()),
        detail,
    }
}
