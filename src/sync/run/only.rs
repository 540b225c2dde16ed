//! A narrowed run: "only these repositories, only these tags" of one
//! mirror, as asked by an event or the sync-now API.
//!
//! A narrowing can only take away from what the mirror selects, never add
//! to it: the run still lists and filters its tags as usual and then keeps
//! the images the narrowing names. A narrowed run prunes nothing and keeps
//! the quarantine of the images it did not look at.

use std::collections::{BTreeMap, BTreeSet};

use crate::registry::Reference;

/// The tags of one repository a narrowed run looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tags {
    /// Every tag the mirror selects in the repository.
    All,
    /// These tags, when the mirror selects them.
    Some(BTreeSet<String>),
}

/// Which images of a mirror a narrowed run looks at: source repository
/// paths (as the source names them, `library/alpine`) and their tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Only {
    repositories: BTreeMap<String, Tags>,
}

impl Only {
    /// Only `repository`, and in it only `tag` when one is given.
    pub fn repository(repository: &str, tag: Option<&str>) -> Only {
        let tags = match tag {
            Some(t) => Tags::Some(BTreeSet::from([t.to_string()])),
            None => Tags::All,
        };
        Only {
            repositories: BTreeMap::from([(repository.to_string(), tags)]),
        }
    }

    /// Widen this narrowing by `other` (bursts of events coalesce into one run).
    pub fn merge(&mut self, other: Only) {
        for (repo, tags) in other.repositories {
            match (self.repositories.get_mut(&repo), tags) {
                (None, tags) => {
                    self.repositories.insert(repo, tags);
                }
                (Some(mine), Tags::All) => *mine = Tags::All,
                (Some(Tags::All), Tags::Some(_)) => {}
                (Some(Tags::Some(mine)), Tags::Some(more)) => mine.extend(more),
            }
        }
    }

    /// True when the run looks at the repository at `path`.
    pub fn covers_repository(&self, path: &str) -> bool {
        self.repositories.contains_key(path)
    }

    /// True when the run looks at the source image `source`.
    pub fn covers(&self, source: &Reference) -> bool {
        match self.repositories.get(source.repository()) {
            None => false,
            Some(Tags::All) => true,
            Some(Tags::Some(tags)) => source.tag().is_some_and(|t| tags.contains(t)),
        }
    }

    /// The repositories and tags, for logs and the API (`repo:tag`, `repo:*`).
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (repo, tags) in &self.repositories {
            match tags {
                Tags::All => out.push(format!("{repo}:*")),
                Tags::Some(ts) => out.extend(ts.iter().map(|t| format!("{repo}:{t}"))),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn tags_coalesce_and_a_whole_repository_absorbs_them() {
        let mut only = Only::repository("team/app", Some("v1"));
        only.merge(Only::repository("team/app", Some("v2")));
        assert!(only.covers(&r("127.0.0.1:5000/team/app:v1")));
        assert!(only.covers(&r("127.0.0.1:5000/team/app:v2")));
        assert!(!only.covers(&r("127.0.0.1:5000/team/app:v3")));
        assert!(!only.covers(&r("127.0.0.1:5000/team/other:v1")));
        assert_eq!(only.describe(), ["team/app:v1", "team/app:v2"]);
        only.merge(Only::repository("team/app", None));
        only.merge(Only::repository("team/app", Some("v4")));
        assert!(only.covers(&r("127.0.0.1:5000/team/app:v9")));
        assert!(only.covers_repository("team/app"));
        assert!(!only.covers_repository("team"));
    }
}
