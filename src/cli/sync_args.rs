//! `regmirror sync SOURCE TARGET` and `sync --from-file LIST`: mirrors given
//! on the command line instead of a config file. Each becomes a
//! `[[mirror]]` table, and the whole goes through the config file's own
//! validation, so every check, report and exit code of `sync --config`
//! holds; errors name the flag or the LIST line instead of a key.

use std::path::{Path, PathBuf};

use regmirror::sync::{Config, ConfigError};

use super::UsageError;

/// Help of the config-less flags, appended to `sync --help`.
pub const LONG_ABOUT: &str = "Without a config file, `regmirror sync SOURCE TARGET` mirrors \
one repository (every tag, or those --tags, --include, --exclude, --semver and --latest \
select; --platform keeps platforms), as one [[mirror]] with the same keys would; \
`--from-file LIST` mirrors one `SOURCE TARGET` pair per line (or a SOURCE alone, under \
--target-prefix), `#` starting a comment, the flags applying to every line.";

/// A mirror given on the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AdHoc {
    /// Source repository or image, instead of --config: [REGISTRY[:PORT]/]REPOSITORY[:TAG]
    /// (a repository means every tag).
    #[arg(value_name = "SOURCE")]
    pub source: Option<String>,
    /// Target repository or registry host (a host keeps the source's path).
    #[arg(value_name = "TARGET", requires = "source")]
    pub target: Option<String>,
    /// File of mirrors, one `SOURCE TARGET` (or SOURCE alone, with --target-prefix) per line.
    #[arg(long, value_name = "LIST", conflicts_with = "source")]
    pub from_file: Option<PathBuf>,
    /// Target of a SOURCE given alone: the source's repository path goes under it
    /// (`localhost:5000/mirror` takes `docker.io/library/nginx` to `localhost:5000/mirror/library/nginx`).
    #[arg(long, value_name = "PREFIX", conflicts_with = "target")]
    pub target_prefix: Option<String>,
    /// Copy these tags (comma-separated, repeatable); with filters, in addition to what they select.
    #[arg(long, value_name = "TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Keep listed tags matching this regex (repeatable).
    #[arg(long, value_name = "REGEX")]
    pub include: Vec<String>,
    /// Drop listed tags matching this regex (repeatable).
    #[arg(long, value_name = "REGEX")]
    pub exclude: Vec<String>,
    /// Keep listed tags whose version satisfies this requirement (`>=1.25, <2`).
    #[arg(long, value_name = "REQ")]
    pub semver: Option<String>,
    /// Keep the newest N tags by version, after the other filters.
    #[arg(long, value_name = "N")]
    pub latest: Option<i64>,
    /// Platforms to keep, os/arch[/variant] (comma-separated, repeatable); default every platform.
    #[arg(long = "platform", value_name = "PLATFORM", value_delimiter = ',')]
    pub platforms: Vec<String>,
    /// Leave target tags that point at another digest alone (reported as conflicts).
    #[arg(long)]
    pub no_force: bool,
    /// Do not copy referrers (signatures, SBOMs, attestations).
    #[arg(long)]
    pub no_referrers: bool,
    /// Convert a Docker schema 1 source to schema 2 (a new digest, reported as
    /// converted_from; a signed manifest's signature is dropped), as skopeo does,
    /// instead of reporting it unsupported.
    #[arg(long)]
    pub convert_schema1: bool,
}

/// Where a mirror came from, for error messages.
enum Origin<'a> {
    Args,
    Line(&'a Path, usize, &'a str),
}

impl AdHoc {
    /// True when mirrors are given on the command line.
    pub fn given(&self) -> bool {
        self.source.is_some() || self.from_file.is_some()
    }

    /// The flags that only make sense with a config-less mirror.
    fn mirror_flags(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (set, flag) in [
            (self.target_prefix.is_some(), "--target-prefix"),
            (!self.tags.is_empty(), "--tags"),
            (!self.include.is_empty(), "--include"),
            (!self.exclude.is_empty(), "--exclude"),
            (self.semver.is_some(), "--semver"),
            (self.latest.is_some(), "--latest"),
            (!self.platforms.is_empty(), "--platform"),
            (self.no_force, "--no-force"),
            (self.no_referrers, "--no-referrers"),
            (self.convert_schema1, "--convert-schema1"),
        ] {
            if set {
                v.push(flag);
            }
        }
        v
    }
}

/// The config `sync` runs: the config file, or the mirrors of the command
/// line; the path names where they came from.
pub fn load(adhoc: &AdHoc, config: Option<&Path>) -> anyhow::Result<(PathBuf, Config)> {
    match (config, adhoc.given()) {
        (Some(_), true) => Err(UsageError(
            "give either a config file (--config FILE) or mirrors on the command line \
             (SOURCE TARGET, or --from-file LIST), not both"
                .into(),
        )
        .into()),
        (Some(path), false) => {
            if let Some(flag) = adhoc.mirror_flags().first() {
                return Err(UsageError(format!(
                    "{flag} applies to mirrors given on the command line (SOURCE TARGET or \
                     --from-file LIST); with --config, set the key in the file's [[mirror]]"
                ))
                .into());
            }
            let config = Config::load(path).map_err(|e| UsageError(e.to_string()))?;
            Ok((path.to_path_buf(), config))
        }
        (None, false) => Err(UsageError(
            "regmirror sync needs a config file (--config FILE or REGMIRROR_CONFIG, see \
             config.example.toml) or \
             a mirror on the command line (SOURCE TARGET, or --from-file LIST)"
                .into(),
        )
        .into()),
        (None, true) => from_command_line(adhoc),
    }
}

/// Validate each mirror alone (so an error names its flag or line), then
/// all together (so checks across mirrors run too).
fn from_command_line(adhoc: &AdHoc) -> anyhow::Result<(PathBuf, Config)> {
    let (label, pairs) = match &adhoc.from_file {
        Some(list) => (list.clone(), read_list(list, adhoc)?),
        None => {
            let source = adhoc.source.clone().unwrap_or_default();
            let target = target_of(adhoc, &source, adhoc.target.as_deref())
                .map_err(|e| UsageError(format!("SOURCE {source:?}: {e}")))?;
            (PathBuf::from("(command line)"), vec![(0, source, target)])
        }
    };
    let label_path = label.as_path();
    let mut tables = Vec::new();
    for (line, source, target) in &pairs {
        let table = mirror_table(adhoc, source, target);
        let origin = match &adhoc.from_file {
            Some(list) => Origin::Line(list, *line, source),
            None => Origin::Args,
        };
        parse(std::slice::from_ref(&table), label_path).map_err(|e| explain(&e, &origin))?;
        tables.push(table);
    }
    let config = parse(&tables, label_path).map_err(|e| UsageError(e.to_string()))?;
    Ok((label, config))
}

fn parse(tables: &[toml::Table], path: &Path) -> Result<Config, ConfigError> {
    let mut doc = toml::Table::new();
    doc.insert(
        "mirror".into(),
        toml::Value::Array(tables.iter().cloned().map(toml::Value::Table).collect()),
    );
    let text = toml::to_string(&doc).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        key: None,
        message: format!("cannot express the mirrors as a config: {e}"),
    })?;
    Config::parse(path, &text)
}

/// The `[[mirror]]` table of one SOURCE TARGET with the flags.
fn mirror_table(adhoc: &AdHoc, source: &str, target: &str) -> toml::Table {
    let strings = |v: &[String]| toml::Value::Array(v.iter().cloned().map(Into::into).collect());
    let mut t = toml::Table::new();
    t.insert("source".into(), source.into());
    t.insert("target".into(), target.into());
    for (key, list) in [
        ("tags", &adhoc.tags),
        ("include", &adhoc.include),
        ("exclude", &adhoc.exclude),
        ("platforms", &adhoc.platforms),
    ] {
        if !list.is_empty() {
            t.insert(key.into(), strings(list));
        }
    }
    if let Some(s) = &adhoc.semver {
        t.insert("semver".into(), s.clone().into());
    }
    if let Some(n) = adhoc.latest {
        t.insert("latest".into(), n.into());
    }
    if adhoc.no_force {
        t.insert("force".into(), false.into());
    }
    if adhoc.no_referrers {
        t.insert("referrers".into(), false.into());
    }
    if adhoc.convert_schema1 {
        t.insert("convert_schema1".into(), true.into());
    }
    t
}

/// A config error of one mirror, told in terms of the flag or LIST line.
fn explain(e: &ConfigError, origin: &Origin<'_>) -> UsageError {
    let key = e
        .key
        .as_deref()
        .map(|k| k.rsplit_once('.').map_or(k, |(_, k)| k))
        .map(|k| k.split('[').next().unwrap_or(k));
    let flag = match key {
        Some("source") => "SOURCE".to_string(),
        Some("target") => "TARGET".to_string(),
        Some("platforms") => "--platform".to_string(),
        Some("force") => "--no-force".to_string(),
        Some("referrers") => "--no-referrers".to_string(),
        Some("convert_schema1") => "--convert-schema1".to_string(),
        Some("mirror") | None => "the mirror".to_string(),
        Some(k) => format!("--{k}"),
    };
    UsageError(match origin {
        Origin::Args => format!("{flag}: {}", e.message),
        Origin::Line(list, line, source) => format!(
            "{}, line {line} ({source}): {flag}: {}",
            list.display(),
            e.message
        ),
    })
}

/// The target of `source`: TARGET as given, or under --target-prefix.
fn target_of(adhoc: &AdHoc, source: &str, target: Option<&str>) -> Result<String, String> {
    match (target, &adhoc.target_prefix) {
        (Some(t), _) => Ok(t.to_string()),
        (None, Some(prefix)) => {
            let r = regmirror::registry::Reference::parse(source).map_err(|e| e.to_string())?;
            if r.is_layout() {
                return Err("a layout source needs a TARGET".into());
            }
            Ok(format!(
                "{}/{}",
                prefix.trim_end_matches('/'),
                r.repository()
            ))
        }
        (None, None) => Err("no TARGET: give SOURCE TARGET, or --target-prefix PREFIX".into()),
    }
}

/// The (line, source, target) entries of a LIST file.
fn read_list(list: &Path, adhoc: &AdHoc) -> anyhow::Result<Vec<(usize, String, String)>> {
    let text = std::fs::read_to_string(list).map_err(|e| {
        UsageError(format!(
            "--from-file {}: cannot read it: {e}",
            list.display()
        ))
    })?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
        if line.is_empty() {
            continue;
        }
        let at = |what: String| UsageError(format!("{}, line {}: {what}", list.display(), i + 1));
        let words: Vec<&str> = line.split_whitespace().collect();
        let (source, target) = match words[..] {
            [s] => (s, None),
            [s, t] => (s, Some(t)),
            _ => {
                return Err(at(format!(
                    "{line:?} has {} words: expected `SOURCE TARGET`, or SOURCE alone with \
                     --target-prefix",
                    words.len()
                ))
                .into());
            }
        };
        let target = target_of(adhoc, source, target).map_err(|e| at(format!("{source}: {e}")))?;
        out.push((i + 1, source.to_string(), target));
    }
    if out.is_empty() {
        return Err(UsageError(format!(
            "--from-file {}: no mirrors in it (one `SOURCE TARGET` per line)",
            list.display()
        ))
        .into());
    }
    Ok(out)
}
