//! Independent checks that a mirrored [`SignedImage`] is complete on a
//! target: the tag's bytes equal the source's (by `skopeo inspect --raw`),
//! the whole graph is in place, every signature verifies against the public
//! key, and every subject lists the same referrers as on the source, through
//! the API where the target has it (and then no fallback tag exists) or
//! through the fallback index where it does not.
//!
//! cosign does not require the payload's `docker-reference` to name the
//! repository the image is read from (signatures stay valid on mirrors), so
//! neither does this check.

use super::artifacts::{Listing, SignedImage, Source, fallback_tag, list_referrers};
use super::cosign::verify_signed;
use super::ferro::AnyRegistry;
use super::skopeo::skopeo_raw_manifest;
use super::verify::graph_problems;

/// One end of a mirror: a registry and a repository.
#[derive(Clone, Copy, Debug)]
pub struct At<'a> {
    pub reg: AnyRegistry<'a>,
    pub repo: &'a str,
}

impl<'a> At<'a> {
    pub fn new(reg: impl Into<AnyRegistry<'a>>, repo: &'a str) -> At<'a> {
        At {
            reg: reg.into(),
            repo,
        }
    }

    /// `skopeo inspect --raw` digest of `reference` (tag or digest).
    pub async fn skopeo_digest(&self, reference: &str) -> anyhow::Result<String> {
        let r = if reference.starts_with("sha256:") {
            format!("{}@{reference}", self.repo)
        } else {
            format!("{}:{reference}", self.repo)
        };
        let raw = skopeo_raw_manifest(&self.reg.skopeo(&r)).await?;
        Ok(super::sha256_digest(&raw))
    }

    /// The referrers of `subject` here.
    pub async fn referrers(&self, subject: &str) -> anyhow::Result<Listing> {
        list_referrers(&self.reg.pusher(), self.repo, subject).await
    }
}

/// Everything wrong with `img` mirrored from `src` to `dst` as `tag`, for
/// the subjects in `subjects` ([`SignedImage::referrer_subjects`] for a
/// full copy): those of them that the source signed must verify, and all
/// must list the source's referrers.
pub async fn mirror_problems(
    img: &SignedImage,
    src: At<'_>,
    dst: At<'_>,
    tag: &str,
    subjects: &[String],
) -> Vec<String> {
    let mut p = Vec::new();
    let want = img.index.digest();
    match (src.skopeo_digest(tag).await, dst.skopeo_digest(tag).await) {
        (Ok(s), Ok(d)) if s == want && d == want => {}
        (s, d) => p.push(format!(
            "{tag}: skopeo sees {d:?} on the target, {s:?} on the source, want {want}"
        )),
    }
    let pusher = dst.reg.pusher();
    p.extend(graph_problems(&pusher, dst.repo, tag, want).await);
    let key = img.key.public();
    for d in subjects {
        if img.signed.contains(d)
            && let Err(e) = verify_signed(&pusher, dst.repo, d, &key, 1).await
        {
            p.push(format!("signature of {d}: {e:#}"));
        }
        p.extend(referrer_problems(src, dst, d).await);
    }
    p
}

/// Whether `subject`'s referrers on `dst` are the source's, stored the
/// way `dst` supports, with byte-identical manifests.
pub async fn referrer_problems(src: At<'_>, dst: At<'_>, subject: &str) -> Vec<String> {
    let mut p = Vec::new();
    let (s, d) = match (src.referrers(subject).await, dst.referrers(subject).await) {
        (Ok(s), Ok(d)) => (s, d),
        (s, d) => {
            return vec![format!(
                "referrers of {subject}: source {s:?}, target {d:?}"
            )];
        }
    };
    if s.keys() != d.keys() {
        p.push(format!(
            "referrers of {subject}: source {:?}, target {:?}",
            s.keys(),
            d.keys()
        ));
    }
    if d.descriptors.is_empty() {
        return p;
    }
    let expected = if dst.reg.has_referrers_api() {
        Source::Api
    } else {
        Source::FallbackTag
    };
    if d.source != expected {
        p.push(format!(
            "referrers of {subject} on the {} target come from {:?}",
            dst.reg.kind(),
            d.source
        ));
    }
    if dst.reg.has_referrers_api() {
        match dst
            .reg
            .pusher()
            .manifest_exists(dst.repo, &fallback_tag(subject))
            .await
        {
            Ok(false) => {}
            other => p.push(format!(
                "a fallback tag for {subject} on a target with the API: {other:?}"
            )),
        }
    }
    for (digest, _) in d.keys() {
        match dst.skopeo_digest(&digest).await {
            Ok(got) if got == digest => {}
            other => p.push(format!("referrer {digest} on the target: {other:?}")),
        }
    }
    p
}
