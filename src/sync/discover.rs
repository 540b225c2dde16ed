//! Mirrors whose source holds many repositories, expanded at each run into
//! one job per repository:
//! - a whole registry (`source = "registry.example.com"`) or a namespace of
//!   one (`source = "registry.example.com/team"`) with `repositories`,
//!   listed through its catalog (see [`crate::registry::catalog`]);
//! - an OCI layout or archive without a REF (`source = "oci:/media/bundle"`),
//!   listed from its `index.json`: every repository named in it
//!   (`org.opencontainers.image.ref.name` = `registry/repository:tag`).
//!
//! `repositories` (regexes, any may match) and `exclude_repositories`
//! (regexes, none may match) are matched against the repository's path in
//! the source registry (`team/app`), or its full name in a layout
//! (`ghcr.io/org/app`).
//!
//! Target of each job:
//! - a registry prefix: the prefix plus the source path (`team/app` under
//!   `mirror.example.com/mirror` is `mirror.example.com/mirror/team/app`);
//!   from a layout, the name without its registry host
//!   (`docker.io/library/nginx` restores to `…/mirror/library/nginx`); two
//!   names that restore to one repository (`ghcr.io/org/app` and
//!   `quay.io/org/app`) are refused, each, with the advice to split the
//!   mirror by host;
//! - an OCI layout or archive: the image's full source name.
//!
//! Every job keeps the mirror's name, tag selection, platforms and `force`.
//!
//! State lifetime: nothing discovered is kept. The repository list lives
//! for one run and is read again at the next one, so `serve` picks up
//! repositories created upstream and drops deleted ones at the next slot.

use std::collections::HashMap;

use super::model::Mirror;
use crate::registry::catalog::CatalogError;
use crate::registry::{Client, Reference};

pub use super::model::discovery::{
    DEFAULT_MAX_REPOSITORIES, Discovery, WHOLE_REGISTRY, without_host,
};

/// The repositories a run of `mirror` covers, as one mirror per repository.
#[derive(Debug, Clone, Default)]
pub struct Expansion {
    /// One job per selected repository, in listing order.
    pub jobs: Vec<Mirror>,
    /// Repositories the source listed (valid names).
    pub listed: usize,
    /// Listed names dropped for breaking the repository grammar.
    pub invalid: usize,
    /// Selected repositories that cannot run (two that restore to one
    /// target, a name the target cannot hold), one message each.
    pub errors: Vec<String>,
}

/// What discovery found in one run, for the report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DiscoveryReport {
    /// Valid repository names the source listed.
    pub listed: usize,
    /// Listed names dropped because they break the repository grammar.
    pub invalid_names: usize,
    /// Repositories the mirror selected, source paths in listing order.
    pub repositories: Vec<String>,
}

impl DiscoveryReport {
    /// The report of an expansion.
    pub fn of(x: &Expansion) -> DiscoveryReport {
        DiscoveryReport {
            listed: x.listed,
            invalid_names: x.invalid,
            repositories: x
                .jobs
                .iter()
                .map(|j| j.source.repository().to_string())
                .collect(),
        }
    }
}

/// Expand a mirror: itself when it does not discover, else one job per
/// selected repository of its source. `Err` says why nothing of the mirror
/// can run (no catalog, a listing failure, over the cap).
pub async fn expand(client: &Client, mirror: &Mirror) -> Result<Expansion, String> {
    let Some(d) = &mirror.discovery else {
        return Ok(Expansion {
            jobs: vec![mirror.clone()],
            ..Expansion::default()
        });
    };
    let (listed, invalid) = list(client, mirror, d).await?;
    let selected: Vec<&String> = listed.iter().filter(|p| d.selects(p)).collect();
    if selected.len() > d.max_repositories {
        return Err(format!(
            "mirror {:?} selects {} repositories ({}), over max_repositories = {}, so none was \
             synced: narrow `repositories` / `exclude_repositories`, or raise max_repositories",
            mirror.name,
            selected.len(),
            d.describe_source(),
            d.max_repositories
        ));
    }
    let mut x = jobs(mirror, d, &selected);
    x.listed = listed.len();
    x.invalid = invalid;
    tracing::info!(mirror = %mirror.name, listed = x.listed, selected = x.jobs.len(), invalid, refused = x.errors.len(), "repositories discovered");
    Ok(x)
}

/// The source's valid repository names and how many listed names were not.
async fn list(
    client: &Client,
    mirror: &Mirror,
    d: &Discovery,
) -> Result<(Vec<String>, usize), String> {
    if let Some(layout) = &d.source_layout {
        let (names, invalid) = layout_repositories(client, layout).await.map_err(|e| {
            format!(
                "mirror {:?}: reading the names in {} failed, so nothing of it was synced: {e}",
                mirror.name,
                layout.name()
            )
        })?;
        return Ok((names, invalid));
    }
    let listing = client
        .list_repositories(&d.registry, crate::registry::catalog::MAX_CATALOG_PAGE_SIZE)
        .await
        .map_err(|e| match e {
            CatalogError::Unavailable { .. } => format!("mirror {:?}: {e}", mirror.name),
            CatalogError::Registry(e) => format!(
                "mirror {:?}: listing the repositories of {} failed, so none of them was synced: {e}",
                mirror.name, d.registry
            ),
        })?;
    Ok((listing.repositories, listing.invalid))
}

/// The repositories named in a layout's `index.json`, in order, once each,
/// and how many entries were skipped for a `ref.name` that cannot be named.
async fn layout_repositories(
    client: &Client,
    layout: &Reference,
) -> Result<(Vec<String>, usize), String> {
    let (names, invalid) = client
        .layout_names_counted(layout)
        .await
        .map_err(|e| e.to_string())?;
    let mut seen = std::collections::HashSet::new();
    let names = names
        .into_iter()
        .map(|(repository, _tag)| repository)
        .filter(|r| seen.insert(r.clone()))
        .collect();
    Ok((names, invalid))
}

/// One job per selected path, written to every target tree of the mirror
/// (`targets`); two paths that would write one target repository are both
/// refused, with the advice to split the mirror.
fn jobs(mirror: &Mirror, d: &Discovery, selected: &[&String]) -> Expansion {
    let mut x = Expansion::default();
    let mut pairs: Vec<(&str, Reference, Vec<Reference>)> = Vec::new();
    for path in selected {
        match path_targets(d, path) {
            Ok((s, t)) => pairs.push((path.as_str(), s, t)),
            Err(e) => x.errors.push(format!(
                "mirror {:?}: repository {path:?} of {} is skipped: {e}",
                mirror.name,
                d.describe_source()
            )),
        }
    }
    let mut by_target: HashMap<String, Vec<&str>> = HashMap::new();
    for (path, _, targets) in &pairs {
        for t in targets {
            by_target.entry(t.name()).or_default().push(path);
        }
    }
    for (path, source, mut targets) in pairs {
        let shared = targets.iter().find(|t| by_target[&t.name()].len() > 1);
        if let Some(target) = shared {
            x.errors.push(format!(
                "mirror {:?}: {} all restore to {target}, so {path} was not synced: the target \
                 path drops the registry host; split the mirror, one per source host, with \
                 repositories = ['^host/'] and a target prefix each",
                mirror.name,
                by_target[&target.name()].join(", ")
            ));
            continue;
        }
        let mut job = mirror.clone();
        job.source = source;
        job.target = targets.remove(0);
        job.more_targets = targets;
        job.discovery = None;
        x.jobs.push(job);
    }
    x
}

/// The source repository at `path` and its target repository in each
/// target tree of `d`, in config order.
fn path_targets(d: &Discovery, path: &str) -> Result<(Reference, Vec<Reference>), String> {
    let mut source = None;
    let mut targets = Vec::new();
    for tree in d.trees() {
        let (s, t) = tree.pair(path)?;
        source.get_or_insert(s);
        targets.push(t);
    }
    let source = source.ok_or_else(|| format!("{path:?} has no target"))?;
    Ok((source, targets))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::sync::Config;

    #[test]
    fn names_that_restore_to_one_repository_are_refused_and_the_rest_run() {
        let c = Config::parse(
            Path::new("t.toml"),
            "[[mirror]]\nsource = \"oci:/media/bundle\"\ntarget = \"r.internal/mirror\"\n",
        )
        .unwrap();
        let m = &c.mirrors[0];
        let names = [
            "ghcr.io/org/app",
            "quay.io/org/app",
            "docker.io/library/nginx",
            "Bad/Name",
        ]
        .map(String::from);
        let selected: Vec<&String> = names.iter().collect();
        let x = jobs(m, m.discovery.as_ref().unwrap(), &selected);
        let targets: Vec<String> = x.jobs.iter().map(|j| j.target.to_string()).collect();
        assert_eq!(targets, ["r.internal/mirror/library/nginx"]);
        assert_eq!(x.errors.len(), 3, "{:?}", x.errors);
        assert!(
            x.errors.iter().any(|e| e.contains(
                "ghcr.io/org/app, quay.io/org/app all restore to r.internal/mirror/org/app"
            )),
            "{:?}",
            x.errors
        );
        assert!(
            x.errors.iter().any(|e| e.contains("Bad/Name")),
            "{:?}",
            x.errors
        );
    }

    /// With `targets`, each discovered repository goes to every target
    /// tree, under the same source path.
    #[test]
    fn each_repository_goes_to_every_target_tree() {
        let c = Config::parse(
            Path::new("t.toml"),
            "[[mirror]]\nsource = \"r.internal/team\"\nrepositories = ['^team/']\n\
             targets = [\"a.internal/mirror\", \"b.internal\", \"oci:bundle\"]\n",
        )
        .unwrap();
        let m = &c.mirrors[0];
        let names = ["team/app", "team/db/pg"].map(String::from);
        let selected: Vec<&String> = names.iter().collect();
        let x = jobs(m, m.discovery.as_ref().unwrap(), &selected);
        assert!(x.errors.is_empty(), "{:?}", x.errors);
        let targets: Vec<Vec<String>> = x
            .jobs
            .iter()
            .map(|j| j.targets().map(|t| t.name()).collect())
            .collect();
        assert_eq!(
            targets,
            [
                [
                    "a.internal/mirror/team/app",
                    "b.internal/team/app",
                    "oci:bundle:r.internal/team/app"
                ],
                [
                    "a.internal/mirror/team/db/pg",
                    "b.internal/team/db/pg",
                    "oci:bundle:r.internal/team/db/pg"
                ]
            ]
        );
        assert!(x.jobs.iter().all(|j| j.discovery.is_none()));
    }
}
