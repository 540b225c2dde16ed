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
//!   action `published` or `updated`, of a container package (see
//!   [`is_container`]); the repository of `package_version.package_url`
//!   (else `{owner}/{package}`) lowercased (see [`github_repository`]) and
//!   `package_version.container_metadata.tag.name` (empty for a push by
//!   digest: the whole repository is checked);
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
    if !is_container(package) {
        return Ok(Payload::Nothing("not a container package"));
    }
    let repo = github_repository(package)?;
    let tag = str_at(package, "/package_version/container_metadata/tag/name");
    pushes(vec![named(&repo, tag)], "no package")
}

/// True for a container package. GitHub marks one in any of three fields,
/// and its own published examples contradict themselves
/// (octokit/webhooks `payload-examples/api.github.com/package/published.docker.payload.json`:
/// `package_type` "npm", `ecosystem` "docker", `registry.type` "CONTAINER";
/// deliveries quoted in octokit/webhooks.net#178: "CONTAINER" in all three),
/// so any one of them counts: `package_type` container, `ecosystem` docker
/// or container, `registry.type` container (any case).
fn is_container(package: &Value) -> bool {
    let is = |pointer: &str, values: &[&str]| {
        str_at(package, pointer).is_some_and(|s| values.iter().any(|v| s.eq_ignore_ascii_case(v)))
    };
    is("/package_type", &["container"])
        || is("/ecosystem", &["docker", "container"])
        || is("/registry/type", &["container"])
}

/// The repository a GitHub package event names, lowercased (GHCR serves
/// `ghcr.io/Owner/Name` as `owner/name`): the path of
/// `package_version.package_url`, the pull reference GitHub prints
/// (`ghcr.io/OWNER/NAME:TAG`, `installation_command` is `docker pull` of
/// it), which agrees with the manifest's `uri` and the `html_url`s where
/// `namespace` and `name` do not (the published example's namespace is
/// "Codertocat/hello-world", its name "hello-world-npm"); else
/// `{owner.login or namespace}/{name}`. The host of `package_url` is not
/// compared: the source's `registry` says which registry the mirrors read.
fn github_repository(package: &Value) -> Result<String, String> {
    if let Some(path) = str_at(package, "/package_version/package_url").and_then(pull_path) {
        return Ok(path);
    }
    let name = str_at(package, "/name").ok_or("the package has no name and no package_url")?;
    let owner = str_at(package, "/owner/login")
        .or_else(|| str_at(package, "/namespace"))
        .ok_or("the package has no owner nor namespace and no package_url")?;
    Ok(format!("{owner}/{name}").to_ascii_lowercase())
}

/// The repository path of a pull reference `HOST/PATH[:TAG][@DIGEST]`
/// (the tag may be empty), lowercased; `None` when it is not one.
fn pull_path(reference: &str) -> Option<String> {
    let lower = reference.to_ascii_lowercase();
    let name = lower.split('@').next()?;
    let (host, rest) = name.split_once('/')?;
    let path = rest.rsplit_once(':').map_or(rest, |(p, _)| p);
    crate::registry::Reference::new_repository(host, path)
        .is_ok_and(|r| r.repository() == path)
        .then(|| path.to_string())
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

    /// A package event with `package` as the package object.
    fn gh(event: &str, package: serde_json::Value) -> Result<Payload, String> {
        let body = serde_json::json!({ "action": "published", event: package }).to_string();
        p(SourceKind::Github, Some(event), &body)
    }

    #[test]
    fn a_github_container_package_is_marked_by_any_of_three_fields() {
        let version = serde_json::json!({ "container_metadata": { "tag": { "name": "v1" } } });
        let with = |field: &str, value: &str| {
            let mut pkg = serde_json::json!({
                "name": "App", "namespace": "Org", "owner": { "login": "Org" },
                "package_type": "npm", "ecosystem": "npm", "registry": { "type": "npm" },
                "package_version": version.clone(),
            });
            *pkg.pointer_mut(field).unwrap() = value.into();
            pkg
        };
        let app_v1 = Ok(Payload::Pushes(vec![named("org/app", Some("v1"))]));
        for (field, value) in [
            ("/package_type", "CONTAINER"),
            ("/package_type", "container"),
            ("/ecosystem", "docker"),
            ("/ecosystem", "CONTAINER"),
            ("/registry/type", "CONTAINER"),
        ] {
            assert_eq!(gh("package", with(field, value)), app_v1, "{field} {value}");
            assert_eq!(
                gh("registry_package", with(field, value)),
                app_v1,
                "{field} {value}"
            );
        }
        assert_eq!(
            gh("package", with("/package_type", "npm")),
            Ok(Payload::Nothing("not a container package"))
        );
    }

    #[test]
    fn a_github_repository_comes_from_package_url_and_an_empty_tag_checks_it_all() {
        // The fields of octokit/webhooks' published.docker.payload.json.
        let published = serde_json::json!({
            "name": "hello-world-npm", "namespace": "Codertocat/hello-world",
            "owner": { "login": "Codertocat" }, "ecosystem": "docker", "package_type": "npm",
            "package_version": {
                "container_metadata": { "tag": { "name": "", "digest": "sha256:6c62" } },
                "package_url": "ghcr.io/Codertocat/hello-world:",
            },
            "registry": { "type": "CONTAINER" },
        });
        let whole = Ok(Payload::Pushes(vec![named("codertocat/hello-world", None)]));
        assert_eq!(gh("package", published.clone()), whole);
        assert_eq!(gh("registry_package", published), whole);
        let url = |u: &str| {
            serde_json::json!({
                "name": "Pi", "owner": { "login": "Pi-Hole" }, "package_type": "CONTAINER",
                "package_version": { "package_url": u,
                    "container_metadata": { "tag": { "name": "2024.1" } } },
            })
        };
        let tagged = |r: &str| Ok(Payload::Pushes(vec![named(r, Some("2024.1"))]));
        assert_eq!(
            gh("package", url("ghcr.io/Pi-Hole/team/Pi:2024.1")),
            tagged("pi-hole/team/pi")
        );
        assert_eq!(
            gh("package", url("127.0.0.1:5000/a/b@sha256:00")),
            tagged("a/b")
        );
        // Not a pull reference: owner and name.
        for bad in ["", "no-host", "ghcr.io/", "ghcr.io/a b/c:1"] {
            assert_eq!(gh("package", url(bad)), tagged("pi-hole/pi"), "{bad:?}");
        }
        let nameless =
            serde_json::json!({ "package_type": "container", "owner": { "login": "o" } });
        assert!(gh("package", nameless).unwrap_err().contains("no name"));
    }
}
