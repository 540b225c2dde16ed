//! `/metrics` against `docs/metrics.md`: every family a real `serve`
//! exports is documented with the same type and label names, its `# HELP`
//! text opens the documented meaning, and every documented family is on the
//! page. The page comes from the serve of `alerts::` (which drives every
//! family); the checker is tested here on pages that drift.

use std::collections::{BTreeMap, BTreeSet};

/// One metric family: type, label names, help text.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Family {
    kind: String,
    labels: BTreeSet<String>,
    help: String,
}

/// The families of the table in `docs/metrics.md`, by name (`process_*`
/// included as written).
fn documented(doc: &str) -> BTreeMap<String, Family> {
    let mut out = BTreeMap::new();
    let mut in_table = false;
    for line in doc.lines() {
        if line.starts_with("| Name | Type | Labels | Meaning |") {
            in_table = true;
            continue;
        }
        if in_table && !line.starts_with('|') {
            break;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = line.split(" | ").collect();
        assert!(cells.len() >= 4, "docs/metrics.md: odd table row {line:?}");
        let name = cells[0].trim_start_matches("| ").trim_matches('`');
        let labels = cells[2]
            .split(", ")
            .filter(|l| *l != "—")
            .map(|l| {
                l.split(" = ")
                    .next()
                    .unwrap_or(l)
                    .trim_matches('`')
                    .to_string()
            })
            .collect();
        let meaning = cells[3..].join(" | ");
        let meaning = meaning
            .trim_end_matches(" |")
            .replace('`', "")
            .replace("\\|", "|");
        out.insert(
            name.to_string(),
            Family {
                kind: cells[1].to_string(),
                labels,
                help: meaning,
            },
        );
    }
    out
}

/// The families of a text exposition, by name: `# HELP`, `# TYPE` and the
/// label names of their samples (a histogram's `le` aside).
fn exported(page: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_string()).or_default().help = help.to_string();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_string()).or_default().kind = kind.to_string();
        } else if !line.is_empty() && !line.starts_with('#') {
            let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| out.get(*f).is_some_and(|f| f.kind == "histogram"))
                })
                .unwrap_or(name);
            let entry = out.entry(family.to_string()).or_default();
            for pair in labels.trim_end_matches('}').split("\",") {
                if let Some((k, _)) = pair.split_once("=\"")
                    && k != "le"
                {
                    entry.labels.insert(k.to_string());
                }
            }
        }
    }
    out
}

/// Every disagreement between a `/metrics` page and the docs' table.
pub(crate) fn drift(page: &str, doc: &str) -> Vec<String> {
    let docs = documented(doc);
    let page = exported(page);
    let mut problems = Vec::new();
    for (name, got) in &page {
        if name.starts_with("process_") {
            if !docs.contains_key("process_*") {
                problems.push(format!(
                    "{name}: exported, and no process_* row in the docs"
                ));
            }
            continue;
        }
        let Some(want) = docs.get(name) else {
            problems.push(format!("{name}: exported but not documented"));
            continue;
        };
        if got.kind != want.kind {
            problems.push(format!(
                "{name}: type {} on the page, {} in the docs",
                got.kind, want.kind
            ));
        }
        if got.labels != want.labels {
            problems.push(format!(
                "{name}: labels {:?} on the page, {:?} in the docs",
                got.labels, want.labels
            ));
        }
        if !want.help.starts_with(&got.help) {
            problems.push(format!(
                "{name}: HELP {:?} does not open the documented meaning {:?}",
                got.help, want.help
            ));
        }
    }
    for name in docs.keys() {
        if name != "process_*" && !page.contains_key(name) {
            problems.push(format!("{name}: documented but not exported"));
        }
    }
    problems
}

/// The shipped `docs/metrics.md`.
pub(crate) fn docs() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    std::fs::read_to_string(path).unwrap()
}

const DOC: &str = "\
| Name | Type | Labels | Meaning |
|------|------|--------|---------|
| `regmirror_runs_total` | counter | `mirror`, `result` = `a` \\| `b` | Runs by result. More `detail`. |
| `regmirror_wait_seconds` | histogram | — | Waits. |
| `process_*` | various | — | Process metrics. |

Text after the table.
";

const PAGE: &str = "\
# HELP regmirror_runs_total Runs by result.
# TYPE regmirror_runs_total counter
regmirror_runs_total{mirror=\"m\",result=\"a\"} 1
# HELP regmirror_wait_seconds Waits.
# TYPE regmirror_wait_seconds histogram
regmirror_wait_seconds_bucket{le=\"1\"} 0
regmirror_wait_seconds_sum 0
regmirror_wait_seconds_count 0
# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 9
";

#[test]
fn a_page_that_matches_its_docs_has_no_drift() {
    assert_eq!(drift(PAGE, DOC), Vec::<String>::new());
}

#[test]
fn every_kind_of_drift_between_page_and_docs_is_reported() {
    let cases = [
        // A label renamed in the code only.
        (PAGE.replace("mirror=", "name="), "labels"),
        // Another type.
        (
            PAGE.replace("runs_total counter", "runs_total gauge"),
            "type gauge",
        ),
        // A HELP text the docs do not open with.
        (PAGE.replace("Runs by result.", "Runs."), "does not open"),
        // A family missing from the docs.
        (
            format!("{PAGE}# TYPE regmirror_new gauge\nregmirror_new 1\n"),
            "not documented",
        ),
        // A documented family missing from the page.
        (
            PAGE.replace("regmirror_wait_seconds", "regmirror_other_seconds"),
            "not exported",
        ),
    ];
    for (page, want) in cases {
        let got = drift(&page, DOC);
        assert!(got.iter().any(|p| p.contains(want)), "{want}: {got:?}");
    }
}
