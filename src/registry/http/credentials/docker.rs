//! The Docker `config.json` and containers `auth.json` format: `auths`
//! entries, `credHelpers` and `credsStore`.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

use super::helper::run_credential_helper;
use super::kind::Credentials;
use crate::registry::config::Secret;
use crate::registry::error::{Error, Result};
use crate::registry::reference::DOCKER_HUB;

impl Credentials {
    /// Look a registry up in a Docker `config.json`: its `auths` entry
    /// (`auth`, `username`/`password`, `identitytoken`), then `credHelpers`
    /// and `credsStore` (running `docker-credential-<name> get`). A missing
    /// file holds no credentials. [`super::resolve`] applies
    /// the whole lookup order.
    pub fn from_docker_config(path: &Path, registry: &str) -> Result<Option<Credentials>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Config {
                    host: registry.to_string(),
                    detail: format!("cannot read Docker config {}: {e}", path.display()),
                });
            }
        };
        let file = AuthFile::parse(&text).map_err(|e| Error::Config {
            host: registry.to_string(),
            detail: format!("Docker config {} is not valid JSON: {e}", path.display()),
        })?;
        if let Some(c) = file.auths_entry(registry, path)? {
            return Ok(Some(c));
        }
        match file.helper_for(registry) {
            Some(name) => run_credential_helper(&name, registry),
            None => Ok(None),
        }
    }
}

/// The parts of a Docker `config.json` or containers `auth.json` that hold
/// credentials (both share the `auths` format).
#[derive(Deserialize, Default)]
pub(crate) struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

impl AuthFile {
    /// Parse file text.
    pub(crate) fn parse(text: &str) -> std::result::Result<AuthFile, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Credentials from the `auths` entry for `host`, if one holds any.
    pub(crate) fn auths_entry(&self, host: &str, path: &Path) -> Result<Option<Credentials>> {
        let err = |detail: String| Error::Config {
            host: host.to_string(),
            detail,
        };
        let keys = keys_for(host);
        // Exact host keys first, then keys with a repository path
        // (containers auth.json allows `host/namespace`).
        let mut entries: Vec<(&String, &AuthEntry)> = self
            .auths
            .iter()
            .filter(|(k, _)| keys.contains(&normalise_key(k)))
            .collect();
        entries.sort_by_key(|(k, _)| (k.contains('/') && !k.contains("://"), (*k).clone()));
        for (key, entry) in entries {
            if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
                return Ok(Some(Credentials::IdentityToken {
                    username: entry.username.clone(),
                    token: Secret::new(token.clone()),
                }));
            }
            if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        err(format!(
                            "{}: the auths entry for {key} has an auth field that is not base64 of user:password",
                            path.display()
                        ))
                    })?;
                let (user, pass) = decoded.split_once(':').ok_or_else(|| {
                    err(format!(
                        "{}: the auths entry for {key} is not user:password",
                        path.display()
                    ))
                })?;
                return Ok(Some(Credentials::Basic {
                    username: user.to_string(),
                    password: Secret::new(pass),
                }));
            }
            if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
                return Ok(Some(Credentials::Basic {
                    username: u.clone(),
                    password: Secret::new(p.clone()),
                }));
            }
        }
        Ok(None)
    }

    /// The credential helper for `host`: `credHelpers`, then `credsStore`.
    pub(crate) fn helper_for(&self, host: &str) -> Option<String> {
        let keys = keys_for(host);
        keys.iter()
            .find_map(|k| {
                self.cred_helpers
                    .iter()
                    .find(|(h, _)| normalise_key(h) == *k)
                    .map(|(_, v)| v.clone())
            })
            .or_else(|| self.creds_store.clone())
            .filter(|s| !s.is_empty())
    }
}

/// Keys a registry may be filed under.
fn keys_for(registry: &str) -> Vec<String> {
    if registry == DOCKER_HUB {
        vec![
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![registry.to_string()]
    }
}

/// `https://index.docker.io/v1/` -> `index.docker.io`; `quay.io/org` -> `quay.io`.
fn normalise_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    k.split('/').next().unwrap_or(k).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::config::RegistryConfig;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn entries_and_helpers() {
        let f = AuthFile::parse(&format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"quay.io/org":{{"auth":"{}"}},"ghcr.io":{{}}}},
               "credHelpers":{{"ghcr.io":"gh"}},"credsStore":"desktop"}}"#,
            b64("hub:pw"),
            b64("q:pw")
        ))
        .unwrap();
        let p = Path::new("x.json");
        let Some(Credentials::Basic { username, .. }) = f.auths_entry("docker.io", p).unwrap()
        else {
            panic!("docker.io")
        };
        assert_eq!(username, "hub");
        assert!(f.auths_entry("quay.io", p).unwrap().is_some());
        assert!(f.auths_entry("ghcr.io", p).unwrap().is_none());
        assert_eq!(f.helper_for("ghcr.io").as_deref(), Some("gh"));
        assert_eq!(f.helper_for("example.com").as_deref(), Some("desktop"));
        let bad = AuthFile::parse(r#"{"auths":{"r.io":{"auth":"!!"}}}"#).unwrap();
        let e = bad.auths_entry("r.io", p).unwrap_err().to_string();
        assert!(e.contains("x.json") && e.contains("base64"), "{e}");
    }

    #[test]
    fn credentials_from_config_and_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let cfg = RegistryConfig {
            host: "r.example".into(),
            username: Some("u".into()),
            password_file: Some(pw),
            ..Default::default()
        };
        let c = Credentials::from_config(&cfg).unwrap().unwrap();
        let Credentials::Basic { username, password } = &c else {
            panic!()
        };
        assert_eq!((username.as_str(), password.expose()), ("u", "s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));

        let missing = RegistryConfig {
            host: "r.example".into(),
            username: Some("u".into()),
            password_env: Some("REGMIRROR_TEST_SURELY_UNSET".into()),
            ..Default::default()
        };
        let e = Credentials::from_config(&missing).unwrap_err().to_string();
        assert!(e.contains("REGMIRROR_TEST_SURELY_UNSET"), "{e}");

        let dc = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("hub-user:hub-pass");
        std::fs::write(
            &dc,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"ghcr.io":{{"identitytoken":"refresh"}}}}}}"#),
        )
        .unwrap();
        let Some(Credentials::Basic { username, password }) =
            Credentials::from_docker_config(&dc, "docker.io").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (username.as_str(), password.expose()),
            ("hub-user", "hub-pass")
        );
        assert!(matches!(
            Credentials::from_docker_config(&dc, "ghcr.io").unwrap(),
            Some(Credentials::IdentityToken { .. })
        ));
        assert!(
            Credentials::from_docker_config(&dc, "quay.io")
                .unwrap()
                .is_none()
        );
    }
}
