//! Deleting one tag, never the content other tags share.
//!
//! The OCI distribution spec deletes a tag with `DELETE
//! /v2/<name>/manifests/<tag>`, but many registries cannot: distribution 2.8
//! answers `400 DIGEST_INVALID` and deletes only by digest, which removes
//! every tag on that digest; others delete the whole manifest, whatever
//! tags it has. So the tag is first moved to a placeholder: a tiny manifest
//! made unique by a nonce, which no other tag can point at. Then the
//! placeholder is deleted (by tag where the registry can, else by its
//! digest). Whatever way the registry deletes, only the placeholder goes.
//!
//! Before the tag moves, a probe placeholder (pushed by digest, untagged)
//! is deleted by digest: a registry that refuses deletes (`405`, or no
//! delete permission) is found out while the tag still holds its image,
//! so a refused delete never leaves the tag on a placeholder.
//!
//! A blob is deleted by digest (`DELETE /v2/<name>/blobs/<digest>`) only to
//! replace damaged bytes (`verify --heal`).

use bytes::Bytes;
use reqwest::Method;

use super::auth::Scopes;
use super::client::Client;
use super::digest::Digest;
use super::error::{Error, Op, Result};
use super::manifest::RawManifest;
use super::reference::{Location, Reference};

/// The OCI empty descriptor's content (`{}`), config and layer of a placeholder.
const EMPTY_JSON: &[u8] = b"{}";
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Annotation a placeholder carries, naming the tag it deletes.
pub const ANNOTATION_PLACEHOLDER: &str = "io.github.regmirror.placeholder-for";

/// How a tag was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagDeletion {
    /// The registry deleted the tag by name (after it was moved to a placeholder).
    ByTag,
    /// The registry deletes by digest only: the placeholder's digest was deleted.
    ByPlaceholder,
}

impl Client {
    /// Delete the tag of `r` (a reference with a tag and no digest) and
    /// nothing else: see the module documentation. Costs one blob HEAD (and
    /// a 2-byte upload the first time), two manifest PUTs and two or three
    /// DELETEs.
    pub async fn delete_tag(&self, r: &Reference) -> Result<TagDeletion> {
        let tag = match (r.tag(), r.digest()) {
            (Some(t), None) => t.to_string(),
            _ => {
                return Err(Error::BadResponse {
                    op: Op::DeleteManifest,
                    target: r.to_string(),
                    detail: "only a tag (without a digest) can be deleted".into(),
                });
            }
        };
        let repo = r.repository_only();
        let empty = Digest::sha256_of(EMPTY_JSON);
        if self.head_blob(&repo, &empty).await?.is_none() {
            self.put_blob_bytes(&repo, &empty, Bytes::from_static(EMPTY_JSON))
                .await?;
        }

        // Probe: can this registry delete at all, with these credentials?
        let probe = placeholder(&tag);
        self.put_manifest(&repo, &probe).await?;
        let by_digest = repo.with_digest(probe.digest.clone());
        match self.delete_manifest(&by_digest, &[]).await {
            Ok(_) => {}
            Err(e) => return Err(refused(r, e)),
        }

        // Move the tag to a fresh placeholder, then delete that.
        let stand_in = placeholder(&tag);
        self.put_manifest(r, &stand_in).await?;
        let stranded = |e: Error| Error::BadResponse {
            op: Op::DeleteManifest,
            target: r.to_string(),
            detail: format!(
                "the tag now points at a placeholder manifest ({}) that could not be deleted: \
                 {e}; delete it by hand or run the mirror again",
                stand_in.digest
            ),
        };
        let status = self
            .delete_manifest(r, &[400, 404, 405])
            .await
            .map_err(stranded)?;
        if (200..300).contains(&status) {
            // Registries that delete the tag only leave the placeholder
            // untagged; delete it too (it may already be gone).
            let _ = self
                .delete_manifest(&repo.with_digest(stand_in.digest.clone()), &[404])
                .await;
            return Ok(TagDeletion::ByTag);
        }
        let by_digest = repo.with_digest(stand_in.digest.clone());
        self.delete_manifest(&by_digest, &[])
            .await
            .map_err(stranded)?;
        Ok(TagDeletion::ByPlaceholder)
    }
}

impl Client {
    /// `DELETE` the manifest `r` names by digest: the registry removes the
    /// manifest and, with it, every tag that points at it.
    pub async fn delete_digest(&self, r: &Reference) -> Result<()> {
        if r.digest().is_none() {
            return Err(Error::BadResponse {
                op: Op::DeleteManifest,
                target: r.to_string(),
                detail: "only a manifest named by its digest can be deleted this way".into(),
            });
        }
        self.delete_manifest(r, &[]).await.map(|_| ())
    }
}

impl Client {
    /// `DELETE /v2/<name>/blobs/<digest>`: the registry stops serving blob
    /// `d` in `repo` (a damaged blob, before it is uploaded again). An
    /// error carries the registry's status and words (`405`/`UNSUPPORTED`
    /// when deletes are disabled).
    pub async fn delete_blob(&self, repo: &Reference, d: &Digest) -> Result<()> {
        let Location::Registry(registry) = repo.location() else {
            return Err(Error::BadResponse {
                op: Op::DeleteBlob,
                target: format!("{}@{d}", repo.name()),
                detail: "a blob of an OCI layout is not deleted through the registry API; \
                         remove its file under blobs/ instead"
                    .into(),
            });
        };
        let host = self.host(registry)?;
        let name = repo.repository();
        let url = host.url(name, &["blobs", &d.to_string()]);
        let scopes = Scopes::push(name).with(&format!("repository:{name}:delete"));
        let req = Client::request(
            Op::DeleteBlob,
            format!("{}@{d}", repo.name()),
            name,
            Method::DELETE,
            url,
            scopes,
        );
        host.send(req).await.map(|_| ())
    }
}

/// A refused probe delete, with what the user can do.
fn refused(r: &Reference, e: Error) -> Error {
    let why = match e.status() {
        Some(405) => {
            "the registry does not allow deletes (HTTP 405); enable them (distribution: \
             storage.delete.enabled: true) or set prune = \"off\""
        }
        Some(401 | 403) => "the credentials lack delete permission for this repository",
        _ => "the registry refused a delete",
    };
    Error::BadResponse {
        op: Op::DeleteManifest,
        target: r.to_string(),
        detail: format!("{why}; the tag was left as it was ({e})"),
    }
}

/// A unique, tiny OCI manifest standing in for `tag` while it is deleted.
fn placeholder(tag: &str) -> RawManifest {
    let empty = serde_json::json!({
        "mediaType": EMPTY_MEDIA_TYPE,
        "digest": Digest::sha256_of(EMPTY_JSON).to_string(),
        "size": EMPTY_JSON.len(),
    });
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": empty,
        "layers": [empty],
        "annotations": {
            ANNOTATION_PLACEHOLDER: tag,
            "io.github.regmirror.nonce": format!("{:032x}", rand::random::<u128>()),
        },
    });
    let bytes = serde_json::to_vec(&body).expect("a JSON value serializes");
    RawManifest::new(Bytes::from(bytes), Some(OCI_MANIFEST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_unique_and_name_their_tag() {
        let a = placeholder("1.0");
        let b = placeholder("1.0");
        assert_ne!(a.digest, b.digest);
        assert_eq!(a.media_type, OCI_MANIFEST);
        let v: serde_json::Value = serde_json::from_slice(&a.bytes).unwrap();
        assert_eq!(v["annotations"][ANNOTATION_PLACEHOLDER], "1.0");
        assert_eq!(v["config"]["digest"], v["layers"][0]["digest"]);
        assert!(a.bytes.len() < 1024);
    }
}
