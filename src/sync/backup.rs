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

use regex::Regex;
use serde::Serialize;

use crate::registry::reference::valid_tag;
use crate::registry::{Client, Digest, Reference};

/// Largest `backup_keep`: each backup rewrites up to this many tags.
pub const MAX_BACKUP_KEEP: usize = 20;

/// A validated `backup` template with its `backup_keep`.
#[derive(Debug, Clone)]
pub struct Backup {
    template: String,
    keep: usize,
    matcher: Regex,
}

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
    /// Parse `template` with `keep` backups; an error says what is wrong.
    pub fn new(template: &str, keep: usize) -> Result<Backup, String> {
        let tag_count = template.matches("{tag}").count();
        if tag_count != 1 {
            return Err(format!(
                "backup template {template:?} must contain {{tag}} exactly once, e.g. \"{{tag}}-prev\""
            ));
        }
        let has_n = match template.matches("{n}").count() {
            0 => false,
            1 => true,
            _ => {
                return Err(format!(
                    "backup template {template:?} has {{n}} more than once"
                ));
            }
        };
        let literal = template.replace("{tag}", "").replace("{n}", "");
        if literal.is_empty() {
            return Err(format!(
                "backup template {template:?} names the tag itself: add a suffix or prefix, e.g. \"{{tag}}-prev\""
            ));
        }
        if !literal
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '{' | '}'))
        {
            return Err(format!(
                "backup template {template:?}: outside {{tag}} and {{n}} only letters, digits, '_', '.' and '-' are allowed"
            ));
        }
        if !(1..=MAX_BACKUP_KEEP).contains(&keep) {
            return Err(format!(
                "backup_keep = {keep}: expected 1 to {MAX_BACKUP_KEEP}"
            ));
        }
        if keep > 1 && !has_n {
            return Err(format!(
                "backup_keep = {keep} needs a counter in the template to name {keep} backups, e.g. \"{template}{{n}}\""
            ));
        }
        let mut pattern = String::from("^");
        let mut rest = template;
        while let Some(at) = rest.find('{') {
            pattern.push_str(&regex::escape(&rest[..at]));
            if rest[at..].starts_with("{tag}") {
                pattern.push_str(".+");
                rest = &rest[at + 5..];
            } else if rest[at..].starts_with("{n}") {
                pattern.push_str("[0-9]+");
                rest = &rest[at + 3..];
            } else {
                return Err(format!(
                    "backup template {template:?}: only {{tag}} and {{n}} may appear in braces"
                ));
            }
        }
        if rest.contains('}') {
            return Err(format!(
                "backup template {template:?}: only {{tag}} and {{n}} may appear in braces"
            ));
        }
        pattern.push_str(&regex::escape(rest));
        pattern.push('$');
        let matcher = Regex::new(&pattern).map_err(|e| format!("backup template: {e}"))?;
        Ok(Backup {
            template: template.to_string(),
            keep,
            matcher,
        })
    }

    /// The template as written.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// How many backups of one tag are kept.
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// The `n`th backup tag of `tag` (1 is the newest).
    pub fn name(&self, tag: &str, n: usize) -> String {
        self.template
            .replace("{n}", &n.to_string())
            .replace("{tag}", tag)
    }

    /// True when `tag` could have been written by this template (for any
    /// tag and counter): such tags are neither mirrored over nor pruned.
    pub fn is_backup_tag(&self, tag: &str) -> bool {
        self.matcher.is_match(tag)
    }

    /// Before `target` (a reference with a tag) moves to `new_digest`: give
    /// the digest it holds now a backup tag. `Ok(None)` when there is nothing
    /// to back up (no such tag yet, it already holds `new_digest`, or the
    /// newest backup already holds its digest).
    pub async fn before_overwrite(
        &self,
        client: &Client,
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
        let names: Vec<String> = (1..=self.keep).map(|n| self.name(tag, n)).collect();
        if let Some(bad) = names.iter().find(|n| !valid_tag(n)) {
            return Err(format!(
                "backup tag {bad:?} of {target} is not a valid tag (at most 128 characters): \
                 shorten the backup template {:?}",
                self.template
            ));
        }
        let repo = target.repository_only();
        let newest = repo.with_tag(&names[0]).map_err(|e| e.to_string())?;
        if let Ok(Some(head)) = client.head_manifest(&newest).await
            && head.digest.as_ref() == Some(&old)
        {
            return Ok(None);
        }
        let mut shifted = 0;
        for i in (1..self.keep).rev() {
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
        tracing::info!(target = %target, backup = %newest, digest = %old, "previous digest backed up");
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
pub fn without_backup_tags(mirror: &super::Mirror, tags: Vec<String>) -> Vec<String> {
    let Some(backup) = &mirror.backup else {
        return tags;
    };
    let (dropped, kept): (Vec<String>, Vec<String>) =
        tags.into_iter().partition(|t| backup.is_backup_tag(t));
    for t in &dropped {
        tracing::warn!(
            mirror = %mirror.name,
            tag = %t,
            template = %backup.template,
            "source tag not mirrored: its name is one the backup template writes"
        );
    }
    kept
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let b = Backup::new("{tag}-prev", 1).unwrap();
        assert_eq!(b.name("1.0", 1), "1.0-prev");
        assert!(b.is_backup_tag("1.0-prev"));
        assert!(!b.is_backup_tag("1.0"));
        assert!(!b.is_backup_tag("-prev"));
        let b = Backup::new("{tag}-prev{n}", 3).unwrap();
        assert_eq!(b.name("latest", 2), "latest-prev2");
        assert!(b.is_backup_tag("latest-prev12"));
        assert!(!b.is_backup_tag("latest-prev"));
        let b = Backup::new("backup-{n}.{tag}", 2).unwrap();
        assert!(b.is_backup_tag("backup-1.v2.0"));
        assert!(!b.is_backup_tag("backupX1.v2.0"), "the dot is literal");
    }

    #[test]
    fn bad_templates() {
        for (t, keep, want) in [
            ("prev", 1, "{tag}"),
            ("{tag}-{tag}", 1, "{tag}"),
            ("{tag}", 1, "suffix"),
            ("{tag}-prev", 2, "counter"),
            ("{tag}-{x}", 1, "braces"),
            ("{tag}/prev", 1, "allowed"),
            ("{tag}-prev{n}", 0, "backup_keep"),
            ("{tag}-prev{n}", 21, "backup_keep"),
            ("{tag}-{n}{n}", 2, "more than once"),
        ] {
            let e = Backup::new(t, keep).unwrap_err();
            assert!(e.contains(want), "{t} {keep}: {e}");
        }
    }
}
