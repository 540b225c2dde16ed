//! `regmirror index` (placeholder until implemented).

/// `regmirror index` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Combine single-platform images into one multi-arch index.
    Create(CreateArgs),
}

/// Arguments of `regmirror index create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// Run the command.
pub async fn run(_cmd: Command) -> anyhow::Result<super::Exit> {
    anyhow::bail!("regmirror index create is not implemented yet")
}
