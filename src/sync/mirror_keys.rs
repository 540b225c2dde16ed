//! One `[[mirror]]` table: its keys as written ([`RawMirror`]) and their
//! validation into a [`Mirror`], one function per group of keys (discovery,
//! source, tag selection, target, platforms, name, prune and backup), run in
//! the order the errors are reported.

use std::ops::Range;

use regex::Regex;
use semver::VersionReq;
use serde::Deserialize;
use toml::Spanned;

use super::config_error::{ConfigError, Ctx};
use super::filter::TagFilter;
use super::model::{Backup, Defaults, Discovery, Mirror, Prune, PruneMode, Selection};
use super::schedule::Schedule;
use super::target_keys::TargetText;
use crate::registry::{PlatformSpec, Reference};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMirror {
    name: Option<Spanned<String>>,
    source: Spanned<String>,
    target: Option<Spanned<String>>,
    targets: Option<Spanned<Vec<Spanned<String>>>>,
    tags: Option<Vec<Spanned<String>>>,
    include: Option<Vec<Spanned<String>>>,
    exclude: Option<Vec<Spanned<String>>>,
    semver: Option<Spanned<String>>,
    latest: Option<Spanned<usize>>,
    platforms: Option<Vec<Spanned<String>>>,
    platforms_optional: Option<bool>,
    convert_schema1: Option<bool>,
    schedule: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    audit_schedule: Option<Spanned<String>>,
    force: Option<bool>,
    referrers: Option<bool>,
    referrer_types: Option<Vec<Spanned<String>>>,
    exclude_referrer_types: Option<Vec<Spanned<String>>>,
    cosign_tags: Option<bool>,
    max_referrers_per_subject: Option<Spanned<usize>>,
    max_referrers_per_image: Option<Spanned<usize>>,
    max_referrer_depth: Option<Spanned<usize>>,
    prune: Option<Spanned<String>>,
    max_prune: Option<Spanned<usize>>,
    backup: Option<Spanned<String>>,
    backup_keep: Option<Spanned<usize>>,
    repositories: Option<Vec<Spanned<String>>>,
    exclude_repositories: Option<Vec<Spanned<String>>>,
    max_repositories: Option<Spanned<usize>>,
    immutable_tags: Option<Spanned<String>>,
    full_check_every: Option<Spanned<String>>,
    min_age: Option<Spanned<String>>,
    policy: Option<Spanned<super::policy_keys::RawPolicy>>,
}

pub(super) fn parse_platforms(
    ctx: &Ctx<'_>,
    key: &str,
    list: Option<&[Spanned<String>]>,
) -> Result<Vec<PlatformSpec>, ConfigError> {
    let mut out: Vec<PlatformSpec> = Vec::new();
    for p in list.unwrap_or_default() {
        let spec = p
            .get_ref()
            .parse::<PlatformSpec>()
            .map_err(|e| ctx.err(Some(p.span()), key, e.to_string()))?;
        if !out.contains(&spec) {
            out.push(spec);
        }
    }
    Ok(out)
}

/// `schedule` or `interval` of a table (`table` is `defaults` or
/// `mirror[n]`): at most one of them; `None` when neither is set.
pub(super) fn schedule_keys(
    ctx: &Ctx<'_>,
    table: &str,
    schedule: Option<&Spanned<String>>,
    interval: Option<&Spanned<String>>,
    timezone: chrono_tz::Tz,
) -> Result<Option<Schedule>, ConfigError> {
    match (schedule, interval) {
        (Some(_), Some(i)) => Err(ctx.err(
            Some(i.span()),
            format!("{table}.interval"),
            "set either schedule (cron) or interval, not both",
        )),
        (Some(s), None) => Schedule::parse(s.get_ref(), timezone)
            .map(Some)
            .map_err(|e| ctx.err(Some(s.span()), format!("{table}.schedule"), e.to_string())),
        (None, Some(i)) => Schedule::interval(i.get_ref(), timezone, chrono::Utc::now())
            .map(Some)
            .map_err(|e| ctx.err(Some(i.span()), format!("{table}.interval"), e)),
        (None, None) => Ok(None),
    }
}

/// `audit_schedule` of a table (`defaults` or `mirror[n]`): a cron
/// expression in `timezone`; `None` when not set.
pub(super) fn audit_schedule_key(
    ctx: &Ctx<'_>,
    table: &str,
    audit_schedule: Option<&Spanned<String>>,
    timezone: chrono_tz::Tz,
) -> Result<Option<Schedule>, ConfigError> {
    audit_schedule
        .map(|s| {
            Schedule::parse(s.get_ref(), timezone).map_err(|e| {
                ctx.err(
                    Some(s.span()),
                    format!("{table}.audit_schedule"),
                    e.to_string(),
                )
            })
        })
        .transpose()
}

/// A mirror's `audit_schedule`, else that of `[defaults]`.
fn mirror_audit_schedule(
    ctx: &Ctx<'_>,
    n: usize,
    m: &RawMirror,
    defaults: &Defaults,
) -> Result<Option<Schedule>, ConfigError> {
    let own = audit_schedule_key(
        ctx,
        &format!("mirror[{n}]"),
        m.audit_schedule.as_ref(),
        defaults.timezone,
    )?;
    Ok(own.or_else(|| defaults.audit_schedule.clone()))
}

/// True for a target written as a registry host alone (`registry.example.com`,
/// `localhost:5000`): the source path is kept under it.
fn is_registry_only(s: &str) -> bool {
    !Reference::parse(s).is_ok_and(|r| r.is_layout())
        && !s.contains('/')
        && (s.contains('.') || s.contains(':') || s == "localhost")
        && !s.contains('@')
}

/// Mirror `n`'s table as written, in the file it is in: errors point into it.
struct Table<'a> {
    ctx: &'a Ctx<'a>,
    n: usize,
    m: &'a RawMirror,
    /// Where the first target is written (`target`, or `targets`' first entry).
    first_target: Range<usize>,
}

impl<'a> Table<'a> {
    fn new(ctx: &'a Ctx<'a>, n: usize, m: &'a RawMirror, first: &TargetText) -> Table<'a> {
        let first_target = first.span.clone();
        Table {
            ctx,
            n,
            m,
            first_target,
        }
    }

    /// The full key of `k` in this table: `mirror[n].k`.
    fn key(&self, k: &str) -> String {
        format!("mirror[{}].{k}", self.n)
    }

    /// An error about key `k` at `span`.
    fn err(&self, span: Range<usize>, k: &str, message: impl Into<String>) -> ConfigError {
        self.ctx.err(Some(span), self.key(k), message)
    }
}

/// Mirror `n` (1-based), validated; `defaults` stands in for the keys it
/// does not set. Its keys are checked group by group, in this order.
pub(super) fn validate_mirror(
    ctx: &Ctx<'_>,
    n: usize,
    m: RawMirror,
    defaults: &Defaults,
) -> Result<Mirror, ConfigError> {
    let texts = target_texts(ctx, n, &m, defaults)?;
    let t = Table::new(ctx, n, &m, &texts[0]);
    let (mut discovery, source_text, target_text) = discovery(&t, &texts[0].text)?;
    let (source_full, source) = source(&t, &source_text)?;
    let selection = selection(&t, &source_full)?;
    let (target, target_tag, more_targets) = all_targets(
        &t,
        &texts,
        &target_text,
        &source_full,
        &selection,
        discovery.as_mut(),
    )?;
    let platforms = platforms(
        &t,
        defaults,
        &selection,
        &source_full,
        target_tag.as_deref(),
    )?;
    let schedule = schedule_keys(
        ctx,
        &format!("mirror[{n}]"),
        m.schedule.as_ref(),
        m.interval.as_ref(),
        defaults.timezone,
    )?
    .unwrap_or_else(|| defaults.schedule.clone());
    let audit_schedule = mirror_audit_schedule(ctx, n, &m, defaults)?;
    let name = match &m.name {
        Some(name) => given_name(&t, name)?,
        None if let Some(d) = &discovery => super::discover_keys::default_name(d),
        None => default_name(
            &target,
            target_tag.as_deref(),
            &selection,
            source_full.tag(),
        ),
    };
    refuse_short_name_for_every_tag(&t, &selection, &source, &source_text)?;
    let referrers = mirror_referrers(ctx, n, &m, defaults)?;
    let (prune, backup) = prune_and_backup(ctx, n, &m, &selection)?;
    refuse_prune(&t, &prune, discovery.is_some(), &target, &more_targets)?;
    let state = super::state_keys::resolve(&super::state_keys::Keys {
        immutable_tags: m.immutable_tags.as_ref(),
        full_check_every: m.full_check_every.as_ref(),
        min_age: m.min_age.as_ref(),
    })
    .map_err(|(k, span, message)| t.err(span, k, message))?;
    Ok(Mirror {
        policy: super::policy_keys::of_mirror(ctx, n, m.policy.as_ref(), defaults)?,
        state,
        referrers,
        name,
        source,
        target,
        more_targets,
        target_tag,
        selection,
        platforms,
        platforms_optional: m.platforms_optional.unwrap_or(false),
        convert_schema1: m.convert_schema1.unwrap_or(defaults.convert_schema1),
        schedule,
        audit_schedule,
        force: m.force.unwrap_or(true),
        prune,
        backup,
        discovery,
    })
}

/// The mirror's referrer keys over those of `[defaults]`.
fn mirror_referrers(
    ctx: &Ctx<'_>,
    n: usize,
    m: &RawMirror,
    defaults: &Defaults,
) -> Result<crate::copy::ReferrerOptions, ConfigError> {
    super::referrer_keys::resolve(
        &defaults.referrers,
        &format!("mirror[{n}]"),
        &super::referrer_keys::Keys {
            referrers: m.referrers,
            referrer_types: m.referrer_types.as_deref(),
            exclude_referrer_types: m.exclude_referrer_types.as_deref(),
            cosign_tags: m.cosign_tags,
            max_referrers_per_subject: m.max_referrers_per_subject.as_ref(),
            max_referrers_per_image: m.max_referrers_per_image.as_ref(),
            max_referrer_depth: m.max_referrer_depth.as_ref(),
        },
    )
    .map_err(|(key, span, message)| ctx.err(Some(span), key, message))
}

/// The mirror's targets as written (see [`super::target_keys`]).
fn target_texts(
    ctx: &Ctx<'_>,
    n: usize,
    m: &RawMirror,
    defaults: &Defaults,
) -> Result<Vec<TargetText>, ConfigError> {
    super::target_keys::target_texts(
        ctx,
        n,
        m.target.as_ref(),
        m.targets.as_ref(),
        &defaults.target_groups,
        m.source.span(),
    )
}

/// Discovery: a registry or namespace source stands in as a repository.
/// The discovery, if any, and the source and target text to validate.
fn discovery(
    t: &Table<'_>,
    target_text: &str,
) -> Result<(Option<Discovery>, String, String), ConfigError> {
    let m = t.m;
    let discovered = super::discover_keys::from_keys(&super::discover_keys::DiscoveryKeys {
        source: m.source.get_ref(),
        target: target_text,
        repositories: m.repositories.as_deref(),
        exclude_repositories: m.exclude_repositories.as_deref(),
        max_repositories: m.max_repositories.as_ref(),
    })
    .map_err(|(k, span, message)| t.err(span.unwrap_or_else(|| m.source.span()), k, message))?;
    Ok(match discovered {
        Some((d, source, target)) => (Some(d), source, target),
        None => (None, m.source.get_ref().clone(), target_text.to_string()),
    })
}

/// The source as written (with its tag or digest) and its repository.
fn source(t: &Table<'_>, source_text: &str) -> Result<(Reference, Reference), ConfigError> {
    let span = t.m.source.span();
    if let Some(e) = super::source::registry_only_error(source_text) {
        return Err(t.err(span, "source", e));
    }
    let source_full = Reference::parse(source_text.trim()).map_err(|e| {
        t.err(
            span.clone(),
            "source",
            format!("{e}; expected an image or repository such as \"docker.io/library/nginx\" or \"ghcr.io/org/app:1.2\""),
        )
    })?;
    let source = source_full.repository_only();
    if let Some(e) = super::source::port_error(&source) {
        return Err(t.err(span, "source", e));
    }
    Ok((source_full, source))
}

/// The first tag selection key the table sets, if any (`tags`, then the
/// filters in the order `include`, `exclude`, `semver`, `latest`).
fn selection_key(m: &RawMirror) -> Option<&'static str> {
    if m.tags.is_some() {
        Some("tags")
    } else if m.include.is_some() {
        Some("include")
    } else if m.exclude.is_some() {
        Some("exclude")
    } else if m.semver.is_some() {
        Some("semver")
    } else if m.latest.is_some() {
        Some("latest")
    } else {
        None
    }
}

/// What the mirror copies: the digest or tag of the source, else its
/// `tags` and filters over the listed tags, else every tag.
fn selection(t: &Table<'_>, source_full: &Reference) -> Result<Selection, ConfigError> {
    let m = t.m;
    let selection_key = selection_key(m);
    if let Some(d) = source_full.digest() {
        if let Some(k) = selection_key {
            return Err(t.err(
                m.source.span(),
                k,
                format!(
                    "source {:?} pins a digest, so `{k}` has nothing to select: drop `{k}` or the digest",
                    m.source.get_ref()
                ),
            ));
        }
        return Ok(Selection::Digest(d.clone()));
    }
    if let Some(tag) = source_full.tag() {
        if let Some(k) = selection_key {
            return Err(t.err(
                m.source.span(),
                k,
                format!(
                    "source {:?} names a tag, so `{k}` has nothing to select: drop `{k}` or the tag from source",
                    m.source.get_ref()
                ),
            ));
        }
        return Ok(Selection::Tags(vec![tag.to_string()]));
    }
    let has_filters =
        m.include.is_some() || m.exclude.is_some() || m.semver.is_some() || m.latest.is_some();
    let tags = listed_tags(t, has_filters)?;
    Ok(if has_filters {
        Selection::Filtered {
            tags,
            filter: tag_filter(t)?,
        }
    } else if m.tags.is_some() {
        Selection::Tags(tags)
    } else {
        Selection::All
    })
}

/// `tags`: valid tags, each once; empty only beside filters.
fn listed_tags(t: &Table<'_>, has_filters: bool) -> Result<Vec<String>, ConfigError> {
    let m = t.m;
    let mut tags: Vec<String> = Vec::new();
    for s in m.tags.as_deref().unwrap_or_default() {
        let tag = s.get_ref();
        if Reference::parse(&format!("x:{tag}")).is_err() {
            return Err(t.err(
                s.span(),
                "tags",
                format!(
                    "{tag:?} is not a valid tag: expected 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
                ),
            ));
        }
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    if m.tags.is_some() && tags.is_empty() && !has_filters {
        return Err(t.err(
            m.source.span(),
            "tags",
            "tags is empty: list at least one tag, or drop the key to mirror every tag",
        ));
    }
    Ok(tags)
}

/// `include`, `exclude`, `semver` and `latest`.
fn tag_filter(t: &Table<'_>) -> Result<TagFilter, ConfigError> {
    let m = t.m;
    let regexes =
        |k: &str, list: Option<&Vec<Spanned<String>>>| -> Result<Vec<Regex>, ConfigError> {
            list.map(|l| l.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|r| {
                    Regex::new(r.get_ref()).map_err(|e| {
                        t.err(
                            r.span(),
                            k,
                            format!("invalid regular expression {:?}: {e}", r.get_ref()),
                        )
                    })
                })
                .collect()
        };
    let include = regexes("include", m.include.as_ref())?;
    let exclude = regexes("exclude", m.exclude.as_ref())?;
    let semver = match &m.semver {
        Some(s) => Some(VersionReq::parse(s.get_ref()).map_err(|e| {
            t.err(
                s.span(),
                "semver",
                format!(
                    "invalid semver requirement {:?}: {e}; expected e.g. \">=1.25, <2\" or \"~1.27\"",
                    s.get_ref()
                ),
            )
        })?),
        None => None,
    };
    let latest = match &m.latest {
        Some(l) if *l.get_ref() == 0 => {
            return Err(t.err(
                l.span(),
                "latest",
                "latest = 0 would select no tag: expected at least 1, or drop the key",
            ));
        }
        Some(l) => Some(*l.get_ref()),
        None => None,
    };
    Ok(TagFilter {
        include,
        exclude,
        semver,
        latest,
    })
}

/// Every target of the mirror, each validated like a single target: the
/// first with the tag a single-image mirror renames to, and the others
/// (fan-out), which must rename to the same tag. A mirror that discovers
/// its repositories (`repositories`) reads each further target as a target
/// tree of its own, kept in `discovery`'s `more_targets`; trees that nest
/// are refused.
fn all_targets(
    t: &Table<'_>,
    texts: &[TargetText],
    first_text: &str,
    source_full: &Reference,
    selection: &Selection,
    mut discovery: Option<&mut Discovery>,
) -> Result<(Reference, Option<String>, Vec<Reference>), ConfigError> {
    let (first, tag) = target(t, &texts[0], first_text, source_full, selection)?;
    let mut more: Vec<Reference> = Vec::new();
    for at in texts.iter().skip(1) {
        let text = match discovery.as_deref_mut() {
            Some(d) => {
                let (tree, text) = more_tree(t, at)?;
                d.more_targets.push(tree);
                text
            }
            None => at.text.clone(),
        };
        let (r, other_tag) = target(t, at, &text, source_full, selection)?;
        if other_tag != tag {
            let msg = format!(
                "target {:?} names another tag than the first target ({}): the targets of one \
                 mirror receive the same tags",
                at.text.trim(),
                tag.as_deref().unwrap_or("none"),
            );
            return Err(t.err(at.span.clone(), at.key, msg));
        }
        if r.same_repository(&first) || more.iter().any(|m| m.same_repository(&r)) {
            let msg = format!("target {r} is listed twice: list each target once");
            return Err(t.err(at.span.clone(), at.key, msg));
        }
        more.push(r);
    }
    if let Some(d) = discovery
        && let Some((i, j)) = super::overlap::nested_trees(d)
    {
        let trees: Vec<&Discovery> = d.trees().collect();
        let msg = format!(
            "targets {:?} and {:?} nest: a repository the mirror discovers could be written \
             into both trees under one name, from two source repositories; give each target its \
             own registry or a prefix outside the other's",
            trees[i].target_root(),
            trees[j].target_root(),
        );
        return Err(t.err(texts[j].span.clone(), "targets", msg));
    }
    Ok((first, tag, more))
}

/// A further target of a discovering mirror: its target tree, read as the
/// first target's is, and the text that stands for its root.
fn more_tree(t: &Table<'_>, at: &TargetText) -> Result<(Discovery, String), ConfigError> {
    let (tree, _, text) = discovery(t, &at.text)?;
    let tree = tree.ok_or_else(|| {
        t.err(
            at.span.clone(),
            at.key,
            "this target is not read as a target tree like the first one",
        )
    })?;
    Ok((tree, text))
}

/// The target repository and the tag a single-image mirror renames to;
/// never the source itself.
fn target(
    t: &Table<'_>,
    at: &TargetText,
    target_text: &str,
    source_full: &Reference,
    selection: &Selection,
) -> Result<(Reference, Option<String>), ConfigError> {
    let span = at.span.clone();
    let key = at.key;
    let source = source_full.repository_only();
    let (target, target_tag) = target_as_written(t, at, target_text.trim(), &source, selection)?;
    let target = super::discover_keys::name_in_layout(target, target_tag.as_deref(), &source);
    if let Some(e) = super::source::port_error(&target) {
        return Err(t.err(span, key, e));
    }
    if source.same_repository(&target) {
        let same_tag = match (selection, &target_tag) {
            (_, None) => true,
            (Selection::Tags(tags), Some(tt)) => tags.first() == Some(tt),
            (Selection::Digest(_), Some(tt)) => source_full.tag() == Some(tt.as_str()),
            _ => true,
        };
        if same_tag {
            return Err(t.err(
                span,
                key,
                "target is the source itself: expected another repository or registry",
            ));
        }
    }
    Ok((target, target_tag))
}

/// `target` read: a registry host alone keeps the source's path; a
/// repository may name a tag when the mirror copies a single image.
fn target_as_written(
    t: &Table<'_>,
    at: &TargetText,
    target_text: &str,
    source: &Reference,
    selection: &Selection,
) -> Result<(Reference, Option<String>), ConfigError> {
    let span = at.span.clone();
    let key = at.key;
    if is_registry_only(target_text) {
        let r = Reference::new_repository(target_text, source.repository()).map_err(|e| {
            t.err(
                span.clone(),
                key,
                format!("{e}; expected a registry host or repository such as \"registry.example.com/mirror/nginx\""),
            )
        })?;
        return Ok((r, None));
    }
    let r = Reference::parse(target_text).map_err(|e| {
        t.err(
            span.clone(),
            key,
            format!("{e}; expected a registry host or repository such as \"registry.example.com/mirror/nginx\""),
        )
    })?;
    if r.digest().is_some() {
        return Err(t.err(
            span,
            key,
            format!(
                "target {target_text:?} has a digest: a target is a repository (optionally with a tag), the digest comes from the source"
            ),
        ));
    }
    let single = matches!(selection, Selection::Digest(_))
        || matches!(selection, Selection::Tags(tags) if tags.len() == 1);
    if r.tag().is_some() && !single {
        return Err(t.err(
            span,
            key,
            format!(
                "target {target_text:?} names a tag but the mirror selects several tags: drop the tag from target (each source tag keeps its name)"
            ),
        ));
    }
    Ok((r.repository_only(), r.tag().map(str::to_string)))
}

/// `platforms`, else the defaults'; a digest-pinned source with a filter
/// needs a tag to write the filtered index under.
fn platforms(
    t: &Table<'_>,
    defaults: &Defaults,
    selection: &Selection,
    source_full: &Reference,
    target_tag: Option<&str>,
) -> Result<Vec<PlatformSpec>, ConfigError> {
    let platforms = match &t.m.platforms {
        Some(list) => parse_platforms(t.ctx, &t.key("platforms"), Some(list))?,
        None => defaults.platforms.clone(),
    };
    if matches!(selection, Selection::Digest(_))
        && !platforms.is_empty()
        && target_tag.is_none()
        && source_full.tag().is_none()
    {
        return Err(t.err(
            t.first_target.clone(),
            "target",
            "a digest-pinned source with a platform filter produces a new index digest: give the target a tag (e.g. \"registry.example.com/app:pinned\")",
        ));
    }
    Ok(platforms)
}

/// `name`: 1 to 128 printable characters, trimmed.
fn given_name(t: &Table<'_>, n: &Spanned<String>) -> Result<String, ConfigError> {
    let v = n.get_ref().trim();
    if v.is_empty() || v.len() > 128 || v.chars().any(|c| c.is_control()) {
        return Err(t.err(n.span(), "name", "expected 1 to 128 printable characters"));
    }
    Ok(v.to_string())
}

/// `nginx` means nginx:latest on the command line; here it would mean
/// every tag of Docker Hub's nginx. Make the author say which.
fn refuse_short_name_for_every_tag(
    t: &Table<'_>,
    selection: &Selection,
    source: &Reference,
    source_text: &str,
) -> Result<(), ConfigError> {
    if matches!(selection, Selection::All)
        && !source.is_layout()
        && !super::source::names_registry(source_text)
    {
        let short = t.m.source.get_ref().trim();
        return Err(t.err(
            t.m.source.span(),
            "source",
            format!(
                "source {short:?} names neither a tag nor a registry: on the command line it means \
                 {short}:latest, but a mirror without a tag selects every tag. Write \
                 source = \"{short}:latest\" (or tags = [\"latest\"]) for one tag, or the full \
                 name source = \"{source}\" to mirror every tag"
            ),
        ));
    }
    Ok(())
}

/// Prune is refused for a discovering mirror and for a layout target
/// (any of the mirror's targets).
fn refuse_prune(
    t: &Table<'_>,
    prune: &Prune,
    discovers: bool,
    target: &Reference,
    more_targets: &[Reference],
) -> Result<(), ConfigError> {
    if discovers
        && prune.mode != PruneMode::Off
        && let Some(p) = &t.m.prune
    {
        return Err(t.err(
            p.span(),
            "prune",
            "prune is not supported for a mirror that discovers its repositories (a registry, \
             namespace or layout source): write one [[mirror]] per repository to prune",
        ));
    }
    let layout = std::iter::once(target)
        .chain(more_targets)
        .any(Reference::is_layout);
    if layout
        && prune.mode != PruneMode::Off
        && let Some(p) = &t.m.prune
    {
        return Err(t.err(
            p.span(),
            "prune",
            "prune is not supported for an OCI layout or archive target (it deletes tags through \
             the registry API): set prune = \"off\" for this mirror",
        ));
    }
    Ok(())
}

/// `prune`, `max_prune`, `backup` and `backup_keep` of mirror `n`.
fn prune_and_backup(
    ctx: &Ctx<'_>,
    n: usize,
    m: &RawMirror,
    selection: &Selection,
) -> Result<(Prune, Option<Backup>), ConfigError> {
    let key = |k: &str| format!("mirror[{n}].{k}");
    let mut prune = Prune::default();
    if let Some(p) = &m.prune {
        prune.mode =
            PruneMode::parse(p.get_ref()).map_err(|e| ctx.err(Some(p.span()), key("prune"), e))?;
        if prune.mode != PruneMode::Off && !selection.needs_listing() {
            return Err(ctx.err(
                Some(p.span()),
                key("prune"),
                "prune needs a mirror that lists the source's tags (no tag or digest in source, \
                 no `tags`-only selection): a mirror of named tags has nothing to prune",
            ));
        }
    }
    if let Some(max) = &m.max_prune {
        if *max.get_ref() == 0 {
            return Err(ctx.err(
                Some(max.span()),
                key("max_prune"),
                "max_prune = 0 would never delete anything: expected at least 1, or set prune = \"off\"",
            ));
        }
        prune.max = *max.get_ref();
    }
    let backup = match (&m.backup, &m.backup_keep) {
        (Some(t), keep) => Some(
            Backup::new(t.get_ref(), keep.as_ref().map_or(1, |k| *k.get_ref())).map_err(|e| {
                let at = keep.as_ref().filter(|_| e.starts_with("backup_keep"));
                match at {
                    Some(k) => ctx.err(Some(k.span()), key("backup_keep"), e),
                    None => ctx.err(Some(t.span()), key("backup"), e),
                }
            })?,
        ),
        (None, Some(k)) => {
            return Err(ctx.err(
                Some(k.span()),
                key("backup_keep"),
                "backup_keep without backup: set backup = \"{tag}-prev{n}\" too, or drop backup_keep",
            ));
        }
        (None, None) => None,
    };
    Ok((prune, backup))
}

/// A mirror's name when none is given: the target repository path, plus the
/// tag (or a short digest) for a single-image mirror.
fn default_name(
    target: &Reference,
    target_tag: Option<&str>,
    selection: &Selection,
    source_tag: Option<&str>,
) -> String {
    let base = target.repository().to_string();
    match selection {
        Selection::Tags(t) if t.len() == 1 && !selection.needs_listing() => {
            format!("{base}:{}", target_tag.unwrap_or(&t[0]))
        }
        Selection::Digest(d) => match target_tag.or(source_tag) {
            Some(t) => format!("{base}:{t}"),
            None => format!(
                "{base}@{}",
                &d.to_string().chars().take(19).collect::<String>()
            ),
        },
        _ => base,
    }
}
