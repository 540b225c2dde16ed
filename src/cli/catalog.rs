//! `regmirror catalog REGISTRY`: list a registry's repositories through
//! `/v2/_catalog`, following its pagination (like `crane catalog`).

use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use regmirror::registry::Client;
use regmirror::registry::catalog::MAX_CATALOG_PAGE_SIZE;

use super::Exit;
use super::out::outln;
use super::report::Output;

/// Long help of `regmirror catalog`.
pub const LONG_ABOUT: &str = "List the repositories of a registry, one per line, through the \
catalog API (GET /v2/_catalog), following its pagination (n, Link). Names that break the \
repository grammar are left out and counted. Docker Hub has no catalog; other registries may \
refuse it to credentials that may not read it.

REGISTRY is a host as written in image references: [REGISTRY[:PORT]] (`registry.example.com`, \
`localhost:5000`), without a scheme or path.";

/// Arguments of `regmirror catalog`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Registry host (`registry.example.com`, `localhost:5000`).
    #[arg(value_parser = super::validate::host)]
    pub registry: String,
    /// Repositories asked for per page (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u16).range(1..=MAX_CATALOG_PAGE_SIZE as i64))]
    pub page_size: u16,
    /// Output format on stdout (json: the report conventions of docs/report.md).
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    #[command(flatten)]
    pub registry_args: super::RegistryArgs,
}

/// The command's own report fields.
#[derive(Debug, Serialize)]
struct Listing {
    registry: String,
    repositories: Vec<String>,
    pages: usize,
    invalid: usize,
}

/// Run the command.
pub async fn run(args: Args) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let result = list(&args).await;
    super::oneshot::finish("catalog", args.output, started, result, |l| {
        for r in &l.repositories {
            outln!("{r}")?;
            if super::out::stdout_closed() {
                break;
            }
        }
        if l.invalid > 0 {
            super::out::warn(&format!(
                "{}: left out {} listed names that break the repository grammar",
                l.registry, l.invalid
            ));
        }
        Ok(())
    })
}

async fn list(args: &Args) -> anyhow::Result<(Exit, Listing)> {
    let options = args.registry_args.client_options()?;
    super::check_credentials(&options, &[args.registry.as_str()])?;
    let client = Client::new(options)?;
    let listing = client
        .list_repositories(&args.registry, usize::from(args.page_size))
        .await
        .with_context(|| format!("cannot list the repositories of {}", args.registry))?;
    Ok((
        Exit::Ok,
        Listing {
            registry: args.registry.clone(),
            repositories: listing.repositories,
            pages: listing.pages,
            invalid: listing.invalid,
        },
    ))
}
