//! `regmirror check` (placeholder until implemented).

/// Arguments of `regmirror check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// Run the command.
pub async fn run(_args: Args) -> anyhow::Result<super::Exit> {
    anyhow::bail!("regmirror check is not implemented yet")
}
