//! The end of a run that wrote OCI layouts or archives: each archive the
//! run wrote is packed once, now (`oci-layout` first, blobs, `index.json`
//! last), and every layout's writer lock is released. A failure to pack
//! fails each mirror that targets a layout: its images are in a temporary
//! layout, not in the archive.

use super::config::Mirror;
use super::run::{ImageResult, MirrorReport, RunResult};
use crate::registry::Client;

/// True when `mirror` writes into an OCI layout or archive.
pub fn targets_layout(mirror: &Mirror) -> bool {
    mirror.target.is_layout()
        || mirror
            .discovery
            .as_ref()
            .is_some_and(|d| d.target_layout.is_some())
}

/// Finish the layouts of `client` after a run of `mirrors`, whose reports
/// are `reports` (same order); a failure lands in the reports of the
/// mirrors that target a layout.
pub async fn finish_layouts(client: &Client, mirrors: &[Mirror], reports: &mut [MirrorReport]) {
    if !mirrors.iter().any(targets_layout) {
        return;
    }
    let Err(e) = client.finish_layouts().await else {
        return;
    };
    tracing::error!(error = %e, "packing the layouts of the run failed");
    for (m, r) in mirrors.iter().zip(reports.iter_mut()) {
        if !targets_layout(m) {
            continue;
        }
        r.errors.push(format!(
            "mirror {:?}: writing {} at the end of the run failed, so its images are not in it: {e}",
            m.name,
            m.target.name()
        ));
        let succeeded = r.images.iter().any(|i| {
            matches!(
                i.result,
                ImageResult::Copied | ImageResult::Skipped | ImageResult::WouldCopy
            )
        });
        r.result = if succeeded {
            RunResult::Partial
        } else {
            RunResult::Failed
        };
    }
}
