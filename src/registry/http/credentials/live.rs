//! The credentials a host uses now. Static ones (the `[[registry]]` keys,
//! auth files, helpers) are read again at every run ([`LiveCredentials::renew`])
//! and after the registry refused them, on a blocking thread (a credential
//! helper is a process); a cloud identity provider's are kept in its
//! [`CachedIdentity`] until shortly before they expire.
//!
//! `create_repositories`: what a push needs is created through the cloud
//! provider's API (ECR repositories after `NAME_UNKNOWN`, Artifact Registry
//! repositories before the first push) or, for a registry without a cloud
//! identity, as a Harbor project before the first push; each at most once
//! per run.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::kind::Credentials;
use super::lookup::{Helpers, Resolved, Source, resolve};
use crate::registry::config::{AuthMode, RegistryConfig, Secret};
use crate::registry::error::{Error, Op, Result};
use crate::registry::identity::cache::CachedIdentity;
use crate::registry::identity::harbor::{HarborProjects, project_of};
use crate::registry::identity::{Chosen, RepositoryCreator, RepositorySettings, provider_for};

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
    /// Harbor's project API, for `create_repositories` without a cloud identity.
    harbor: Option<HarborProjects>,
    /// What this run tried to create, and what it created.
    creating: Mutex<(HashSet<String>, Vec<String>)>,
    /// One creation at a time, so that a second push into the same
    /// repository waits for the first one's creation.
    create_turn: tokio::sync::Mutex<()>,
}

struct Identity {
    cache: CachedIdentity,
    /// Named by `auth`: its failures are errors.
    explicit: bool,
}

/// The API that creates what a push needs.
enum Api<'a> {
    Cloud(&'a dyn RepositoryCreator),
    Harbor(&'a HarborProjects),
}

impl LiveCredentials {
    /// The credentials of `host`, checked now (files readable, helpers
    /// answering, provider known) so that bad settings fail at start.
    pub(crate) fn new(
        host: &str,
        cfg: &RegistryConfig,
        docker_config: Option<&std::path::Path>,
    ) -> Result<LiveCredentials> {
        LiveCredentials::with_identity(host, cfg, docker_config, provider_for(cfg)?)
    }

    /// [`Self::new`] with the identity provider `chosen`.
    fn with_identity(
        host: &str,
        cfg: &RegistryConfig,
        docker_config: Option<&std::path::Path>,
        chosen: Option<Chosen>,
    ) -> Result<LiveCredentials> {
        let identity = chosen.map(|c| Identity {
            cache: CachedIdentity::new(c.provider),
            explicit: c.explicit,
        });
        let harbor = match (&identity, cfg.create_repositories) {
            (None, Some(true)) => Some(HarborProjects::new(cfg)?),
            _ => None,
        };
        let live = LiveCredentials {
            host: host.to_string(),
            cfg: cfg.clone(),
            docker_config: docker_config.map(|p| p.to_path_buf()),
            identity,
            fixed: Mutex::new(None),
            stale: AtomicBool::new(false),
            harbor,
            creating: Mutex::new(Default::default()),
            create_turn: tokio::sync::Mutex::new(()),
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

    /// The static credentials, read again when due: on a blocking thread
    /// (files, a credential helper process), with no lock held meanwhile.
    /// Requests that arrive while one reads use the credentials read last.
    async fn fixed(&self) -> Result<Resolved> {
        if !self.stale.swap(false, Ordering::Relaxed)
            && let Some(r) = self.snapshot_resolved()
        {
            return Ok(r);
        }
        let (host, cfg, docker) = (
            self.host.clone(),
            self.cfg.clone(),
            self.docker_config.clone(),
        );
        let read = tokio::task::spawn_blocking(move || {
            resolve(&host, Some(&cfg), docker.as_deref(), Helpers::Run)
        })
        .await
        .unwrap_or_else(|e| {
            Err(Error::Auth {
                op: Op::Token,
                target: self.host.clone(),
                detail: format!("reading the credentials of {} stopped: {e}", self.host),
            })
        });
        let r = read.inspect_err(|_| self.stale.store(true, Ordering::Relaxed))?;
        *self.fixed.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
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
                || (!id.cache.unavailable() && fixed.is_some_and(|f| f.source == Source::Anonymous))
        })
    }

    /// The credentials to present now.
    pub(crate) async fn current(&self) -> Result<Credentials> {
        let fixed = if self.reads_static() {
            Some(self.fixed().await?)
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
                    id.cache.set_unavailable();
                    tracing::warn!(registry = %self.host, error = %e, retry_after_seconds = crate::registry::identity::cache::UNAVAILABLE_FOR.as_secs(), "no cloud identity for this registry: using it anonymously (set auth = \"anonymous\" or \"basic\" to choose)");
                }
            }
        }
        Ok(fixed.map(|f| f.credentials).unwrap_or_default())
    }

    /// A new run begins: read static credentials again at next use (a
    /// rotated Secret, a new `docker login`). A guessed identity provider
    /// found unusable is tried again once its [`UNAVAILABLE_FOR`] is over,
    /// not at every run (off Azure, the metadata service takes 5 s to fail).
    ///
    /// [`UNAVAILABLE_FOR`]: crate::registry::identity::cache::UNAVAILABLE_FOR
    pub(crate) fn renew(&self) {
        self.stale.store(true, Ordering::Relaxed);
        self.creating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clear();
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
        match (self.fixed().await, before) {
            (Ok(now), Some(before)) => !same(&now.credentials, &before.credentials),
            _ => true,
        }
    }

    /// Create what a push into `repo` needs, when `create_repositories =
    /// true`, at most once per run: `before_push` says which moment this is
    /// (before the first push, or after a push met `NAME_UNKNOWN`); each API
    /// acts at its own. `Ok(true)`: it exists now and pushing again may work.
    pub(crate) async fn create_repository(&self, repo: &str, before_push: bool) -> Result<bool> {
        if self.cfg.create_repositories != Some(true) {
            return Ok(false);
        }
        let api = self.repository_api()?;
        let ahead = match api {
            Api::Cloud(c) => c.before_push(),
            Api::Harbor(_) => true,
        };
        if ahead != before_push {
            return Ok(false);
        }
        let unit = match api {
            Api::Cloud(c) => c.unit_of(repo)?,
            Api::Harbor(_) => project_of(repo).map(str::to_string).ok_or_else(|| Error::Config {
                host: self.host.clone(),
                detail: format!(
                    "{repo} names no Harbor project: Harbor keeps every repository in a project \
                     ({}/PROJECT/{repo})",
                    self.host
                ),
            })?,
        };
        let _turn = self.create_turn.lock().await;
        let first = self
            .creating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .insert(unit.clone());
        if !first {
            return Ok(false);
        }
        let created = match api {
            Api::Cloud(c) => {
                c.create_repository(&unit, &RepositorySettings::of(&self.cfg))
                    .await?
            }
            Api::Harbor(h) => {
                let creds = self.fixed().await?.credentials;
                let user = match &creds {
                    Credentials::Basic { username, password } => {
                        Some((username.as_str(), password))
                    }
                    _ => None::<(&str, &Secret)>,
                };
                h.ensure(&unit, user).await?
            }
        };
        if created {
            tracing::info!(registry = %self.host, repository = %unit, "repository created");
            self.creating
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .push(unit);
        }
        Ok(true)
    }

    /// The API that creates repositories in this registry.
    fn repository_api(&self) -> Result<Api<'_>> {
        if let Some(h) = &self.harbor {
            return Ok(Api::Harbor(h));
        }
        let provider = self.identity.as_ref().map(|id| id.cache.provider());
        match provider {
            Some(p) => p
                .repositories()
                .map(Api::Cloud)
                .ok_or_else(|| Error::Config {
                    host: self.host.clone(),
                    detail: format!(
                        "create_repositories = true: the {} provider creates no repositories{}; \
                         remove create_repositories from this [[registry]] table",
                        p.name(),
                        if p.name() == "acr" {
                            " (ACR creates a repository at its first push)"
                        } else {
                            ""
                        }
                    ),
                }),
            None => Err(Error::Config {
                host: self.host.clone(),
                detail: "create_repositories = true has no API to create repositories with".into(),
            }),
        }
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
            && !id.cache.unavailable()
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use futures_util::future::BoxFuture;

    use super::*;
    use crate::registry::identity::{IdentityProvider, IssuedCredential};

    /// A provider that never issues (a metadata service off the cloud).
    #[derive(Debug, Default)]
    struct Absent {
        asked: AtomicUsize,
    }

    impl IdentityProvider for Absent {
        fn name(&self) -> &'static str {
            "acr"
        }
        fn describe(&self) -> String {
            "no managed identity here".into()
        }
        fn issue(&self) -> BoxFuture<'_, Result<IssuedCredential>> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {
                Err(Error::Connection {
                    op: Op::Token,
                    target: "myreg.azurecr.io".into(),
                    detail: "managed identity endpoint: connection timed out".into(),
                })
            })
        }
    }

    /// A guessed identity that could not issue is not asked again at the
    /// next runs (within `UNAVAILABLE_FOR`): the registry is used
    /// anonymously without a new probe; one named by `auth` is asked every time.
    #[tokio::test]
    async fn a_guessed_identity_found_absent_is_remembered_across_runs() {
        let cfg = RegistryConfig {
            host: "myreg.azurecr.io".into(),
            ..Default::default()
        };
        let absent = Arc::new(Absent::default());
        let chosen = Chosen {
            provider: absent.clone(),
            explicit: false,
        };
        let live = LiveCredentials::with_identity(&cfg.host, &cfg, None, Some(chosen)).unwrap();
        for _run in 0..3 {
            live.renew();
            let c = live.current().await.unwrap();
            assert!(matches!(c, Credentials::Anonymous), "{c:?}");
        }
        assert_eq!(absent.asked.load(Ordering::SeqCst), 1);
        assert!(
            !live.source().contains("identity provider"),
            "{}",
            live.source()
        );

        let explicit = Arc::new(Absent::default());
        let cfg = RegistryConfig {
            auth: Some(AuthMode::Acr),
            ..cfg
        };
        let chosen = Chosen {
            provider: explicit.clone(),
            explicit: true,
        };
        let live = LiveCredentials::with_identity(&cfg.host, &cfg, None, Some(chosen)).unwrap();
        for _run in 0..2 {
            live.renew();
            let e = live.current().await.unwrap_err().to_string();
            assert!(e.contains("connection timed out"), "{e}");
        }
        assert_eq!(explicit.asked.load(Ordering::SeqCst), 2);
    }

    /// `create_repositories` with a provider that has nothing to create
    /// (`acr`: ACR creates a repository at its first push) is an error
    /// that says so, before any push.
    #[tokio::test]
    async fn create_repositories_with_acr_is_an_error() {
        let cfg = RegistryConfig {
            host: "myreg.azurecr.io".into(),
            auth: Some(AuthMode::Acr),
            create_repositories: Some(true),
            ..Default::default()
        };
        let chosen = Chosen {
            provider: Arc::new(Absent::default()),
            explicit: true,
        };
        let live = LiveCredentials::with_identity(&cfg.host, &cfg, None, Some(chosen)).unwrap();
        let e = live
            .create_repository("team/app", true)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the acr provider creates no repositories (ACR creates"),
            "{e}"
        );
    }
}
