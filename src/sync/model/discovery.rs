//! How a discovering mirror finds its repositories and where each one
//! goes: the validated `repositories`, `exclude_repositories` and
//! `max_repositories` keys with the mirror's source and target roots.
//! Listing and expanding them at each run is in [`crate::sync::discover`].

use regex::Regex;

use crate::registry::Reference;

/// Most repositories one mirror expands into unless `max_repositories` says otherwise.
pub const DEFAULT_MAX_REPOSITORIES: usize = 1000;
/// The repository path shown (never requested) for a mirror of a whole
/// registry, which has no repository of its own.
pub const WHOLE_REGISTRY: &str = "catalog";

/// How a mirror finds its repositories.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The source registry, or the layout's key (`oci:/abs/path`).
    pub registry: String,
    /// The source layout (no repository, tag or digest), when the source is one.
    pub source_layout: Option<Reference>,
    /// The namespace (`team`, `team/sub`), or empty for the whole registry.
    pub namespace: String,
    /// Keep repositories matching at least one of these; empty keeps all.
    pub include: Vec<Regex>,
    /// Drop repositories matching any of these.
    pub exclude: Vec<Regex>,
    /// A run that selects more repositories than this fails, copying nothing.
    pub max_repositories: usize,
    /// The target registry, or the layout's key.
    pub target_registry: String,
    /// The target layout, when the target is one.
    pub target_layout: Option<Reference>,
    /// The path the source paths go under (`mirror`), or empty.
    pub target_prefix: String,
    /// The further target trees of a mirror with several targets
    /// (`targets`), in config order: each the same discovery with its own
    /// `target_registry`, `target_layout` and `target_prefix` (and no
    /// further targets of its own). Empty for a mirror with one target.
    pub more_targets: Vec<Discovery>,
}

impl Discovery {
    /// Every target tree of the mirror: this one, then `more_targets`.
    pub fn trees(&self) -> impl Iterator<Item = &Discovery> {
        std::iter::once(self).chain(&self.more_targets)
    }

    /// The target tree as written: the registry, the registry and prefix,
    /// or the layout (`dst.example/mirror`, `oci:/media/bundle`).
    pub fn target_root(&self) -> String {
        match &self.target_layout {
            Some(l) => l.name(),
            None if self.target_prefix.is_empty() => self.target_registry.clone(),
            None => format!("{}/{}", self.target_registry, self.target_prefix),
        }
    }

    /// True when `target` (a target repository) lies in this target tree.
    pub fn holds(&self, target: &Reference) -> bool {
        if let Some(l) = &self.target_layout {
            return target.is_layout() && target.registry() == l.registry();
        }
        let path = target.repository();
        !target.is_layout()
            && target.registry() == self.target_registry
            && (self.target_prefix.is_empty()
                || path == self.target_prefix
                || path
                    .strip_prefix(self.target_prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('/')))
    }

    /// True when the repository at `path` (a catalog path, or a layout's
    /// repository name) is part of this mirror.
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

    /// The target repository path in a target registry for source path
    /// `path` (for a layout source, its name without the registry host).
    pub fn target_path(&self, path: &str) -> String {
        let path = match self.source_layout {
            Some(_) => without_host(path),
            None => path,
        };
        match (self.target_prefix.is_empty(), path.is_empty()) {
            (true, _) => path.to_string(),
            (false, true) => self.target_prefix.clone(),
            (false, false) => format!("{}/{path}", self.target_prefix),
        }
    }

    /// The source and target repositories of the repository at `path`.
    pub(crate) fn pair(&self, path: &str) -> Result<(Reference, Reference), String> {
        let (source, full_name) = match &self.source_layout {
            Some(l) => {
                let r = l
                    .in_layout(path)
                    .ok_or_else(|| format!("{path:?} is not a valid repository name"))?;
                (r, path.to_string())
            }
            None => {
                let r =
                    Reference::new_repository(&self.registry, path).map_err(|e| e.to_string())?;
                let name = r.name();
                (r, name)
            }
        };
        let target = match &self.target_layout {
            Some(l) => l
                .in_layout(&full_name)
                .ok_or_else(|| format!("{full_name:?} is not a valid name in a layout"))?,
            None => {
                let target_path = self.target_path(path);
                if target_path.is_empty() {
                    return Err(format!(
                        "its images have no repository name, and target {} has no path to put \
                         them under: give the target a repository path",
                        self.target_registry
                    ));
                }
                Reference::new_repository(&self.target_registry, &target_path)
                    .map_err(|e| e.to_string())?
            }
        };
        Ok((source, target))
    }

    /// What the source is, in words.
    pub fn describe_source(&self) -> String {
        match &self.source_layout {
            Some(l) => format!("every repository of layout {}", l.name()),
            None if self.namespace.is_empty() => {
                format!("every repository of registry {}", self.registry)
            }
            None => format!("repositories under {}/{}", self.registry, self.namespace),
        }
    }

    /// What the target is, in words.
    pub fn describe_target(&self) -> String {
        match &self.target_layout {
            Some(l) => format!("{} (each image under its full source name)", l.name()),
            None if self.target_prefix.is_empty() => {
                format!("{}/<source path>", self.target_registry)
            }
            None => format!(
                "{}/{}/<source path>",
                self.target_registry, self.target_prefix
            ),
        }
    }
}

/// A layout name without its registry host: `docker.io/library/nginx` is
/// `library/nginx`; `team/app` (no host) stays as it is.
pub fn without_host(name: &str) -> &str {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest
        }
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_dropped_only_when_they_are_hosts() {
        assert_eq!(without_host("docker.io/library/nginx"), "library/nginx");
        assert_eq!(without_host("localhost:5000/a"), "a");
        assert_eq!(without_host("localhost/a"), "a");
        assert_eq!(without_host("team/app"), "team/app");
        assert_eq!(without_host("nginx"), "nginx");
    }

    /// Which tree a target repository lies in: by registry and prefix, a
    /// prefix matching whole path segments only.
    #[test]
    fn a_tree_holds_what_lies_under_its_prefix() {
        let c = crate::sync::Config::parse(
            std::path::Path::new("t.toml"),
            "[[mirror]]\nsource = \"r.io/team\"\nrepositories = ['.*']\n\
             targets = [\"a.io/mirror\", \"b.io\"]\n",
        )
        .unwrap();
        let d = c.mirrors[0].discovery.as_ref().unwrap();
        let roots: Vec<String> = d.trees().map(Discovery::target_root).collect();
        assert_eq!(roots, ["a.io/mirror", "b.io"]);
        let r = |s: &str| Reference::parse(s).unwrap();
        let which = |s: &str| d.trees().position(|t| t.holds(&r(s)));
        assert_eq!(which("a.io/mirror/team/app"), Some(0));
        assert_eq!(which("a.io/mirror2/team/app"), None);
        assert_eq!(which("b.io/team/app"), Some(1));
        assert_eq!(which("c.io/team/app"), None);
    }
}
