//! `regmirror check`: validate a config file and print each mirror's next
//! runs, touching no registry (except, with `--discover`, the catalogs of
//! sources whose repositories are discovered).

use chrono::Utc;

use regmirror::sync::Selection;

use super::out::outln;
use super::{Exit, UsageError};

/// Long help of `regmirror check`.
pub const LONG_ABOUT: &str = "Validate a mirror config file without contacting any registry: \
every key, schedule, filter, source and target, and every host's credentials (an unset \
password_env, a missing password_file or a Docker config that is not JSON is an error). Prints \
each mirror's selection, platforms and next runs, and where each host's credentials come from \
(never the credentials). Lists every problem found, each naming the file, line and key, and \
exits 2 when there is any.

With --discover, mirrors with `repositories` list their sources' catalogs (read-only) and the \
repositories a run would mirror are printed; a source without a catalog exits 1.

Sources and targets are written [REGISTRY[:PORT]/]REPOSITORY[:TAG][@DIGEST].";

/// Arguments of `regmirror check`.
#[derive(Debug, clap::Args)]
#[command(mut_arg("config", |a| a.help(super::help::MIRROR_CONFIG).required(true).env("REGMIRROR_CONFIG")))]
pub struct Args {
    #[command(flatten)]
    pub registry: super::RegistryArgs,
    /// How many upcoming runs to print per mirror (at most 1000).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub next: u16,
    /// Validate the file only: do not read credentials (environment variables, password
    /// files, Docker configs). For machines that lack the deployment's secrets, such as CI.
    #[arg(long)]
    pub no_credentials: bool,
    /// Print which mirrors each shard owns and how balanced the shards are.
    #[arg(long)]
    pub shards: bool,
    /// For mirrors with `repositories`: list each source's catalog (contacting the source
    /// registries, read-only) and print the repositories a run would mirror, or why none.
    #[arg(long)]
    pub discover: bool,
    #[command(flatten)]
    pub shard: super::shard::ShardArgs,
}

/// Run the command.
pub async fn run(args: Args) -> anyhow::Result<Exit> {
    let path = super::sync::config_path(&args.registry, "check")?;
    let (config, problems) =
        regmirror::sync::Config::load_all(&path).map_err(|e| UsageError(e.to_string()))?;
    for w in config.warnings() {
        super::out::warn(&w);
    }
    // Flags and credentials must resolve too; nothing is contacted.
    let options = args.registry.client_options_from(Some(&config));
    let mut problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let sources = if args.no_credentials {
        Vec::new()
    } else {
        let (sources, bad) =
            super::credential_problems(&options, &super::sync::mirror_hosts(&config));
        problems.extend(bad.iter().map(ToString::to_string));
        sources
    };
    if !problems.is_empty() {
        return report_problems(&path, &problems);
    }
    if let Some(why) = config.empty_without_consent() {
        super::out::error(&format!("{why}; `serve` refuses to reload to it"));
        return Ok(Exit::Usage);
    }
    let shard_lines = super::shard::check_lines(&args.shard, &config, args.shards)?;
    let from_flags = args.registry.flag_credential_hosts();
    outln!(
        "{}: ok ({} mirrors, {} registries, concurrency {}, time zone {})",
        path.display(),
        config.mirrors.len(),
        config.registries.len(),
        config.defaults.concurrency,
        config.defaults.timezone
    )?;
    for line in shard_lines {
        outln!("{line}")?;
    }
    let now = Utc::now();
    for m in &config.mirrors {
        mirror_lines(m, now, usize::from(args.next))?;
    }
    let mut exit = Exit::Ok;
    if args.discover {
        exit = discover_lines(&config, options.clone()).await?;
    }
    upload_lines(&options, &super::sync::mirror_hosts(&config))?;
    if args.no_credentials {
        outln!("credentials: not read (--no-credentials)")?;
        return Ok(exit);
    }
    outln!("credentials (no registry contacted; helpers named, not run):")?;
    for (host, source) in sources {
        let from = super::describe_source(&source, from_flags.contains(&host.as_str()));
        outln!("  {host}: {from}")?;
    }
    Ok(exit)
}

/// One mirror: source, target, selection, platforms, schedule and its
/// next `next` runs.
fn mirror_lines(
    m: &regmirror::sync::Mirror,
    now: chrono::DateTime<Utc>,
    next: usize,
) -> anyhow::Result<()> {
    outln!("mirror {}", m.name)?;
    if let Some(d) = &m.discovery {
        outln!("  source:    {}", d.describe_source())?;
        outln!("  target:    {}", d.describe_target())?;
    } else {
        outln!("  source:    {}", m.source)?;
        match &m.target_tag {
            Some(t) => outln!("  target:    {}:{t}", m.target)?,
            None => outln!("  target:    {}", m.target)?,
        }
    }
    let selection = describe_selection(&m.selection);
    outln!("  selects:   {selection}")?;
    let platforms = if m.platforms.is_empty() {
        "all (index digest preserved)".to_string()
    } else {
        m.platforms
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    outln!("  platforms: {platforms}")?;
    outln!("  force:     {}", m.force)?;
    outln!("  schedule:  {}", m.schedule)?;
    if matches!(m.selection, Selection::All) {
        super::out::warn(&format!(
            "mirror {}: selects every tag of {}: each tag is one image copy; add tags or a \
             filter (include, exclude, semver, latest) to narrow it",
            m.name,
            m.discovery
                .as_ref()
                .map_or_else(|| m.source.to_string(), |d| d.describe_source())
        ));
    }
    for t in m.schedule.upcoming(now, next) {
        if super::out::stdout_closed() {
            break;
        }
        outln!(
            "    next:    {}",
            t.with_timezone(&m.schedule.timezone())
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
        )?;
    }
    Ok(())
}

/// What a mirror selects, in words.
fn describe_selection(selection: &Selection) -> String {
    match selection {
        Selection::Digest(d) => format!("digest {d}"),
        Selection::Tags(t) => format!("tags {}", t.join(", ")),
        Selection::Filtered { tags, filter } => {
            let mut parts = Vec::new();
            if !tags.is_empty() {
                parts.push(format!("tags {}", tags.join(", ")));
            }
            for r in &filter.include {
                parts.push(format!("include /{r}/"));
            }
            for r in &filter.exclude {
                parts.push(format!("exclude /{r}/"));
            }
            if let Some(s) = &filter.semver {
                parts.push(format!("semver {s}"));
            }
            if let Some(n) = filter.latest {
                parts.push(format!("latest {n}"));
            }
            format!("listed tags: {}", parts.join("; "))
        }
        Selection::All => "every tag (the tag list is read at each run)".to_string(),
    }
}

/// Every problem found, one error line each, then how many; exit 2.
fn report_problems(path: &std::path::Path, problems: &[String]) -> anyhow::Result<Exit> {
    for p in problems {
        super::out::error(p);
    }
    if problems.len() > 1 {
        super::out::note(&format!(
            "{} problems found in {} (no registry contacted)",
            problems.len(),
            path.display()
        ));
    }
    Ok(Exit::Usage)
}

/// The upload profile of each registry (docs/registries.md).
fn upload_lines(
    options: &regmirror::registry::ClientOptions,
    hosts: &[&str],
) -> anyhow::Result<()> {
    outln!(
        "uploads (profile by host; Harbor is recognised by its token challenge when \
         contacted, as `regmirror auth check HOST` does):"
    )?;
    for host in hosts {
        let cfg = options.registries.iter().find(|r| r.host == *host);
        outln!("  {host}: {}", super::auth::upload_profile(host, cfg))?;
    }
    Ok(())
}

/// `--discover`: each discovering mirror's repositories now, or why none;
/// exit 1 when any discovery failed.
async fn discover_lines(
    config: &regmirror::sync::Config,
    options: regmirror::registry::ClientOptions,
) -> anyhow::Result<Exit> {
    let client = regmirror::registry::Client::new(options)?;
    let mut exit = Exit::Ok;
    for m in config.mirrors.iter().filter(|m| m.discovery.is_some()) {
        match regmirror::sync::discover::expand(&client, m).await {
            Ok(x) => {
                outln!(
                    "discover {}: {} of {} listed repositories selected ({} invalid names skipped)",
                    m.name,
                    x.jobs.len(),
                    x.listed,
                    x.invalid
                )?;
                for job in &x.jobs {
                    outln!("  {} -> {}", job.source, job.target)?;
                }
            }
            Err(e) => {
                super::out::error(&format!("discover {}: {e}", m.name));
                exit = Exit::Failed;
            }
        }
    }
    Ok(exit)
}
