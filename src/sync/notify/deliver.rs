//! Delivery of one sink's notifications, off the mirroring path: a bounded
//! queue (the oldest message is dropped, and counted, when it is full) and
//! one background sender that posts each message with a per-request
//! timeout, retrying with exponential backoff after a timeout, a failed
//! connection, a 5xx or a 429 (never after another 4xx: the same request
//! would be refused again).
//!
//! Logs and errors name the sink, never its URL (webhook URLs embed
//! tokens) nor its secret.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::metrics;
use crate::registry::escape::shown;
use crate::sync::model::notify::{NotifyAuth, NotifySink};

/// Messages waiting per sink at most; a further one drops the oldest.
pub const QUEUE_CAPACITY: usize = 100;
/// Tries of one message at most (the first and four retries).
pub const MAX_ATTEMPTS: u32 = 5;
/// Wait before the first retry; it doubles for each next one.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Characters of a refusing sink's answer quoted in the log.
const ANSWER_SHOWN: usize = 200;

/// One message to post.
pub(super) struct Message {
    /// The mirror whose run it tells of (for logs).
    pub mirror: String,
    /// The body.
    pub body: Vec<u8>,
    /// Its content type.
    pub content_type: &'static str,
}

/// One sink's queue, shared by the notifier and its sender.
pub(super) struct SinkQueue {
    pub sink: NotifySink,
    items: Mutex<VecDeque<Message>>,
    wake: Notify,
    /// Messages queued or being sent.
    busy: watch::Sender<usize>,
    /// No message comes any more: the sender ends once the queue is empty.
    closed: AtomicBool,
    /// Given up at exit: what is still queued or sent is counted dropped
    /// already, and the sender records nothing more.
    abandoned: AtomicBool,
}

impl SinkQueue {
    /// A queue for `sink` and its sender, started on the current runtime.
    pub fn start(sink: NotifySink, client: reqwest::Client) -> Arc<SinkQueue> {
        let queue = Arc::new(SinkQueue {
            sink,
            items: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            busy: watch::channel(0).0,
            closed: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
        });
        tokio::spawn(sender(queue.clone(), client));
        queue
    }

    /// Queue `message`; when the queue is full, drop the oldest (counted).
    pub fn push(&self, message: Message) {
        let dropped = {
            let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
            let dropped = (items.len() >= QUEUE_CAPACITY)
                .then(|| items.pop_front())
                .flatten();
            items.push_back(message);
            dropped
        };
        match dropped {
            Some(old) => {
                metrics::record_notification(&self.sink.name, "dropped");
                tracing::warn!(sink = %self.sink.name, mirror = %old.mirror, capacity = QUEUE_CAPACITY,
                    "notification queue full: the oldest notification was dropped; the sink is slower than the runs (check that it answers)");
            }
            None => self.busy.send_modify(|n| *n += 1),
        }
        self.wake.notify_one();
    }

    /// End the sender once the queue is empty.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Wait until every queued message is delivered or failed, at most
    /// `bound`; then count what is left as dropped and give it up. The
    /// number given up.
    pub async fn flush(&self, bound: Duration) -> usize {
        let mut rx = self.busy.subscribe();
        if tokio::time::timeout(bound, rx.wait_for(|n| *n == 0))
            .await
            .is_ok()
        {
            return 0;
        }
        self.abandoned.store(true, Ordering::SeqCst);
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let left = *self.busy.borrow();
        for _ in 0..left {
            metrics::record_notification(&self.sink.name, "dropped");
        }
        if left > 0 {
            tracing::warn!(sink = %self.sink.name, left, bound_seconds = bound.as_secs(),
                "notifications not delivered before exit were dropped: the sink did not answer in time");
        }
        left
    }

    fn pop(&self) -> Option<Message> {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    /// Count `result` of one message, unless given up at exit.
    fn done(&self, result: &str) {
        if !self.abandoned.load(Ordering::SeqCst) {
            metrics::record_notification(&self.sink.name, result);
            self.busy.send_modify(|n| *n = n.saturating_sub(1));
        }
    }
}

/// The sender of one queue: posts its messages one at a time, in order.
async fn sender(queue: Arc<SinkQueue>, client: reqwest::Client) {
    loop {
        let Some(message) = queue.pop() else {
            if queue.closed.load(Ordering::SeqCst) {
                return;
            }
            queue.wake.notified().await;
            continue;
        };
        let delivered = deliver(&queue.sink, &client, &message).await;
        queue.done(if delivered { "delivered" } else { "failed" });
    }
}

/// How one try ended.
enum Try {
    Delivered,
    /// Worth another try (timeout, no connection, 5xx, 429).
    Retry(String),
    /// Not worth another (another 4xx, a secret or URL that cannot be read).
    Fail(String),
}

/// Post `message` until it is delivered, refused for good, or out of tries.
async fn deliver(sink: &NotifySink, client: &reqwest::Client, message: &Message) -> bool {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        let why = match post(sink, client, message).await {
            Try::Delivered => {
                tracing::debug!(sink = %sink.name, mirror = %message.mirror, attempt, "notification delivered");
                return true;
            }
            Try::Fail(why) => {
                tracing::warn!(sink = %sink.name, mirror = %message.mirror, attempt, error = %why,
                    "notification not delivered and not retried: fix the sink's settings or the receiver");
                return false;
            }
            Try::Retry(why) => why,
        };
        if attempt == MAX_ATTEMPTS {
            tracing::warn!(sink = %sink.name, mirror = %message.mirror, attempts = attempt, error = %why,
                "notification not delivered after every try: check that the receiver is up");
            return false;
        }
        tracing::info!(sink = %sink.name, mirror = %message.mirror, attempt, retry_in_seconds = backoff.as_secs_f64(),
            error = %why, "notification not delivered yet; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    false
}

/// One try.
async fn post(sink: &NotifySink, client: &reqwest::Client, message: &Message) -> Try {
    let url = match sink.url.read() {
        Ok(u) => u,
        Err(e) => {
            return Try::Fail(format!(
                "its URL ({}) cannot be had: {e}",
                sink.url.origin()
            ));
        }
    };
    let mut request = client
        .post(url)
        .timeout(sink.timeout)
        .header(reqwest::header::CONTENT_TYPE, message.content_type)
        .body(message.body.clone());
    if let Some((auth, secret)) = &sink.secret {
        let value = match secret.read() {
            Ok(v) => v,
            Err(e) => {
                return Try::Fail(format!(
                    "its secret ({}) cannot be had: {e}",
                    secret.origin()
                ));
            }
        };
        request = match auth {
            NotifyAuth::Bearer => request.bearer_auth(value),
            NotifyAuth::Hmac => {
                let (timestamp, signature) = sign(value.as_bytes(), &message.body);
                request
                    .header(TIMESTAMP_HEADER, timestamp)
                    .header(SIGNATURE_HEADER, signature)
            }
        };
    }
    match request.send().await {
        Ok(r) if r.status().is_success() => Try::Delivered,
        Ok(r) => {
            let status = r.status();
            let answer: String = r
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(ANSWER_SHOWN)
                .collect();
            let why = format!("the receiver answered {status}: {}", shown(answer.trim()));
            if status.is_server_error() || status.as_u16() == 429 {
                Try::Retry(why)
            } else {
                Try::Fail(why)
            }
        }
        Err(e) => Try::Retry(format!("no answer: {}", e.without_url())),
    }
}

/// Header of the Unix time an HMAC signature covers.
pub const TIMESTAMP_HEADER: &str = "X-Regmirror-Timestamp";
/// Header of the HMAC-SHA256 signature, `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Regmirror-Signature-256";

/// The timestamp (Unix seconds, now) and the signature header's value for
/// `body`: `sha256=` and the hex HMAC-SHA256 with `secret` of
/// `"<timestamp>.<body>"`.
pub fn sign(secret: &[u8], body: &[u8]) -> (String, String) {
    let timestamp = (crate::sync::run::unix_now() as u64).to_string();
    (timestamp.clone(), signature(secret, &timestamp, body))
}

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex::encode(ctx.sign().as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::model::notify::{NotifyFormat, NotifyOn, SecretValue};

    fn count(sink: &str, result: &str) -> u64 {
        crate::metrics::NOTIFICATIONS
            .with_label_values(&[sink, result])
            .get()
    }

    /// A queue with no sender, so nothing leaves it.
    fn idle_queue(name: &str) -> SinkQueue {
        SinkQueue {
            sink: NotifySink {
                name: name.into(),
                url: SecretValue::Plain("http://127.0.0.1:9/".into()),
                format: NotifyFormat::CloudEvents,
                on: NotifyOn::Always,
                secret: None,
                mirrors: Vec::new(),
                timeout: Duration::from_secs(1),
            },
            items: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            busy: watch::channel(0).0,
            closed: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_its_oldest_and_a_flush_out_of_time_drops_the_rest() {
        let q = idle_queue("full-queue-test");
        for n in 0..=QUEUE_CAPACITY {
            q.push(Message {
                mirror: format!("m{n}"),
                body: Vec::new(),
                content_type: "application/json",
            });
        }
        assert_eq!(count("full-queue-test", "dropped"), 1);
        let first = q.items.lock().unwrap().front().map(|m| m.mirror.clone());
        assert_eq!(first.as_deref(), Some("m1"), "the oldest went");
        assert_eq!(*q.busy.borrow(), QUEUE_CAPACITY);
        let left = q.flush(Duration::from_millis(10)).await;
        assert_eq!(left, QUEUE_CAPACITY);
        assert_eq!(
            count("full-queue-test", "dropped"),
            1 + QUEUE_CAPACITY as u64
        );
        // Given up: a late result of the sender counts nothing more.
        q.done("delivered");
        assert_eq!(count("full-queue-test", "delivered"), 0);
    }

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(b"key",
        // b'1700000000.{"a":1}', hashlib.sha256).hexdigest().
        let want = "sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03";
        assert_eq!(signature(b"key", "1700000000", br#"{"a":1}"#), want);
        let (timestamp, header) = sign(b"key", b"{}");
        assert_eq!(header, signature(b"key", &timestamp, b"{}"));
        assert!(timestamp.parse::<u64>().is_ok(), "{timestamp}");
    }
}
