//! Artifact Registry repositories for `create_repositories`: an image
//! `LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE` needs the Docker
//! repository `PROJECT/REPOSITORY` in `LOCATION`, made before the first
//! push with the Artifact Registry API v1 and the same access token:
//!
//! - `GET {api}/v1/projects/{p}/locations/{l}/repositories/{r}`: 200 when it
//!   exists, 404 when not;
//! - `POST {api}/v1/projects/{p}/locations/{l}/repositories?repositoryId={r}`
//!   with `{"format": "DOCKER"}`: a long-running operation, polled at
//!   `GET {api}/v1/{operation name}` until `done`; 409 when it exists.
//!
//! `{api}` is `https://artifactregistry.googleapis.com`, or what
//! `CLOUDSDK_API_ENDPOINT_OVERRIDES_ARTIFACTREGISTRY` says (gcloud's
//! endpoint override). Repositories are never deleted.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::registry::error::{Error, Op, Result};
use crate::registry::identity::oauth::{require_https_or_loopback, service_words};

/// Artifact Registry's API.
pub const DEFAULT_API: &str = "https://artifactregistry.googleapis.com";
/// The variable that points the API elsewhere (as for gcloud).
pub const API_OVERRIDE_VAR: &str = "CLOUDSDK_API_ENDPOINT_OVERRIDES_ARTIFACTREGISTRY";
/// How often an unfinished creation is asked about, and how many times.
const POLL_EVERY: Duration = Duration::from_millis(500);
const POLLS: usize = 60;

/// The location a host names (`europe-west1-docker.pkg.dev` -> `europe-west1`).
pub fn location_of(host: &str) -> Option<String> {
    let h = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let loc = h.strip_suffix("-docker.pkg.dev")?;
    let label = !loc.is_empty()
        && loc
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    label.then(|| loc.to_string())
}

/// `PROJECT/REPOSITORY` of an image path `PROJECT/REPOSITORY/IMAGE`.
pub fn repository_of(repo: &str) -> Option<String> {
    let mut parts = repo.split('/');
    let (p, r) = (parts.next()?, parts.next()?);
    (!p.is_empty() && !r.is_empty() && parts.next().is_some()).then(|| format!("{p}/{r}"))
}

/// One Artifact Registry location's repositories API.
#[derive(Debug, Clone)]
pub struct Repositories {
    /// The API base, without a trailing slash.
    pub api: String,
    /// The location (`europe-west1`, `us`).
    pub location: String,
}

impl Repositories {
    /// Make sure the Docker repository `unit` (`PROJECT/REPOSITORY`) exists,
    /// asking with `token`. `Ok(true)`: created now.
    pub async fn ensure(
        &self,
        client: &reqwest::Client,
        unit: &str,
        token: &str,
        target: &str,
    ) -> Result<bool> {
        require_https_or_loopback(&self.api, API_OVERRIDE_VAR, target)?;
        let (project, repository) = unit.split_once('/').unwrap_or((unit, ""));
        let parent = format!(
            "{}/v1/projects/{project}/locations/{}/repositories",
            self.api, self.location
        );
        let call = Call { token, target };
        let (status, _) = call
            .send(client.get(format!("{parent}/{repository}")))
            .await?;
        if status != StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("repositoryId", repository)
            .finish();
        let post = client
            .post(format!("{parent}?{query}"))
            .header("content-type", "application/json")
            .body(json!({"format": "DOCKER"}).to_string());
        let (status, mut op) = call.send(post).await?;
        if status == StatusCode::CONFLICT {
            return Ok(false);
        }
        for _ in 0..POLLS {
            if op.get("done").and_then(Value::as_bool) == Some(true) {
                return match op.get("error") {
                    Some(err) => Err(call.failed(&format!(
                        "the creation of {unit} failed{}",
                        service_words(json!({ "error": err }).to_string().as_bytes())
                    ))),
                    None => Ok(true),
                };
            }
            let name = op.get("name").and_then(Value::as_str).unwrap_or_default();
            if name.is_empty() || name.contains("..") {
                return Err(call.failed("answered an operation without a usable name"));
            }
            tokio::time::sleep(POLL_EVERY).await;
            op = call
                .send(client.get(format!("{}/v1/{name}", self.api)))
                .await?
                .1;
        }
        Err(call.failed(&format!(
            "the creation of {unit} did not finish within {} s",
            (POLL_EVERY * POLLS as u32).as_secs()
        )))
    }
}

/// Calls to the API with one token.
struct Call<'a> {
    token: &'a str,
    target: &'a str,
}

impl Call<'_> {
    /// Send `req`: `(2xx, JSON)`, or `(404 or 409, Null)` (missing, exists
    /// already); other answers are errors with the API's words.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(StatusCode, Value)> {
        let resp = req
            .bearer_auth(self.token)
            .header("accept", "application/json")
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| Error::Connection {
                op: Op::Setup,
                target: self.target.to_string(),
                detail: format!("Artifact Registry API: {e}"),
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
        if status == StatusCode::NOT_FOUND || status == StatusCode::CONFLICT {
            return Ok((status, Value::Null));
        }
        if !status.is_success() {
            return Err(self.failed(&format!(
                "answered HTTP {}{}",
                status.as_u16(),
                service_words(&bytes)
            )));
        }
        let v = serde_json::from_slice(&bytes)
            .map_err(|e| self.failed(&format!("answered something that is not JSON ({e})")))?;
        Ok((status, v))
    }

    fn failed(&self, what: &str) -> Error {
        Error::Auth {
            op: Op::Setup,
            target: self.target.to_string(),
            detail: format!("Artifact Registry API {what}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_repositories() {
        assert_eq!(
            location_of("europe-west1-docker.pkg.dev").as_deref(),
            Some("europe-west1")
        );
        assert_eq!(location_of("us-docker.pkg.dev").as_deref(), Some("us"));
        assert_eq!(location_of("127.0.0.1:5000"), None);
        assert_eq!(location_of("-docker.pkg.dev"), None);
        assert_eq!(repository_of("p/r/app").as_deref(), Some("p/r"));
        assert_eq!(repository_of("p/r/team/app").as_deref(), Some("p/r"));
        assert_eq!(repository_of("p/r"), None);
        assert_eq!(repository_of("p//app"), None);
    }
}
