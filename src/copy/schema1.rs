//! Copying a Docker schema 1 source as schema 2 (`convert_schema1 = true`,
//! `import --convert-schema1`), as skopeo does: the manifest is read and
//! its payload checked against the digest it was served under, each kept
//! layer is streamed once from the source to learn its size and the digest
//! of its uncompressed tar (its `diff_id`: gzip is decompressed on the fly,
//! so memory stays bounded whatever the layer's size), then a config and a
//! schema 2 manifest are built (see [`crate::registry::schema1`]). The plan
//! then copies the layers as for any image; the config, which exists only
//! here, is uploaded to the target first. The new image has a new digest,
//! reported with the schema 1 digest it was converted from; a signed
//! manifest's signature is dropped (it cannot cover other bytes).

use std::collections::HashMap;
use std::io::{self, Write};

use bytes::Bytes;
use flate2::write::MultiGzDecoder;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use sha2::{Digest as _, Sha256};

use super::{Copier, CopyError};
use crate::registry::schema1::{self, Layer, Schema1};
use crate::registry::{Digest, Error, Op, RawManifest, Reference};

/// What converting a schema 1 image produced, besides its manifest.
#[derive(Debug, Clone)]
pub struct Converted {
    /// Digest of the schema 1 manifest (of its payload, as registries name it).
    pub from: Digest,
    /// The config blob, uploaded to the target before the layers.
    pub config: Bytes,
    /// Its digest.
    pub config_digest: Digest,
}

/// Layers whose `diff_id` is computed at once.
const LAYERS_AT_ONCE: usize = 4;

impl Copier {
    /// The schema 2 manifest of the schema 1 image that `e` (a
    /// [`Error::Schema1`] of fetching `source`) carries, and the config it
    /// lists.
    pub(super) async fn convert_schema1(
        &self,
        source: &Reference,
        e: &Error,
    ) -> Result<(RawManifest, Converted), CopyError> {
        let image = source.to_string();
        let invalid = |detail: String| CopyError::Invalid {
            image: image.clone(),
            detail: format!(
                "its Docker schema 1 manifest cannot be converted to schema 2: {detail}; push \
                 the image again in a current format"
            ),
        };
        let Error::Schema1 {
            manifest, expected, ..
        } = e
        else {
            return Err(invalid("no schema 1 manifest was read".to_string()));
        };
        let payload = schema1::payload(manifest).map_err(invalid)?;
        let from = match expected {
            Some(want) => {
                let actual = want.of_same_algorithm(&payload);
                if actual != *want {
                    return Err(CopyError::Registry(Error::DigestMismatch {
                        op: Op::GetManifest,
                        target: image,
                        expected: want.clone(),
                        actual,
                    }));
                }
                want.clone()
            }
            None => Digest::sha256_of(&payload),
        };
        let parsed = Schema1::parse(manifest).map_err(invalid)?;
        let layers = self.unpacked_layers(source, &parsed.layers).await?;
        let diff_ids: Vec<Digest> = layers.iter().map(|(d, _)| d.clone()).collect();
        let layers: Vec<Layer> = layers.into_iter().map(|(_, l)| l).collect();
        let config = Bytes::from(parsed.config(&diff_ids));
        let bytes = Bytes::from(schema1::schema2_manifest(&config, &layers));
        tracing::info!(source = %image, schema1_digest = %from, layers = layers.len(),
            "Docker schema 1 image converted to schema 2");
        Ok((
            RawManifest::new(bytes, Some(schema1::SCHEMA2)),
            Converted {
                from,
                config_digest: Digest::sha256_of(&config),
                config,
            },
        ))
    }

    /// Each layer's `diff_id` and description, base first; a layer listed
    /// twice is read once.
    async fn unpacked_layers(
        &self,
        source: &Reference,
        layers: &[Digest],
    ) -> Result<Vec<(Digest, Layer)>, CopyError> {
        let repo = source.repository_only();
        let mut unique: Vec<&Digest> = Vec::new();
        for d in layers {
            if !unique.contains(&d) {
                unique.push(d);
            }
        }
        // Boxed so that the futures are `Send` for any caller (see
        // `Copier::execute_blobs`).
        let jobs: Vec<BoxFuture<'_, Result<(Digest, Layer), CopyError>>> = unique
            .into_iter()
            .map(|d| self.unpacked_layer(&repo, d).boxed())
            .collect();
        let read: Vec<(Digest, Layer)> = futures_util::stream::iter(jobs)
            .buffered(LAYERS_AT_ONCE)
            .try_collect()
            .await?;
        let by_digest: HashMap<&Digest, &(Digest, Layer)> =
            read.iter().map(|r| (&r.1.digest, r)).collect();
        Ok(layers
            .iter()
            .filter_map(|d| by_digest.get(d).map(|r| (*r).clone()))
            .collect())
    }

    /// Stream layer `d` of `repo`: its bytes checked against `d`, its
    /// uncompressed bytes hashed.
    async fn unpacked_layer(
        &self,
        repo: &Reference,
        d: &Digest,
    ) -> Result<(Digest, Layer), CopyError> {
        let target = format!("{}@{d}", repo.name());
        let mut reader = self.client.get_blob(repo, d).await?;
        let mut verifier = d.verifier();
        let mut unpack = Unpack::default();
        let unreadable = |e: io::Error| CopyError::Invalid {
            image: target.clone(),
            detail: format!(
                "layer {d} of the Docker schema 1 image is not a readable gzip stream ({e}), \
                 so its uncompressed digest cannot be computed for the schema 2 config"
            ),
        };
        while let Some(chunk) = reader.stream.next().await {
            let chunk = chunk?;
            verifier.update(&chunk);
            unpack.write(&chunk).map_err(unreadable)?;
        }
        let size = verifier.len();
        verifier.finish().map_err(|actual| {
            CopyError::Registry(Error::DigestMismatch {
                op: Op::GetBlob,
                target: target.clone(),
                expected: d.clone(),
                actual,
            })
        })?;
        let (diff_id, gzip) = unpack.finish().map_err(unreadable)?;
        Ok((
            diff_id,
            Layer {
                digest: d.clone(),
                size,
                gzip,
            },
        ))
    }
}

/// SHA-256 of what is written to it.
#[derive(Default)]
struct Hashing(Sha256);

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Hashing {
    fn digest(self) -> Digest {
        Digest::sha256_of_hash(&self.0.finalize())
    }
}

/// How a layer's bytes are read: gzip (told by its first two bytes,
/// 1f 8b), decompressed as it streams; anything else as a plain tar.
enum State {
    Gzip(Box<MultiGzDecoder<Hashing>>),
    Plain(Hashing),
}

/// Hashes a layer's uncompressed bytes as they stream.
#[derive(Default)]
struct Unpack {
    /// The first bytes, until there are two to tell gzip by.
    head: Vec<u8>,
    state: Option<State>,
}

impl Unpack {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.state.is_some() {
            return self.feed(data);
        }
        self.head.extend_from_slice(data);
        if self.head.len() < 2 {
            return Ok(());
        }
        self.start();
        let head = std::mem::take(&mut self.head);
        self.feed(&head)
    }

    fn start(&mut self) {
        self.state = Some(if self.head.starts_with(&[0x1f, 0x8b]) {
            State::Gzip(Box::new(MultiGzDecoder::new(Hashing::default())))
        } else {
            State::Plain(Hashing::default())
        });
    }

    fn feed(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.state {
            Some(State::Gzip(w)) => w.write_all(data),
            Some(State::Plain(w)) => w.write_all(data),
            None => Ok(()),
        }
    }

    /// The uncompressed digest, and whether the layer was gzip.
    fn finish(mut self) -> io::Result<(Digest, bool)> {
        if self.state.is_none() {
            self.start();
            let head = std::mem::take(&mut self.head);
            self.feed(&head)?;
        }
        match self.state {
            Some(State::Gzip(w)) => Ok((w.finish()?.digest(), true)),
            Some(State::Plain(h)) => Ok((h.digest(), false)),
            None => Ok((Hashing::default().digest(), false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpacked(chunks: &[&[u8]]) -> io::Result<(Digest, bool)> {
        let mut u = Unpack::default();
        for c in chunks {
            u.write(c)?;
        }
        u.finish()
    }

    #[test]
    fn gzip_is_hashed_uncompressed_in_any_chunking_and_plain_bytes_as_they_are() {
        let tar = vec![7u8; 100_000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let want = Digest::sha256_of(&tar);
        assert_eq!(unpacked(&[&gz]).unwrap(), (want.clone(), true));
        let (a, b) = gz.split_at(1);
        let (b, c) = b.split_at(1);
        assert_eq!(unpacked(&[a, b, c]).unwrap(), (want.clone(), true));
        assert_eq!(unpacked(&[&tar]).unwrap(), (want, false));
        assert_eq!(unpacked(&[b"x"]).unwrap(), (Digest::sha256_of(b"x"), false));
        assert!(unpacked(&[&[0x1f, 0x8b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]).is_err());
    }
}
