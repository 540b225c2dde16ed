//! Is this host a registry at all? A web server, a login page or a
//! catch-all proxy in front of the configured address answers `200` to
//! anything; without these checks such a target would be reported as
//! "copied" while holding nothing.
//!
//! - [`Client::ping`]: `GET /v2/` (without credentials: a `401` is an
//!   answer too). A registry answers `200` or `401` with the
//!   `Docker-Distribution-API-Version` header or, for an OCI registry that
//!   leaves the header out, a JSON body. An HTML page, a redirect, a `404`
//!   or a body that is not JSON is not a registry. Failures to connect or
//!   server errors tell nothing: the operations that follow report them.
//! - [`reject_html`]: manifest and blob answers carrying an HTML page.

use reqwest::Method;

use super::auth::Scopes;
use super::client::Client;
use super::error::{Error, Op, Result};
use super::http::auth::{Challenge, parse_challenge};
pub use super::http::probe::{API_VERSION_HEADER, PingVerdict, judge, not_a_registry, reject_html};
use super::profiles::{self, Profile};
use super::reference::Reference;

/// Largest `/v2/` body read.
const MAX_PING_BODY: usize = 64 * 1024;

impl Client {
    /// Check that `registry` answers as a registry on `GET /v2/` (see the
    /// module docs). `Ok` also when the answer tells nothing.
    pub async fn ping(&self, r: &Reference) -> Result<PingVerdict> {
        let Some(registry) = r.registry_host() else {
            return Ok(PingVerdict::Registry);
        };
        let resp = match self.get_v2(registry).await {
            Ok(r) => r,
            Err(e) if matches!(e, Error::Tls { .. } | Error::Config { .. }) => return Err(e),
            Err(e) => {
                tracing::debug!(registry, error = %e, "GET /v2/ failed; not judged");
                return Ok(PingVerdict::Unknown);
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = read_capped(resp).await;
        let verdict = judge(status, &headers, &body);
        tracing::debug!(registry, status, ?verdict, "GET /v2/");
        match &verdict {
            PingVerdict::NotRegistry(why) => Err(not_a_registry(Op::Setup, registry, why)),
            _ => Ok(verdict),
        }
    }
}

impl Client {
    /// `GET /v2/` on `registry`; any answer that tells something about the
    /// registry (`401`, `403`, `404`, `405` too) is `Ok`.
    async fn get_v2(&self, registry: &str) -> Result<reqwest::Response> {
        let host = self.host(registry)?;
        let mut req = Client::request(
            Op::Setup,
            registry.to_string(),
            "",
            Method::GET,
            host.url("", &[]),
            Scopes::default(),
        );
        req.pass_statuses = &[401, 403, 404, 405];
        host.send(req).await
    }

    /// The upload profile of `registry` as its `GET /v2/` answer announces
    /// it: Harbor's when its token challenge names Harbor (see
    /// [`profiles::for_token_service`]), else the host's. `Err` when the
    /// registry gave no answer.
    pub async fn announced_profile(&self, registry: &str) -> Result<Profile> {
        let resp = self.get_v2(registry).await?;
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        Ok(match challenge {
            Some(Challenge::Bearer { realm, service, .. }) => {
                profiles::for_token_service(registry, Some(&realm), service.as_deref())
            }
            _ => profiles::for_host(registry),
        })
    }
}

async fn read_capped(mut resp: reqwest::Response) -> Vec<u8> {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_PING_BODY.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= MAX_PING_BODY {
            break;
        }
    }
    buf
}
