//! The bodies a run's notification is posted as: the run's summary (the
//! `data` of a CloudEvent), wrapped as a CloudEvents 1.0 event in
//! structured JSON mode, a Slack incoming-webhook message or a Microsoft
//! Teams Adaptive Card message.
//!
//! CloudEvents: the event is written here rather than with the
//! `cloudevents-sdk` crate, whose HTTP binding needs reqwest 0.12 (a second
//! HTTP stack beside the tree's 0.13) and whose core adds five crates for
//! what is one JSON object; the attributes follow the spec's required set
//! (`specversion`, `id`, `source`, `type`) plus `time`, `subject` and
//! `datacontenttype` (<https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md>,
//! JSON format: `formats/json-format.md`).

use serde_json::{Value, json};

use crate::sync::model::notify::NotifyFormat;
use crate::sync::run::{ImageResult, MirrorReport};

/// The CloudEvents `type` of a mirror run's event.
pub const EVENT_TYPE: &str = "io.regmirror.mirror.run.v1";
/// Content type of a CloudEvent in structured JSON mode.
pub const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";
/// Lines listed per kind in a chat message; the rest are counted.
const CHAT_LINES: usize = 20;

/// Tags the run moved or deleted at the target: `(target, target
/// repository, previous digest, new digest, source digest, lag seconds)`,
/// in report order. A mirror with several targets has one entry per tag
/// and target; `target_repository` names the target (the region) each
/// entry is about.
pub(super) fn changed(report: &MirrorReport) -> Vec<Value> {
    let copied = report
        .images
        .iter()
        .filter(|i| i.result == ImageResult::Copied)
        .map(|i| {
            json!({
                "target": i.target,
                "target_repository": repository_of(&i.target),
                "source": i.source,
                "previous_digest": i.copy.as_ref().and_then(|c| c.previous_digest.as_ref()).map(ToString::to_string),
                "digest": i.target_digest,
                "source_digest": i.source_digest,
                "lag_seconds": i.lag_seconds,
            })
        });
    let pruned = report
        .prune
        .iter()
        .filter(|p| !p.dry_run)
        .flat_map(|p| p.pruned.iter())
        .map(|t| {
            json!({
                "target": t.target,
                "target_repository": repository_of(&t.target),
                "previous_digest": t.digest,
                "digest": null,
                "deleted": true,
            })
        });
    copied.chain(pruned).collect()
}

/// `registry/repository` of the image reference `target` (as written
/// when it does not parse).
fn repository_of(target: &str) -> String {
    crate::registry::Reference::parse(target).map_or_else(|_| target.to_string(), |r| r.name())
}

/// What failed: failed or conflicting images, then errors of the mirror
/// (listing, prune).
fn failures(report: &MirrorReport) -> Vec<Value> {
    let images = report
        .images
        .iter()
        .filter(|i| i.result.is_failure())
        .map(|i| {
            json!({
                "source": i.source,
                "target": i.target,
                "result": i.result.label(),
                "error": i.error,
                "error_kind": i.error_kind.map(|k| k.label()),
            })
        });
    let prune_errors = report.prune.iter().flat_map(|p| p.errors.iter());
    let errors = report
        .errors
        .iter()
        .chain(prune_errors)
        .map(|e| json!({ "error": e }));
    images.chain(errors).collect()
}

/// The run's summary: the `data` of its CloudEvent.
pub fn summary(report: &MirrorReport) -> Value {
    let count = |r: ImageResult| report.count(r);
    let quarantined: Vec<Value> = report
        .quarantined
        .iter()
        .map(|q| {
            json!({
                "source": q.source,
                "target": q.target,
                "failed_runs": q.failed_runs,
                "runs_left": q.runs_left,
                "last_error": q.last_error,
            })
        })
        .collect();
    json!({
        "mirror": report.name,
        "result": report.result.label(),
        "duration_seconds": report.duration_seconds,
        "counts": {
            "copied": count(ImageResult::Copied),
            "up_to_date": count(ImageResult::Skipped),
            "failed": count(ImageResult::Failed) + report.errors.len(),
            "conflict": count(ImageResult::Conflict),
            "deferred": count(ImageResult::Deferred),
            "held": count(ImageResult::Held),
            "cancelled": count(ImageResult::Cancelled),
        },
        "changed": changed(report),
        "failures": failures(report),
        "quarantined": quarantined,
    })
}

/// The body of a run's notification in `format`, with the CloudEvent's
/// `id`, `source` and `time` (RFC 3339).
pub fn body(
    format: NotifyFormat,
    report: &MirrorReport,
    id: &str,
    source: &str,
    time: &str,
) -> Value {
    match format {
        NotifyFormat::CloudEvents => json!({
            "specversion": "1.0",
            "id": id,
            "source": source,
            "type": EVENT_TYPE,
            "time": time,
            "subject": report.name,
            "datacontenttype": "application/json",
            "data": summary(report),
        }),
        NotifyFormat::Slack => json!({ "text": chat_lines(report).join("\n") }),
        NotifyFormat::Teams => teams(report),
    }
}

/// A Teams message with one Adaptive Card, as a Workflows "When a Teams
/// webhook request is received" flow takes it (Workflows take Adaptive
/// Cards only, not the retired connectors' MessageCard:
/// <https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using>).
fn teams(report: &MirrorReport) -> Value {
    let lines = chat_lines(report);
    let mut blocks = vec![json!({
        "type": "TextBlock", "size": "Medium", "weight": "Bolder",
        "text": lines.first().cloned().unwrap_or_default(), "wrap": true,
    })];
    blocks.extend(
        lines[1.min(lines.len())..]
            .iter()
            .map(|l| json!({ "type": "TextBlock", "text": l, "wrap": true })),
    );
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": blocks,
            },
        }],
    })
}

/// The run as chat lines: a headline, then each changed tag, each
/// failure and each quarantined image (at most [`CHAT_LINES`] of each).
pub(super) fn chat_lines(report: &MirrorReport) -> Vec<String> {
    let data = summary(report);
    let c = &data["counts"];
    let mut lines = vec![format!(
        "regmirror: mirror {} {} in {:.1}s: {} copied, {} up to date, {} failed",
        report.name,
        report.result.label(),
        report.duration_seconds,
        c["copied"],
        c["up_to_date"],
        c["failed"].as_u64().unwrap_or(0) + c["conflict"].as_u64().unwrap_or(0),
    )];
    let text = |v: &Value| v.as_str().unwrap_or("none").to_string();
    let listed = |lines: &mut Vec<String>, items: &[Value], line: &dyn Fn(&Value) -> String| {
        lines.extend(items.iter().take(CHAT_LINES).map(line));
        if items.len() > CHAT_LINES {
            lines.push(format!("… and {} more", items.len() - CHAT_LINES));
        }
    };
    let changed = data["changed"].as_array().cloned().unwrap_or_default();
    listed(&mut lines, &changed, &|v| {
        format!(
            "changed {}: {} → {}",
            text(&v["target"]),
            text(&v["previous_digest"]),
            text(&v["digest"])
        )
    });
    let failures = data["failures"].as_array().cloned().unwrap_or_default();
    listed(&mut lines, &failures, &|v| match v["target"].as_str() {
        Some(t) => format!("failed {t}: {}", text(&v["error"])),
        None => format!("failed: {}", text(&v["error"])),
    });
    let quarantined = data["quarantined"].as_array().cloned().unwrap_or_default();
    listed(&mut lines, &quarantined, &|v| {
        format!(
            "quarantined {} (failed {} runs in a row)",
            text(&v["source"]),
            v["failed_runs"]
        )
    });
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::prune::{PruneReport, PrunedTag};
    use crate::sync::run::{ImageReport, RunResult};

    fn failed(n: usize) -> ImageReport {
        ImageReport {
            error: Some(format!("error {n}")),
            ..ImageReport::new(format!("src.test/a:{n}"), format!("dst.test/a:{n}"))
        }
    }

    fn report(images: Vec<ImageReport>, prune: Option<PruneReport>) -> MirrorReport {
        MirrorReport {
            name: "m".into(),
            result: RunResult::Partial,
            errors: vec!["listing failed".into()],
            images: images.into_iter().map(std::sync::Arc::new).collect(),
            invalid_tags: 0,
            duration_seconds: 1.0,
            prune,
            discovered: None,
            quarantined: Vec::new(),
            targets: Vec::new(),
        }
    }

    #[test]
    fn a_pruned_tag_is_a_change_with_its_old_digest_and_no_new_one() {
        let pruned = |dry_run| PruneReport {
            dry_run,
            pruned: vec![PrunedTag {
                target: "dst.test/a:old".into(),
                digest: Some("sha256:aa".into()),
                how: None,
            }],
            refused: None,
            errors: vec!["deleting dst.test/a:gone failed".into()],
        };
        let r = report(Vec::new(), Some(pruned(false)));
        let changed = changed(&r);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0]["target"], "dst.test/a:old");
        assert_eq!(changed[0]["previous_digest"], "sha256:aa");
        assert_eq!(changed[0]["digest"], Value::Null);
        assert_eq!(changed[0]["deleted"], true);
        // A dry run's list is what would go: nothing changed.
        assert!(super::changed(&report(Vec::new(), Some(pruned(true)))).is_empty());
        // The mirror's own failures follow the images': listing, prune.
        let data = summary(&r);
        let errors: Vec<&str> = data["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["error"].as_str().unwrap())
            .collect();
        assert_eq!(
            errors,
            ["listing failed", "deleting dst.test/a:gone failed"]
        );
    }

    #[test]
    fn chat_messages_list_at_most_twenty_lines_of_a_kind_and_count_the_rest() {
        let r = report((0..25).map(failed).collect(), None);
        let lines = chat_lines(&r);
        let failed_lines = lines.iter().filter(|l| l.starts_with("failed ")).count();
        assert_eq!(failed_lines, CHAT_LINES);
        // 25 images and the listing error: 26 failures, 20 shown.
        assert!(lines.contains(&"… and 6 more".to_string()), "{lines:#?}");
        assert!(
            lines[0].starts_with(
                "regmirror: mirror m partial in 1.0s: 0 copied, 0 up to date, 26 failed"
            ),
            "{}",
            lines[0]
        );
        let teams = body(NotifyFormat::Teams, &r, "id", "/regmirror/test", "t");
        let blocks = teams["attachments"][0]["content"]["body"]
            .as_array()
            .unwrap();
        assert_eq!(blocks.len(), lines.len());
    }
}
