//! What every metric family can do, whatever its type: be registered, be
//! zero-initialised for the label values known at start, and forget the
//! series of a mirror that left the config.
//!
//! Counters and histograms are zero-initialised, so that `rate()` and
//! `increase()` see a series before its first event; gauges never are (a
//! gauge at 0 would claim a value: no pulls left, a last success in 1970).

use std::collections::HashMap;

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{GaugeVec, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

/// Label values known when zero-initialising: the configured mirrors and
/// registry hosts, and the (registry, account) pairs of pull budgets.
#[derive(Debug, Default, Clone)]
pub struct Scope {
    /// Mirror names (`mirror` label).
    pub mirrors: Vec<String>,
    /// Registry hosts as written in references (the `registry` label of
    /// families without an `account` label).
    pub hosts: Vec<String>,
    /// (registry, account) pairs (`registry` and `account` labels together).
    pub accounts: Vec<(String, String)>,
    /// (mirror, target repository) pairs (`mirror` and `target` labels
    /// together), the target as the report names it.
    pub targets: Vec<(String, String)>,
}

/// The fixed values of a label that is neither mirror, registry nor
/// account: (label, every value it takes).
pub type Fixed = &'static [(&'static str, &'static [&'static str])];

/// One metric family of the exposition.
pub trait Family: Sync {
    /// The family's name and label names.
    fn shape(&self) -> (String, Vec<String>);
    /// Make the series with `labels` exist (at zero when new); nothing for
    /// a gauge.
    fn touch(&self, labels: &HashMap<&str, &str>);
    /// Drop the series whose `mirror` label is `mirror`.
    fn forget_mirror(&self, _mirror: &str) {}
    /// True for a counter or a histogram.
    fn is_counter(&self) -> bool;
}

fn shape_of(c: &dyn Collector) -> (String, Vec<String>) {
    c.desc()
        .first()
        .map(|d| (d.fq_name.clone(), d.variable_labels.clone()))
        .unwrap_or_default()
}

fn forget<T: MetricVecBuilder>(vec: &MetricVec<T>, mirror: &str) {
    for family in vec.collect() {
        for m in family.get_metric() {
            let labels: HashMap<&str, &str> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if labels.get("mirror") == Some(&mirror) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

macro_rules! labelled {
    ($ty:ty, $counter:expr) => {
        impl Family for $ty {
            fn shape(&self) -> (String, Vec<String>) {
                shape_of(self)
            }
            fn touch(&self, labels: &HashMap<&str, &str>) {
                if $counter {
                    let _ = self.get_metric_with(labels);
                }
            }
            fn forget_mirror(&self, mirror: &str) {
                forget(self, mirror)
            }
            fn is_counter(&self) -> bool {
                $counter
            }
        }
    };
}

labelled!(IntCounterVec, true);
labelled!(prometheus::CounterVec, true);
labelled!(HistogramVec, true);
labelled!(IntGaugeVec, false);
labelled!(GaugeVec, false);

macro_rules! plain {
    ($ty:ty, $counter:expr) => {
        impl Family for $ty {
            fn shape(&self) -> (String, Vec<String>) {
                shape_of(self)
            }
            fn touch(&self, _labels: &HashMap<&str, &str>) {}
            fn is_counter(&self) -> bool {
                $counter
            }
        }
    };
}

plain!(IntCounter, true);
plain!(IntGauge, false);
plain!(prometheus::Gauge, false);

/// Every label set of a family with `labels` that `scope` and `fixed` name:
/// the product of each label's values (none when a label has no value).
pub fn label_sets<'a>(
    labels: &'a [String],
    fixed: Fixed,
    scope: &'a Scope,
) -> Vec<HashMap<&'a str, &'a str>> {
    let paired = labels.iter().any(|l| l == "account");
    let by_target = labels.iter().any(|l| l == "target");
    let mut sets = vec![HashMap::new()];
    for label in labels {
        let name = label.as_str();
        let values: Vec<Vec<(&str, &str)>> = match name {
            "mirror" if by_target => scope
                .targets
                .iter()
                .map(|(m, t)| vec![("mirror", m.as_str()), ("target", t.as_str())])
                .collect(),
            "target" => continue,
            "mirror" => one(name, scope.mirrors.iter().map(String::as_str)),
            "registry" if !paired => one(name, scope.hosts.iter().map(String::as_str)),
            "registry" => scope
                .accounts
                .iter()
                .map(|(r, a)| vec![("registry", r.as_str()), ("account", a.as_str())])
                .collect(),
            "account" => continue,
            _ => match fixed.iter().find(|(l, _)| *l == name) {
                Some((_, vs)) => one(name, vs.iter().copied()),
                None => Vec::new(),
            },
        };
        sets = sets
            .iter()
            .flat_map(|set| {
                values.iter().map(move |pairs| {
                    let mut s = set.clone();
                    s.extend(pairs.iter().copied());
                    s
                })
            })
            .collect();
    }
    sets
}

fn one<'a>(label: &'a str, values: impl Iterator<Item = &'a str>) -> Vec<Vec<(&'a str, &'a str)>> {
    values.map(|v| vec![(label, v)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_are_the_product_of_known_values() {
        let scope = Scope {
            mirrors: vec!["a".into(), "b".into()],
            hosts: vec!["h".into()],
            accounts: vec![("r".into(), "anonymous".into())],
            targets: vec![("a".into(), "t1".into()), ("a".into(), "t2".into())],
        };
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let fixed: Fixed = &[("result", &["x", "y", "z"])];
        assert_eq!(
            label_sets(&labels(&["mirror", "result"]), fixed, &scope).len(),
            6
        );
        assert_eq!(label_sets(&labels(&["registry"]), &[], &scope).len(), 1);
        let paired = labels(&["registry", "account"]);
        let pairs = label_sets(&paired, &[], &scope);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0]["account"], "anonymous");
        let triple = labels(&["mirror", "target", "result"]);
        let by_target = label_sets(&triple, fixed, &scope);
        assert_eq!(by_target.len(), 6, "each (mirror, target) pair by result");
        assert!(by_target.iter().all(|s| s["mirror"] == "a"));
        assert!(label_sets(&labels(&["mirror"]), &[], &Scope::default()).is_empty());
        assert!(label_sets(&labels(&["shard"]), &[], &scope).is_empty());
    }
}
