//! `regmirror sync` (placeholder until implemented).

/// Arguments of `regmirror sync`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// Run the command.
pub async fn run(_args: Args, _global: &super::GlobalArgs) -> anyhow::Result<super::Exit> {
    anyhow::bail!("regmirror sync is not implemented yet")
}
