//! Cancelling abandoned upload sessions: a session that will not be
//! finished (a refused or failed monolithic `PUT`, whose blob is sent again
//! in a new session; an upload given up; a transfer whose future is dropped
//! by cancellation or shutdown) is deleted with `DELETE` on its URL, best
//! effort, so sessions do not pile up on the target until its garbage
//! collection. The `DELETE` is bounded by [`CANCEL_TIMEOUT`] and its failure
//! is only logged.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use url::Url;

use super::Host;
use super::remote::Remote;
use crate::registry::auth::Scopes;
use crate::registry::error::Op;

/// Longest a best-effort `DELETE` of a session is waited for.
pub(super) const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// An open upload session that is deleted unless disarmed: awaited with
/// [`SessionGuard::cancel`], or, when dropped armed (the upload's future
/// was dropped), from a task spawned on the current runtime.
pub(super) struct SessionGuard {
    host: Arc<Host>,
    repo: String,
    target: String,
    url: Option<Url>,
}

impl SessionGuard {
    pub fn new(host: Arc<Host>, repo: &str, target: &str, url: Url) -> SessionGuard {
        SessionGuard {
            host,
            repo: repo.to_string(),
            target: target.to_string(),
            url: Some(url),
        }
    }

    /// The session was committed, or is cancelled elsewhere.
    pub fn disarm(&mut self) {
        self.url = None;
    }

    /// Deletes the session now (best effort, bounded).
    pub async fn cancel(mut self) {
        if let Some(url) = self.url.take() {
            let (host, repo, target) = (self.host.clone(), self.repo.clone(), self.target.clone());
            delete(host, repo, target, url).await;
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let Some(url) = self.url.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (host, repo, target) = (self.host.clone(), self.repo.clone(), self.target.clone());
        runtime.spawn(delete(host, repo, target, url));
    }
}

async fn delete(host: Arc<Host>, repo: String, target: String, url: Url) {
    let scopes = Scopes::push(&repo);
    let mut req = Remote::request(
        Op::PutBlob,
        target.clone(),
        &repo,
        Method::DELETE,
        url,
        scopes,
    );
    req.pass_statuses = &[400, 404, 405, 409];
    match tokio::time::timeout(CANCEL_TIMEOUT, host.send(req)).await {
        Ok(Ok(resp)) => {
            tracing::debug!(target_ref = %target, status = resp.status().as_u16(), "upload session cancelled");
        }
        Ok(Err(e)) => {
            tracing::debug!(target_ref = %target, error = %e, "cancelling the upload session failed");
        }
        Err(_) => {
            tracing::debug!(target_ref = %target, "cancelling the upload session took too long; left to the registry");
        }
    }
}
