//! Docker credential helpers: `docker-credential-<name> get`, asked for one
//! registry's credentials.

use serde::Deserialize;

use super::kind::Credentials;
use crate::registry::config::Secret;
use crate::registry::error::{Error, Result};
use crate::registry::reference::DOCKER_HUB;

pub(crate) fn run_credential_helper(name: &str, registry: &str) -> Result<Option<Credentials>> {
    let err = |detail: String| Error::Config {
        host: registry.to_string(),
        detail,
    };
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(err(format!("credential helper name {name:?} is invalid")));
    }
    let server = if registry == DOCKER_HUB {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    };
    let program = format!("docker-credential-{name}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("cannot run credential helper {program}: {e}; install it or remove it from the Docker config")))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("credential helper {program} failed: {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout);
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        return Err(err(format!(
            "credential helper {program} exited with {}",
            out.status
        )));
    }
    #[derive(Deserialize)]
    struct HelperOut {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let h: HelperOut = serde_json::from_slice(&out.stdout).map_err(|_| {
        err(format!(
            "credential helper {program} printed something that is not its JSON answer"
        ))
    })?;
    if h.username == "<token>" {
        Ok(Some(Credentials::IdentityToken {
            username: None,
            token: Secret::new(h.secret),
        }))
    } else {
        Ok(Some(Credentials::Basic {
            username: h.username,
            password: Secret::new(h.secret),
        }))
    }
}
