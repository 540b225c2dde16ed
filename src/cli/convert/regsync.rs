//! `--from regsync`: regclient's regsync config (docs/regsync.md of
//! regclient): `creds`, `defaults` and `sync` entries of type `image`,
//! `repository` or `registry`. Go templates are read where they are the
//! documented credential forms (`{{env "VAR"}}`, `{{file "PATH"}}`) or a
//! backup tag built from `{{.Ref.Tag}}`; anything else is left out with a
//! comment.

use serde_norway::Value;

use super::draft::{Draft, Table};
use super::{scalar, shown};

/// Convert the document.
pub fn convert(doc: &Value) -> Result<Draft, String> {
    let Value::Mapping(top) = doc else {
        return Err("a regsync config is a YAML mapping (version, creds, defaults, sync)".into());
    };
    let mut draft = Draft::default();
    for (key, value) in top {
        let key = scalar(key).unwrap_or_default();
        match key.as_str() {
            "version" => {
                if scalar(value).as_deref() != Some("1") {
                    draft.top.note(format!(
                        "regsync config version {} (1 expected)",
                        shown(value)
                    ));
                }
            }
            "creds" => creds(&mut draft, value),
            "defaults" => defaults(&mut draft, value),
            "sync" => {}
            k if k.starts_with("x-") => {}
            other => draft.top.note(format!(
                "regsync key {other:?} has no regmirror equivalent; left out"
            )),
        }
    }
    let entries = match top.get("sync") {
        Some(Value::Sequence(s)) => s.as_slice(),
        _ => &[],
    };
    let default_backup = top.get("defaults").and_then(|d| d.get("backup")).cloned();
    for (i, entry) in entries.iter().enumerate() {
        let (path, mut table) = sync_entry(i + 1, entry);
        if let Some(b) = &default_backup
            && entry.get("backup").is_none()
        {
            common_key(&mut table, "backup", b, false);
        }
        draft.mirror(&path, table);
    }
    Ok(draft)
}

/// `{{env "VAR"}}` / `{{file "PATH"}}` (spaces and escaped quotes allowed).
fn template_call<'a>(text: &'a str, func: &str) -> Option<&'a str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let arg = inner.strip_prefix(func)?.trim();
    arg.strip_prefix('"')?.strip_suffix('"')
}

fn is_template(s: &str) -> bool {
    s.contains("{{")
}

fn creds(draft: &mut Draft, value: &Value) {
    let Value::Sequence(list) = value else {
        draft.top.note("`creds` is not a list; left out");
        return;
    };
    for c in list {
        let Value::Mapping(c) = c else { continue };
        let get = |k: &str| c.get(k).and_then(scalar);
        let Some(host) = get("registry") else {
            draft.top.note(format!(
                "a creds entry without `registry` left out: {}",
                shown(&Value::Mapping(c.clone()))
            ));
            continue;
        };
        let r = draft.registry(&host);
        for (key, v) in c {
            let key = scalar(key).unwrap_or_default();
            let text = scalar(v).unwrap_or_default();
            cred_key(r, &key, &text, v);
        }
    }
}

/// One key of a `creds` entry.
fn cred_key(r: &mut Table, key: &str, text: &str, v: &Value) {
    match key {
        "registry" => {}
        "user" if is_template(text) => r.note(format!(
            "user {text:?} is a template; regmirror takes the user name as written: set username"
        )),
        "user" => r.set("username", text),
        "pass" => {
            if let Some(var) = template_call(text, "env") {
                r.set("password_env", var);
            } else if let Some(file) = template_call(text, "file") {
                r.set("password_file", file);
            } else if is_template(text) {
                r.note("pass is a template regmirror cannot evaluate: set password_env or password_file");
            } else {
                r.set("password", text);
                r.note("the password is inline, as in the regsync file; prefer password_env or password_file");
            }
        }
        "tls" => match text {
            "enabled" => {}
            "insecure" => r.set("tls", "skip-verify"),
            "disabled" => r.set("tls", "plain-http"),
            other => r.note(format!(
                "tls {other:?} is not enabled, insecure or disabled; left out"
            )),
        },
        "reqPerSec" => match v.as_f64() {
            Some(n) if n > 0.0 => r.set("requests_per_second", n),
            _ => {}
        },
        "reqConcurrent" => match v.as_i64() {
            Some(n) if n > 0 => r.set("max_concurrent_requests", n),
            _ => {}
        },
        "blobChunk" => match v.as_i64() {
            Some(n) if n > 0 => r.set("chunk_size", n),
            _ => {}
        },
        "regcert" => {
            r.note("regcert (an inline PEM) is not read: write it to a file and set ca_file to it")
        }
        "credHelper" => r.note(format!(
            "credHelper {text:?}: regmirror runs the credential helpers a Docker config names \
             (credHelpers / credsStore): name {:?} for this host in its credHelpers",
            text.trim_start_matches("docker-credential-")
        )),
        other => r.note(format!(
            "regsync creds key {other:?} = {} has no regmirror equivalent; left out",
            shown(v)
        )),
    }
}

fn defaults(draft: &mut Draft, value: &Value) {
    let Value::Mapping(d) = value else { return };
    for (key, v) in d {
        let key = scalar(key).unwrap_or_default();
        match key.as_str() {
            "parallel" => match v.as_i64() {
                Some(n) if n >= 1 => draft.defaults.set("concurrency", n),
                _ => draft
                    .defaults
                    .note(format!("parallel {} left out", shown(v))),
            },
            "ratelimit" => ratelimit(draft, v),
            _ => common_key(&mut draft.defaults, &key, v, true),
        }
    }
}

/// `ratelimit.min`: pulls kept in reserve, as regmirror's pull budget floor.
fn ratelimit(draft: &mut Draft, v: &Value) {
    let min = v.get("min").and_then(Value::as_i64);
    let retry = v.get("retry").and_then(scalar);
    if let Some(min) = min.filter(|m| *m >= 0) {
        let r = draft.registry("docker.io");
        r.set("pull_budget_floor", min);
        r.note(
            "regsync ratelimit.min; regmirror defers an image whose copy would spend into the \
             floor of a registry that announces a pull budget (Docker Hub)",
        );
    }
    if let Some(retry) = retry {
        draft.defaults.note(format!(
            "ratelimit.retry {retry:?}: deferred images are retried at the mirror's next run"
        ));
    }
}

/// Keys `defaults` and `sync` entries share. `in_defaults`: writing `[defaults]`.
fn common_key(t: &mut Table, key: &str, v: &Value, in_defaults: bool) {
    let text = scalar(v).unwrap_or_default();
    match key {
        "schedule" => t.set("schedule", text),
        "interval" => match interval_cron(&text) {
            Some(cron) if !t.has("schedule") => {
                t.set("schedule", cron.clone());
                t.note(format!(
                    "interval {text:?} written as the schedule {cron:?}"
                ));
            }
            Some(_) => t.note(format!("interval {text:?}: schedule wins, as in regsync")),
            None => t.note(format!(
                "interval {text:?} has no cron form here: set schedule"
            )),
        },
        "backup" if in_defaults => t.note(format!(
            "default backup {text:?}: regmirror sets backup per mirror; each mirror below \
             without its own takes it"
        )),
        "backup" => match backup_template(&text) {
            Some(b) => t.set("backup", b),
            None => t.note(format!(
                "backup {text:?}: regmirror writes backup tags in the same repository, \
                 from a `{{tag}}` template (backup = \"{{tag}}-prev\"); set one by hand"
            )),
        },
        "referrers" => {
            if let Some(b) = v.as_bool() {
                t.set("referrers", b);
            }
        }
        "digestTags" => {
            if let Some(b) = v.as_bool() {
                t.set("cosign_tags", b);
                t.note(
                    "digestTags: regmirror copies cosign's sha256-<hex>.sig/.att/.sbom digest tags",
                );
            }
        }
        "referrerFilters" => referrer_filters(t, v),
        other => t.note(format!(
            "regsync key {other:?} = {} has no regmirror equivalent; left out",
            shown(v)
        )),
    }
}

fn referrer_filters(t: &mut Table, v: &Value) {
    let mut types = Vec::new();
    for f in v.as_sequence().map(Vec::as_slice).unwrap_or_default() {
        if let Some(a) = f.get("artifactType").and_then(scalar) {
            types.push(a);
        }
        if f.get("annotations").is_some() {
            t.note("referrerFilters annotations are not read: regmirror filters referrers by artifact type only");
        }
    }
    if !types.is_empty() {
        t.list("referrer_types", &types);
    }
}

/// `60m`, `12h`, `1h30m`, `30s`… as a cron schedule, when one says the same.
fn interval_cron(text: &str) -> Option<String> {
    let mut minutes: u64 = 0;
    let mut num = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        minutes += match c {
            'h' => n * 60,
            'm' => n,
            's' if n.is_multiple_of(60) => n / 60,
            _ => return None,
        };
    }
    if !num.is_empty() || minutes == 0 {
        return None;
    }
    match minutes {
        m if m < 60 && 60 % m == 0 => Some(format!("*/{m} * * * *")),
        60 => Some("0 * * * *".into()),
        m if m % 60 == 0 && m < 1440 && 24 % (m / 60) == 0 => Some(format!("0 */{} * * *", m / 60)),
        1440 => Some("0 0 * * *".into()),
        _ => None,
    }
}

/// `prefix{{.Ref.Tag}}suffix` as a `{tag}` template, when the rest is tag characters.
fn backup_template(text: &str) -> Option<String> {
    let normalized = text.replace("{{ .Ref.Tag }}", "{{.Ref.Tag}}");
    let (before, after) = normalized.split_once("{{.Ref.Tag}}")?;
    let ok = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    };
    (ok(before) && ok(after)).then(|| format!("{before}{{tag}}{after}"))
}

/// One `sync` entry: its mirror table, and its target path (for names).
fn sync_entry(n: usize, entry: &Value) -> (String, Table) {
    let mut t = Table::default();
    let Value::Mapping(e) = entry else {
        t.disable(format!("sync entry {n} is not a mapping"));
        return (String::new(), t);
    };
    let get = |k: &str| e.get(k).and_then(scalar).unwrap_or_default();
    let (source, target, kind) = (get("source"), get("target"), get("type"));
    if is_template(&source) || is_template(&target) {
        t.disable(format!(
            "sync entry {n}: source {source:?} or target {target:?} is a template regmirror \
             cannot evaluate; write them out"
        ));
    }
    match kind.as_str() {
        "registry" => {
            for host in [&source, &target] {
                if !regmirror::sync::source::is_registry_only(host) {
                    t.disable(format!(
                        "sync entry {n}: regmirror reads {host:?} as an image name and tag, not \
                         a registry host: a host needs a dot (`reg.example:5000`), `localhost` \
                         or an IP address; write the host so and enable this mirror"
                    ));
                }
            }
            t.set("source", source.clone());
            t.set("target", target.clone());
            t.list("repositories", &[".*".to_string()]);
        }
        "repository" => {
            t.set("source", qualified(&source));
            t.set("target", target.clone());
        }
        "image" => {
            t.set("source", source.clone());
            t.set("target", target.clone());
        }
        other => t.disable(format!(
            "sync entry {n}: type {other:?} is not image, repository or registry"
        )),
    }
    for (key, v) in e {
        let key = scalar(key).unwrap_or_default();
        match key.as_str() {
            "source" | "target" | "type" => {}
            "tags" => tags(&mut t, &kind, v),
            "platform" => {
                t.list("platforms", &[scalar(v).unwrap_or_default()]);
                t.note(
                    "regsync copies that platform's image alone; regmirror keeps an index \
                     holding only that platform (a new digest)",
                );
            }
            k if k.starts_with("x-") => {}
            _ => common_key(&mut t, &key, v, false),
        }
    }
    (target, t)
}

/// A repository as regsync reads it: `alpine` is `docker.io/library/alpine`.
fn qualified(source: &str) -> String {
    match regmirror::registry::Reference::parse_repository(source) {
        Ok(r) if !r.is_layout() => r.to_string(),
        _ => source.to_string(),
    }
}

/// `tags.allow` / `tags.deny`: regexes bound to the whole tag.
fn tags(t: &mut Table, kind: &str, v: &Value) {
    if kind == "image" {
        t.note(
            "tags filters apply to repository and registry entries only (as in regsync); left out",
        );
        return;
    }
    let anchored = |key: &str| -> Vec<String> {
        v.get(key)
            .and_then(Value::as_sequence)
            .map(|s| {
                s.iter()
                    .filter_map(scalar)
                    .map(|r| format!("^(?:{r})$"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (allow, deny) = (anchored("allow"), anchored("deny"));
    if !allow.is_empty() {
        t.list("include", &allow);
    }
    if !deny.is_empty() {
        t.list("exclude", &deny);
    }
    if let Value::Mapping(m) = v {
        for k in m
            .keys()
            .filter_map(scalar)
            .filter(|k| k != "allow" && k != "deny")
        {
            t.note(format!("tags.{k} has no regmirror equivalent; left out"));
        }
    }
}
