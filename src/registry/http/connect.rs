//! The HTTP clients of the stack: regmirror's defaults (user agent, no
//! redirects followed by the client, connect and read timeouts), and a
//! client of its own for a registry with its own TLS settings (CA file,
//! client certificate, skipped verification) or blob idle timeout.

use std::time::Duration;

use crate::registry::config::{RegistryConfig, TlsMode};

/// The user agent sent to registries.
pub const USER_AGENT: &str = concat!("regmirror/", env!("CARGO_PKG_VERSION"));
/// Added to the blob idle timeout for the HTTP stack's own read timeout.
const READ_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// A reqwest client builder with regmirror's defaults. Redirects are never
/// followed by the HTTP stack: [`super::Host::send`] follows them itself, deciding
/// per origin what to send. `read_timeout` (plus a margin, so that the blob
/// guard's clearer error comes first) bounds each wait for bytes.
pub(crate) fn client_builder(read_timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(read_timeout.saturating_add(READ_TIMEOUT_MARGIN))
        .pool_idle_timeout(Duration::from_secs(90))
}

/// A client with the TLS settings of `cfg` and a read timeout following
/// `idle`. `Err` says which setting is unusable and why.
pub(super) fn own_client(
    cfg: &RegistryConfig,
    tls: TlsMode,
    idle: Duration,
) -> Result<reqwest::Client, String> {
    let mut b = client_builder(idle);
    if tls == TlsMode::SkipVerify {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    if let Some(ca) = &cfg.ca_file {
        let pem =
            std::fs::read(ca).map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "ca_file {} holds no usable PEM certificate: {e}",
                ca.display()
            )
        })?;
        b = b.tls_certs_merge(certs);
    }
    match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(cert), Some(key)) => b = b.identity(identity(cert, key)?),
        (None, None) => {}
        _ => return Err("client_cert_file and client_key_file go together".into()),
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTPS client: {e}"))
}

/// The client certificate and key, read from their PEM files.
fn identity(cert: &std::path::Path, key: &std::path::Path) -> Result<reqwest::Identity, String> {
    let mut pem = std::fs::read(cert)
        .map_err(|e| format!("cannot read client_cert_file {}: {e}", cert.display()))?;
    pem.push(b'\n');
    pem.extend(
        std::fs::read(key)
            .map_err(|e| format!("cannot read client_key_file {}: {e}", key.display()))?,
    );
    reqwest::Identity::from_pem(&pem)
        .map_err(|e| format!("client certificate or key is not usable PEM: {e}"))
}
