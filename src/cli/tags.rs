//! `regmirror tags`: list a repository's tags.

use anyhow::Context as _;

use regmirror::registry::{Client, Reference};

use super::Exit;

/// Arguments of `regmirror tags`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Repository (`nginx`, `ghcr.io/org/app`, `localhost:5000/mirror/app`).
    pub repository: String,
    /// Print a JSON array instead of one tag per line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// Run the command.
pub async fn run(args: Args) -> anyhow::Result<Exit> {
    let repo = Reference::parse_repository(&args.repository)?;
    let client = Client::new(args.registry.client_options()?)?;
    let mut tags = client
        .list_tags(&repo)
        .await
        .with_context(|| format!("cannot list the tags of {repo}"))?;
    tags.sort();
    if args.json {
        println!("{}", serde_json::to_string(&tags)?);
    } else {
        for t in tags {
            println!("{t}");
        }
    }
    Ok(Exit::Ok)
}
