//! The walk of an audited image's graph at the target: each manifest read
//! by GET (children are found only by reading their parent), each blob
//! asked for by HEAD, or read and hashed as it streams with `deep`.

use std::collections::HashSet;

use futures_util::StreamExt;

use crate::registry::manifest::{Manifest, is_manifest};
use crate::registry::{Client, Descriptor, Digest, Error, RawManifest, Reference};

use super::finding::{AuditOptions, Checked, Finding, FindingKind};

/// Deepest nesting of indexes followed (as the copy does).
const MAX_DEPTH: usize = 8;

/// One image's audit in progress: what was found and looked at so far.
pub(super) struct Walker<'a> {
    pub(super) client: &'a Client,
    /// The target repository.
    pub(super) repo: Reference,
    pub(super) options: &'a AuditOptions,
    findings: Vec<Finding>,
    pub(super) checked: Checked,
    manifests: HashSet<Digest>,
    blobs: HashSet<Digest>,
}

/// What one blob check found.
struct BlobCheck {
    finding: Option<Finding>,
    hashed: u64,
}

impl<'a> Walker<'a> {
    pub(super) fn new(client: &'a Client, repo: Reference, options: &'a AuditOptions) -> Self {
        Walker {
            client,
            repo,
            options,
            findings: Vec::new(),
            checked: Checked::default(),
            manifests: HashSet::new(),
            blobs: HashSet::new(),
        }
    }

    /// Record a finding.
    pub(super) fn found(&mut self, f: Finding) {
        self.findings.push(f);
    }

    /// True the first time `d` is met as a manifest of this audit.
    pub(super) fn first_visit(&mut self, d: &Digest) -> bool {
        self.manifests.insert(d.clone())
    }

    /// The findings and counts.
    pub(super) fn finish(self) -> (Vec<Finding>, Checked) {
        (self.findings, self.checked)
    }

    /// The manifest `target` names, read by GET; `None` (a finding) when
    /// the target has none.
    pub(super) async fn root(
        &mut self,
        target: &Reference,
        expected: Option<&Digest>,
    ) -> Result<Option<RawManifest>, Error> {
        match self.client.get_manifest(target).await {
            Ok(raw) => Ok(Some(raw)),
            Err(e) if e.is_not_found() => {
                self.found(Finding {
                    kind: FindingKind::MissingManifest,
                    digest: expected.cloned().or_else(|| target.digest().cloned()),
                    tag: target.tag().map(str::to_string),
                    expected: expected.map(ToString::to_string),
                    actual: None,
                    parent: None,
                    detail: format!(
                        "{target} is missing at the target (the registry answered 404)"
                    ),
                });
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Walk the graph under `root` (already read): every child manifest
    /// read, every blob checked. The digests of the manifests present.
    pub(super) async fn graph(&mut self, root: RawManifest) -> Result<Vec<Digest>, Error> {
        let mut present = Vec::new();
        let mut blobs: Vec<(Descriptor, Digest)> = Vec::new();
        self.manifests.insert(root.digest.clone());
        let mut level = vec![root];
        let mut depth = 0;
        while !level.is_empty() && depth <= MAX_DEPTH {
            let mut wanted = Vec::new();
            for raw in level.drain(..) {
                self.checked.manifests += 1;
                present.push(raw.digest.clone());
                match raw.parse() {
                    Ok(Manifest::Index(i)) => wanted.extend(
                        i.manifests
                            .into_iter()
                            .filter(|d| self.manifests.insert(d.digest.clone()))
                            .map(|d| (d, raw.digest.clone())),
                    ),
                    Ok(Manifest::Image(img)) => blobs.extend(
                        std::iter::once(img.config)
                            .chain(img.layers)
                            .filter(|b| !b.is_foreign() && self.blobs.insert(b.digest.clone()))
                            .map(|b| (b, raw.digest.clone())),
                    ),
                    // Not a manifest regmirror walks: nothing below it to check.
                    Err(_) => {}
                }
            }
            depth += 1;
            level = self.children(wanted).await?;
        }
        self.check_blobs(blobs).await?;
        Ok(present)
    }

    /// Read each wanted child at the target; a missing one is a finding.
    async fn children(
        &mut self,
        wanted: Vec<(Descriptor, Digest)>,
    ) -> Result<Vec<RawManifest>, Error> {
        let (client, repo) = (self.client, self.repo.clone());
        let repo = &repo;
        let got: Vec<_> = futures_util::stream::iter(wanted)
            .map(|(d, parent)| async move {
                let r = client
                    .get_manifest(&repo.with_digest(d.digest.clone()))
                    .await;
                (d, parent, r)
            })
            .buffered(self.options.concurrency.max(1))
            .collect()
            .await;
        let mut out = Vec::new();
        for (d, parent, r) in got {
            match r {
                Ok(mut raw) => {
                    if !is_manifest(&raw.media_type) && is_manifest(&d.media_type) {
                        raw.media_type = d.media_type.clone();
                    }
                    out.push(raw);
                }
                Err(e) if e.is_not_found() => self.found(Finding {
                    kind: FindingKind::MissingManifest,
                    detail: format!(
                        "manifest {}@{} ({}), listed by {parent}, is missing",
                        repo.name(),
                        d.digest,
                        d.media_type
                    ),
                    digest: Some(d.digest),
                    tag: None,
                    expected: None,
                    actual: None,
                    parent: Some(parent),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Check blobs, several at once.
    async fn check_blobs(&mut self, blobs: Vec<(Descriptor, Digest)>) -> Result<(), Error> {
        let (client, repo, deep) = (self.client, &self.repo, self.options.deep);
        let results: Vec<Result<BlobCheck, Error>> = futures_util::stream::iter(blobs)
            .map(|(b, parent)| check_blob(client, repo, b, parent, deep))
            .buffered(self.options.concurrency.max(1))
            .collect()
            .await;
        for r in results {
            let c = r?;
            self.checked.blobs += 1;
            self.checked.bytes_hashed += c.hashed;
            if let Some(f) = c.finding {
                self.found(f);
            }
        }
        Ok(())
    }
}

/// One blob: present (HEAD) with the size its manifest lists, and with
/// `deep`, bytes that hash to its digest (streamed, never held whole).
async fn check_blob(
    client: &Client,
    repo: &Reference,
    b: Descriptor,
    parent: Digest,
    deep: bool,
) -> Result<BlobCheck, Error> {
    let at = format!("{}@{}", repo.name(), b.digest);
    let finding = |kind, expected: Option<String>, actual: Option<String>, detail| {
        Some(Finding {
            kind,
            digest: Some(b.digest.clone()),
            tag: None,
            expected,
            actual,
            parent: Some(parent.clone()),
            detail,
        })
    };
    let Some(size) = client.head_blob(repo, &b.digest).await? else {
        let detail = format!(
            "blob {at} ({}, {} bytes), listed by {parent}, is missing",
            b.media_type, b.size
        );
        return Ok(BlobCheck {
            finding: finding(FindingKind::MissingBlob, None, None, detail),
            hashed: 0,
        });
    };
    if size != b.size {
        let detail = format!(
            "blob {at} is {size} bytes at the target; its manifest {parent} lists {} bytes",
            b.size
        );
        return Ok(BlobCheck {
            finding: finding(
                FindingKind::BlobSize,
                Some(b.size.to_string()),
                Some(size.to_string()),
                detail,
            ),
            hashed: 0,
        });
    }
    if !deep {
        return Ok(BlobCheck {
            finding: None,
            hashed: 0,
        });
    }
    let mut stream = client.get_blob(repo, &b.digest).await?.stream;
    let mut verifier = b.digest.verifier();
    while let Some(chunk) = stream.next().await {
        verifier.update(&chunk?);
    }
    let hashed = verifier.len();
    let finding = match verifier.finish() {
        Ok(()) => None,
        Err(actual) => {
            let detail = format!(
                "blob {at}: the target's bytes hash to {actual}, not to the digest they are \
                 stored under (damaged storage)"
            );
            finding(
                FindingKind::BlobDigest,
                Some(b.digest.to_string()),
                Some(actual.to_string()),
                detail,
            )
        }
    };
    Ok(BlobCheck { finding, hashed })
}
