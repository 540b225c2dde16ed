//! Every alert rule of the kustomize PrometheusRule
//! (`deploy/kubernetes/components/monitoring/prometheusrule.yaml`, with its
//! real `for:` durations) checked by `promtool test rules` on series that
//! real `serve`s exported.
//!
//! The series come from the real Prometheus of `alerts::`, which scraped
//! the daemons while each situation happened: they are read back through
//! its `/api/v1/query_range` API, one sample per scrape interval, and
//! written as promtool `input_series`. promtool's clock starts at 0, so the
//! time axis starts at the capture's start and every `*_timestamp_seconds`
//! value is shifted by the same amount. The capture lasts minutes while
//! the rules wait up to 3 h (`for:`), so each series that is still exported
//! at the end goes on in the state it ended in: a counter at its average
//! rate over the last minute (the situation keeps happening), a timestamp
//! that was still moving keeps following the clock (the mirror keeps
//! running), any other gauge at its last value. A series that ended before
//! the capture did (a killed replica's) ends with a staleness marker, as it
//! did in the real Prometheus.
//!
//! Each rule gets a test group of its own holding only the series of its
//! situation and of the healthy mirror and registries, and promtool checks
//! that exactly the expected alert fires (its full label set) after the
//! rule's `for:`: a selector, label or expression that stops matching what
//! `serve` exports fails the test. Annotations are left out of the rules
//! given to promtool (their texts are checked by the hand-written
//! `deploy/kubernetes/components/monitoring/tests/alerts.test.yaml`).

use std::collections::BTreeMap;
use std::path::Path;

/// One series: its labels and one optional value per capture step.
struct Series {
    labels: BTreeMap<String, String>,
    values: Vec<Option<f64>>,
}

/// The series read from a Prometheus between `start` and the end, one
/// sample every `step` seconds.
pub(crate) struct Capture {
    series: Vec<Series>,
    start: i64,
    step: i64,
    steps: usize,
}

/// A rule's expected alert and the series its test group keeps.
pub(crate) struct Case {
    alert: &'static str,
    /// The alert's labels besides `alertname` and the rule's own labels.
    labels: Vec<(String, String)>,
    /// For a label name, the values a kept series may carry (a series
    /// without that label is kept).
    only: Vec<(&'static str, Vec<String>)>,
}

impl Case {
    /// `alert` fires with `labels`, on the series whose label values are
    /// within `only`.
    fn new(alert: &'static str, labels: &[(&str, &str)], only: &[(&'static str, &[&str])]) -> Case {
        Case {
            alert,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            only: only
                .iter()
                .map(|(k, vs)| (*k, vs.iter().map(|v| v.to_string()).collect()))
                .collect(),
        }
    }

    fn keeps(&self, s: &Series) -> bool {
        self.only
            .iter()
            .all(|(k, vs)| s.labels.get(*k).is_none_or(|v| vs.contains(v)))
    }
}

/// The case of every shipped alert, for the situations of `alerts::`:
/// `limited` is the registry answering 429, `healthy` the healthy mirror's
/// registries; shard 1's replica is dead and the main daemon's reload was
/// rejected at the end of the capture.
pub(crate) fn cases(capture: &Capture, limited: &str, healthy: [&str; 2]) -> Vec<Case> {
    let ns = ("namespace", "regmirror");
    let mirror = |alert, m| Case::new(alert, &[ns, ("mirror", m)], &[("mirror", &[m, "healthy"])]);
    let registries: &[&str] = &[limited, healthy[0], healthy[1]];
    let down = capture.labels_of("up", &[("pod", "regmirror-shard-1")]);
    let down: Vec<(&str, &str)> = down.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    vec![
        mirror("RegmirrorMirrorFailing", "down"),
        mirror("RegmirrorMirrorNeverSucceeded", "down"),
        mirror("RegmirrorMirrorStale", "stale"),
        mirror("RegmirrorTagsQuarantined", "gone"),
        mirror("RegmirrorPullsDeferred", "deferred"),
        mirror("RegmirrorRunsSkipped", "slow"),
        mirror("RegmirrorReplicationLagHigh", "late"),
        mirror("RegmirrorAuditMissing", "audited"),
        Case::new(
            "RegmirrorRateLimited",
            &[ns, ("registry", limited)],
            &[("registry", registries)],
        ),
        Case::new(
            "RegmirrorDockerHubAllowanceLow",
            &[ns, ("registry", limited), ("account", "anonymous")],
            &[("registry", registries)],
        ),
        Case::new(
            "RegmirrorConfigReloadFailed",
            &[ns, ("pod", "regmirror-main")],
            &[],
        ),
        Case::new("RegmirrorDown", &down, &[]),
        Case::new("RegmirrorShardMissing", &[ns, ("shard", "1")], &[]),
        // The capture before the first target was scraped: no series at all.
        Case::new("RegmirrorAbsent", &[], &[("__name__", &[])]),
    ]
}

/// The shipped kustomize rules file.
fn rules_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes/components/monitoring/prometheusrule.yaml")
}

/// The PrometheusRule's `spec` (a Prometheus rules file), without annotations.
fn rules() -> serde_json::Value {
    let text = std::fs::read_to_string(rules_path()).unwrap();
    let doc: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let mut spec = doc["spec"].clone();
    for group in spec["groups"].as_array_mut().unwrap() {
        for rule in group["rules"].as_array_mut().unwrap() {
            rule.as_object_mut().unwrap().remove("annotations");
        }
    }
    spec
}

/// The alerting rule named `alert`.
fn rule<'a>(rules: &'a serde_json::Value, alert: &str) -> &'a serde_json::Value {
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .find(|r| r["alert"] == alert)
        .unwrap_or_else(|| panic!("{} has no alert {alert}", rules_path().display()))
}

/// Every alert name of the shipped rules.
fn alert_names() -> Vec<String> {
    let rules = rules();
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect()
}

/// Seconds of a Prometheus duration such as `5m`, `3h` or `0s`.
fn seconds(d: &str) -> i64 {
    let (n, unit) = d.split_at(d.len() - 1);
    let n: i64 = n.parse().unwrap_or_else(|_| panic!("duration {d}"));
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => panic!("duration {d}"),
    }
}

impl Capture {
    /// Read every series the rules use (and `up`) from the Prometheus at
    /// `addr`, from unix time `start` to now, one sample every `step` s.
    pub(crate) async fn read(http: &reqwest::Client, addr: &str, start: i64, step: i64) -> Capture {
        let text = std::fs::read_to_string(rules_path()).unwrap();
        let names = regex::Regex::new(r"\bregmirror_[a-z0-9_]+").unwrap();
        let mut families: Vec<&str> = names.find_iter(&text).map(|m| m.as_str()).collect();
        families.extend(["up"]);
        families.sort();
        families.dedup();
        // Let the last state reach a few points of the step grid.
        tokio::time::sleep(std::time::Duration::from_secs(2 * step as u64 + 1)).await;
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let query = format!("{{__name__=~\"{}\"}}", families.join("|"));
        let url = format!("http://{addr}/api/v1/query_range");
        let params = [
            ("query", query),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", step.to_string()),
        ];
        let url = url::Url::parse_with_params(&url, &params).unwrap();
        let r = http.get(url).send().await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(v["status"], "success", "query_range failed: {v}");
        let steps = ((end - start) / step + 1) as usize;
        let series = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| Series::from_json(s, start, step, steps))
            .collect();
        Capture {
            series,
            start,
            step,
            steps,
        }
    }

    /// The labels of the series named `name` with every label of `with`.
    pub(crate) fn labels_of(&self, name: &str, with: &[(&str, &str)]) -> Vec<(String, String)> {
        let s = self
            .series
            .iter()
            .find(|s| {
                s.labels["__name__"] == name
                    && with
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no series {name} {with:?} in the capture"));
        s.labels
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Series {
    /// A matrix entry of a query_range answer, on the capture's steps, with
    /// timestamps shifted to promtool's clock.
    fn from_json(s: &serde_json::Value, start: i64, step: i64, steps: usize) -> Series {
        let labels: BTreeMap<String, String> = serde_json::from_value(s["metric"].clone()).unwrap();
        let shift = labels["__name__"].ends_with("_timestamp_seconds");
        let mut values = vec![None; steps];
        for pair in s["values"].as_array().unwrap() {
            let t = pair[0].as_f64().unwrap() as i64;
            let mut v: f64 = pair[1].as_str().unwrap().parse().unwrap();
            if shift && v > 0.0 {
                v -= start as f64;
            }
            if let Some(slot) = values.get_mut(((t - start) / step) as usize) {
                *slot = Some(v);
            }
        }
        Series { labels, values }
    }

    /// The change per step of this series after the capture (see the module doc).
    fn slope(&self, step: i64) -> f64 {
        let last = self.values.len() - 1;
        let from = last.saturating_sub(60 / step as usize);
        let Some(first) = (from..last).find(|&i| self.values[i].is_some()) else {
            return 0.0;
        };
        let (Some(now), Some(then)) = (self.values[last], self.values[first]) else {
            return 0.0;
        };
        let back = last - first;
        let name = &self.labels["__name__"];
        if name.ends_with("_total") {
            (now - then) / back as f64
        } else if name.ends_with("_timestamp_seconds") && now != then {
            step as f64
        } else {
            0.0
        }
    }

    /// promtool's `values` notation: the captured samples, then `extra`
    /// more steps continuing the end state, or a staleness marker.
    fn promtool_values(&self, step: i64, extra: i64) -> String {
        let mut out: Vec<String> = self
            .values
            .iter()
            .map(|v| v.map_or("_".to_string(), |v| v.to_string()))
            .collect();
        match self.values.last() {
            Some(Some(last)) => {
                let b = self.slope(step);
                out.push(format!("{}{:+}x{extra}", last + b, b));
            }
            _ => {
                while out.last().is_some_and(|v| v == "_") {
                    out.pop();
                }
                out.push("stale".to_string());
            }
        }
        out.join(" ")
    }

    /// promtool's series selector of this series.
    fn selector(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
            .collect();
        format!("{}{{{}}}", self.labels["__name__"], labels.join(","))
    }
}

/// The promtool test group of `case`: its series, and its alert's full
/// labels expected at the end of the capture plus the rule's `for:`.
fn group(capture: &Capture, rules: &serde_json::Value, case: &Case) -> serde_json::Value {
    let rule = rule(rules, case.alert);
    let hold = seconds(rule["for"].as_str().unwrap_or("0s"));
    let end = (capture.steps as i64 - 1) * capture.step;
    let eval = end + hold + 120;
    let extra = (eval - end) / capture.step + 1;
    let series: Vec<serde_json::Value> = capture
        .series
        .iter()
        .filter(|s| case.keeps(s))
        .map(|s| {
            serde_json::json!({
                "series": s.selector(),
                "values": s.promtool_values(capture.step, extra),
            })
        })
        .collect();
    let mut labels: BTreeMap<String, String> = case.labels.iter().cloned().collect();
    if let Some(own) = rule["labels"].as_object() {
        for (k, v) in own {
            labels.insert(k.clone(), v.as_str().unwrap().to_string());
        }
    }
    serde_json::json!({
        "name": case.alert,
        "interval": format!("{}s", capture.step),
        "input_series": series,
        "alert_rule_test": [{
            "eval_time": format!("{eval}s"),
            "alertname": case.alert,
            "exp_alerts": [{"exp_labels": labels}],
        }],
    })
}

/// Run `promtool test rules` with one group per case in `dir`; panic with
/// promtool's output when a rule does not fire exactly as expected.
pub(crate) fn check(capture: &Capture, cases: &[Case], dir: &Path) {
    let rules = rules();
    for name in alert_names() {
        assert!(
            cases.iter().any(|c| c.alert == name),
            "alert {name} of {} has no case in tests/it/alerts_promtool.rs: add the situation that fires it",
            rules_path().display()
        );
    }
    std::fs::write(dir.join("rules.json"), rules.to_string()).unwrap();
    let tests = serde_json::json!({
        "rule_files": ["rules.json"],
        "evaluation_interval": "30s",
        "tests": cases.iter().map(|c| group(capture, &rules, c)).collect::<Vec<_>>(),
    });
    let file = dir.join("alerts.promtool.json");
    std::fs::write(&file, serde_json::to_string_pretty(&tests).unwrap()).unwrap();
    let promtool = std::env::var("REGMIRROR_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let out = std::process::Command::new(&promtool)
        .args(["test", "rules", "alerts.promtool.json"])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {promtool}: {e} (install Debian's prometheus package, or set REGMIRROR_PROMTOOL)")
        });
    if out.status.success() {
        return;
    }
    let kept = std::env::temp_dir().join(format!("regmirror-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&kept).unwrap();
    for name in ["rules.json", "alerts.promtool.json"] {
        std::fs::copy(dir.join(name), kept.join(name)).unwrap();
    }
    panic!(
        "promtool test rules failed on the series serve exported (capture start {}, {} steps; \
         test files kept in {}):\n{}\n{}",
        capture.start,
        capture.steps,
        kept.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn seconds_reads_prometheus_durations() {
    assert_eq!(seconds("0s"), 0);
    assert_eq!(seconds("5m"), 300);
    assert_eq!(seconds("3h"), 10800);
}

#[test]
fn a_series_goes_on_in_its_end_state_or_ends_stale() {
    let series = |name: &str, values: Vec<Option<f64>>| Series {
        labels: BTreeMap::from([("__name__".to_string(), name.to_string())]),
        values,
    };
    let counter = series("a_total", (0..31).map(|i| Some(i as f64 * 2.0)).collect());
    assert_eq!(counter.slope(2), 2.0);
    assert!(counter.promtool_values(2, 5).ends_with(" 58 60 62+2x5"));
    let late = series("b_total", vec![None, None, Some(1.0), Some(4.0), Some(7.0)]);
    assert_eq!(late.slope(2), 3.0);
    let moving = series("a_timestamp_seconds", vec![Some(1.0), Some(3.0)]);
    assert_eq!(moving.promtool_values(2, 5), "1 3 5+2x5");
    let still = series("a_timestamp_seconds", vec![Some(1.0), Some(1.0)]);
    assert_eq!(still.promtool_values(2, 5), "1 1 1+0x5");
    let gone = series("up", vec![None, Some(1.0), None, None]);
    assert_eq!(gone.promtool_values(2, 5), "_ 1 stale");
}
