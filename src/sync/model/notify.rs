//! `[[notify]]` sinks: where one message per mirror run goes, in which
//! format, for which runs, signed with which secret (see
//! `docs/notifications.md`).

use std::path::PathBuf;
use std::time::Duration;

/// Per-request timeout of a delivery unless `timeout_seconds` says otherwise.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// One `[[notify]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySink {
    /// Its name: the `sink` label of `regmirror_notifications_total`, and
    /// what logs call it (the URL may hold a secret and is never logged).
    pub name: String,
    /// Where the message is posted.
    pub url: SecretValue,
    /// The body's shape.
    pub format: NotifyFormat,
    /// Which runs are announced.
    pub on: NotifyOn,
    /// A secret, and how it authenticates the request.
    pub secret: Option<(NotifyAuth, SecretValue)>,
    /// Only runs of these mirrors (empty: every mirror).
    pub mirrors: Vec<String>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl NotifySink {
    /// True when the sink wants runs of `mirror`.
    pub fn covers(&self, mirror: &str) -> bool {
        self.mirrors.is_empty() || self.mirrors.iter().any(|m| m == mirror)
    }
}

/// A value given in the config, or read when needed from a file or an
/// environment variable (secrets, webhook URLs that embed a token).
#[derive(Clone, PartialEq)]
pub enum SecretValue {
    /// Written in the config (`url` only: secrets never are).
    Plain(String),
    /// Read from this file at each delivery (trailing newline trimmed).
    File(PathBuf),
    /// Read from this environment variable at each delivery.
    Env(String),
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretValue::Plain(_) => f.write_str("Plain(<not shown>)"),
            SecretValue::File(p) => write!(f, "File({})", p.display()),
            SecretValue::Env(v) => write!(f, "Env({v})"),
        }
    }
}

impl SecretValue {
    /// The value now, or why it cannot be had (which never quotes it).
    pub fn read(&self) -> Result<String, String> {
        match self {
            SecretValue::Plain(v) => Ok(v.clone()),
            SecretValue::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read {}: {e}", p.display())),
            SecretValue::Env(name) => std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("environment variable {name} is not set")),
        }
        .and_then(|v| {
            if v.is_empty() {
                Err("it is empty".to_string())
            } else {
                Ok(v)
            }
        })
    }

    /// Where the value comes from, for messages (never the value).
    pub fn origin(&self) -> String {
        match self {
            SecretValue::Plain(_) => "the config".to_string(),
            SecretValue::File(p) => format!("file {}", p.display()),
            SecretValue::Env(v) => format!("environment variable {v}"),
        }
    }
}

/// `format`: the body posted for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyFormat {
    /// A CloudEvents 1.0 event in structured JSON mode.
    CloudEvents,
    /// A Slack incoming-webhook message, `{"text": ...}`.
    Slack,
    /// A Microsoft Teams Adaptive Card message (a Workflows webhook).
    Teams,
}

impl NotifyFormat {
    /// The spellings `format` accepts.
    pub const NAMES: [&str; 3] = ["cloudevents", "slack", "teams"];

    /// The format a config spelling names.
    pub fn parse(s: &str) -> Option<NotifyFormat> {
        match s {
            "cloudevents" => Some(NotifyFormat::CloudEvents),
            "slack" => Some(NotifyFormat::Slack),
            "teams" => Some(NotifyFormat::Teams),
            _ => None,
        }
    }
}

/// `on`: which runs a sink is told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOn {
    /// Every run.
    Always,
    /// Runs that moved a target tag or deleted one (prune).
    OnChange,
    /// Runs with a failure (of an image, a listing or prune).
    OnFailure,
}

impl NotifyOn {
    /// The spellings `on` accepts.
    pub const NAMES: [&str; 3] = ["always", "on_change", "on_failure"];

    /// The routing a config spelling names.
    pub fn parse(s: &str) -> Option<NotifyOn> {
        match s {
            "always" => Some(NotifyOn::Always),
            "on_change" => Some(NotifyOn::OnChange),
            "on_failure" => Some(NotifyOn::OnFailure),
            _ => None,
        }
    }
}

/// `auth`: how the secret authenticates a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyAuth {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `X-Regmirror-Signature-256: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`,
    /// with the timestamp (Unix seconds) in `X-Regmirror-Timestamp`.
    Hmac,
}

impl NotifyAuth {
    /// The spellings `auth` accepts.
    pub const NAMES: [&str; 2] = ["bearer", "hmac"];

    /// The scheme a config spelling names.
    pub fn parse(s: &str) -> Option<NotifyAuth> {
        match s {
            "bearer" => Some(NotifyAuth::Bearer),
            "hmac" => Some(NotifyAuth::Hmac),
            _ => None,
        }
    }
}
