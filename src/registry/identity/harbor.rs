//! Harbor projects for `create_repositories`: Harbor keeps every repository
//! in a project (the first path component) and refuses a push into a project
//! that does not exist, so the project is made before the first push, with
//! Harbor's API v2.0 and the registry's own credentials (basic auth):
//!
//! - `HEAD /api/v2.0/projects?project_name=<p>`: 200 when it exists, 404 when not;
//! - `POST /api/v2.0/projects` with `{"project_name": "<p>", "metadata": {"public": "false"}}`:
//!   201 created, 409 when it exists already.
//!
//! Projects are created private and never deleted.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::registry::config::{RegistryConfig, Secret};
use crate::registry::error::{Error, Op, Result};

/// Longest error text kept from Harbor's answer.
const MAX_DETAIL: usize = 300;

/// Harbor's project API of one registry.
#[derive(Debug)]
pub struct HarborProjects {
    host: String,
    base: String,
    client: reqwest::Client,
}

/// The project a push into `repo` needs: its first path component.
pub fn project_of(repo: &str) -> Option<&str> {
    repo.split_once('/')
        .map(|(p, _)| p)
        .filter(|p| !p.is_empty())
}

impl HarborProjects {
    /// The project API of the registry `cfg` describes (same host, scheme
    /// and TLS settings as the registry).
    pub fn new(cfg: &RegistryConfig) -> Result<HarborProjects> {
        Ok(HarborProjects {
            host: cfg.host.clone(),
            base: super::oauth::registry_base(cfg),
            client: super::oauth::client_for(cfg)?,
        })
    }

    /// Make sure `project` exists, asking as `user` (basic auth; `None`:
    /// anonymously). `Ok(true)`: created now; `Ok(false)`: it existed.
    pub async fn ensure(&self, project: &str, user: Option<(&str, &Secret)>) -> Result<bool> {
        let url = format!("{}/api/v2.0/projects", self.base);
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("project_name", project)
            .finish();
        let head = self.with_auth(self.client.head(format!("{url}?{query}")), user);
        let resp = self.send(head, project, "HEAD").await?;
        match resp.status() {
            StatusCode::OK => return Ok(false),
            StatusCode::NOT_FOUND => {}
            _ => return Err(self.refused(project, "HEAD", resp).await),
        }
        let body = json!({"project_name": project, "metadata": {"public": "false"}});
        let post = self
            .with_auth(self.client.post(&url), user)
            .header("content-type", "application/json")
            .body(body.to_string());
        let resp = self.send(post, project, "POST").await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::CONFLICT => Ok(false),
            _ => Err(self.refused(project, "POST", resp).await),
        }
    }

    fn with_auth(
        &self,
        req: reqwest::RequestBuilder,
        user: Option<(&str, &Secret)>,
    ) -> reqwest::RequestBuilder {
        let req = req
            .header("accept", "application/json")
            .timeout(std::time::Duration::from_secs(30));
        match user {
            Some((u, p)) => req.basic_auth(u, Some(p.expose())),
            None => req,
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        project: &str,
        method: &str,
    ) -> Result<reqwest::Response> {
        req.send().await.map_err(|e| Error::Connection {
            op: Op::Setup,
            target: format!("{}/{project}", self.host),
            detail: format!(
                "Harbor API {method} {}/api/v2.0/projects: {}",
                self.base,
                e.without_url()
            ),
        })
    }

    /// The error for an answer that is neither yes nor no, with Harbor's words.
    async fn refused(&self, project: &str, method: &str, resp: reqwest::Response) -> Error {
        let status = resp.status().as_u16();
        let words = harbor_words(&resp.bytes().await.unwrap_or_default());
        let hint = match status {
            401 | 403 => {
                "; give this [[registry]] table the credentials of a Harbor user who may create \
                 projects (a system robot account with project creation, or an administrator)"
            }
            404 | 405 => {
                "; create_repositories on a registry without a cloud identity creates Harbor \
                 projects: is this registry Harbor? Set create_repositories = false otherwise"
            }
            _ => "",
        };
        Error::Auth {
            op: Op::Setup,
            target: format!("{}/{project}", self.host),
            detail: format!(
                "creating the Harbor project {project}: {method} {}/api/v2.0/projects answered \
                 HTTP {status}{words}{hint}",
                self.base
            ),
        }
    }
}

/// `: <message>` of Harbor's error answer (`{"errors":[{"code","message"}]}`)
/// or the start of any other body.
fn harbor_words(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v
            .get("errors")
            .and_then(Value::as_array)
            .map(|errs| {
                errs.iter()
                    .filter_map(|e| {
                        let code = e.get("code").and_then(Value::as_str).unwrap_or_default();
                        let msg = e.get("message").and_then(Value::as_str)?;
                        Some(format!("{code} {msg}").trim().to_string())
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    };
    if text.is_empty() {
        return String::new();
    }
    format!(": {}", text.chars().take(MAX_DETAIL).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_and_words() {
        assert_eq!(project_of("team/app"), Some("team"));
        assert_eq!(project_of("team/sub/app"), Some("team"));
        assert_eq!(project_of("app"), None);
        assert_eq!(project_of("/app"), None);
        assert_eq!(
            harbor_words(br#"{"errors":[{"code":"FORBIDDEN","message":"forbidden"}]}"#),
            ": FORBIDDEN forbidden"
        );
        assert_eq!(harbor_words(b""), "");
        assert_eq!(harbor_words(b"<html>x</html>"), ": <html>x</html>");
    }
}
