//! The end of a sync run for mirrors whose target is an `oci-archive:`: the
//! archive is packed once the run's images are in its temporary layout.

use crate::registry::Client;

use super::model::Mirror;
use super::run::{MirrorReport, RunResult};

/// Pack the archives the run wrote (see [`Client::finish_layouts`]). When
/// packing fails, every mirror with an archive target fails with the error:
/// the archive file was left as it was before the run.
pub async fn finish(client: &Client, mirrors: &[&Mirror], reports: &mut [MirrorReport]) {
    let Err(e) = client.finish_layouts().await else {
        return;
    };
    tracing::error!(error = %e, "writing the archive failed");
    for (m, r) in mirrors.iter().zip(reports.iter_mut()) {
        if m.target.layout().is_some_and(|l| l.archive) {
            r.errors.push(e.to_string());
            r.result = RunResult::Failed;
        }
    }
}
