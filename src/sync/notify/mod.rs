//! One notification per mirror run, to each `[[notify]]` sink that wants
//! it (see `docs/notifications.md`): a CloudEvents 1.0 event, a Slack or a
//! Teams message listing the tags the run changed (old and new digest),
//! its failures and its quarantined images.
//!
//! [`Notifier::hook`] is handed to a [`crate::sync::Syncer`] (as
//! `on_mirror_done`), so `serve` and `sync` notify the same way. Routing
//! (`on`, `mirrors`) is decided when the run ends; delivery happens in
//! the background (see [`deliver`]), so a slow or dead sink never slows a
//! run. `sync` waits for its notifications at most [`FLUSH_BOUND`] before
//! it exits; `serve` does the same at shutdown.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

pub mod deliver;
pub mod payload;

use crate::metrics;
use crate::sync::model::notify::{NotifyFormat, NotifyOn, NotifySink};
use crate::sync::run::{MirrorReport, OnMirror};
use deliver::{Message, SinkQueue};

/// How long `sync` (and `serve` at shutdown) waits for notifications
/// still queued or being sent before it exits; what is left is counted
/// `dropped`.
pub const FLUSH_BOUND: Duration = Duration::from_secs(10);

/// The sinks of one config and their queues. Clone is cheap; the senders
/// end once the last clone is dropped and their queues are empty.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    sinks: Vec<Arc<SinkQueue>>,
    /// The CloudEvents `source` of this process's events.
    source: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for q in &self.sinks {
            q.close();
        }
    }
}

impl Notifier {
    /// Start a sender per sink of `sinks` on the current runtime; `command`
    /// (`serve`, `sync`) names the events' source, `/regmirror/<command>`.
    /// `None` without sinks.
    pub fn start(sinks: &[NotifySink], command: &str) -> Option<Notifier> {
        if sinks.is_empty() {
            return None;
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("regmirror/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        metrics::zero_notifications(&sinks.iter().map(|s| s.name.clone()).collect::<Vec<_>>());
        let queues = sinks
            .iter()
            .map(|s| SinkQueue::start(s.clone(), client.clone()))
            .collect();
        Some(Notifier {
            inner: Arc::new(Inner {
                sinks: queues,
                source: format!("/regmirror/{command}"),
            }),
        })
    }

    /// The callback a syncer calls with each mirror's report.
    pub fn hook(&self) -> OnMirror {
        let notifier = self.clone();
        Arc::new(move |report: &MirrorReport| notifier.mirror_done(report))
    }

    /// Queue the notification of `report` for every sink that wants it.
    pub fn mirror_done(&self, report: &MirrorReport) {
        let id = event_id();
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for queue in &self.inner.sinks {
            let sink = &queue.sink;
            if !sink.covers(&report.name) || !wants(sink.on, report) {
                continue;
            }
            let body = payload::body(sink.format, report, &id, &self.inner.source, &time);
            queue.push(Message {
                mirror: report.name.clone(),
                body: serde_json::to_vec(&body).unwrap_or_default(),
                content_type: match sink.format {
                    NotifyFormat::CloudEvents => payload::CLOUDEVENTS_CONTENT_TYPE,
                    NotifyFormat::Slack | NotifyFormat::Teams => "application/json",
                },
            });
        }
    }

    /// Wait for every queued notification, at most `bound` in all (the
    /// sinks are waited for together); what is left is counted `dropped`.
    pub async fn flush(&self, bound: Duration) {
        futures_util::future::join_all(self.inner.sinks.iter().map(|q| q.flush(bound))).await;
    }
}

/// True when a sink routed by `on` wants the run of `report`.
pub fn wants(on: NotifyOn, report: &MirrorReport) -> bool {
    match on {
        NotifyOn::Always => true,
        NotifyOn::OnChange => !payload::changed(report).is_empty(),
        NotifyOn::OnFailure => {
            report.failures() > 0 || report.result == crate::sync::run::RunResult::Failed
        }
    }
}

/// A new event id: 32 random hex digits (with the source, unique per event).
fn event_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}
