//! The config keys of a discovering mirror (`repositories`,
//! `exclude_repositories`, `max_repositories`) and how its `source` and
//! `target` are read; see [`super::discover`] for what a run does with them.
//!
//! - `source` is a registry (`registry.example.com`) or a namespace
//!   (`registry.example.com/team`) when `repositories` is set; an OCI
//!   layout or archive without a REF (`oci:/media/bundle`) always is one
//!   (every repository it holds), `repositories` then only narrows it.
//! - `target` is a registry or a prefix on one (`registry.internal/mirror`),
//!   or an OCI layout or archive without a REF, which then holds every
//!   image under its full source name (`org.opencontainers.image.ref.name`
//!   `registry/repository:tag`).

use regex::Regex;
use toml::Spanned;

use super::model::{DEFAULT_MAX_REPOSITORIES, Discovery, WHOLE_REGISTRY};
use crate::registry::Reference;

/// The keys of one `[[mirror]]` that concern discovery, as written.
pub(super) struct DiscoveryKeys<'a> {
    pub source: &'a str,
    pub target: &'a str,
    pub repositories: Option<&'a [Spanned<String>]>,
    pub exclude_repositories: Option<&'a [Spanned<String>]>,
    pub max_repositories: Option<&'a Spanned<usize>>,
}

/// A discovery key that is wrong: (key, span, message).
pub(super) type KeyError = (&'static str, Option<std::ops::Range<usize>>, String);

/// `None` for a mirror that does not discover; else the validated
/// [`Discovery`] with the text of the references that stand for its source
/// and target (`host/namespace`, `host/`[`WHOLE_REGISTRY`], or the layout).
pub(super) fn from_keys(
    k: &DiscoveryKeys<'_>,
) -> Result<Option<(Discovery, String, String)>, KeyError> {
    let source = k.source.trim();
    let source_layout = whole_layout(source).map_err(|e| ("source", None, e))?;
    if k.repositories.is_none() && source_layout.is_none() {
        if let Some(key) = k
            .exclude_repositories
            .map(|_| "exclude_repositories")
            .or(k.max_repositories.map(|_| "max_repositories"))
        {
            return Err((
                key,
                None,
                format!(
                    "`{key}` needs `repositories`, which turns the source into a registry or \
                     namespace whose repositories are discovered (repositories = ['.*'] for all)"
                ),
            ));
        }
        return Ok(None);
    }
    let include = regexes("repositories", k.repositories)?;
    let exclude = regexes("exclude_repositories", k.exclude_repositories)?;
    if include.is_empty() && k.repositories.is_some() {
        return Err((
            "repositories",
            None,
            "repositories is empty: list at least one regex (['.*'] for every repository), or \
             drop the key to mirror one repository"
                .into(),
        ));
    }
    let max_repositories = max_repositories(k.max_repositories)?;
    let (registry, namespace) = match &source_layout {
        Some(l) => (l.registry().to_string(), String::new()),
        None => split_root(source).map_err(|e| ("source", None, e))?,
    };
    if registry == crate::registry::reference::DOCKER_HUB {
        return Err((
            "repositories",
            None,
            format!(
                "source {source:?} is on Docker Hub, which has no catalog, so its repositories \
                 cannot be discovered: list them explicitly, one [[mirror]] per repository \
                 (e.g. source = \"docker.io/library/nginx\")"
            ),
        ));
    }
    let target = k.target.trim();
    let target_layout = whole_layout(target).map_err(|e| ("target", None, e))?;
    let (target_registry, target_prefix) = match &target_layout {
        Some(l) => (l.registry().to_string(), String::new()),
        None => split_root(target).map_err(|e| ("target", None, e))?,
    };
    let d = Discovery {
        registry,
        source_layout,
        namespace,
        include,
        exclude,
        max_repositories,
        target_registry,
        target_layout,
        target_prefix,
        more_targets: Vec::new(),
    };
    refuse_loop(&d, source, target)?;
    let root = |layout: &Option<Reference>, host: &str, path: &str| match layout {
        Some(_) => host.to_string(),
        None if path.is_empty() => format!("{host}/{WHOLE_REGISTRY}"),
        None => format!("{host}/{path}"),
    };
    let s = root(&d.source_layout, &d.registry, &d.namespace);
    let t = root(&d.target_layout, &d.target_registry, &d.target_prefix);
    Ok(Some((d, s, t)))
}

fn regexes(key: &'static str, list: Option<&[Spanned<String>]>) -> Result<Vec<Regex>, KeyError> {
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
        .collect()
}

fn max_repositories(v: Option<&Spanned<usize>>) -> Result<usize, KeyError> {
    match v {
        Some(m) if *m.get_ref() == 0 => Err((
            "max_repositories",
            Some(m.span()),
            "max_repositories = 0 would select nothing: expected at least 1".into(),
        )),
        Some(m) => Ok(*m.get_ref()),
        None => Ok(DEFAULT_MAX_REPOSITORIES),
    }
}

/// A target inside the source would be discovered and mirrored again on
/// every run.
fn refuse_loop(d: &Discovery, source: &str, target: &str) -> Result<(), KeyError> {
    let inside = d.registry == d.target_registry
        && (d.namespace.is_empty()
            || d.target_prefix == d.namespace
            || d.target_prefix.starts_with(&format!("{}/", d.namespace)));
    if inside {
        return Err((
            "target",
            None,
            format!(
                "target {target:?} lies inside the source {source:?}: every run would discover \
                 the mirrored copies and mirror them again; choose a target outside the source"
            ),
        ));
    }
    Ok(())
}

/// `Some(layout root)` for `oci:PATH` / `oci-archive:PATH` without a REF;
/// `None` for anything else (a registry, or a layout with a REF, which names
/// one repository or image).
fn whole_layout(text: &str) -> Result<Option<Reference>, String> {
    match Reference::parse(text) {
        Ok(r) if r.is_layout() => Ok((r.repository().is_empty()
            && r.tag().is_none()
            && r.digest().is_none())
        .then_some(r)),
        Ok(_) => Ok(None),
        Err(e) if text.starts_with("oci:") || text.starts_with("oci-archive:") => {
            Err(e.to_string())
        }
        Err(_) => Ok(None),
    }
}

/// The target of a plain mirror: an OCI layout or archive named without a
/// REF (`oci:/media/bundle`) holds the image under its full source name
/// (`ref.name` = `registry/repository:tag`), so one layout can take many
/// mirrors; any other target is returned as it is.
pub(super) fn name_in_layout(
    target: Reference,
    target_tag: Option<&str>,
    source: &Reference,
) -> Reference {
    if !target.is_layout()
        || !target.repository().is_empty()
        || target_tag.is_some()
        || source.is_layout()
    {
        return target;
    }
    target.in_layout(&source.name()).unwrap_or(target)
}

/// The name of a discovering mirror without one: its target tree
/// (`mirror/*`, `host/*` for a registry-wide target, `oci:PATH` for a layout).
pub(super) fn default_name(d: &Discovery) -> String {
    match &d.target_layout {
        Some(l) => l.name(),
        None if d.target_prefix.is_empty() => format!("{}/*", d.target_registry),
        None => format!("{}/*", d.target_prefix),
    }
}

/// `host[/path]` with no tag or digest, split into host and path.
fn split_root(text: &str) -> Result<(String, String), String> {
    let (host, path) = text.split_once('/').unwrap_or((text, ""));
    if !super::source::is_registry_only(host) {
        return Err(format!(
            "{text:?} must start with a registry host (e.g. \"registry.example.com/team\"), or \
             be an OCI layout (\"oci:/media/bundle\"): a mirror with `repositories` copies a \
             registry or a namespace"
        ));
    }
    let path = path.trim_end_matches('/');
    let probe = if path.is_empty() {
        WHOLE_REGISTRY
    } else {
        path
    };
    let r = Reference::parse_repository(&format!("{host}/{probe}")).map_err(|e| {
        format!(
            "{e}; with `repositories`, source and target are a registry or a namespace without \
             tag or digest"
        )
    })?;
    Ok((r.registry().to_string(), path.to_string()))
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

    #[test]
    fn a_layout_without_ref_is_a_source_of_every_repository_in_it() {
        let c =
            parse("[[mirror]]\nsource = \"oci:/media/bundle\"\ntarget = \"r.internal/mirror\"\n")
                .unwrap();
        let m = &c.mirrors[0];
        let d = m.discovery.as_ref().unwrap();
        assert!(d.source_layout.is_some());
        assert_eq!(m.name, "mirror/*");
        assert!(d.selects("docker.io/library/nginx"));
        assert_eq!(
            d.target_path("docker.io/library/nginx"),
            "mirror/library/nginx"
        );
        assert_eq!(d.target_path("localhost:5000/team/app"), "mirror/team/app");
        assert_eq!(d.target_path("team/app"), "mirror/team/app");
        assert_eq!(d.target_path(""), "mirror");
        // `repositories` narrows it, matched against the full name.
        let c = parse(
            "[[mirror]]\nsource = \"oci:/media/bundle\"\ntarget = \"r.internal/gh\"\nrepositories = ['^ghcr\\.io/']\n",
        )
        .unwrap();
        let d = c.mirrors[0].discovery.as_ref().unwrap();
        assert!(d.selects("ghcr.io/org/app") && !d.selects("quay.io/org/app"));
        // A layout with a REF names one repository or image: no discovery.
        let c =
            parse("[[mirror]]\nsource = \"oci:/media/bundle:1.0\"\ntarget = \"r.internal/app\"\n")
                .unwrap();
        assert!(c.mirrors[0].discovery.is_none());
    }

    #[test]
    fn mirrors_into_one_layout_keep_their_full_source_names() {
        let c = parse(
            "[[mirror]]\nsource = \"docker.io/library/nginx:1.27\"\ntarget = \"oci:/media/bundle\"\n\n\
             [[mirror]]\nsource = \"ghcr.io/org/app\"\ntarget = \"oci:/media/bundle\"\ntags = [\"1\", \"2\"]\n\n\
             [[mirror]]\nsource = \"src.example/team\"\ntarget = \"oci:/media/bundle\"\nrepositories = ['.*']\n",
        )
        .unwrap();
        let (_, t) = c.mirrors[0].pair_for_tag("1.27").unwrap();
        assert_eq!(
            t.layout_ref_name().as_deref(),
            Some("docker.io/library/nginx:1.27")
        );
        let (_, t) = c.mirrors[1].pair_for_tag("2").unwrap();
        assert_eq!(t.layout_ref_name().as_deref(), Some("ghcr.io/org/app:2"));
        let d = c.mirrors[2].discovery.as_ref().unwrap();
        assert!(d.target_layout.is_some());
        // Two mirrors of one source into one layout write the same names.
        let e = parse(
            "[[mirror]]\nsource = \"ghcr.io/org/app:1\"\ntarget = \"oci:/media/bundle\"\n\n\
             [[mirror]]\nsource = \"ghcr.io/org/app\"\ntarget = \"oci:/media/bundle\"\ntags = [\"1\"]\nname = \"again\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("same tag"), "{e}");
    }

    #[test]
    fn the_commented_example_of_config_example_toml_is_valid() {
        let text = include_str!("../../config.example.toml");
        let start = text
            .find("# [[mirror]]\n# source = \"harbor")
            .expect("the example is there");
        let block: String = text[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.strip_prefix("# ").unwrap_or(l).to_string() + "\n")
            .collect();
        let c = parse(&block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        let d = c.mirrors[0].discovery.as_ref().unwrap();
        assert!(d.selects("team/app") && !d.selects("team/app-old"));
        assert_eq!(d.target_path("team/app"), "mirror/team/app");
    }
}
