//! `regmirror serve` (placeholder until implemented).

/// Arguments of `regmirror serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// Run the command.
pub async fn run(_args: Args, _global: &super::GlobalArgs) -> anyhow::Result<super::Exit> {
    anyhow::bail!("regmirror serve is not implemented yet")
}
