//! The lookup order of a registry's credentials: its `[[registry]]`
//! table, then the Docker and containers auth files, then their credential
//! helpers (see [`super`]).

use std::fmt;
use std::path::{Path, PathBuf};

use super::docker::AuthFile;
use super::helper::run_credential_helper;
use super::kind::Credentials;
use crate::registry::config::{AuthMode, RegistryConfig};
use crate::registry::error::{Error, Result};
use crate::registry::identity::provider_for;

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
    /// A cloud identity provider issues them (`[[registry]] auth`, or
    /// chosen from the host when nothing else has credentials).
    Identity {
        /// `ecr`, `acr`, `gar`.
        provider: &'static str,
        /// Where the identity comes from ([`crate::registry::identity::IdentityProvider::describe`]).
        describe: String,
        /// Named by `auth`; `false`: chosen from the host name.
        explicit: bool,
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
            Source::Identity {
                provider,
                describe,
                explicit,
            } => {
                let how = if *explicit {
                    "auth"
                } else {
                    "chosen from the host name"
                };
                write!(f, "identity provider {provider} ({how}): {describe}")
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

/// Like [`resolve`], with the registry's `auth` mode applied: an
/// identity provider is reported as the source (without asking it for a
/// credential: the credentials are then [`Credentials::Anonymous`]), and
/// `auth = "anonymous"` skips every other source.
pub fn resolve_with_identity(
    host: &str,
    cfg: Option<&RegistryConfig>,
    explicit_docker: Option<&Path>,
    helpers: Helpers,
) -> Result<Resolved> {
    let default_cfg = RegistryConfig {
        host: host.to_string(),
        ..Default::default()
    };
    let cfg = cfg.unwrap_or(&default_cfg);
    let anonymous = Resolved {
        credentials: Credentials::Anonymous,
        source: Source::Anonymous,
    };
    if cfg.auth == Some(AuthMode::Anonymous) {
        return Ok(anonymous);
    }
    let chosen = provider_for(cfg)?;
    let resolved = match &chosen {
        Some(c) if c.explicit => anonymous,
        _ => resolve(host, Some(cfg), explicit_docker, helpers)?,
    };
    match chosen {
        Some(c) if c.explicit || resolved.source == Source::Anonymous => Ok(Resolved {
            credentials: Credentials::Anonymous,
            source: Source::Identity {
                provider: c.provider.name(),
                describe: c.provider.describe(),
                explicit: c.explicit,
            },
        }),
        _ => Ok(resolved),
    }
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
