//! Manifests: `HEAD`, `GET` and `PUT /v2/<name>/manifests/<reference>`.

use std::sync::Arc;

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};

use super::remote::Remote;
use super::{Body, Host, Request};
use crate::registry::auth::Scopes;
use crate::registry::digest::Digest;
use crate::registry::error::{Error, Op, Result};
use crate::registry::manifest::{MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, RawManifest};
use crate::registry::reference::Reference;
use crate::registry::transport::{ManifestHead, ManifestPut};

impl Remote {
    fn manifest_request(
        &self,
        r: &Reference,
        op: Op,
        method: Method,
    ) -> Result<(Arc<Host>, Request)> {
        let host = self.host(r.registry())?;
        let url = host.url(r.repository(), &["manifests", &r.manifest_reference()]);
        let scopes = if method == Method::PUT {
            Scopes::push(r.repository())
        } else {
            Scopes::pull(r.repository())
        };
        let mut req = Self::request(op, r.to_string(), r.repository(), method, url, scopes);
        req.headers
            .insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        Ok((host, req))
    }

    /// HEAD a manifest; `None` when it does not exist.
    pub(crate) async fn head_manifest(&self, r: &Reference) -> Result<Option<ManifestHead>> {
        let (host, mut req) = self.manifest_request(r, Op::HeadManifest, Method::HEAD)?;
        req.pass_statuses = &[404];
        let resp = host.send(req).await?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        crate::registry::ping::reject_html(Op::HeadManifest, &r.to_string(), resp.headers())?;
        let h = resp.headers();
        Ok(Some(ManifestHead {
            digest: h
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            media_type: h
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or(v).trim().to_string()),
            size: h
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
        }))
    }

    /// GET a manifest's raw bytes; verified when `r` has a digest, and
    /// checked against `Docker-Content-Digest` when the registry sends one.
    pub(crate) async fn get_manifest(&self, r: &Reference) -> Result<RawManifest> {
        let host = self.host(r.registry())?;
        let target = r.to_string();
        let (headers, bytes) = self
            .get_with_body(
                &host,
                || Ok(self.manifest_request(r, Op::GetManifest, Method::GET)?.1),
                MAX_MANIFEST_BYTES,
                Op::GetManifest,
                &target,
                "manifest",
            )
            .await?;
        host.bandwidth.take(bytes.len()).await;
        crate::registry::ping::reject_html(Op::GetManifest, &target, &headers)?;
        let header_digest: Option<Digest> = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut raw = RawManifest::new(bytes, content_type.as_deref());
        if crate::registry::schema1::is_schema1(&raw.media_type) {
            return Err(Error::Schema1 {
                op: Op::GetManifest,
                target,
                media_type: raw.media_type,
                manifest: raw.bytes,
                expected: r.digest().cloned().or(header_digest),
            });
        }
        let expected = r.digest().cloned().or(header_digest);
        if let Some(expected) = expected {
            let actual = expected.of_same_algorithm(&raw.bytes);
            if actual != expected {
                return Err(Error::DigestMismatch {
                    op: Op::GetManifest,
                    target,
                    expected,
                    actual,
                });
            }
            raw.digest = expected;
        }
        Ok(raw)
    }

    /// PUT a manifest's raw bytes under `r`'s tag, or its digest when `r` has
    /// no tag. Returns the digest the registry reports (an error if it reports
    /// another digest than that of the bytes sent) and the subject its
    /// `OCI-Subject` header confirms.
    pub(crate) async fn put_manifest(&self, r: &Reference, m: &RawManifest) -> Result<ManifestPut> {
        let r = match r.tag() {
            Some(_) => r.without_digest(),
            None => r.with_digest(m.digest.clone()),
        };
        let (host, mut req) = self.manifest_request(&r, Op::PutManifest, Method::PUT)?;
        req.headers.remove(ACCEPT);
        req.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&m.media_type).map_err(|_| Error::BadResponse {
                op: Op::PutManifest,
                target: r.to_string(),
                detail: format!("media type {:?} cannot be sent as a header", m.media_type),
            })?,
        );
        req.body = Body::Bytes(m.bytes.clone());
        host.bandwidth.take(m.bytes.len()).await;
        let resp = host.send(req).await?;
        let subject = resp
            .headers()
            .get("oci-subject")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<Digest>().ok());
        let reported: Option<Digest> = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let digest = match reported {
            Some(d) if d.algorithm() == m.digest.algorithm() && d == m.digest => Ok(d),
            Some(d) if d.algorithm() == m.digest.algorithm() => Err(Error::ManifestRewritten {
                op: Op::PutManifest,
                target: r.to_string(),
                sent: m.digest.clone(),
                stored: d,
            }),
            // No usable digest header (missing, malformed, another
            // algorithm): ask the registry whether it serves our bytes.
            _ => self.confirm_manifest(&r, &m.digest).await,
        }?;
        Ok(ManifestPut { digest, subject })
    }

    /// After a PUT without a usable `Docker-Content-Digest`: a HEAD by
    /// digest must find the manifest under the digest of the bytes sent.
    async fn confirm_manifest(&self, r: &Reference, digest: &Digest) -> Result<Digest> {
        let by_digest = r.repository_only().with_digest(digest.clone());
        match self.head_manifest(&by_digest).await? {
            Some(head) if head.digest.as_ref().is_none_or(|d| d == digest) => Ok(digest.clone()),
            Some(head) => Err(Error::ManifestRewritten {
                op: Op::PutManifest,
                target: r.to_string(),
                sent: digest.clone(),
                stored: head.digest.unwrap_or_else(|| digest.clone()),
            }),
            None => Err(Error::BadResponse {
                op: Op::PutManifest,
                target: r.to_string(),
                detail: format!(
                    "the registry accepted the manifest without confirming its digest, and it does \
                     not serve {digest}: it may have rewritten the manifest, and the tag may have \
                     moved to content that is not the source's"
                ),
            }),
        }
    }
}
