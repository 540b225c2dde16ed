//! `regmirror auth check HOST`: say where a host's credentials come from,
//! without printing them, and the upload profile the host gets (the one
//! contact with the registry: `GET /v2/` without credentials).

use regmirror::registry::credentials::{self, Helpers, Source};

use super::out::outln;
use super::{Exit, UsageError};

/// `regmirror auth` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Say which source a host's credentials come from (never the credentials).
    #[command(long_about = LONG_ABOUT, after_help = super::help::AUTH_CHECK)]
    Check(CheckArgs),
}

/// Long help of `regmirror auth check`.
pub const LONG_ABOUT: &str = "Say which source a registry host's credentials come from, \
following the order regmirror uses: command-line flags, the config file's [[registry]] table, \
a Docker config (--docker-config or docker_config, else $DOCKER_CONFIG/config.json, else \
~/.docker/config.json), the containers auth.json ($REGISTRY_AUTH_FILE, else \
${XDG_RUNTIME_DIR}/containers/auth.json and ~/.config/containers/auth.json), then the \
credential helpers those files name. A helper is run to see whether it has credentials; no \
secret is printed and no credential is sent. The upload profile line asks the registry once \
(GET /v2/, without credentials, at most 5 s) so that a Harbor is recognised by its token \
challenge; without an answer it shows the profile by host name. Exits 0 when credentials were found, 1 \
when access would be anonymous, 2 on a bad setting.

HOST is a registry host as written in image references: docker.io, ghcr.io, localhost:5000.";

/// Arguments of `regmirror auth check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Registry host (`docker.io`, `ghcr.io`, `registry.example.com:5000`).
    #[arg(value_parser = super::validate::host)]
    pub host: String,
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// Run the command.
pub async fn run(cmd: Command) -> anyhow::Result<Exit> {
    let Command::Check(args) = cmd;
    let host = match args.host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    };
    let options = args.registry.client_options()?;
    let cfg = options.registries.iter().find(|r| r.host == host);
    let resolved = credentials::resolve_with_identity(
        &host,
        cfg,
        options.docker_config.as_deref(),
        Helpers::Run,
    )
    .map_err(|e| UsageError(e.to_string()))?;
    let from_flags = args
        .registry
        .flag_credential_hosts()
        .contains(&host.as_str());
    outln!(
        "{host}: {}",
        super::describe_source(&resolved.source, from_flags)
    )?;
    if let Some(user) = user_of(&resolved.credentials) {
        outln!("  user: {user}")?;
    }
    outln!(
        "  uploads: {}",
        announced_profile(&host, cfg, &options).await
    )?;
    outln!("  searched, in order:")?;
    outln!("    flags and [[registry]] host = {host:?}")?;
    for f in credentials::credential_files(options.docker_config.as_deref()) {
        let state = if f.path.exists() { "" } else { " (absent)" };
        outln!("    {} (from {}){state}", f.path.display(), f.origin)?;
    }
    Ok(if resolved.source == Source::Anonymous {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

/// The upload profile `host` gets (docs/registries.md), with the
/// `[[registry]]` settings that override it.
pub(super) fn upload_profile(
    host: &str,
    cfg: Option<&regmirror::registry::RegistryConfig>,
) -> String {
    use regmirror::registry::profiles::for_host;
    let settings = cfg.map(|c| c.upload_settings()).unwrap_or_default();
    settings.apply(for_host(host)).to_string()
}

/// Longest `auth check` waits for the registry's `GET /v2/` answer.
const ANNOUNCE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The upload profile `host` gets once contacted: `GET /v2/` (without
/// credentials) tells Harbor by its token challenge; without an answer,
/// the profile by host name.
async fn announced_profile(
    host: &str,
    cfg: Option<&regmirror::registry::RegistryConfig>,
    options: &regmirror::registry::ClientOptions,
) -> String {
    use regmirror::registry::profiles::family_of;
    let settings = cfg.map(|c| c.upload_settings()).unwrap_or_default();
    let announced = match regmirror::registry::Client::new(options.clone()) {
        Ok(client) => tokio::time::timeout(ANNOUNCE_TIMEOUT, client.announced_profile(host))
            .await
            .ok()
            .and_then(|r| r.ok()),
        Err(_) => None,
    };
    match announced {
        Some(p) if p.family != family_of(host) => {
            format!("{} (announced by its token challenge)", settings.apply(p))
        }
        _ => upload_profile(host, cfg),
    }
}

fn user_of(c: &regmirror::registry::auth::Credentials) -> Option<String> {
    use regmirror::registry::auth::Credentials;
    match c {
        Credentials::Basic { username, .. } => Some(username.clone()),
        Credentials::IdentityToken {
            username: Some(u), ..
        } => Some(format!("{u} (identity token)")),
        Credentials::IdentityToken { .. } => Some("(identity token)".into()),
        Credentials::Anonymous => None,
    }
}
