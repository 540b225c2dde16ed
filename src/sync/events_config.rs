//! The `[events]` table: the receiver of upstream push events and the
//! sync-now API of `serve` (see `docs/events.md`), raw and validated.
//!
//! Secrets (a source's shared secret, the API token) are read from a file
//! or an environment variable when the config is loaded, kept as
//! [`Secret`] (never shown) and never written to a log or an error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::config_error::{ConfigError, Ctx};
use crate::registry::Secret;

/// Events a source may send per minute unless `rate_per_minute` says otherwise.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 600;

/// `[events]`, validated; the receiver is off without `listen`.
#[derive(Debug, Clone, Default)]
pub struct EventsConfig {
    /// Where the receiver and the sync-now API listen; `None`: off.
    pub listen: Option<SocketAddr>,
    /// Bearer token of the sync-now API; `None`: the API is off.
    pub api_token: Option<Secret>,
    /// The senders accepted, each at `POST /events/{name}`.
    pub sources: Vec<EventSource>,
    /// With `[shard]`: the other replicas' receivers, `{index}` standing for
    /// a shard's index (`http://regmirror-{index}.regmirror-headless:9102`);
    /// an event for a mirror another shard owns is forwarded there.
    pub peers: Option<String>,
}

/// What kind of sender a source is: how its events are read and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// CNCF distribution (`docker-registry`) notifications, `Authorization` header.
    Distribution,
    /// Harbor webhooks (`PUSH_ARTIFACT`), `Authorization` header.
    Harbor,
    /// GitHub `package` / `registry_package` webhooks, `X-Hub-Signature-256`.
    Github,
    /// Quay repository push notifications: unsigned.
    Quay,
    /// Docker Hub webhooks: unsigned.
    Dockerhub,
    /// CloudEvents 1.0 structured JSON, HMAC-signed or with a bearer token.
    Cloudevents,
}

/// Every kind, as written in the config and in the `source` metric label.
pub const SOURCE_KINDS: &[&str] = &[
    "distribution",
    "harbor",
    "github",
    "quay",
    "dockerhub",
    "cloudevents",
];

impl SourceKind {
    fn parse(text: &str) -> Option<SourceKind> {
        Some(match text {
            "distribution" => SourceKind::Distribution,
            "harbor" => SourceKind::Harbor,
            "github" => SourceKind::Github,
            "quay" => SourceKind::Quay,
            "dockerhub" => SourceKind::Dockerhub,
            "cloudevents" => SourceKind::Cloudevents,
            _ => return None,
        })
    }

    /// The name written in the config and in metric labels.
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Distribution => "distribution",
            SourceKind::Harbor => "harbor",
            SourceKind::Github => "github",
            SourceKind::Quay => "quay",
            SourceKind::Dockerhub => "dockerhub",
            SourceKind::Cloudevents => "cloudevents",
        }
    }

    /// True for senders that sign nothing: their events only ever make a
    /// configured repository be checked again.
    pub fn unsigned(self) -> bool {
        matches!(self, SourceKind::Quay | SourceKind::Dockerhub)
    }

    /// The registry a kind's events speak of unless `registry` says otherwise.
    fn default_registry(self) -> Option<&'static str> {
        match self {
            SourceKind::Github => Some("ghcr.io"),
            SourceKind::Quay => Some("quay.io"),
            SourceKind::Dockerhub => Some("docker.io"),
            _ => None,
        }
    }
}

/// One `[[events.source]]`, validated.
#[derive(Debug, Clone)]
pub struct EventSource {
    /// Unique name: the receiver's path is `/events/{name}`.
    pub name: String,
    /// How its events are read and checked.
    pub kind: SourceKind,
    /// The registry its events speak of (`127.0.0.1:5000`, `ghcr.io`): an
    /// event runs only mirrors whose source is on this registry.
    pub registry: String,
    /// The shared secret (the `Authorization` value, the HMAC key or the
    /// bearer token); `None` only for unsigned kinds.
    pub secret: Option<Secret>,
    /// CloudEvents: the secret is a bearer token instead of an HMAC key.
    pub bearer: bool,
    /// Repositories accepted; empty: any the mirrors cover (required for
    /// unsigned kinds).
    pub repositories: Vec<String>,
    /// Events accepted per minute; more are refused with 429.
    pub rate_per_minute: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    listen: Option<Spanned<String>>,
    api_token_file: Option<PathBuf>,
    api_token_env: Option<String>,
    peers: Option<Spanned<String>>,
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    kind: String,
    registry: Option<String>,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
    auth: Option<String>,
    #[serde(default)]
    repositories: Vec<String>,
    rate_per_minute: Option<u32>,
}

/// Validate `[events]`.
pub(super) fn validate_events(ctx: &Ctx<'_>, raw: &RawEvents) -> Result<EventsConfig, ConfigError> {
    let listen = match &raw.listen {
        Some(l) => Some(l.get_ref().parse::<SocketAddr>().map_err(|_| {
            ctx.err(
                Some(l.span()),
                "events.listen",
                format!(
                    "{:?} is not an address: expected IP:PORT such as \"0.0.0.0:9102\"",
                    l.get_ref()
                ),
            )
        })?),
        None => None,
    };
    let api_token = secret(
        ctx,
        None,
        "events.api_token",
        raw.api_token_file.as_deref(),
        raw.api_token_env.as_deref(),
    )?;
    let mut sources: Vec<EventSource> = Vec::new();
    for (i, s) in raw.source.iter().enumerate() {
        let source = validate_source(ctx, i, s)?;
        if sources.iter().any(|o| o.name == source.name) {
            return Err(ctx.err(
                Some(s.span()),
                format!("events.source[{i}].name"),
                format!("{:?} names two sources: each source needs its own name (its path is /events/NAME)", source.name),
            ));
        }
        sources.push(source);
    }
    if listen.is_none() && (api_token.is_some() || !sources.is_empty()) {
        return Err(ctx.err(
            None,
            "events.listen",
            "[events] has sources or an API token but no listen address: add listen = \"0.0.0.0:9102\" (its own port, never [server] listen's)",
        ));
    }
    let peers = raw
        .peers
        .as_ref()
        .map(|p| validate_peers(ctx, p))
        .transpose()?;
    Ok(EventsConfig {
        listen,
        api_token,
        sources,
        peers,
    })
}

/// `peers`: an http(s) URL with `{index}` in it.
fn validate_peers(ctx: &Ctx<'_>, p: &Spanned<String>) -> Result<String, ConfigError> {
    let text = p.get_ref();
    let sample = text.replace("{index}", "0");
    let ok = text.contains("{index}")
        && (sample.starts_with("http://") || sample.starts_with("https://"))
        && url::Url::parse(&sample).is_ok();
    if !ok {
        return Err(ctx.err(
            Some(p.span()),
            "events.peers",
            format!(
                "{text:?}: expected an http(s) URL with {{index}} where a replica's shard index goes, \
                 such as \"http://regmirror-{{index}}.regmirror-headless:9102\""
            ),
        ));
    }
    Ok(text.clone())
}

fn validate_source(
    ctx: &Ctx<'_>,
    i: usize,
    s: &Spanned<RawSource>,
) -> Result<EventSource, ConfigError> {
    let raw = s.get_ref();
    let err = |key: &str, message: String| {
        ctx.err(Some(s.span()), format!("events.source[{i}].{key}"), message)
    };
    let name_ok = !raw.name.is_empty()
        && raw.name.len() <= 64
        && raw
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(err(
            "name",
            format!(
                "{:?}: expected 1 to 64 letters, digits, '-' or '_' (it is a URL path segment)",
                raw.name
            ),
        ));
    }
    let kind = SourceKind::parse(&raw.kind).ok_or_else(|| {
        err(
            "kind",
            format!(
                "{:?}: expected one of {}",
                raw.kind,
                SOURCE_KINDS.join(", ")
            ),
        )
    })?;
    let registry = raw
        .registry
        .clone()
        .or_else(|| kind.default_registry().map(str::to_string))
        .ok_or_else(|| err("registry", format!("a {} source needs registry = \"HOST[:PORT]\": the registry its events speak of", kind.label())))?;
    let key = format!("events.source[{i}].secret");
    let secret = secret(
        ctx,
        Some(s.span()),
        &key,
        raw.secret_file.as_deref(),
        raw.secret_env.as_deref(),
    )?;
    let bearer = check_keys(raw, kind, secret.is_some()).map_err(|(key, m)| err(key, m))?;
    let rate_per_minute = raw.rate_per_minute.unwrap_or(DEFAULT_RATE_PER_MINUTE);
    Ok(EventSource {
        name: raw.name.clone(),
        kind,
        registry,
        secret,
        bearer,
        repositories: raw.repositories.clone(),
        rate_per_minute,
    })
}

/// The keys of a source that depend on its kind: the secret (or the
/// repositories of an unsigned kind), `auth` and `rate_per_minute`; true
/// for a bearer token. Errors name the key.
fn check_keys(
    raw: &RawSource,
    kind: SourceKind,
    has_secret: bool,
) -> Result<bool, (&'static str, String)> {
    match (kind.unsigned(), has_secret) {
        (true, true) => {
            return Err((
                "secret_file",
                format!(
                    "{} sends no signature nor secret: remove secret_file/secret_env and list repositories instead",
                    kind.label()
                ),
            ));
        }
        (true, false) if raw.repositories.is_empty() => {
            return Err((
                "repositories",
                format!(
                    "{} events are unsigned: list the repositories they may name (repositories = [\"NAMESPACE/NAME\"])",
                    kind.label()
                ),
            ));
        }
        (false, false) => {
            return Err((
                "secret_file",
                format!(
                    "a {} source needs its shared secret: secret_file = \"PATH\" or secret_env = \"VARIABLE\"",
                    kind.label()
                ),
            ));
        }
        _ => {}
    }
    let bearer = match raw.auth.as_deref() {
        None | Some("hmac") => false,
        Some("bearer") if kind == SourceKind::Cloudevents => true,
        Some(other) => {
            return Err((
                "auth",
                format!(
                    "{other:?}: expected \"hmac\" or \"bearer\", and only for a cloudevents source"
                ),
            ));
        }
    };
    if raw.auth.is_some() && kind != SourceKind::Cloudevents {
        return Err(("auth", "auth is only for a cloudevents source".to_string()));
    }
    if raw.rate_per_minute == Some(0) {
        return Err((
            "rate_per_minute",
            "0: expected at least 1 event per minute".to_string(),
        ));
    }
    Ok(bearer)
}

/// A secret from `file` (resolved against the config file's directory;
/// trailing line breaks dropped) or the environment variable `env`.
fn secret(
    ctx: &Ctx<'_>,
    span: Option<std::ops::Range<usize>>,
    key: &str,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<Secret>, ConfigError> {
    let value = match (file, env) {
        (Some(_), Some(_)) => {
            return Err(ctx.err(
                span,
                key,
                "give the secret either as a file or as an environment variable, not both",
            ));
        }
        (Some(f), None) => {
            let path = match ctx.file.parent() {
                Some(dir) if f.is_relative() => dir.join(f),
                _ => f.to_path_buf(),
            };
            std::fs::read_to_string(&path).map_err(|e| {
                ctx.err(
                    span.clone(),
                    format!("{key}_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?
        }
        (None, Some(v)) => std::env::var(v).map_err(|_| {
            ctx.err(
                span.clone(),
                format!("{key}_env"),
                format!("the environment variable {v} is not set (or not UTF-8)"),
            )
        })?,
        (None, None) => return Ok(None),
    };
    let value = value.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(ctx.err(span, key, "the secret is empty"));
    }
    Ok(Some(Secret::new(value)))
}

#[cfg(test)]
mod tests {
    use crate::sync::Config;

    fn load(events: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s3cret-value\n").unwrap();
        let path = dir.path().join("mirror.toml");
        let text = format!("allow_empty = true\n{events}");
        std::fs::write(&path, &text).unwrap();
        Config::load(&path).map_err(|e| e.to_string())
    }

    #[test]
    fn sources_read_their_secret_and_kinds_set_their_rules() {
        let c = load(
            "[events]\nlisten = \"127.0.0.1:9102\"\napi_token_file = \"secret\"\n\
             [[events.source]]\nname = \"up\"\nkind = \"distribution\"\nregistry = \"r:5000\"\nsecret_file = \"secret\"\n\
             [[events.source]]\nname = \"gh\"\nkind = \"github\"\nsecret_file = \"secret\"\n\
             [[events.source]]\nname = \"hub\"\nkind = \"dockerhub\"\nrepositories = [\"a/b\"]\n",
        )
        .unwrap();
        let e = &c.events;
        assert_eq!(e.listen.unwrap().port(), 9102);
        assert_eq!(e.api_token.as_ref().unwrap().expose(), "s3cret-value");
        assert_eq!(
            e.sources[0].secret.as_ref().unwrap().expose(),
            "s3cret-value"
        );
        assert_eq!(e.sources[1].registry, "ghcr.io");
        assert_eq!(e.sources[2].registry, "docker.io");
        assert!(e.sources[2].secret.is_none());
        assert!(
            !format!("{c:?}").contains("s3cret-value"),
            "secrets never in Debug"
        );
        assert!(load("").unwrap().events.listen.is_none(), "off by default");
    }

    #[test]
    fn bad_events_settings_name_the_key_and_the_fix() {
        let cases = [
            (
                "[events]\napi_token_file = \"secret\"\n",
                "events.listen",
                "no listen address",
            ),
            (
                "[events]\nlisten = \"nope\"\n",
                "events.listen",
                "not an address",
            ),
            (
                "[events]\nlisten = \"127.0.0.1:1\"\n[[events.source]]\nname = \"a\"\nkind = \"distribution\"\nregistry = \"r\"\n",
                "secret_file",
                "needs its shared secret",
            ),
            (
                "[events]\nlisten = \"127.0.0.1:1\"\n[[events.source]]\nname = \"a\"\nkind = \"quay\"\n",
                "repositories",
                "unsigned",
            ),
            (
                "[events]\nlisten = \"127.0.0.1:1\"\n[[events.source]]\nname = \"a\"\nkind = \"quay\"\nrepositories = [\"x/y\"]\nsecret_file = \"secret\"\n",
                "secret_file",
                "no signature",
            ),
            (
                "[events]\nlisten = \"127.0.0.1:1\"\n[[events.source]]\nname = \"a\"\nkind = \"gitlab\"\n",
                "kind",
                "expected one of",
            ),
            (
                "[events]\nlisten = \"127.0.0.1:1\"\n[[events.source]]\nname = \"a/b\"\nkind = \"github\"\n",
                "name",
                "URL path segment",
            ),
            (
                "[events]\nlisten = \"127.0.0.1:1\"\n[[events.source]]\nname = \"a\"\nkind = \"distribution\"\nregistry = \"r\"\nsecret_file = \"missing\"\n",
                "secret_file",
                "cannot read",
            ),
            (
                "[events]\nlisten = \"127.0.0.1:1\"\n[[events.source]]\nname = \"a\"\nkind = \"github\"\nsecret_env = \"REGMIRROR_TEST_UNSET_VARIABLE\"\n",
                "secret_env",
                "not set",
            ),
            (
                "[events]\nlisten = \"127.0.0.1:1\"\n[[events.source]]\nname = \"a\"\nkind = \"github\"\nsecret_file = \"secret\"\nauth = \"bearer\"\n",
                "auth",
                "cloudevents",
            ),
            (
                "[events]\nlisten = \"127.0.0.1:1\"\npeers = \"http://regmirror:9102\"\n",
                "events.peers",
                "{index}",
            ),
            (
                "[events]\nlisten = \"127.0.0.1:1\"\n[[events.source]]\nname = \"a\"\nkind = \"github\"\nsecret_file = \"secret\"\n[[events.source]]\nname = \"a\"\nkind = \"github\"\nsecret_file = \"secret\"\n",
                "name",
                "two sources",
            ),
        ];
        for (text, key, words) in cases {
            let e = load(text).unwrap_err();
            assert!(e.contains(key) && e.contains(words), "{text}\n-> {e}");
            assert!(!e.contains("s3cret-value"), "{e}");
        }
    }
}
