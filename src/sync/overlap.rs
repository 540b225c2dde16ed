//! Mirrors that would fight over a tag: two mirrors whose targets are the
//! same repository and whose selections can write the same tag would move
//! that tag back and forth on every run. The config refuses them.
//!
//! The rule is conservative: two mirrors into one repository overlap unless
//! it is provable from the config alone that they never write the same tag.
//! - A mirror writes a *known* set of tags when it names them (`tags`, a tag
//!   in `source`, a tag in `target`), none when it pins a digest without a
//!   tag (it pushes by digest only), and an *open* set when it lists the
//!   source's tags (every tag, or `include`/`exclude`/`semver`/`latest`).
//! - Two known sets overlap when they share a tag. A known tag overlaps an
//!   open set unless the open set's filter rejects that tag whatever the
//!   source holds (`include`, `exclude` and `semver` decide that; `latest`
//!   could keep any tag that passes them). Two open sets always overlap:
//!   which tags each keeps depends on what the sources list at run time.
//!
//! A mirror that discovers its repositories (see [`super::discover`]) may
//! write into any repository of its target tree (of each of its trees, with
//! `targets`): it overlaps a plain mirror whose target it may write, or a
//! discovering mirror whose target tree nests with one of its own, when
//! their tag selections can meet as above. The trees of one mirror must not
//! nest ([`nested_trees`]).

use super::model::{Discovery, Mirror, Selection};
use crate::registry::Reference;

/// The tags a mirror can write into its target repository.
enum Writes<'a> {
    /// Exactly these.
    Known(Vec<&'a str>),
    /// These, plus any listed source tag the filter passes (`None`: every tag).
    Open {
        known: Vec<&'a str>,
        filter: Option<&'a super::filter::TagFilter>,
    },
}

fn writes(m: &Mirror) -> Writes<'_> {
    if let Some(t) = &m.target_tag {
        return Writes::Known(vec![t.as_str()]);
    }
    match &m.selection {
        Selection::Digest(_) => Writes::Known(Vec::new()),
        Selection::Tags(tags) => Writes::Known(tags.iter().map(String::as_str).collect()),
        Selection::Filtered { tags, filter } => Writes::Open {
            known: tags.iter().map(String::as_str).collect(),
            filter: Some(filter),
        },
        Selection::All => Writes::Open {
            known: Vec::new(),
            filter: None,
        },
    }
}

/// True when an open selection with `filter` could select `tag`.
fn may_select(filter: Option<&super::filter::TagFilter>, tag: &str) -> bool {
    filter.is_none_or(|f| !f.apply(&[tag.to_string()]).is_empty())
}

/// Why the tag selections of `a` and `b` can meet, if they can.
fn shared_tag(a: &Writes<'_>, b: &Writes<'_>) -> Option<String> {
    let in_known = |known: &[&str], other: &Writes<'_>| -> Option<String> {
        known.iter().find_map(|t| {
            let meets = match other {
                Writes::Known(k) => k.contains(t),
                Writes::Open { known, filter } => known.contains(t) || may_select(*filter, t),
            };
            meets.then(|| format!("tag {t:?}"))
        })
    };
    match (a, b) {
        (Writes::Known(k), other) | (other, Writes::Known(k)) => in_known(k, other),
        (Writes::Open { known: ka, .. }, Writes::Open { .. }) => in_known(ka, b)
            .or_else(|| Some("the tags both select from their sources' tag lists".to_string())),
    }
}

/// Why the tag selections of mirrors `a` and `b` can meet in one
/// repository, if they can.
fn tags_can_meet(a: &Mirror, b: &Mirror) -> Option<String> {
    shared_tag(&writes(a), &writes(b))
}

/// The first pair of mirrors (indexes into `mirrors`, the later second) that
/// can write the same tag, with what they share. Pairs of plain mirrors
/// into one repository are reported first, then pairs where a mirror
/// discovers its repositories (see [`in_discovered_tree`]).
pub fn find_conflict(mirrors: &[Mirror]) -> Option<(usize, usize, String)> {
    first_pair(mirrors, in_one_repository).or_else(|| first_pair(mirrors, in_discovered_tree))
}

/// The first pair (`i` before `j`, by `j` then `i`) for which `meet` says
/// what they share.
fn first_pair(
    mirrors: &[Mirror],
    meet: impl Fn(&Mirror, &Mirror) -> Option<String>,
) -> Option<(usize, usize, String)> {
    for (j, b) in mirrors.iter().enumerate() {
        for (i, a) in mirrors[..j].iter().enumerate() {
            if let Some(what) = meet(a, b) {
                return Some((i, j, what));
            }
        }
    }
    None
}

/// What two plain mirrors into the same repository can both write.
fn in_one_repository(a: &Mirror, b: &Mirror) -> Option<String> {
    let shared = a
        .targets()
        .any(|x| b.targets().any(|y| x.same_repository(y)));
    if !shared || a.discovery.is_some() || b.discovery.is_some() {
        return None;
    }
    tags_can_meet(a, b)
}

/// What two mirrors, one of them discovering repositories, can both write
/// into one repository the discovering one may write. A discovering mirror
/// may write `target_registry/target_prefix/P` for every source path `P` it
/// selects; that is decidable against a plain mirror's target, and
/// conservatively assumed between two discovering mirrors whose target
/// trees nest.
fn in_discovered_tree(a: &Mirror, b: &Mirror) -> Option<String> {
    let trees_meet = match (&a.discovery, &b.discovery) {
        (None, None) => false,
        (Some(d), None) => d.trees().any(|d| b.targets().any(|t| may_write(d, t))),
        (None, Some(d)) => d.trees().any(|d| a.targets().any(|t| may_write(d, t))),
        (Some(x), Some(y)) => x.trees().any(|x| y.trees().any(|y| trees_nest(x, y))),
    };
    trees_meet.then(|| tags_can_meet(a, b)).flatten()
}

/// True when the discovering mirror `d` could write into `target`.
fn may_write(d: &Discovery, target: &Reference) -> bool {
    if target.registry() != d.target_registry {
        return false;
    }
    let path = target.repository();
    if d.target_layout.is_some() {
        // The target name is the full source name.
        return match &d.source_layout {
            Some(_) => d.selects(path),
            None => path
                .strip_prefix(d.registry.as_str())
                .and_then(|p| p.strip_prefix('/'))
                .is_some_and(|p| d.selects(p)),
        };
    }
    let rest = if d.target_prefix.is_empty() {
        Some(path)
    } else if path == d.target_prefix {
        Some("")
    } else {
        path.strip_prefix(d.target_prefix.as_str())
            .and_then(|r| r.strip_prefix('/'))
    };
    // From a layout the host is dropped: any name may land anywhere below.
    rest.is_some_and(|p| d.source_layout.is_some() || d.selects(p))
}

/// The first two target trees of one discovering mirror with several
/// targets that nest (indexes into [`Discovery::trees`], the later
/// second): a source repository could then land in one target repository
/// through both.
pub(super) fn nested_trees(d: &Discovery) -> Option<(usize, usize)> {
    let trees: Vec<&Discovery> = d.trees().collect();
    for (j, y) in trees.iter().enumerate() {
        for (i, x) in trees[..j].iter().enumerate() {
            if trees_nest(x, y) {
                return Some((i, j));
            }
        }
    }
    None
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

    /// Mirrors parsed one per file, so that the config's own overlap check
    /// does not stop the test of the rule itself.
    fn conflict(mirrors: &[String]) -> Option<(usize, usize, String)> {
        let mirrors: Vec<Mirror> = mirrors
            .iter()
            .flat_map(|t| Config::parse(Path::new("t.toml"), t).unwrap().mirrors)
            .collect();
        find_conflict(&mirrors)
    }

    fn m(source: &str, target: &str, extra: &str) -> String {
        format!("[[mirror]]\nsource = \"{source}\"\ntarget = \"{target}\"\n{extra}\n")
    }

    #[test]
    fn known_tags() {
        let a = m("r.io/a:1", "t.io/x", "");
        assert!(conflict(&[a.clone(), m("r.io/b:1", "t.io/x", "")]).is_some());
        assert!(conflict(&[a.clone(), m("r.io/b:2", "t.io/x", "")]).is_none());
        assert!(conflict(&[a.clone(), m("r.io/a:1", "t.io/y", "")]).is_none());
        // A target tag renames: both write "stable".
        let c = conflict(&[
            m("r.io/a:1", "t.io/x:stable", ""),
            m("r.io/b", "t.io/x", "tags = [\"stable\", \"2\"]"),
        ])
        .unwrap();
        assert_eq!((c.0, c.1), (0, 1));
        assert!(c.2.contains("stable"), "{}", c.2);
        // A digest without a tag writes no tag.
        let d = format!(
            "r.io/a@sha256:{}",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(conflict(&[m(&d, "t.io/x", ""), a]).is_none());
    }

    #[test]
    fn open_selections() {
        let all = m("r.io/a", "t.io/x", "");
        assert!(conflict(&[all, m("r.io/b:1", "t.io/x", "")]).is_some());
        // A filter that rejects the known tag is provably disjoint from it.
        let v1 = m("r.io/a", "t.io/x", "include = ['^1\\.']");
        assert!(conflict(&[v1.clone(), m("r.io/b:2.0", "t.io/x", "")]).is_none());
        assert!(conflict(&[v1.clone(), m("r.io/b:1.5", "t.io/x", "")]).is_some());
        let semver = m("r.io/a", "t.io/x", "semver = \">=2\"\nlatest = 1");
        assert!(conflict(&[semver.clone(), m("r.io/b:1.0", "t.io/x", "")]).is_none());
        assert!(conflict(&[semver, m("r.io/b:latest", "t.io/x", "")]).is_none());
        // Two listing mirrors into one repository: treated as overlapping.
        let v2 = m("r.io/b", "t.io/x", "include = ['^2\\.']");
        let c = conflict(&[v1.clone(), v2]).unwrap();
        assert!(c.2.contains("tag lists"), "{}", c.2);
        assert!(conflict(&[v1, m("r.io/b", "t.io/y", "include = ['^2\\.']")]).is_none());
    }

    /// A discovering mirror with several targets writes into each of its
    /// trees: a plain mirror into the second tree overlaps it, and trees of
    /// one mirror that nest are refused when the config is read.
    #[test]
    fn every_target_tree_of_a_discovering_mirror() {
        let fan = "[[mirror]]\nsource = \"r.io/team\"\nrepositories = ['^team/']\n\
                   targets = [\"a.io/mirror\", \"b.io\"]\n"
            .to_string();
        let c = conflict(&[fan.clone(), m("s.io/x:1", "b.io/team/app", "")]).unwrap();
        assert_eq!((c.0, c.1), (0, 1));
        assert!(conflict(&[fan.clone(), m("s.io/x:1", "b.io/other/app", "")]).is_none());
        assert!(conflict(&[fan.clone(), m("s.io/x:1", "a.io/mirror/team/app", "")]).is_some());
        let other = "[[mirror]]\nsource = \"q.io/ns\"\nrepositories = ['.*']\n\
                     target = \"b.io/team\"\n"
            .to_string();
        assert!(conflict(&[fan, other]).is_some(), "b.io and b.io/team nest");
        for targets in [
            "[\"a.io/mirror\", \"a.io/mirror/sub\"]",
            "[\"a.io\", \"b.io/x\", \"b.io/x/y\"]",
        ] {
            let text = format!(
                "[[mirror]]\nsource = \"r.io/team\"\nrepositories = ['^team/']\n\
                 targets = {targets}\n"
            );
            let e = Config::parse(Path::new("t.toml"), &text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("mirror[1].targets"), "{e}");
            assert!(e.message.contains("nest"), "{e}");
        }
    }
}
