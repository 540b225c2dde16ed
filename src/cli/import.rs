//! `regmirror import` (placeholder until implemented).

/// Arguments of `regmirror import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// Run the command.
pub async fn run(_args: Args) -> anyhow::Result<super::Exit> {
    anyhow::bail!("regmirror import is not implemented yet")
}
