//! Backup before overwrite: when a mirror is about to move a target tag to a
//! new digest, the digest it held first gets a backup tag, so a bad upstream
//! push can be rolled back from the mirror.
//!
//! `backup = "{tag}-prev"` names the backup of `tag`; with `backup_keep = N`
//! above 1 the template carries a counter, `{n}`: `{tag}-prev{n}` keeps
//! `1.0-prev1` (the digest the tag held last), `1.0-prev2` (the one before)
//! and so on up to N. A backup shifts the older ones up by one (the oldest
//! falls off and is left untagged), then writes the new one as `{n}` = 1.
//! A counter, not a timestamp: the number of backup tags is bounded by
//! construction, without listing or deleting anything (so it works on a
//! registry with deletion disabled), and the newest backup always has the
//! same name, the one a rollback runbook can say.
//!
//! Cost: one manifest HEAD on the target per tag that is about to move, then
//! one GET and one PUT per backup tag written (manifests only: the blobs are
//! already in the repository). Nothing is remembered across runs: every
//! backup is decided from what the target serves at that moment.
//!
//! Tags the template produces are never copied from the source (they would
//! overwrite backups) and never pruned.
//!
//! # Backup tags regmirror did not write
//!
//! A backup tag that already exists is overwritten (or shifted onto) only
//! when regmirror can tell it wrote it: a backup only ever holds a digest
//! the mirrored tag held, which regmirror copied from the source, so the
//! source serves that digest. A backup tag holding a digest the source does
//! not serve (a `v1-prev` pushed by hand, say) is never touched: the
//! backup is skipped with a warning naming the tag, and the copy goes on.
//! The price: when the source deleted an old digest, regmirror cannot tell
//! its own backup from a stranger's and skips too (delete or rename the
//! backup tag to let backups resume). Cost: one HEAD on the target and one
//! on the source per existing backup tag, only when a backup is written.

use serde::Serialize;

use crate::registry::reference::valid_tag;
use crate::registry::{Client, Digest, Reference};

pub use super::model::backup::{Backup, MAX_BACKUP_KEEP};

/// A backup written before a tag moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    /// The backup tag now holding the previous digest.
    pub tag: String,
    /// The digest the target tag held before the copy.
    pub digest: String,
    /// Older backups shifted up by one (`{n}` templates).
    pub shifted: usize,
}

impl Backup {
    /// Before `target` (a reference with a tag) moves to `new_digest`: give
    /// the digest it holds now a backup tag. `Ok(None)` when there is nothing
    /// to back up (no such tag yet, it already holds `new_digest`, or the
    /// newest backup already holds its digest).
    pub async fn before_overwrite(
        &self,
        client: &Client,
        source: &Reference,
        target: &Reference,
        new_digest: Option<&Digest>,
    ) -> Result<Option<BackupReport>, String> {
        let Some(tag) = target.tag() else {
            return Ok(None);
        };
        let old = match client.head_manifest(target).await {
            Ok(None) => return Ok(None),
            Ok(Some(head)) => match head.digest {
                Some(d) => d,
                None => {
                    client
                        .get_manifest(target)
                        .await
                        .map_err(|e| format!("reading {target} to back it up: {e}"))?
                        .digest
                }
            },
            Err(e) => return Err(format!("checking {target} to back it up: {e}")),
        };
        if Some(&old) == new_digest {
            return Ok(None);
        }
        let names: Vec<String> = (1..=self.keep()).map(|n| self.name(tag, n)).collect();
        if let Some(bad) = names.iter().find(|n| !valid_tag(n)) {
            return Err(format!(
                "backup tag {bad:?} of {target} is not a valid tag (at most 128 characters): \
                 shorten the backup template {:?}",
                self.template()
            ));
        }
        let repo = target.repository_only();
        let newest = repo.with_tag(&names[0]).map_err(|e| e.to_string())?;
        if let Ok(Some(head)) = client.head_manifest(&newest).await
            && head.digest.as_ref() == Some(&old)
        {
            return Ok(None);
        }
        if let Some(foreign) = foreign_backup(client, source, &repo, &names).await? {
            tracing::warn!(
                target_ref = %target,
                backup = %foreign,
                digest = %old,
                "backup skipped: the backup tag holds a digest the source does not serve, so \
                 regmirror did not write it and will not overwrite it; delete or rename it to \
                 let backups resume"
            );
            return Ok(None);
        }
        let mut shifted = 0;
        for i in (1..self.keep()).rev() {
            if shift(client, &repo, &names[i - 1], &names[i]).await? {
                shifted += 1;
            }
        }
        let manifest = client
            .get_manifest(&repo.with_digest(old.clone()))
            .await
            .map_err(|e| format!("reading {target} ({old}) to back it up: {e}"))?;
        client
            .put_manifest(&newest, &manifest)
            .await
            .map_err(|e| format!("writing backup tag {newest}: {e}"))?;
        tracing::info!(target_ref = %target, backup = %newest, digest = %old, "previous digest backed up");
        Ok(Some(BackupReport {
            tag: names[0].clone(),
            digest: old.to_string(),
            shifted,
        }))
    }
}

/// `tags` without those the mirror's backup template produces: copying a
/// source tag of that name would overwrite a backup. Each dropped tag is
/// logged.
pub fn without_backup_tags(mirror: &super::model::Mirror, tags: Vec<String>) -> Vec<String> {
    let Some(backup) = &mirror.backup else {
        return tags;
    };
    let (dropped, kept): (Vec<String>, Vec<String>) =
        tags.into_iter().partition(|t| backup.is_backup_tag(t));
    for t in &dropped {
        tracing::warn!(
            mirror = %mirror.name,
            tag = %t,
            template = %backup.template(),
            "source tag not mirrored: its name is one the backup template writes"
        );
    }
    kept
}

/// The first of the backup tags `names` that exists and holds a digest the
/// source does not serve (so regmirror did not write it); `None` when every
/// one is absent or regmirror's.
async fn foreign_backup(
    client: &Client,
    source: &Reference,
    repo: &Reference,
    names: &[String],
) -> Result<Option<Reference>, String> {
    for name in names {
        let tag = repo.with_tag(name).map_err(|e| e.to_string())?;
        let digest = match client.head_manifest(&tag).await {
            Ok(None) => continue,
            Ok(Some(head)) => match head.digest {
                Some(d) => d,
                None => {
                    client
                        .get_manifest(&tag)
                        .await
                        .map_err(|e| format!("reading backup tag {tag}: {e}"))?
                        .digest
                }
            },
            Err(e) => return Err(format!("checking backup tag {tag}: {e}")),
        };
        match client
            .head_manifest(&source.with_digest(digest.clone()))
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(Some(tag)),
            Err(e) if e.is_not_found() => return Ok(Some(tag)),
            Err(e) => {
                return Err(format!(
                    "checking whether the source serves {digest}, held by backup tag {tag}: {e}"
                ));
            }
        }
    }
    Ok(None)
}

/// Copy the manifest of backup tag `from` to backup tag `to`; false when
/// `from` does not exist.
async fn shift(client: &Client, repo: &Reference, from: &str, to: &str) -> Result<bool, String> {
    let from_ref = repo.with_tag(from).map_err(|e| e.to_string())?;
    let manifest = match client.get_manifest(&from_ref).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Ok(false),
        Err(e) => return Err(format!("reading backup tag {from_ref}: {e}")),
    };
    let to_ref = repo.with_tag(to).map_err(|e| e.to_string())?;
    client
        .put_manifest(&to_ref, &manifest)
        .await
        .map_err(|e| format!("shifting backup tag {from_ref} to {to}: {e}"))?;
    Ok(true)
}
