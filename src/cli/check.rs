//! `regmirror check`: validate a config file and print each mirror's next
//! runs, touching no registry.

use chrono::Utc;

use regmirror::sync::Selection;

use super::Exit;

/// Arguments of `regmirror check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub registry: super::RegistryArgs,
    /// How many upcoming runs to print per mirror.
    #[arg(long, default_value_t = 3)]
    pub next: usize,
    /// Print which mirrors each shard owns and how balanced the shards are.
    #[arg(long)]
    pub shards: bool,
    #[command(flatten)]
    pub shard: super::shard::ShardArgs,
}

/// Run the command.
pub async fn run(args: Args) -> anyhow::Result<Exit> {
    let path = super::sync::config_path(&args.registry, "check")?;
    let config = super::sync::load_config(&path)?;
    // Flags must parse too (HOST=VALUE forms); nothing is contacted.
    args.registry.client_options()?;
    if let Some(why) = config.empty_without_consent() {
        eprintln!("error: {why}; `serve` refuses to reload to it");
        return Ok(Exit::Usage);
    }
    let shard_lines = super::shard::check_lines(&args.shard, &config, args.shards)?;
    println!(
        "{}: ok ({} mirrors, {} registries, concurrency {}, time zone {})",
        path.display(),
        config.mirrors.len(),
        config.registries.len(),
        config.defaults.concurrency,
        config.defaults.timezone
    );
    for line in shard_lines {
        println!("{line}");
    }
    let now = Utc::now();
    for m in &config.mirrors {
        println!("mirror {}", m.name);
        println!("  source:    {}", m.source);
        match &m.target_tag {
            Some(t) => println!("  target:    {}:{t}", m.target),
            None => println!("  target:    {}", m.target),
        }
        let selection = match &m.selection {
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
            Selection::All => "every tag".to_string(),
        };
        println!("  selects:   {selection}");
        let platforms = if m.platforms.is_empty() {
            "all (index digest preserved)".to_string()
        } else {
            m.platforms
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("  platforms: {platforms}");
        println!("  force:     {}", m.force);
        println!("  schedule:  {}", m.schedule);
        for t in m.schedule.upcoming(now, args.next) {
            println!(
                "    next:    {}",
                t.with_timezone(&m.schedule.timezone())
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
            );
        }
    }
    Ok(Exit::Ok)
}
