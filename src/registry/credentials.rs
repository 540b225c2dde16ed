//! Where a registry's credentials come from, in the order docker and podman
//! users expect; the first source that has credentials for the host wins:
//!
//! 1. the host's `[[registry]]` table (`password`, `password_env`,
//!    `password_file`, `identity_token`), which the one-shot commands' flags
//!    (`--username`, `--password-env`, `--password-file`) override;
//! 2. a Docker config: the explicit one (`--docker-config`, or the config
//!    file's `docker_config`), else `$DOCKER_CONFIG/config.json`, else
//!    `~/.docker/config.json`;
//! 3. the containers `auth.json` of podman, buildah and skopeo:
//!    `$REGISTRY_AUTH_FILE` when set, else
//!    `${XDG_RUNTIME_DIR}/containers/auth.json` then
//!    `~/.config/containers/auth.json`;
//! 4. credential helpers named by those files (`credHelpers` for the host,
//!    then `credsStore`), in the same file order.
//!
//! An explicit Docker config that does not exist is an error; default
//! locations that do not exist are skipped. A file that exists but cannot be
//! read or is not JSON is an error naming the file.
//!
//! Lifetime: credentials are resolved when a client first talks to a host
//! and kept for that client's life (for `serve`, until the next reload
//! builds a new client), so a `docker login` takes effect at the next run of
//! a one-shot command or the next reload of `serve`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::auth::{Credentials, run_credential_helper};
use super::config::{RegistryConfig, Secret};
use super::error::{Error, Result};
use super::reference::DOCKER_HUB;

/// Largest credentials file read.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The kind of a credentials file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A Docker `config.json`.
    Docker,
    /// A containers `auth.json` (podman, buildah, skopeo).
    Containers,
}

/// One credentials file to consult.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialFile {
    /// Where it is.
    pub path: PathBuf,
    /// Docker or containers format.
    pub kind: FileKind,
    /// Named explicitly: a missing file is an error.
    pub explicit: bool,
    /// How the location was chosen (`--docker-config`, `$DOCKER_CONFIG`, …).
    pub origin: &'static str,
}

/// Where a host's credentials came from (never the credentials themselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The host's `[[registry]]` table or the flags: which keys.
    Registry {
        /// `password_env DOCKERHUB_TOKEN`, `password_file /run/pw`, `password`, `identity_token`.
        how: String,
    },
    /// An `auths` entry of a credentials file.
    File {
        /// The file.
        path: PathBuf,
        /// Its kind.
        kind: FileKind,
    },
    /// A credential helper named by a file.
    Helper {
        /// `docker-credential-<name>`.
        program: String,
        /// The file naming it.
        path: PathBuf,
    },
    /// Nothing found: anonymous access.
    Anonymous,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = |k: &FileKind| match k {
            FileKind::Docker => "Docker config",
            FileKind::Containers => "containers auth file",
        };
        match self {
            Source::Registry { how } => write!(f, "[[registry]] settings ({how})"),
            Source::File { path, kind: k } => write!(f, "{} {}", kind(k), path.display()),
            Source::Helper { program, path } => {
                write!(
                    f,
                    "credential helper {program} (named in {})",
                    path.display()
                )
            }
            Source::Anonymous => f.write_str("none: anonymous access"),
        }
    }
}

/// Credentials and where they came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The credentials.
    pub credentials: Credentials,
    /// Their source.
    pub source: Source,
}

/// Whether credential helpers may be run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helpers {
    /// Run a helper when it is the source.
    Run,
    /// Report a helper as the source without running it (validation only).
    Skip,
}

/// The credentials files to consult, in order, from the environment and an
/// explicit Docker config.
pub fn credential_files(explicit_docker: Option<&Path>) -> Vec<CredentialFile> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = env("HOME");
    let mut files = Vec::new();
    let docker = |path: PathBuf, explicit: bool, origin: &'static str| CredentialFile {
        path,
        kind: FileKind::Docker,
        explicit,
        origin,
    };
    if let Some(p) = explicit_docker {
        files.push(docker(
            p.to_path_buf(),
            true,
            "--docker-config / docker_config",
        ));
    } else if let Some(dir) = env("DOCKER_CONFIG") {
        files.push(docker(dir.join("config.json"), false, "$DOCKER_CONFIG"));
    } else if let Some(h) = &home {
        files.push(docker(h.join(".docker/config.json"), false, "~/.docker"));
    }
    let containers = |path: PathBuf, origin: &'static str| CredentialFile {
        path,
        kind: FileKind::Containers,
        explicit: false,
        origin,
    };
    if let Some(p) = env("REGISTRY_AUTH_FILE") {
        files.push(containers(p, "$REGISTRY_AUTH_FILE"));
    } else {
        if let Some(dir) = env("XDG_RUNTIME_DIR") {
            files.push(containers(
                dir.join("containers/auth.json"),
                "$XDG_RUNTIME_DIR",
            ));
        }
        if let Some(h) = &home {
            files.push(containers(
                h.join(".config/containers/auth.json"),
                "~/.config/containers",
            ));
        }
    }
    files
}

/// Resolve `host`'s credentials (see the module docs for the order).
pub fn resolve(
    host: &str,
    cfg: Option<&RegistryConfig>,
    explicit_docker: Option<&Path>,
    helpers: Helpers,
) -> Result<Resolved> {
    if let Some(cfg) = cfg
        && let Some(credentials) = Credentials::from_config(cfg)?
    {
        return Ok(Resolved {
            credentials,
            source: Source::Registry {
                how: registry_keys(cfg),
            },
        });
    }
    let files = credential_files(explicit_docker);
    let mut loaded = Vec::new();
    for file in &files {
        let Some(parsed) = load(host, file)? else {
            continue;
        };
        if let Some(credentials) = parsed.auths_entry(host, &file.path)? {
            return Ok(Resolved {
                credentials,
                source: Source::File {
                    path: file.path.clone(),
                    kind: file.kind,
                },
            });
        }
        loaded.push((file, parsed));
    }
    for (file, parsed) in &loaded {
        let Some(name) = parsed.helper_for(host) else {
            continue;
        };
        let source = Source::Helper {
            program: format!("docker-credential-{name}"),
            path: file.path.clone(),
        };
        if helpers == Helpers::Skip {
            return Ok(Resolved {
                credentials: Credentials::Anonymous,
                source,
            });
        }
        if let Some(credentials) = run_credential_helper(&name, host)? {
            return Ok(Resolved {
                credentials,
                source,
            });
        }
    }
    Ok(Resolved {
        credentials: Credentials::Anonymous,
        source: Source::Anonymous,
    })
}

/// Which `[[registry]]` keys hold the credentials, for messages.
fn registry_keys(cfg: &RegistryConfig) -> String {
    let secret = if cfg.identity_token.is_some() {
        "identity_token".to_string()
    } else if let Some(v) = &cfg.password_env {
        format!("password_env {v}")
    } else if let Some(p) = &cfg.password_file {
        format!("password_file {}", p.display())
    } else {
        "password".to_string()
    };
    match &cfg.username {
        Some(u) => format!("user {u:?}, {secret}"),
        None => secret,
    }
}

/// Read and parse one file; `None` when a default location does not exist.
fn load(host: &str, file: &CredentialFile) -> Result<Option<AuthFile>> {
    let err = |detail: String| Error::Config {
        host: host.to_string(),
        detail,
    };
    let what = match file.kind {
        FileKind::Docker => "Docker config",
        FileKind::Containers => "containers auth file",
    };
    let text = match read_capped(&file.path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !file.explicit => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(err(format!(
                "{what} {} (from {}) does not exist: check the path, or drop the setting to use \
                 the default locations",
                file.path.display(),
                file.origin
            )));
        }
        Err(e) => {
            return Err(err(format!(
                "cannot read {what} {} (from {}): {e}",
                file.path.display(),
                file.origin
            )));
        }
    };
    let parsed = AuthFile::parse(&text).map_err(|e| {
        err(format!(
            "{what} {} (from {}) is not valid JSON: {e}; fix or remove it",
            file.path.display(),
            file.origin
        ))
    })?;
    Ok(Some(parsed))
}

fn read_capped(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let f = std::fs::File::open(path)?;
    let mut text = String::new();
    f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    Ok(text)
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
}
