//! Prune: delete target tags the source no longer has, with guard rails.
//!
//! `prune = "not-in-source"` deletes a target tag only when all of these hold:
//! - the tag is inside the mirror's own tag selection: every tag for a
//!   mirror without filters; for a filtered mirror, a tag its `include`,
//!   `exclude` and `semver` filters pass (`latest` ranks the source's tags,
//!   so it cannot judge a tag the source lacks; tags named in `tags` are
//!   never pruned: they were asked for by name);
//! - the source's tag listing of this very run was complete (every page,
//!   within the caps) and non-empty: an empty listing is far more often an
//!   upstream or credentials accident than a repository emptied on purpose;
//! - it is not a `sha256-*` tag (referrer fallback, cosign signatures,
//!   attestations, SBOMs) nor a tag of the mirror's backup template;
//! - at most `max_prune` tags are to be pruned in this run; above that none
//!   is deleted and the report says why (a mass disappearance upstream is
//!   for a person to confirm, by raising `max_prune` for one run).
//!
//! Tags are deleted one by one with [`Client::delete_tag`], which never
//! deletes a digest another tag shares. Nothing is remembered across runs:
//! every decision comes from this run's listings of the source and target.
//!
//! A mirror with several targets (`targets`) prunes each target on its own,
//! against that target's own listing, under the rules above (`max_prune`
//! counts per target); a target where an image failed in the run is not
//! pruned at all ([`refused`]), and the mirror's report gathers the
//! targets' ([`merged`]). The metrics count each prune for the mirror and
//! for its target repository (`regmirror_target_pruned_tags_total`,
//! `regmirror_target_prune_refused_total`).

use std::collections::HashSet;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::model::{Mirror, Selection};
use crate::metrics;
use crate::registry::{Client, Reference, TagDeletion};

pub use super::model::prune::{DEFAULT_MAX_PRUNE, Prune, PruneMode};

/// Tags of the referrers fallback scheme and of cosign: never pruned.
pub const PROTECTED_PREFIX: &str = "sha256-";

/// What prune did in one mirror run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Nothing was deleted: `pruned` lists what a real run would delete.
    pub dry_run: bool,
    /// Tags deleted (dry run: that would be deleted).
    pub pruned: Vec<PrunedTag>,
    /// Why nothing was pruned, when a guard rail stopped it.
    pub refused: Option<String>,
    /// Tags whose deletion failed, one message each.
    pub errors: Vec<String>,
}

/// One pruned tag.
#[derive(Debug, Clone, Serialize)]
pub struct PrunedTag {
    /// The target image (`registry/repository:tag`).
    pub target: String,
    /// The digest it held.
    pub digest: Option<String>,
    /// How it was deleted; `None` in a dry run.
    pub how: Option<TagDeletion>,
}

/// How one prune runs.
#[derive(Debug, Clone, Copy)]
pub struct PruneRun<'a> {
    /// Report only, delete nothing.
    pub dry_run: bool,
    /// Count in the metrics.
    pub record_metrics: bool,
    /// Once cancelled, no further tag is deleted.
    pub stop: &'a CancellationToken,
}

/// Prune `target`, one of `mirror`'s targets. `listed` is the source's tag
/// listing of this run: `None` when it failed (prune is then refused).
pub async fn prune(
    client: &Client,
    mirror: &Mirror,
    target: &Reference,
    listed: Option<&[String]>,
    run: PruneRun<'_>,
) -> PruneReport {
    let (dry_run, stop) = (run.dry_run, run.stop);
    let refuse = |why: String| refused(mirror, target, run, why);
    if stop.is_cancelled() {
        return refuse("the run was interrupted, so nothing was pruned".into());
    }
    let Some(listed) = listed else {
        return refuse("the source's tag listing failed in this run, so nothing was pruned".into());
    };
    if listed.is_empty() {
        return refuse(format!(
            "the source {} listed no tag: an empty listing is more often an upstream or \
             credentials problem than a repository emptied on purpose, so nothing was pruned",
            mirror.source
        ));
    }
    let candidates = match candidates(client, mirror, target, listed).await {
        Ok(c) => c,
        Err(e) => return refuse(e),
    };
    if candidates.len() > mirror.prune.max {
        let examples: Vec<&str> = candidates.iter().take(5).map(String::as_str).collect();
        return refuse(format!(
            "{} target tags are not in the source (e.g. {}), more than max_prune = {}: none \
             was deleted; check the source, then raise max_prune for one run if this is meant \
             (sync --prune-dry-run lists them)",
            candidates.len(),
            examples.join(", "),
            mirror.prune.max
        ));
    }
    let mut report = PruneReport {
        dry_run,
        ..PruneReport::default()
    };
    for tag in candidates {
        if stop.is_cancelled() {
            report
                .errors
                .push("interrupted: the remaining tags were not pruned".into());
            break;
        }
        let result = prune_one(client, mirror, target, &tag, dry_run, &mut report).await;
        if run.record_metrics
            && let Some(result) = result
        {
            metrics::record_pruned(&mirror.name, &target.to_string(), result);
        }
    }
    report
}

/// The report of a prune of `target` that a guard rail stopped, for `why`
/// (logged, and counted in the metrics).
pub fn refused(mirror: &Mirror, target: &Reference, run: PruneRun<'_>, why: String) -> PruneReport {
    tracing::warn!(mirror = %mirror.name, target_ref = %target, reason = %why, "prune refused");
    if run.record_metrics {
        metrics::record_prune_refused(&mirror.name, &target.to_string());
    }
    PruneReport {
        dry_run: run.dry_run,
        refused: Some(why),
        ..PruneReport::default()
    }
}

/// The prunes of a mirror's targets (each with its target) as one report:
/// every tag pruned, each refusal and error prefixed with its target.
pub fn merged(parts: &[(String, PruneReport)]) -> PruneReport {
    let refusals: Vec<String> = parts
        .iter()
        .filter_map(|(t, p)| p.refused.as_ref().map(|why| format!("at {t}: {why}")))
        .collect();
    PruneReport {
        dry_run: parts.iter().any(|(_, p)| p.dry_run),
        pruned: parts.iter().flat_map(|(_, p)| p.pruned.clone()).collect(),
        refused: (!refusals.is_empty()).then(|| refusals.join("; ")),
        errors: parts
            .iter()
            .flat_map(|(t, p)| p.errors.iter().map(move |e| format!("at {t}: {e}")))
            .collect(),
    }
}

/// The target tags to prune, sorted.
async fn candidates(
    client: &Client,
    mirror: &Mirror,
    target: &Reference,
    listed: &[String],
) -> Result<Vec<String>, String> {
    let target_tags = match client.list_tags_checked(target).await {
        Ok(l) => l.tags,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => {
            return Err(format!(
                "listing the tags of the target {target} failed, so nothing was pruned: {e}"
            ));
        }
    };
    let in_source: HashSet<&str> = listed.iter().map(String::as_str).collect();
    let mut out: Vec<String> = target_tags
        .into_iter()
        .filter(|t| !in_source.contains(t.as_str()))
        .filter(|t| prunable(mirror, t))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// True when `tag` is inside the mirror's selection and not protected.
pub fn prunable(mirror: &Mirror, tag: &str) -> bool {
    if tag.starts_with(PROTECTED_PREFIX) {
        return false;
    }
    if mirror.backup.as_ref().is_some_and(|b| b.is_backup_tag(tag)) {
        return false;
    }
    match &mirror.selection {
        Selection::All => true,
        Selection::Filtered { tags, filter } => {
            !tags.iter().any(|t| t == tag)
                && (filter.include.is_empty() || filter.include.iter().any(|r| r.is_match(tag)))
                && !filter.exclude.iter().any(|r| r.is_match(tag))
                && filter.semver.as_ref().is_none_or(|req| {
                    super::filter::lenient_version(tag).is_some_and(|v| req.matches(&v))
                })
        }
        Selection::Tags(_) | Selection::Digest(_) => false,
    }
}

/// Prune one tag into `report`; the metric's result word, if it was tried.
async fn prune_one(
    client: &Client,
    mirror: &Mirror,
    repository: &Reference,
    tag: &str,
    dry_run: bool,
    report: &mut PruneReport,
) -> Option<&'static str> {
    let target = match repository.with_tag(tag) {
        Ok(t) => t,
        Err(e) => {
            report.errors.push(format!("tag {tag:?}: {e}"));
            return None;
        }
    };
    let digest = match client.head_manifest(&target).await {
        Ok(Some(head)) => head.digest.map(|d| d.to_string()),
        Ok(None) => return None, // gone since the listing
        Err(e) => {
            report
                .errors
                .push(format!("checking {target} before pruning it: {e}"));
            return Some("failed");
        }
    };
    if dry_run {
        report.pruned.push(PrunedTag {
            target: target.to_string(),
            digest,
            how: None,
        });
        return Some("would-delete");
    }
    match client.delete_tag(&target).await {
        Ok(how) => {
            tracing::info!(mirror = %mirror.name, target_ref = %target, digest = ?digest, "pruned: the source no longer has this tag");
            report.pruned.push(PrunedTag {
                target: target.to_string(),
                digest,
                how: Some(how),
            });
            Some("deleted")
        }
        Err(e) => {
            tracing::warn!(mirror = %mirror.name, target_ref = %target, error = %e, "pruning failed");
            report.errors.push(format!("pruning {target}: {e}"));
            Some("failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Config;

    fn parse(extra: &str) -> Result<Config, crate::sync::ConfigError> {
        let text = format!(
            "[[mirror]]\nsource = \"ghcr.io/org/app\"\ntarget = \"r.example.com/app\"\n{extra}\n"
        );
        Config::parse(std::path::Path::new("t.toml"), &text)
    }

    #[test]
    fn config_keys() {
        let m = &parse("").unwrap().mirrors[0];
        assert_eq!(m.prune.mode, PruneMode::Off);
        assert_eq!(m.prune.max, DEFAULT_MAX_PRUNE);
        assert!(m.backup.is_none());
        let c = parse(
            "prune = \"not-in-source\"\nmax_prune = 3\nbackup = \"{tag}-old{n}\"\nbackup_keep = 2",
        )
        .unwrap();
        let m = &c.mirrors[0];
        assert_eq!((m.prune.mode, m.prune.max), (PruneMode::NotInSource, 3));
        assert_eq!(m.backup.as_ref().unwrap().keep(), 2);
        for (extra, key, want) in [
            ("prune = \"all\"", "mirror[1].prune", "not-in-source"),
            (
                "prune = \"not-in-source\"\ntags = [\"1\"]",
                "mirror[1].prune",
                "lists",
            ),
            ("max_prune = 0", "mirror[1].max_prune", "at least 1"),
            ("backup_keep = 2", "mirror[1].backup_keep", "without backup"),
            (
                "backup = \"{tag}-prev\"\nbackup_keep = 2",
                "mirror[1].backup_keep",
                "counter",
            ),
            (
                "backup = \"{tag}-prev{n}\"\nbackup_keep = 99",
                "mirror[1].backup_keep",
                "1 to 20",
            ),
        ] {
            let e = parse(extra).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{extra}: {e}");
            assert!(e.message.contains(want), "{extra}: {e}");
        }
    }

    /// Prune deletes through the registry API, one repository at a time:
    /// a mirror that discovers repositories, or writes an OCI layout, is
    /// refused when the config is read.
    #[test]
    fn prune_is_refused_with_discovery_and_layout_targets() {
        for (mirror, want) in [
            (
                "source = \"r.example.com/team\"\ntarget = \"m.example.com/mirror\"\n\
                 repositories = ['^team/']",
                "discovers its repositories",
            ),
            (
                "source = \"ghcr.io/org/app\"\ntarget = \"oci:bundle\"",
                "OCI layout or archive target",
            ),
        ] {
            let text = format!("[[mirror]]\n{mirror}\nprune = \"not-in-source\"\n");
            let e = Config::parse(std::path::Path::new("t.toml"), &text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("mirror[1].prune"), "{mirror}: {e}");
            assert!(e.message.contains(want), "{mirror}: {e}");
            let off = format!("[[mirror]]\n{mirror}\n");
            Config::parse(std::path::Path::new("t.toml"), &off).unwrap();
        }
    }

    #[test]
    fn selection_and_protected_tags() {
        let c = parse("include = ['^1\\.']\nexclude = ['-rc']\nsemver = '>=1'\ntags = ['1.0-pinned']\nprune = \"not-in-source\"\nbackup = \"{tag}-prev\"")
            .unwrap();
        let m = &c.mirrors[0];
        assert!(prunable(m, "1.2.3"));
        assert!(!prunable(m, "2.0.0"), "outside include");
        assert!(!prunable(m, "1.3.0-rc1"), "excluded");
        assert!(!prunable(m, "1.0-pinned"), "named in tags");
        assert!(!prunable(m, "1.2.3-prev"), "a backup tag");
        let all = parse("prune = \"not-in-source\"").unwrap();
        assert!(prunable(&all.mirrors[0], "anything"));
        assert!(!prunable(&all.mirrors[0], "sha256-abc.sig"));
    }

    /// The mirror's report of several targets' prunes keeps every tag and
    /// names the target of each refusal and error.
    #[test]
    fn merged_reports_name_their_targets() {
        let tag = |t: &str| PrunedTag {
            target: t.to_string(),
            digest: None,
            how: None,
        };
        let a = PruneReport {
            pruned: vec![tag("a.io/x:1")],
            ..PruneReport::default()
        };
        let b = PruneReport {
            errors: vec!["pruning b.io/x:1: denied".into()],
            pruned: vec![tag("b.io/x:2")],
            ..PruneReport::default()
        };
        let c = PruneReport {
            refused: Some("1 of its images failed".into()),
            ..PruneReport::default()
        };
        let m = merged(&[
            ("a.io/x".into(), a),
            ("b.io/x".into(), b),
            ("c.io/x".into(), c),
        ]);
        let pruned: Vec<&str> = m.pruned.iter().map(|p| p.target.as_str()).collect();
        assert_eq!(pruned, ["a.io/x:1", "b.io/x:2"]);
        assert_eq!(m.errors, ["at b.io/x: pruning b.io/x:1: denied"]);
        assert_eq!(
            m.refused.as_deref(),
            Some("at c.io/x: 1 of its images failed")
        );
        assert!(!m.dry_run);
        assert!(merged(&[]).refused.is_none());
    }
}
