//! `regmirror config convert`: turn a skopeo sync YAML or a regsync config
//! into an equivalent regmirror TOML config. What maps approximately or not
//! at all is said in a `#` comment next to where it would go, never dropped
//! silently; the result is checked by the config file's own validation.

mod draft;
mod regsync;
mod skopeo;

use std::path::{Path, PathBuf};

use super::{Exit, UsageError};

/// Long help of `regmirror config convert`.
pub const LONG_ABOUT: &str = "Convert another mirroring tool's config into a regmirror config \
(TOML) on stdout, or into the file -o names. `--from skopeo` reads the YAML of `skopeo sync \
--src yaml` (registry -> images, images-by-tag-regex, images-by-semver, credentials, \
tls-verify, cert-dir); skopeo takes the destination on its command line, so give it with \
--target (and --scoped as given to skopeo). `--from regsync` reads a regsync config (creds, \
defaults, sync entries of type image, repository or registry, tags allow/deny, platform, \
referrers, schedule, interval, backup, ratelimit, parallel). Settings that map approximately or \
not at all are kept as `#` comments saying why; the output is validated as `regmirror check` \
would, and an output that does not validate exits 1.";

/// `regmirror config …`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Convert a skopeo sync YAML or a regsync config into a regmirror config.
    #[command(long_about = LONG_ABOUT, after_help = super::help::CONFIG_CONVERT)]
    Convert(Args),
}

/// The tool a config comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum From {
    /// `skopeo sync --src yaml` YAML.
    Skopeo,
    /// regclient's regsync config (YAML).
    Regsync,
}

/// Arguments of `regmirror config convert`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The tool FILE is written for.
    #[arg(long, value_enum)]
    pub from: From,
    /// The config to convert.
    pub file: PathBuf,
    /// Write the regmirror config here instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// skopeo: the destination given to `skopeo sync --dest docker` (a registry
    /// host or HOST/PATH prefix).
    #[arg(long, value_name = "DEST")]
    pub target: Option<String>,
    /// skopeo: the images were synced with --scoped (the source registry host is
    /// kept in the target path).
    #[arg(long)]
    pub scoped: bool,
}

/// Run `regmirror config …`.
pub fn run(command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Convert(args) => convert(&args),
    }
}

fn convert(args: &Args) -> anyhow::Result<Exit> {
    let text = std::fs::read_to_string(&args.file).map_err(|e| {
        UsageError(format!(
            "cannot read {}: {e}; give the {} config to convert",
            args.file.display(),
            name(args.from)
        ))
    })?;
    let yaml = parse_yaml(&args.file, &text)?;
    let draft = match args.from {
        From::Skopeo => {
            let target = args.target.as_deref().ok_or_else(|| {
                UsageError(
                    "--from skopeo needs --target DEST: skopeo sync takes the destination on \
                     its command line (`skopeo sync --src yaml --dest docker FILE DEST`); give \
                     the same DEST"
                        .into(),
                )
            })?;
            skopeo::convert(&yaml, target, args.scoped).map_err(UsageError)?
        }
        From::Regsync => {
            if args.target.is_some() || args.scoped {
                return Err(UsageError(
                    "--target and --scoped apply to --from skopeo; a regsync config names its \
                     targets"
                        .into(),
                )
                .into());
            }
            regsync::convert(&yaml).map_err(UsageError)?
        }
    };
    let toml = draft.render(&format!(
        "Converted by `regmirror config convert --from {}` from {}.",
        name(args.from),
        args.file.display()
    ));
    write(args.output.as_deref(), &toml)?;
    let shown = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("(converted config)"));
    if let Err(e) = regmirror::sync::Config::parse(&shown, &toml) {
        super::out::error(&format!(
            "the converted config does not pass regmirror check: {e}; edit it where the \
             comments say"
        ));
        return Ok(Exit::Failed);
    }
    if draft.notes() > 0 {
        super::out::note(&format!(
            "{} setting(s) map approximately or not at all: see the `# convert:` comments",
            draft.notes()
        ));
    }
    Ok(Exit::Ok)
}

fn name(from: From) -> &'static str {
    match from {
        From::Skopeo => "skopeo",
        From::Regsync => "regsync",
    }
}

/// The YAML document, with `<<` merge keys applied.
fn parse_yaml(path: &Path, text: &str) -> Result<serde_norway::Value, UsageError> {
    let mut v: serde_norway::Value = serde_norway::from_str(text)
        .map_err(|e| UsageError(format!("{} is not valid YAML: {e}", path.display())))?;
    v.apply_merge().map_err(|e| {
        UsageError(format!(
            "{}: cannot apply a `<<` merge: {e}",
            path.display()
        ))
    })?;
    Ok(v)
}

fn write(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match path {
        Some(p) => std::fs::write(p, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display())),
        None => {
            super::out::write_bytes(text.as_bytes())?;
            Ok(())
        }
    }
}

/// A YAML scalar as text (strings, numbers and booleans), or `None`.
fn scalar(v: &serde_norway::Value) -> Option<String> {
    match v {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        serde_norway::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A YAML value shown in a comment, on one line.
fn shown(v: &serde_norway::Value) -> String {
    match scalar(v) {
        Some(s) => format!("{s:?}"),
        None => serde_json::to_string(v).unwrap_or_else(|_| "(unreadable)".into()),
    }
}

/// Join a target prefix and a repository path.
fn join(prefix: &str, path: &str) -> String {
    format!(
        "{}/{}",
        prefix.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}
