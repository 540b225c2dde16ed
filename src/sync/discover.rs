//! Mirrors whose source holds many repositories: a whole registry
//! (`source = "registry.example.com"`) or a namespace of one
//! (`source = "registry.example.com/team"`), selected with
//! `repositories` (regexes, any may match) and `exclude_repositories`
//! (regexes, none may match), matched against the repository's full path
//! in the source registry (`team/app`).
//!
//! Each run lists the source's catalog (see [`crate::registry::catalog`])
//! and expands the mirror into one job per selected repository; the job's
//! target is the target prefix plus the source path (`team/app` under
//! `mirror.example.com/mirror` is `mirror.example.com/mirror/team/app`).
//! Every job keeps the mirror's name, tag selection, platforms and `force`.
//!
//! State lifetime: nothing discovered is kept. The repository list lives
//! for one run and is read again at the next one, so `serve` picks up
//! repositories created upstream and drops deleted ones at the next slot.

use regex::Regex;

use super::config::Mirror;
use crate::registry::catalog::CatalogError;
use crate::registry::{Client, Reference};

/// Most repositories one mirror expands into unless `max_repositories` says otherwise.
pub const DEFAULT_MAX_REPOSITORIES: usize = 1000;
/// The repository path shown (never requested) for a mirror of a whole
/// registry, which has no repository of its own.
pub const WHOLE_REGISTRY: &str = "catalog";

/// How a mirror finds its repositories.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The source registry.
    pub registry: String,
    /// The namespace (`team`, `team/sub`), or empty for the whole registry.
    pub namespace: String,
    /// Keep repositories matching at least one of these; empty keeps all.
    pub include: Vec<Regex>,
    /// Drop repositories matching any of these.
    pub exclude: Vec<Regex>,
    /// A run that selects more repositories than this fails, copying nothing.
    pub max_repositories: usize,
    /// The target registry.
    pub target_registry: String,
    /// The path the source paths go under (`mirror`), or empty.
    pub target_prefix: String,
}

impl Discovery {
    /// True when the repository at `path` is part of this mirror.
    pub fn selects(&self, path: &str) -> bool {
        let in_namespace = self.namespace.is_empty()
            || path == self.namespace
            || path
                .strip_prefix(self.namespace.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        in_namespace
            && (self.include.is_empty() || self.include.iter().any(|r| r.is_match(path)))
            && !self.exclude.iter().any(|r| r.is_match(path))
    }

    /// The target repository path for source path `path`.
    pub fn target_path(&self, path: &str) -> String {
        if self.target_prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.target_prefix)
        }
    }

    /// What the source is, in words.
    pub fn describe_source(&self) -> String {
        if self.namespace.is_empty() {
            format!("every repository of registry {}", self.registry)
        } else {
            format!("repositories under {}/{}", self.registry, self.namespace)
        }
    }

    /// What the target is, in words.
    pub fn describe_target(&self) -> String {
        if self.target_prefix.is_empty() {
            format!("{}/<source path>", self.target_registry)
        } else {
            format!(
                "{}/{}/<source path>",
                self.target_registry, self.target_prefix
            )
        }
    }
}

/// The keys of one `[[mirror]]` that concern discovery, as written.
pub(super) struct DiscoveryKeys<'a> {
    pub source: &'a str,
    pub target: &'a str,
    pub repositories: Option<&'a [toml::Spanned<String>]>,
    pub exclude_repositories: Option<&'a [toml::Spanned<String>]>,
    pub max_repositories: Option<&'a toml::Spanned<usize>>,
}

/// A discovery key that is wrong: (key, span, message).
pub(super) type KeyError = (&'static str, Option<std::ops::Range<usize>>, String);

/// `None` for a mirror without discovery keys; else the validated
/// [`Discovery`] with the repository references to stand for its source and
/// target (`host/namespace`, or `host/`[`WHOLE_REGISTRY`]).
pub(super) fn from_keys(
    k: &DiscoveryKeys<'_>,
) -> Result<Option<(Discovery, String, String)>, KeyError> {
    if k.repositories.is_none() {
        if let Some(key) = k
            .exclude_repositories
            .map(|_| "exclude_repositories")
            .or(k.max_repositories.map(|_| "max_repositories"))
        {
            return Err((
                key,
                None,
                format!(
                    "`{key}` needs `repositories`, which turns the source into a registry or namespace whose repositories are discovered (repositories = ['.*'] for all)"
                ),
            ));
        }
        return Ok(None);
    }
    let source = k.source.trim();
    let regexes = |key: &'static str, list: Option<&[toml::Spanned<String>]>| {
        list.unwrap_or_default()
            .iter()
            .map(|r| {
                Regex::new(r.get_ref()).map_err(|e| {
                    (
                        key,
                        Some(r.span()),
                        format!("invalid regular expression {:?}: {e}", r.get_ref()),
                    )
                })
            })
            .collect::<Result<Vec<_>, KeyError>>()
    };
    let include = regexes("repositories", k.repositories)?;
    let exclude = regexes("exclude_repositories", k.exclude_repositories)?;
    if include.is_empty() {
        return Err(("repositories", None, "repositories is empty: list at least one regex (['.*'] for every repository), or drop the key to mirror one repository".into()));
    }
    let max_repositories = match k.max_repositories {
        Some(m) if *m.get_ref() == 0 => {
            return Err((
                "max_repositories",
                Some(m.span()),
                "max_repositories = 0 would select nothing: expected at least 1".into(),
            ));
        }
        Some(m) => *m.get_ref(),
        None => DEFAULT_MAX_REPOSITORIES,
    };
    let (registry, namespace) = split_root(source).map_err(|e| ("source", None, e))?;
    if registry == crate::registry::reference::DOCKER_HUB {
        return Err((
            "repositories",
            None,
            format!(
                "source {source:?} is on Docker Hub, which has no catalog, so its repositories cannot be discovered: list them explicitly, one [[mirror]] per repository (e.g. source = \"docker.io/library/nginx\")"
            ),
        ));
    }
    let (target_registry, target_prefix) =
        split_root(k.target.trim()).map_err(|e| ("target", None, e))?;
    let d = Discovery {
        registry,
        namespace,
        include,
        exclude,
        max_repositories,
        target_registry,
        target_prefix,
    };
    if d.registry == d.target_registry
        && (d.namespace.is_empty()
            || d.target_prefix == d.namespace
            || d.target_prefix.starts_with(&format!("{}/", d.namespace)))
    {
        return Err((
            "target",
            None,
            format!(
                "target {:?} lies inside the source {source:?}: every run would discover the mirrored copies and mirror them again; choose a target outside the source namespace",
                k.target.trim()
            ),
        ));
    }
    let root = |host: &str, path: &str| {
        format!(
            "{host}/{}",
            if path.is_empty() {
                WHOLE_REGISTRY
            } else {
                path
            }
        )
    };
    let (s, t) = (
        root(&d.registry, &d.namespace),
        root(&d.target_registry, &d.target_prefix),
    );
    Ok(Some((d, s, t)))
}

/// The name of a discovering mirror without one: its target tree
/// (`mirror/*`, or `host/*` for a registry-wide target).
pub(super) fn default_name(d: Option<&Discovery>) -> String {
    match d {
        Some(d) if d.target_prefix.is_empty() => format!("{}/*", d.target_registry),
        Some(d) => format!("{}/*", d.target_prefix),
        None => String::new(),
    }
}

/// `host[/path]` with no tag or digest, split into host and path.
fn split_root(text: &str) -> Result<(String, String), String> {
    let (host, path) = text.split_once('/').unwrap_or((text, ""));
    if !super::source::is_registry_only(host) {
        return Err(format!(
            "{text:?} must start with a registry host (e.g. \"registry.example.com/team\"): with `repositories`, source and target are a registry or a namespace"
        ));
    }
    let path = path.trim_end_matches('/');
    let probe = if path.is_empty() {
        WHOLE_REGISTRY
    } else {
        path
    };
    let r = Reference::parse_repository(&format!("{host}/{probe}")).map_err(|e| {
        format!("{e}; with `repositories`, source and target are a registry or a namespace without tag or digest")
    })?;
    Ok((r.registry().to_string(), path.to_string()))
}

/// The repositories a run of `mirror` covers, as one mirror per repository.
#[derive(Debug, Clone, Default)]
pub struct Expansion {
    /// One job per selected repository, in catalog order.
    pub jobs: Vec<Mirror>,
    /// Repositories the catalog listed (valid names).
    pub listed: usize,
    /// Catalog names dropped for breaking the repository grammar.
    pub invalid: usize,
}

/// What discovery found in one run, for the report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DiscoveryReport {
    /// Valid repository names the source listed.
    pub listed: usize,
    /// Listed names dropped because they break the repository grammar.
    pub invalid_names: usize,
    /// Repositories the mirror selected, source paths in catalog order.
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
/// selected repository of its source's catalog. `Err` says why nothing of
/// the mirror can run (no catalog, a listing failure, over the cap).
pub async fn expand(client: &Client, mirror: &Mirror) -> Result<Expansion, String> {
    let Some(d) = &mirror.discovery else {
        return Ok(Expansion {
            jobs: vec![mirror.clone()],
            ..Expansion::default()
        });
    };
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
    let selected: Vec<&String> = listing
        .repositories
        .iter()
        .filter(|p| d.selects(p))
        .collect();
    if selected.len() > d.max_repositories {
        return Err(format!(
            "mirror {:?} selects {} repositories ({}), over max_repositories = {}, so none was synced: narrow `repositories` / `exclude_repositories`, or raise max_repositories",
            mirror.name,
            selected.len(),
            d.describe_source(),
            d.max_repositories
        ));
    }
    let mut jobs = Vec::with_capacity(selected.len());
    for path in selected {
        jobs.push(job(mirror, d, path)?);
    }
    tracing::info!(mirror = %mirror.name, listed = listing.repositories.len(), selected = jobs.len(), invalid = listing.invalid, "repositories discovered");
    Ok(Expansion {
        jobs,
        listed: listing.repositories.len(),
        invalid: listing.invalid,
    })
}

/// The mirror of one discovered repository.
fn job(mirror: &Mirror, d: &Discovery, path: &str) -> Result<Mirror, String> {
    let target_path = d.target_path(path);
    let refs = Reference::new_repository(&d.registry, path)
        .and_then(|s| Reference::new_repository(&d.target_registry, &target_path).map(|t| (s, t)));
    let (source, target) = refs.map_err(|e| {
        format!(
            "mirror {:?}: repository {path} cannot be mirrored to {}/{target_path}: {e}",
            mirror.name, d.target_registry
        )
    })?;
    let mut job = mirror.clone();
    job.source = source;
    job.target = target;
    job.discovery = None;
    Ok(job)
}

/// The first pair of mirrors (indexes, the later second) where one
/// discovers repositories and the other can write a tag into a repository
/// the first may write, with what they share. A discovering mirror may
/// write `target_registry/target_prefix/P` for every source path `P` it
/// selects; that is decidable against a plain mirror's target, and
/// conservatively assumed between two discovering mirrors whose target
/// trees nest.
pub fn find_conflict(mirrors: &[Mirror]) -> Option<(usize, usize, String)> {
    for (j, b) in mirrors.iter().enumerate() {
        for (i, a) in mirrors[..j].iter().enumerate() {
            let what = match (&a.discovery, &b.discovery) {
                (None, None) => None,
                (Some(d), None) => may_write(d, &b.target)
                    .then(|| super::overlap::tags_can_meet(a, b))
                    .flatten(),
                (None, Some(d)) => may_write(d, &a.target)
                    .then(|| super::overlap::tags_can_meet(a, b))
                    .flatten(),
                (Some(x), Some(y)) => trees_nest(x, y)
                    .then(|| super::overlap::tags_can_meet(a, b))
                    .flatten(),
            };
            if let Some(what) = what {
                return Some((i, j, what));
            }
        }
    }
    None
}

/// True when the discovering mirror `d` could write into `target`.
fn may_write(d: &Discovery, target: &Reference) -> bool {
    if target.registry() != d.target_registry {
        return false;
    }
    let path = target.repository();
    let source_path = if d.target_prefix.is_empty() {
        Some(path)
    } else {
        path.strip_prefix(d.target_prefix.as_str())
            .and_then(|r| r.strip_prefix('/'))
    };
    source_path.is_some_and(|p| d.selects(p))
}

/// True when the target trees of two discovering mirrors nest.
fn trees_nest(x: &Discovery, y: &Discovery) -> bool {
    let under = |a: &str, b: &str| b.is_empty() || a == b || a.starts_with(&format!("{b}/"));
    x.target_registry == y.target_registry
        && (under(&x.target_prefix, &y.target_prefix) || under(&y.target_prefix, &x.target_prefix))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::sync::Config;

    fn parse(text: &str) -> Result<Config, crate::sync::ConfigError> {
        Config::parse(Path::new("t.toml"), text)
    }

    #[test]
    fn a_registry_source_with_repositories_discovers() {
        let c = parse(
            "[[mirror]]\nsource = \"src.example\"\ntarget = \"dst.example/mirror\"\nrepositories = ['^team/']\nexclude_repositories = ['/old-']\n",
        )
        .unwrap();
        let d = c.mirrors[0].discovery.as_ref().unwrap();
        assert_eq!(
            (d.registry.as_str(), d.namespace.as_str()),
            ("src.example", "")
        );
        assert_eq!(d.target_prefix, "mirror");
        assert!(d.selects("team/app"));
        assert!(!d.selects("other/app"));
        assert!(!d.selects("team/old-app"));
        assert_eq!(d.target_path("team/app"), "mirror/team/app");
        assert_eq!(d.max_repositories, DEFAULT_MAX_REPOSITORIES);
    }

    #[test]
    fn a_namespace_source_keeps_to_its_namespace() {
        let c = parse(
            "[[mirror]]\nsource = \"src.example:5000/team\"\ntarget = \"dst.example\"\nrepositories = ['.*']\nmax_repositories = 5\n",
        )
        .unwrap();
        let d = c.mirrors[0].discovery.as_ref().unwrap();
        assert!(d.selects("team/app") && d.selects("team") && d.selects("team/a/b"));
        assert!(!d.selects("teamx/app") && !d.selects("other"));
        assert_eq!(d.target_path("team/app"), "team/app");
        assert_eq!(d.max_repositories, 5);
    }

    #[test]
    fn bad_discovery_configs_are_refused_clearly() {
        let cases = [
            (
                "source = \"docker.io/library\"\ntarget = \"d.example\"\nrepositories = ['.*']",
                "no catalog",
            ),
            (
                "source = \"s.example\"\ntarget = \"s.example/mirror\"\nrepositories = ['.*']",
                "inside the source",
            ),
            (
                "source = \"s.example/team\"\ntarget = \"s.example/team/copy\"\nrepositories = ['.*']",
                "inside the source",
            ),
            (
                "source = \"s.example/app:1\"\ntarget = \"d.example\"\nrepositories = ['.*']",
                "without tag",
            ),
            (
                "source = \"s.example\"\ntarget = \"d.example\"\nrepositories = []",
                "is empty",
            ),
            (
                "source = \"s.example\"\ntarget = \"d.example\"\nrepositories = ['(']",
                "regular expression",
            ),
            (
                "source = \"s.example/a\"\ntarget = \"d.example\"\nexclude_repositories = ['x']",
                "needs `repositories`",
            ),
            (
                "source = \"s.example\"\ntarget = \"d.example\"\nrepositories = ['.*']\nmax_repositories = 0",
                "at least 1",
            ),
            (
                "source = \"team\"\ntarget = \"d.example\"\nrepositories = ['.*']",
                "registry host",
            ),
        ];
        for (body, want) in cases {
            let e = parse(&format!("[[mirror]]\n{body}\n")).unwrap_err();
            assert!(e.to_string().contains(want), "{body}: {e}");
            assert!(e.line.is_some(), "{body}: {e}");
        }
    }

    #[test]
    fn overlaps_with_discovered_targets_are_refused() {
        let disc = "[[mirror]]\nsource = \"s.example\"\ntarget = \"d.example/m\"\nrepositories = ['^team/']\n";
        // A plain mirror into a repository the discovery may write.
        let e = parse(&format!(
            "{disc}[[mirror]]\nsource = \"o.example/x:1\"\ntarget = \"d.example/m/team/app\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("same tag"), "{e}");
        // Outside the selection: fine.
        parse(&format!(
            "{disc}[[mirror]]\nsource = \"o.example/x:1\"\ntarget = \"d.example/m/other/app\"\n"
        ))
        .unwrap();
        // Two discoveries whose target trees nest.
        let e = parse(&format!("{disc}[[mirror]]\nsource = \"o.example\"\ntarget = \"d.example\"\nrepositories = ['.*']\n")).unwrap_err();
        assert!(e.to_string().contains("same tag"), "{e}");
        parse(&format!("{disc}[[mirror]]\nsource = \"o.example\"\ntarget = \"d.example/o\"\nrepositories = ['.*']\n")).unwrap();
    }
}
