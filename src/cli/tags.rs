//! `regmirror tags`: list a repository's tags.

use anyhow::Context as _;

use regmirror::registry::{Client, Reference};

use super::out::outln;
use super::{Exit, UsageError};

/// Long help of `regmirror tags`.
pub const LONG_ABOUT: &str = "List a repository's tags, sorted, one per line (or a JSON \
array with --output json), following the registry's pagination.

REPOSITORY is [REGISTRY[:PORT]/]REPOSITORY, without tag or digest (`nginx` is \
docker.io/library/nginx), or an OCI image layout: oci:DIR (the tags of its images named by a \
tag alone, as skopeo and umoci write them) or oci:DIR:NAME (the tags of NAME:TAG entries); \
oci-archive:FILE likewise.";

/// Arguments of `regmirror tags`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Repository (`nginx`, `ghcr.io/org/app`, `localhost:5000/mirror/app`).
    pub repository: String,
    /// Output format (json: a JSON array instead of one tag per line).
    #[arg(long, value_enum, default_value = "text")]
    pub output: super::report::Output,
    /// The old spelling of `--output json`.
    #[arg(long, hide = true)]
    pub json: bool,
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// Run the command.
pub async fn run(args: Args) -> anyhow::Result<Exit> {
    let parsed = super::parse_image("repository", &args.repository)?;
    if parsed.tag().is_some() || parsed.digest().is_some() {
        return Err(UsageError(format!(
            "{:?} is an image, not a repository: `tags` lists a repository's tags; drop the tag or digest (try {})",
            args.repository,
            parsed.repository_only()
        ))
        .into());
    }
    let repo = Reference::parse_repository(&args.repository)?;
    let options = args.registry.client_options()?;
    super::check_credentials(&options, &Vec::from_iter(repo.registry_host()))?;
    let client = Client::new(options)?;
    let mut tags = client
        .list_tags(&repo)
        .await
        .with_context(|| format!("cannot list the tags of {repo}"))?;
    tags.sort();
    if args.json || args.output == super::report::Output::Json {
        outln!("{}", serde_json::to_string(&tags)?)?;
    } else {
        for t in tags {
            outln!("{t}")?;
            if super::out::stdout_closed() {
                break;
            }
        }
    }
    Ok(Exit::Ok)
}
