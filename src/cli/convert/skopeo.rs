//! `--from skopeo`: the YAML of `skopeo sync --src yaml` (skopeo-sync(1),
//! "YAML file content"): registry host -> `images` (repository -> tags or
//! digests, none meaning every tag), `images-by-tag-regex`,
//! `images-by-semver`, `credentials`, `tls-verify`, `cert-dir`.

use serde_norway::Value;

use super::draft::{Draft, Table};
use super::{join, scalar, shown};

/// Convert the document; `dest` is skopeo's destination, `scoped` its `--scoped`.
pub fn convert(doc: &Value, dest: &str, scoped: bool) -> Result<Draft, String> {
    let Value::Mapping(registries) = doc else {
        return Err("a skopeo sync YAML is a mapping of registry hosts to their images".into());
    };
    let mut draft = Draft::default();
    for (host, body) in registries {
        let Some(host) = scalar(host) else {
            draft.top.note(format!(
                "skipped a registry key that is not a host: {}",
                shown(host)
            ));
            continue;
        };
        let Value::Mapping(body) = body else {
            draft
                .top
                .note(format!("{host}: not a mapping of settings, skipped"));
            continue;
        };
        let ctx = Ctx {
            host: &host,
            dest,
            scoped,
        };
        for (key, value) in body {
            let key = scalar(key).unwrap_or_default();
            match key.as_str() {
                "images" => images(&mut draft, &ctx, value),
                "images-by-tag-regex" => by_regex(&mut draft, &ctx, value),
                "images-by-semver" => by_semver(&mut draft, &ctx, value),
                "credentials" => credentials(&mut draft, &host, value),
                "tls-verify" => tls_verify(&mut draft, &host, value),
                "cert-dir" => {
                    let dir = scalar(value).unwrap_or_default();
                    draft.registry(&host).note(format!(
                        "skopeo cert-dir {dir:?}: regmirror takes files, not a directory: set \
                         ca_file to its CA (*.crt), client_cert_file and client_key_file to its \
                         *.cert and *.key"
                    ));
                }
                other => draft.registry(&host).note(format!(
                    "skopeo key {other:?} = {} has no regmirror equivalent; left out",
                    shown(value)
                )),
            }
        }
    }
    Ok(draft)
}

/// Where a registry's images go.
struct Ctx<'a> {
    host: &'a str,
    dest: &'a str,
    scoped: bool,
}

impl Ctx<'_> {
    fn source(&self, repo: &str) -> String {
        join(self.host, repo)
    }

    /// skopeo puts `repo` under DEST (with --scoped, under DEST/HOST).
    fn target(&self, repo: &str) -> String {
        if self.scoped {
            join(&join(self.dest, self.host), repo)
        } else {
            join(self.dest, repo)
        }
    }

    /// A mirror table of `repo` with its source and target set.
    fn table(&self, repo: &str, source: String) -> Table {
        let mut t = Table::default();
        t.set("source", source);
        t.set("target", self.target(repo));
        t
    }
}

/// `images`: each repository with its tags and digests (none: every tag).
fn images(draft: &mut Draft, ctx: &Ctx<'_>, value: &Value) {
    let Value::Mapping(repos) = value else {
        draft
            .top
            .note(format!("{}: `images` is not a mapping; skipped", ctx.host));
        return;
    };
    for (repo, list) in repos {
        let repo = scalar(repo).unwrap_or_default();
        let items: Vec<String> = match list {
            Value::Sequence(s) => s.iter().filter_map(scalar).collect(),
            Value::Null => Vec::new(),
            other => vec![scalar(other).unwrap_or_default()],
        };
        let (digests, tags): (Vec<String>, Vec<String>) =
            items.into_iter().partition(|i| i.contains(':'));
        let path = ctx.target(&repo);
        if tags.is_empty() && digests.is_empty() {
            let t = ctx.table(&repo, ctx.source(&repo));
            draft.mirror(&path, t);
        }
        if !tags.is_empty() {
            let mut t = ctx.table(&repo, ctx.source(&repo));
            t.list("tags", &tags);
            draft.mirror(&path, t);
        }
        for d in digests {
            let mut t = ctx.table(&repo, format!("{}@{d}", ctx.source(&repo)));
            t.note("skopeo copies a digest untagged; so does this mirror (by digest)");
            draft.mirror(&format!("{path}@{d}"), t);
        }
    }
}

/// `images-by-tag-regex`: repository -> one regex (unanchored in both tools).
fn by_regex(draft: &mut Draft, ctx: &Ctx<'_>, value: &Value) {
    let Value::Mapping(repos) = value else {
        draft.top.note(format!(
            "{}: `images-by-tag-regex` is not a mapping; skipped",
            ctx.host
        ));
        return;
    };
    for (repo, re) in repos {
        let repo = scalar(repo).unwrap_or_default();
        let mut t = ctx.table(&repo, ctx.source(&repo));
        let re = scalar(re).unwrap_or_default();
        if let Err(e) = regex::Regex::new(&re) {
            t.disable(format!(
                "the regex {re:?} (Go syntax) is not valid here: {e}"
            ));
        }
        t.list("include", &[re]);
        draft.mirror(&ctx.target(&repo), t);
    }
}

/// `images-by-semver`: repository -> a Masterminds/semver constraint.
fn by_semver(draft: &mut Draft, ctx: &Ctx<'_>, value: &Value) {
    let Value::Mapping(repos) = value else {
        draft.top.note(format!(
            "{}: `images-by-semver` is not a mapping; skipped",
            ctx.host
        ));
        return;
    };
    for (repo, req) in repos {
        let repo = scalar(repo).unwrap_or_default();
        let req = scalar(req).unwrap_or_default();
        let mut t = ctx.table(&repo, ctx.source(&repo));
        if let Err(e) = semver::VersionReq::parse(&req) {
            // Without its filter the mirror would take every tag: leave it out.
            t.disable(format!(
                "the constraint {req:?} uses Masterminds/semver syntax regmirror does not read \
                 ({e}); rewrite it as a comma-separated requirement (\">=1.2, <2\")"
            ));
        }
        t.set("semver", req);
        draft.mirror(&ctx.target(&repo), t);
    }
}

fn credentials(draft: &mut Draft, host: &str, value: &Value) {
    let get = |k: &str| match value {
        Value::Mapping(m) => m.get(k).and_then(scalar),
        _ => None,
    };
    let r = draft.registry(host);
    if let Some(u) = get("username") {
        r.set("username", u);
    }
    if let Some(p) = get("password") {
        r.set("password", p);
        r.note(
            "the password is inline, as in the skopeo file; prefer password_env or \
             password_file",
        );
    }
}

/// `tls-verify: false`: skopeo then skips certificate checks and falls back
/// to plain HTTP.
fn tls_verify(draft: &mut Draft, host: &str, value: &Value) {
    let verify = !matches!(value, Value::Bool(false)) && scalar(value).is_none_or(|s| s != "false");
    let loopback = regmirror::registry::reference::is_loopback_host(host);
    let r = draft.registry(host);
    match (verify, loopback) {
        (true, _) => {}
        (false, true) => {
            r.set("tls", "plain-http");
            r.note("skopeo tls-verify: false; a loopback registry is spoken to over plain HTTP");
        }
        (false, false) => {
            r.set("tls", "skip-verify");
            r.note(
                "skopeo tls-verify: false also falls back to plain HTTP; set tls = \
                 \"plain-http\" if this registry speaks HTTP only",
            );
        }
    }
}
