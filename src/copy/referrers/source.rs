//! The source side of a referrer copy: the referrers API's answers, the
//! fallback indexes, cosign's tags and the referrer manifests, read through
//! the image's fan-out share when it goes to several targets (once for all
//! of them; see [`crate::copy::SourceShare`]), else from the source (or
//! the run's memory) for the one target.

use crate::registry::referrers::ApiAnswer;
use crate::registry::{Digest, RawManifest, Reference};

use super::super::{Copier, CopyError, CopyOptions};

impl Copier {
    /// The source's referrers API answer about `subject` in `src`: once
    /// per fanned-out image, else asked of the source.
    pub(super) async fn source_api(
        &self,
        src: &Reference,
        subject: &Digest,
        filter: Option<&str>,
        options: &CopyOptions,
    ) -> Result<ApiAnswer, CopyError> {
        match &options.fan_out {
            Some(share) => {
                share
                    .referrers_api(src, subject, filter, || {
                        self.api_listing(src, subject, filter)
                    })
                    .await
            }
            None => self.api_listing(src, subject, filter).await,
        }
    }

    /// The source's fallback index of `subject` in `src` (`None`: none).
    pub(super) async fn source_fallback(
        &self,
        src: &Reference,
        subject: &Digest,
        options: &CopyOptions,
    ) -> Result<Option<RawManifest>, CopyError> {
        Ok(match &options.fan_out {
            Some(share) => share.fallback_index(&self.client, src, subject).await?,
            None => self.client.fallback_index(src, subject).await?,
        })
    }

    /// The digest the source's tag `at` names by HEAD: `None` when the tag
    /// does not exist, `Some(None)` when the registry sent no digest.
    pub(super) async fn source_tag_digest(
        &self,
        at: &Reference,
        options: &CopyOptions,
    ) -> Result<Option<Option<Digest>>, CopyError> {
        Ok(match &options.fan_out {
            Some(share) => share.tag_digest(&self.client, at).await?,
            None => self.client.head_manifest(at).await?.map(|h| h.digest),
        })
    }

    /// The source manifest `at` names by digest, verified: once per
    /// fanned-out image, else from the run's memory or one GET.
    pub(super) async fn source_manifest(
        &self,
        at: &Reference,
        options: &CopyOptions,
    ) -> Result<RawManifest, CopyError> {
        super::super::plan::fetch_root(self, options, at).await
    }
}
