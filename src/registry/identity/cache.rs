//! The credential of one identity provider, kept between requests: issued
//! on first use, reused until [`RENEW_BEFORE`] its expiry, issued again
//! once after the registry or its token service refused it. A provider
//! guessed from the host that could not issue one is left alone for
//! [`UNAVAILABLE_FOR`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Mutex;

use super::{IdentityProvider, IssuedCredential};
use crate::registry::error::{Error, Op, Result};

/// How long before its stated expiry a credential is replaced: five
/// minutes covers clock skew between this machine and the cloud, and leaves
/// a credential handed to a token exchange or a request still valid when
/// the registry checks it. A credential that lives shorter than twice this
/// is replaced at half its lifetime instead, and none sooner than
/// [`MIN_REUSE`] after it arrived.
pub const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// A credential whose stated expiry is already past on arrival (a clock
/// behind the cloud's, or a service that states none sensibly) is still
/// used this long before it is asked for again, so that a skewed clock
/// never turns every request into a call to the identity service.
pub const MIN_REUSE: Duration = Duration::from_secs(60);

/// How long a provider guessed from the host name (no `auth` key) that
/// could not issue a credential is not asked again: an hour, so that off
/// the cloud the registry is used anonymously without waiting for a
/// metadata service that does not answer (5 s) at every run, and a workload
/// identity set up later is still picked up without a restart.
pub const UNAVAILABLE_FOR: Duration = Duration::from_secs(3600);

/// One provider's current credential.
#[derive(Debug)]
pub struct CachedIdentity {
    provider: Arc<dyn IdentityProvider>,
    current: Mutex<Option<Held>>,
    unavailable_until: std::sync::Mutex<Option<Instant>>,
}

#[derive(Debug)]
struct Held {
    credential: IssuedCredential,
    renew_at: Option<SystemTime>,
}

impl CachedIdentity {
    /// Cache `provider`'s credentials.
    pub fn new(provider: Arc<dyn IdentityProvider>) -> CachedIdentity {
        CachedIdentity {
            provider,
            current: Mutex::new(None),
            unavailable_until: std::sync::Mutex::new(None),
        }
    }

    /// The provider could not issue a credential and is not needed (it was
    /// guessed): leave it alone for [`UNAVAILABLE_FOR`].
    pub fn set_unavailable(&self) {
        *self
            .unavailable_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + UNAVAILABLE_FOR);
    }

    /// Whether [`Self::set_unavailable`] was called less than
    /// [`UNAVAILABLE_FOR`] ago.
    pub fn unavailable(&self) -> bool {
        self.unavailable_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| Instant::now() < until)
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<dyn IdentityProvider> {
        &self.provider
    }

    /// `ecr (web identity token file …)`: the provider and its source.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.provider.name(), self.provider.describe())
    }

    /// The current credential, issuing one when none is held or the held
    /// one is due for renewal. `host` names the registry in errors.
    pub async fn current(&self, host: &str) -> Result<IssuedCredential> {
        let mut held = self.current.lock().await;
        if let Some(h) = held.as_ref()
            && h.renew_at.is_none_or(|at| SystemTime::now() < at)
        {
            return Ok(h.credential.clone());
        }
        let credential = self.provider.issue().await.map_err(|e| Error::Auth {
            op: Op::Token,
            target: host.to_string(),
            detail: format!(
                "the {} identity provider ({}) could not issue a credential for registry \
                 {host}: {}",
                self.provider.name(),
                self.provider.describe(),
                e
            ),
        })?;
        let renew_at = credential.expires_at.map(renew_time);
        *held = Some(Held {
            credential: credential.clone(),
            renew_at,
        });
        Ok(credential)
    }

    /// The registry refused the held credential: forget it, so the next
    /// [`Self::current`] issues a new one.
    pub async fn refused(&self) {
        *self.current.lock().await = None;
    }
}

/// When to replace a credential that expires at `expires_at`.
fn renew_time(expires_at: SystemTime) -> SystemTime {
    let now = SystemTime::now();
    let left = expires_at.duration_since(now).unwrap_or_default();
    let margin = if left >= RENEW_BEFORE * 2 {
        RENEW_BEFORE
    } else {
        left / 2
    };
    let at = expires_at.checked_sub(margin).unwrap_or(now);
    at.max(now + MIN_REUSE.min(RENEW_BEFORE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::config::Secret;
    use futures_util::future::BoxFuture;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct Counting {
        issued: AtomicUsize,
        lifetime: Duration,
    }

    impl IdentityProvider for Counting {
        fn name(&self) -> &'static str {
            "test"
        }
        fn describe(&self) -> String {
            "a counter".into()
        }
        fn issue(&self) -> BoxFuture<'_, Result<IssuedCredential>> {
            Box::pin(async move {
                let n = self.issued.fetch_add(1, Ordering::SeqCst);
                Ok(IssuedCredential {
                    username: "u".into(),
                    password: Secret::new(format!("p{n}")),
                    expires_at: Some(SystemTime::now() + self.lifetime),
                })
            })
        }
    }

    #[tokio::test]
    async fn reused_until_due_and_issued_again_after_a_refusal() {
        let p = Arc::new(Counting {
            issued: AtomicUsize::new(0),
            lifetime: Duration::from_secs(3600),
        });
        let c = CachedIdentity::new(p.clone());
        assert_eq!(c.current("r").await.unwrap().password.expose(), "p0");
        assert_eq!(c.current("r").await.unwrap().password.expose(), "p0");
        c.refused().await;
        assert_eq!(c.current("r").await.unwrap().password.expose(), "p1");
        // Expired on arrival: still reused for a minute.
        let short = CachedIdentity::new(Arc::new(Counting {
            issued: AtomicUsize::new(0),
            lifetime: Duration::ZERO,
        }));
        short.current("r").await.unwrap();
        assert_eq!(short.current("r").await.unwrap().password.expose(), "p0");
    }

    #[test]
    fn renewal_margin() {
        let now = SystemTime::now();
        let at = renew_time(now + Duration::from_secs(12 * 3600));
        assert!(at <= now + Duration::from_secs(12 * 3600) - RENEW_BEFORE);
        let at = renew_time(now + Duration::from_secs(240));
        assert!(at <= now + Duration::from_secs(121) && at >= now + Duration::from_secs(119));
        let at = renew_time(now - Duration::from_secs(3600));
        assert!(at >= now + MIN_REUSE - Duration::from_secs(1));
    }
}
