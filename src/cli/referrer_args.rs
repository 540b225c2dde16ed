//! The referrer options of one-shot copies (`import`).

use regmirror::copy::ReferrerOptions;

/// Which referrers (signatures, SBOMs, attestations) a copy takes along.
#[derive(Debug, Clone, clap::Args)]
pub struct ReferrerArgs {
    /// Copy the image's referrers (signatures, SBOMs, attestations, cosign
    /// `.sig`/`.att`/`.sbom` tags) too; the default.
    #[arg(long, conflicts_with = "no_referrers")]
    pub referrers: bool,
    /// Copy the image graph only, without its referrers or cosign tags.
    #[arg(long)]
    pub no_referrers: bool,
    /// Copy only referrers of this artifact type (repeatable; default: every type).
    #[arg(long, value_name = "TYPE")]
    pub referrer_type: Vec<String>,
    /// Never copy referrers of this artifact type (repeatable).
    #[arg(long, value_name = "TYPE")]
    pub exclude_referrer_type: Vec<String>,
    /// Leave cosign's legacy `sha256-<hex>.sig`/`.att`/`.sbom` tags out.
    #[arg(long)]
    pub no_cosign_tags: bool,
}

/// The engine's options for these arguments.
pub fn options(a: &ReferrerArgs) -> ReferrerOptions {
    ReferrerOptions {
        enabled: !a.no_referrers,
        types: a.referrer_type.clone(),
        exclude_types: a.exclude_referrer_type.clone(),
        cosign_tags: !a.no_cosign_tags && !a.no_referrers,
        ..ReferrerOptions::default()
    }
}
