//! Delete: `DELETE /v2/<name>/manifests/<reference>` (see
//! [`crate::registry::delete`] for how a tag is deleted without its content).

use reqwest::Method;

use super::Remote;
use crate::registry::auth::Scopes;
use crate::registry::error::{Op, Result};
use crate::registry::reference::Reference;

impl Remote {
    /// `DELETE /v2/<name>/manifests/<ref>`; the status, which is a success
    /// or one of `pass`.
    pub(crate) async fn delete_manifest(&self, r: &Reference, pass: &'static [u16]) -> Result<u16> {
        let host = self.host(r.registry())?;
        let url = host.url(r.repository(), &["manifests", &r.manifest_reference()]);
        let repo = r.repository();
        let scopes = Scopes::push(repo).with(&format!("repository:{repo}:delete"));
        let mut req = Self::request(
            Op::DeleteManifest,
            r.to_string(),
            repo,
            Method::DELETE,
            url,
            scopes,
        );
        req.pass_statuses = pass;
        let resp = host.send(req).await?;
        Ok(resp.status().as_u16())
    }
}
