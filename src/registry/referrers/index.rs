//! A fallback index (`sha256-<hex>` tag) read and rewritten without loss.
//!
//! The index is another tool's document as much as ours: every top-level
//! field and every entry is kept as the raw JSON it was read as, whatever
//! its fields (`data`, `annotations`, fields of later spec versions, or
//! `null` where a value was expected); only the digest of each entry is
//! read, and new entries are appended after the existing ones. Nothing is
//! cut: the only limit is the size of a manifest a registry accepts
//! ([`MAX_MANIFEST_BYTES`]), checked by the writer.
//!
//! The same reading gives the entries of a source's index as descriptors
//! ([`listed_descriptors`]), `null` fields treated as absent.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::registry::digest::Digest;
use crate::registry::manifest::{Descriptor, OCI_INDEX};

/// A fallback index as read: its top-level fields in order (raw), its
/// entries (raw) and the digest each entry names (when it names one).
#[derive(Debug, Default)]
pub struct FallbackIndex {
    fields: Vec<(String, Box<RawValue>)>,
    entries: Vec<Box<RawValue>>,
    digests: HashSet<Digest>,
}

/// Top-level fields in document order, each kept raw.
struct Fields(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Fields, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The one field of an entry read here.
#[derive(Deserialize)]
struct EntryDigest {
    #[serde(default)]
    digest: Option<Digest>,
}

impl FallbackIndex {
    /// Read `bytes`; `Err` (why) when they are not a JSON object whose
    /// `manifests` (absent or `null`: none) is a list.
    pub fn parse(bytes: &[u8]) -> Result<FallbackIndex, String> {
        let Fields(fields) =
            serde_json::from_slice(bytes).map_err(|e| format!("not a JSON object: {e}"))?;
        let mut entries: Vec<Box<RawValue>> = Vec::new();
        if let Some((_, m)) = fields.iter().find(|(k, _)| k == "manifests") {
            let list: Option<Vec<Box<RawValue>>> = serde_json::from_str(m.get())
                .map_err(|e| format!("its \"manifests\" is not a list: {e}"))?;
            entries = list.unwrap_or_default();
        }
        let digests = entries
            .iter()
            .filter_map(|e| serde_json::from_str::<EntryDigest>(e.get()).ok()?.digest)
            .collect();
        Ok(FallbackIndex {
            fields,
            entries,
            digests,
        })
    }

    /// True when an entry names `digest`.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.digests.contains(digest)
    }

    /// The digests the entries name.
    pub fn digests(&self) -> &HashSet<Digest> {
        &self.digests
    }

    /// How many entries the index has (duplicates and unreadable entries included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the index has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Append `d` unless an entry already names its digest.
    pub fn push(&mut self, d: &Descriptor) {
        if self.digests.contains(&d.digest) {
            return;
        }
        let raw = serde_json::value::to_raw_value(d).expect("a descriptor serializes");
        self.digests.insert(d.digest.clone());
        self.entries.push(raw);
    }

    /// The document: the fields as read, in their order, with the entries
    /// in place of `manifests`; `schemaVersion`, `mediaType` and
    /// `manifests` added when missing.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self
                .entries
                .iter()
                .map(|e| e.get().len() + 1)
                .sum::<usize>(),
        );
        out.push(b'{');
        let has = |k: &str| self.fields.iter().any(|(f, _)| f == k);
        let mut first = true;
        let mut field = |out: &mut Vec<u8>, k: &str, v: &[u8]| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            out.extend_from_slice(
                serde_json::to_string(k)
                    .expect("a key serializes")
                    .as_bytes(),
            );
            out.push(b':');
            out.extend_from_slice(v);
        };
        if !has("schemaVersion") {
            field(&mut out, "schemaVersion", b"2");
        }
        if !has("mediaType") {
            field(&mut out, "mediaType", format!("\"{OCI_INDEX}\"").as_bytes());
        }
        let list = self.entries_bytes();
        for (k, v) in &self.fields {
            match k.as_str() {
                "manifests" => field(&mut out, k, &list),
                _ => field(&mut out, k, v.get().as_bytes()),
            }
        }
        if !has("manifests") {
            field(&mut out, "manifests", &list);
        }
        out.push(b'}');
        out
    }

    fn entries_bytes(&self) -> Vec<u8> {
        let mut out = vec![b'['];
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(e.get().as_bytes());
        }
        out.push(b']');
        out
    }
}

/// The entries of a listed index as descriptors, in order, each digest
/// once; `null` fields are taken as absent, and an entry that is still not
/// a descriptor (no digest, a size that is not a number) is left out.
pub fn listed_descriptors(index: &FallbackIndex) -> Vec<Descriptor> {
    let mut seen = HashSet::new();
    index
        .entries
        .iter()
        .filter_map(|e| {
            let mut m: Map<String, Value> = serde_json::from_str(e.get()).ok()?;
            m.retain(|_, v| !v.is_null());
            serde_json::from_value::<Descriptor>(Value::Object(m)).ok()
        })
        .filter(|d| seen.insert(d.digest.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u32) -> String {
        let d = Digest::sha256_of(n.to_string().as_bytes());
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":{n},"data":"e30=","annotations":null,"x-later":{{"a":[1,2]}}}}"#
        )
    }

    #[test]
    fn every_entry_and_field_survives_a_merge() {
        let entries: Vec<String> = (0..1500).map(entry).collect();
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}],"annotations":{{"k":"v"}},"x-top":null}}"#,
            entries.join(",")
        );
        let mut idx = FallbackIndex::parse(doc.as_bytes()).unwrap();
        assert_eq!(idx.len(), 1500);
        assert_eq!(listed_descriptors(&idx).len(), 1500);
        let new = Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: Digest::sha256_of(b"new"),
            size: 3,
            urls: Vec::new(),
            platform: None,
            annotations: Default::default(),
            artifact_type: Some("application/x".into()),
        };
        idx.push(&new);
        idx.push(&new);
        let out = idx.to_bytes();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let list = v["manifests"].as_array().unwrap();
        assert_eq!(list.len(), 1501);
        assert_eq!(list[0], serde_json::from_str::<Value>(&entries[0]).unwrap());
        assert_eq!(v["annotations"]["k"], "v");
        assert!(v.as_object().unwrap().contains_key("x-top"));
        let again = FallbackIndex::parse(&out).unwrap();
        assert!(again.contains(&new.digest));
        assert_eq!(again.len(), 1501);
    }

    #[test]
    fn missing_fields_are_added_and_junk_is_refused() {
        let idx = FallbackIndex::parse(br#"{"manifests":null}"#).unwrap();
        assert!(idx.is_empty());
        let v: Value = serde_json::from_slice(&idx.to_bytes()).unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], OCI_INDEX);
        assert_eq!(v["manifests"], serde_json::json!([]));
        assert!(FallbackIndex::parse(b"[1]").is_err());
        assert!(FallbackIndex::parse(br#"{"manifests":{"a":1}}"#).is_err());
        assert!(FallbackIndex::parse(b"{\"manifests\":[").is_err());
    }
}
