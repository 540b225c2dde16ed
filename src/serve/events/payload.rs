//! What a sender's event names: the repositories (and tags) pushed, read
//! from each sender's documented payload. Anything else in the payload is
//! ignored; a digest it names is never copied as such.
//!
//! - distribution: the notifications envelope
//!   (`application/vnd.docker.distribution.events.v1+json`), `events[]`
//!   with `action == "push"` and a `target.tag` (pushes of blobs and of
//!   manifests by digest alone are skipped: the tagged push follows);
//! - harbor: `type == "PUSH_ARTIFACT"`, `event_data.repository.repo_full_name`
//!   and `event_data.resources[].tag`;
//! - github: the `package` and `registry_package` events (`X-GitHub-Event`),
//!   action `published` or `updated`, `{owner}/{package}` lowercased and
//!   `package_version.container_metadata.tag.name`;
//! - quay: `repository` (the tags are not trusted: a re-check of the whole repository);
//! - dockerhub: `repository.repo_name` (likewise);
//! - cloudevents: structured JSON 1.0 (`specversion`, `id`, `source`,
//!   `type`), `data.repository` and optional `data.tag`.

use serde_json::Value;

use crate::sync::events_config::SourceKind;

/// One repository (and tag) an event names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// Repository path (`team/app`).
    pub repository: String,
    /// The tag pushed, when the sender says and is trusted to.
    pub tag: Option<String>,
}

/// What an event's payload says.
#[derive(Debug, PartialEq, Eq)]
pub enum Payload {
    /// Pushes to act on.
    Pushes(Vec<Named>),
    /// Nothing to act on (a ping, a pull, a deletion): answered 200.
    Nothing(&'static str),
}

/// Read `body` as `kind` says; `github_event` is the `X-GitHub-Event` header.
/// An error says what is wrong with it (never echoing it).
pub fn parse(kind: SourceKind, github_event: Option<&str>, body: &[u8]) -> Result<Payload, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON ({e})"))?;
    match kind {
        SourceKind::Distribution => distribution(&v),
        SourceKind::Harbor => harbor(&v),
        SourceKind::Github => github(github_event, &v),
        SourceKind::Quay => whole(str_at(&v, "/repository")),
        SourceKind::Dockerhub => whole(str_at(&v, "/repository/repo_name")),
        SourceKind::Cloudevents => cloudevent(&v),
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A repository and its tag; a "tag" that breaks the tag grammar (Harbor
/// puts the digest there for a push by digest) stands for the whole repository.
fn named(repository: &str, tag: Option<&str>) -> Named {
    Named {
        repository: repository.to_string(),
        tag: tag.filter(|t| is_tag(t)).map(str::to_string),
    }
}

/// The tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn is_tag(t: &str) -> bool {
    let mut bytes = t.bytes();
    t.len() <= 128
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

fn pushes(list: Vec<Named>, nothing: &'static str) -> Result<Payload, String> {
    Ok(if list.is_empty() {
        Payload::Nothing(nothing)
    } else {
        Payload::Pushes(list)
    })
}

fn distribution(v: &Value) -> Result<Payload, String> {
    let events = v
        .get("events")
        .and_then(Value::as_array)
        .ok_or("expected the notifications envelope: an object with an \"events\" array")?;
    let mut out = Vec::new();
    for e in events {
        if e.get("action").and_then(Value::as_str) != Some("push") {
            continue;
        }
        let (Some(repo), Some(tag)) = (str_at(e, "/target/repository"), str_at(e, "/target/tag"))
        else {
            continue;
        };
        let n = named(repo, Some(tag));
        if !out.contains(&n) {
            out.push(n);
        }
    }
    pushes(out, "no tagged push in the envelope")
}

fn harbor(v: &Value) -> Result<Payload, String> {
    let kind = str_at(v, "/type").ok_or("expected a Harbor webhook: no \"type\"")?;
    if kind != "PUSH_ARTIFACT" {
        return Ok(Payload::Nothing("not a PUSH_ARTIFACT event"));
    }
    let repo = str_at(v, "/event_data/repository/repo_full_name")
        .ok_or("a PUSH_ARTIFACT event without event_data.repository.repo_full_name")?;
    let resources = v.pointer("/event_data/resources").and_then(Value::as_array);
    let mut out: Vec<Named> = resources
        .into_iter()
        .flatten()
        .map(|r| named(repo, r.get("tag").and_then(Value::as_str)))
        .collect();
    if out.is_empty() || out.iter().any(|n| n.tag.is_none()) {
        // A push by digest alone: check the repository.
        out = vec![named(repo, None)];
    }
    pushes(out, "no artifact")
}

fn github(event: Option<&str>, v: &Value) -> Result<Payload, String> {
    let root = match event {
        Some("ping") => return Ok(Payload::Nothing("ping")),
        Some("package") => "/package",
        Some("registry_package") => "/registry_package",
        Some(_) => return Ok(Payload::Nothing("not a package event")),
        None => return Err("no X-GitHub-Event header".to_string()),
    };
    let action = str_at(v, "/action").unwrap_or_default();
    if action != "published" && action != "updated" {
        return Ok(Payload::Nothing("not a published or updated package"));
    }
    let package = v.pointer(root).ok_or("no package object in the payload")?;
    let kind = str_at(package, "/package_type").unwrap_or_default();
    if !kind.eq_ignore_ascii_case("container") {
        return Ok(Payload::Nothing("not a container package"));
    }
    let name = str_at(package, "/name").ok_or("the package has no name")?;
    let owner = str_at(package, "/namespace")
        .or_else(|| str_at(package, "/owner/login"))
        .ok_or("the package has no namespace nor owner")?;
    let tag = str_at(package, "/package_version/container_metadata/tag/name");
    let repo = format!("{owner}/{name}").to_ascii_lowercase();
    pushes(vec![named(&repo, tag)], "no package")
}

fn whole(repository: Option<&str>) -> Result<Payload, String> {
    let repo = repository.ok_or("the payload names no repository")?;
    pushes(vec![named(repo, None)], "no repository")
}

fn cloudevent(v: &Value) -> Result<Payload, String> {
    if str_at(v, "/specversion") != Some("1.0") {
        return Err("expected a CloudEvents 1.0 structured event: specversion \"1.0\"".to_string());
    }
    for attr in ["id", "source", "type"] {
        if str_at(v, &format!("/{attr}")).is_none() {
            return Err(format!(
                "the CloudEvent has no {attr:?} attribute (required by the spec)"
            ));
        }
    }
    let repo =
        str_at(v, "/data/repository").ok_or("the CloudEvent's data has no \"repository\"")?;
    pushes(vec![named(repo, str_at(v, "/data/tag"))], "no repository")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kind: SourceKind, ev: Option<&str>, body: &str) -> Result<Payload, String> {
        parse(kind, ev, body.as_bytes())
    }

    #[test]
    fn distribution_envelopes_keep_tagged_pushes_only() {
        let body = r#"{"events":[
            {"action":"pull","target":{"repository":"a/b","tag":"1"}},
            {"action":"push","target":{"repository":"a/b","digest":"sha256:00"}},
            {"action":"push","target":{"repository":"a/b","tag":"1"}},
            {"action":"push","target":{"repository":"a/b","tag":"1"}}]}"#;
        assert_eq!(
            p(SourceKind::Distribution, None, body),
            Ok(Payload::Pushes(vec![named("a/b", Some("1"))]))
        );
        assert!(matches!(
            p(SourceKind::Distribution, None, r#"{"events":[]}"#),
            Ok(Payload::Nothing(_))
        ));
        assert!(p(SourceKind::Distribution, None, "[]").is_err());
        assert!(p(SourceKind::Distribution, None, "not json").is_err());
    }

    #[test]
    fn cloudevents_need_the_required_attributes() {
        let ok = r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"repository":"a/b","tag":"v"}}"#;
        assert_eq!(
            p(SourceKind::Cloudevents, None, ok),
            Ok(Payload::Pushes(vec![named("a/b", Some("v"))]))
        );
        let no_id = r#"{"specversion":"1.0","source":"s","type":"t","data":{"repository":"a/b"}}"#;
        assert!(
            p(SourceKind::Cloudevents, None, no_id)
                .unwrap_err()
                .contains("\"id\"")
        );
    }
}
