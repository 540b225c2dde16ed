//! The credentials a host uses now. Static ones (the `[[registry]]` keys,
//! auth files, helpers) are read again at every run ([`LiveCredentials::renew`])
//! and after the registry refused them; a cloud identity provider's are
//! kept in its [`CachedIdentity`] until shortly before they expire.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::kind::Credentials;
use super::lookup::{Helpers, Resolved, Source, resolve};
use crate::registry::config::{AuthMode, RegistryConfig};
use crate::registry::error::Result;
use crate::registry::identity::cache::CachedIdentity;
use crate::registry::identity::{RepositorySettings, provider_for};

/// The live credentials of one registry host.
pub(crate) struct LiveCredentials {
    host: String,
    cfg: RegistryConfig,
    docker_config: Option<PathBuf>,
    identity: Option<Identity>,
    /// Static credentials as last read.
    fixed: Mutex<Option<Resolved>>,
    /// Read the static credentials again at next use.
    stale: AtomicBool,
    /// Repositories this run tried to create, and those created.
    creating: Mutex<(HashSet<String>, Vec<String>)>,
}

struct Identity {
    cache: CachedIdentity,
    /// Named by `auth`: its failures are errors.
    explicit: bool,
    /// Guessed from the host and found unusable this run: anonymous.
    unavailable: AtomicBool,
}

impl LiveCredentials {
    /// The credentials of `host`, checked now (files readable, helpers
    /// answering, provider known) so that bad settings fail at start.
    pub(crate) fn new(
        host: &str,
        cfg: &RegistryConfig,
        docker_config: Option<&std::path::Path>,
    ) -> Result<LiveCredentials> {
        let identity = provider_for(cfg)?.map(|c| Identity {
            cache: CachedIdentity::new(c.provider),
            explicit: c.explicit,
            unavailable: AtomicBool::new(false),
        });
        let live = LiveCredentials {
            host: host.to_string(),
            cfg: cfg.clone(),
            docker_config: docker_config.map(|p| p.to_path_buf()),
            identity,
            fixed: Mutex::new(None),
            stale: AtomicBool::new(false),
            creating: Mutex::new(Default::default()),
        };
        if live.reads_static() {
            let resolved = live.read_static()?;
            *live.fixed.lock().unwrap_or_else(|p| p.into_inner()) = Some(resolved);
        }
        Ok(live)
    }

    /// Whether static credentials are consulted at all.
    fn reads_static(&self) -> bool {
        self.cfg.auth != Some(AuthMode::Anonymous)
            && !self.identity.as_ref().is_some_and(|i| i.explicit)
    }

    fn read_static(&self) -> Result<Resolved> {
        resolve(
            &self.host,
            Some(&self.cfg),
            self.docker_config.as_deref(),
            Helpers::Run,
        )
    }

    /// The static credentials, read again when due.
    fn fixed(&self) -> Result<Resolved> {
        let mut fixed = self.fixed.lock().unwrap_or_else(|p| p.into_inner());
        if !self.stale.swap(false, Ordering::Relaxed)
            && let Some(r) = fixed.as_ref()
        {
            return Ok(r.clone());
        }
        let r = self
            .read_static()
            .inspect_err(|_| self.stale.store(true, Ordering::Relaxed))?;
        *fixed = Some(r.clone());
        Ok(r)
    }

    /// The static credentials known now, without reading anything
    /// (anonymous when an identity provider issues them).
    pub(crate) fn snapshot(&self) -> Credentials {
        self.fixed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.credentials.clone())
            .unwrap_or_default()
    }

    /// The identity provider that issues the credentials now, if one does.
    fn identity_in_use(&self, fixed: Option<&Resolved>) -> Option<&Identity> {
        self.identity.as_ref().filter(|id| {
            id.explicit
                || (!id.unavailable.load(Ordering::Relaxed)
                    && fixed.is_some_and(|f| f.source == Source::Anonymous))
        })
    }

    /// The credentials to present now.
    pub(crate) async fn current(&self) -> Result<Credentials> {
        let fixed = if self.reads_static() {
            Some(self.fixed()?)
        } else {
            None
        };
        if let Some(id) = self.identity_in_use(fixed.as_ref()) {
            match id.cache.current(&self.host).await {
                Ok(c) => {
                    return Ok(Credentials::Basic {
                        username: c.username,
                        password: c.password,
                    });
                }
                Err(e) if id.explicit => return Err(e),
                Err(e) => {
                    id.unavailable.store(true, Ordering::Relaxed);
                    tracing::warn!(registry = %self.host, error = %e, "no cloud identity for this registry: using it anonymously (set auth = \"anonymous\" or \"basic\" to choose)");
                }
            }
        }
        Ok(fixed.map(|f| f.credentials).unwrap_or_default())
    }

    /// A new run begins: read static credentials again at next use (a
    /// rotated Secret, a new `docker login`), and try a guessed identity
    /// provider again.
    pub(crate) fn renew(&self) {
        self.stale.store(true, Ordering::Relaxed);
        self.creating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clear();
        if let Some(id) = &self.identity {
            id.unavailable.store(false, Ordering::Relaxed);
        }
    }

    /// The registry or its token service refused the credentials: an
    /// identity provider's are issued again at next use; static ones are
    /// read again now. `true` when trying again may help (a new credential,
    /// or one that could not be read, which the next use reports).
    pub(crate) async fn refused(&self) -> bool {
        let before = self.snapshot_resolved();
        if let Some(id) = self.identity_in_use(before.as_ref()) {
            id.cache.refused().await;
            return true;
        }
        if !self.reads_static() {
            return false;
        }
        self.stale.store(true, Ordering::Relaxed);
        match (self.fixed(), before) {
            (Ok(now), Some(before)) => !same(&now.credentials, &before.credentials),
            _ => true,
        }
    }

    /// Create `repo` through the identity provider's cloud API, when
    /// `create_repositories = true`, once per run. `Ok(true)`: it exists now
    /// and pushing again may work.
    pub(crate) async fn create_repository(&self, repo: &str) -> Result<bool> {
        if self.cfg.create_repositories != Some(true) {
            return Ok(false);
        }
        let Some(creator) = self
            .identity
            .as_ref()
            .and_then(|id| id.cache.provider().repositories())
        else {
            return Err(crate::registry::error::Error::Config {
                host: self.host.clone(),
                detail: "create_repositories = true needs a provider that can create \
                         repositories (auth = \"ecr\")"
                    .into(),
            });
        };
        let first = self
            .creating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .insert(repo.to_string());
        if !first {
            return Ok(false);
        }
        let settings = RepositorySettings::of(&self.cfg);
        let created = creator.create_repository(repo, &settings).await?;
        if created {
            tracing::info!(registry = %self.host, repository = %repo, "repository created");
            self.creating
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .push(repo.to_string());
        }
        Ok(true)
    }

    /// Repositories created since the last call (`host/repo`).
    pub(crate) fn take_created(&self) -> Vec<String> {
        let mut c = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut c.1)
            .into_iter()
            .map(|r| format!("{}/{r}", self.host))
            .collect()
    }

    /// Where the credentials come from, for messages; never a secret.
    pub(crate) fn source(&self) -> String {
        if let Some(id) = &self.identity
            && (id.explicit || self.snapshot_source() == Some(Source::Anonymous))
            && !id.unavailable.load(Ordering::Relaxed)
        {
            return format!("identity provider {}", id.cache.describe());
        }
        match self.snapshot_source() {
            Some(s) => s.to_string(),
            None if self.cfg.auth == Some(AuthMode::Anonymous) => {
                "none: auth = \"anonymous\"".into()
            }
            None => "not read yet".into(),
        }
    }

    fn snapshot_source(&self) -> Option<Source> {
        self.snapshot_resolved().map(|r| r.source)
    }

    fn snapshot_resolved(&self) -> Option<Resolved> {
        self.fixed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Whether two credentials are the same.
fn same(a: &Credentials, b: &Credentials) -> bool {
    match (a, b) {
        (Credentials::Anonymous, Credentials::Anonymous) => true,
        (
            Credentials::Basic { username, password },
            Credentials::Basic {
                username: u,
                password: p,
            },
        ) => username == u && password == p,
        (
            Credentials::IdentityToken { username, token },
            Credentials::IdentityToken {
                username: u,
                token: t,
            },
        ) => username == u && token == t,
        _ => false,
    }
}

impl std::fmt::Debug for LiveCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source())
    }
}
