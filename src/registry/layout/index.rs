//! `index.json`: the layout's list of tagged images. Read with caps and
//! strict checks (every digest parses, every size is a number); rewritten
//! whole, keeping entries and fields this crate does not use. Entries and
//! fields are kept as raw JSON text ([`crate::registry::rawjson`]), never
//! as a generic value tree, so reading and rewriting cost about the size
//! of the file; the entry cap is checked while reading.

use serde_json::value::RawValue;

use crate::registry::digest::Digest;
use crate::registry::error::{Op, Result};
use crate::registry::manifest::OCI_INDEX;
use crate::registry::rawjson::{ArrayError, RawObject, split_array};
use crate::registry::reference::{Reference, split_ref_name};

use super::{MAX_INDEX_ENTRIES, error, not_found};

/// The annotation naming an entry.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One entry of `index.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Its `org.opencontainers.image.ref.name`, when set.
    pub ref_name: Option<String>,
}

impl IndexEntry {
    /// (repository, tag) when the ref.name can be named.
    pub fn name(&self) -> Option<(&str, &str)> {
        let (repo, tag) = split_ref_name(self.ref_name.as_deref()?)?;
        Some((repo, tag?))
    }

    /// This entry as a reference in the layout of `base`.
    pub fn reference_in(&self, base: &Reference) -> Reference {
        let named = self
            .name()
            .and_then(|(repo, tag)| base.in_layout(repo)?.with_tag(tag).ok());
        named.unwrap_or_else(|| base.with_digest(self.digest.clone()))
    }
}

/// A parsed `index.json`.
#[derive(Debug, Clone)]
pub struct LayoutIndex {
    /// Top-level fields other than `manifests`, kept as read.
    other: RawObject,
    /// Raw entries, kept as read.
    raw: Vec<Box<RawValue>>,
    /// The parsed entries, one per raw entry.
    entries: Vec<IndexEntry>,
}

impl Default for LayoutIndex {
    fn default() -> Self {
        let mut other = RawObject::default();
        other.set_value("schemaVersion", &2);
        other.set_value("mediaType", &OCI_INDEX);
        LayoutIndex {
            other,
            raw: Vec::new(),
            entries: Vec::new(),
        }
    }
}

impl LayoutIndex {
    /// Parse `index.json`'s bytes. `target` names the layout in errors.
    pub fn parse(bytes: &[u8], target: &str) -> Result<LayoutIndex> {
        Self::parse_capped(bytes, target, MAX_INDEX_ENTRIES)
    }

    fn parse_capped(bytes: &[u8], target: &str, max_entries: usize) -> Result<LayoutIndex> {
        let bad = |d: String| {
            error(
                Op::GetManifest,
                target,
                format!(
                    "index.json is not a valid image index: {d}; the layout is damaged or not an OCI layout"
                ),
            )
        };
        let object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if !object && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
            return Err(bad("it is not a JSON object".into()));
        }
        let mut other = RawObject::parse(bytes)
            .map_err(|e| bad(crate::registry::escape::shown(&e.to_string())))?;
        let raw = match other.remove("manifests") {
            None => Vec::new(),
            Some(m) if m.get() == "null" => Vec::new(),
            Some(m) => match split_array(&m, max_entries) {
                Ok(a) => a,
                Err(ArrayError::NotArray) => {
                    return Err(bad("\"manifests\" is not an array".into()));
                }
                Err(ArrayError::TooMany(_)) => {
                    return Err(bad(format!("more than {max_entries} entries")));
                }
                Err(ArrayError::Json(e)) => {
                    return Err(bad(crate::registry::escape::shown(&e.to_string())));
                }
            },
        };
        let entries = raw
            .iter()
            .enumerate()
            .map(|(i, v)| parse_entry(v).map_err(|d| bad(format!("entry {i}: {d}"))))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(LayoutIndex {
            other,
            raw,
            entries,
        })
    }

    /// The bytes to write.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.other.to_vec();
        bytes.pop();
        if bytes.len() > 1 {
            bytes.push(b',');
        }
        bytes.extend_from_slice(b"\"manifests\":[");
        for (i, e) in self.raw.iter().enumerate() {
            if i > 0 {
                bytes.push(b',');
            }
            crate::registry::rawjson::minify(e.get(), &mut bytes);
        }
        bytes.extend_from_slice(b"]}\n");
        bytes
    }

    /// The entries.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// Every nameable (repository, tag), in order.
    pub fn names(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter_map(|e| e.name())
            .map(|(r, t)| (r.to_string(), t.to_string()))
            .collect()
    }

    /// How many entries have a `ref.name` that cannot be named (no valid
    /// tag): skipped by [`Self::names`].
    pub fn unnamed(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.ref_name.is_some() && e.name().is_none())
            .count()
    }

    /// The tags of `repository`, and how many entries cannot be named.
    pub fn tags_of(&self, repository: &str) -> (Vec<String>, usize) {
        let mut tags = Vec::new();
        let mut unnamed = 0;
        for e in &self.entries {
            match e.name() {
                Some((r, t)) if r == repository => tags.push(t.to_string()),
                Some(_) => {}
                None if e.ref_name.is_some() => unnamed += 1,
                None => {}
            }
        }
        (tags, unnamed)
    }

    /// The entry a layout reference names: by ref.name when it has a tag
    /// (the last such entry wins, as the spec leaves duplicates undefined);
    /// `None` when absent. A reference without a tag uses [`Self::only_image`].
    pub fn find(&self, r: &Reference) -> Result<Option<&IndexEntry>> {
        match r.layout_ref_name() {
            Some(name) => Ok(self
                .entries
                .iter()
                .rev()
                .find(|e| e.ref_name.as_deref() == Some(name.as_str()))),
            None if r.digest().is_some() => Ok(None),
            None => match self.only_image(r) {
                Ok(e) => Ok(Some(e)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// The layout's only entry, for a reference with no REF.
    pub fn only_image(&self, r: &Reference) -> Result<&IndexEntry> {
        match self.entries.as_slice() {
            [one] => Ok(one),
            [] => Err(not_found(
                Op::GetManifest,
                r.to_string(),
                "the layout holds no image",
            )),
            many => {
                let names: Vec<String> = many
                    .iter()
                    .take(5)
                    .map(|e| match &e.ref_name {
                        Some(n) => crate::registry::escape::shown(n),
                        None => format!("@{}", e.digest),
                    })
                    .collect();
                let first = names.first().cloned().unwrap_or_default();
                Err(error(
                    Op::GetManifest,
                    r.to_string(),
                    format!(
                        "the layout holds {} images ({}{}): add the one to use to the reference, \
                         e.g. {r}:{first}",
                        many.len(),
                        names.join(", "),
                        if many.len() > 5 { ", …" } else { "" }
                    ),
                ))
            }
        }
    }

    /// Point `ref_name` at a manifest: entries with that name are replaced
    /// by one new entry at the end.
    pub fn set(&mut self, ref_name: &str, media_type: &str, digest: &Digest, size: u64) {
        let keep: Vec<bool> = self
            .entries
            .iter()
            .map(|e| e.ref_name.as_deref() != Some(ref_name))
            .collect();
        let mut k = keep.iter();
        self.raw.retain(|_| *k.next().expect("one flag per entry"));
        let mut k = keep.iter();
        self.entries
            .retain(|_| *k.next().expect("one flag per entry"));
        let mut annotations = std::collections::BTreeMap::new();
        annotations.insert(REF_NAME, ref_name);
        let mut entry = RawObject::default();
        entry.set_value("mediaType", &media_type);
        entry.set_value("digest", &digest.to_string());
        entry.set_value("size", &size);
        entry.set_value("annotations", &annotations);
        self.raw.push(entry.to_raw());
        self.entries.push(IndexEntry {
            media_type: media_type.to_string(),
            digest: digest.clone(),
            size,
            ref_name: Some(ref_name.to_string()),
        });
    }
}

/// A field of a raw object as `T`, `None` when absent or of another type.
fn field<T: serde::de::DeserializeOwned>(obj: &RawObject, key: &str) -> Option<T> {
    serde_json::from_str(obj.get(key)?.get()).ok()
}

fn parse_entry(v: &RawValue) -> std::result::Result<IndexEntry, String> {
    let obj = RawObject::of(v).ok_or("not a JSON object")?;
    let digest_text: String = field(&obj, "digest").ok_or("no \"digest\" string")?;
    let digest: Digest = digest_text.parse().map_err(|e| format!("{e}"))?;
    let size: u64 = field(&obj, "size").ok_or("no \"size\" as a non-negative integer")?;
    let media_type: String = field(&obj, "mediaType").ok_or("no \"mediaType\" string")?;
    let annotations = obj.get("annotations").and_then(RawObject::of);
    let ref_name = match annotations.as_ref().and_then(|a| a.get(REF_NAME)) {
        None => None,
        Some(raw) => match serde_json::from_str::<String>(raw.get()) {
            Ok(s) => Some(s),
            Err(_) => return Err(format!("{REF_NAME} is not a string")),
        },
    };
    Ok(IndexEntry {
        media_type,
        digest,
        size,
        ref_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, d: &Digest) -> String {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":3,"annotations":{{"{REF_NAME}":"{name}"}}}}"#
        )
    }

    #[test]
    fn names_tags_and_set() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let text = format!(
            r#"{{"schemaVersion":2,"x-keep":1,"manifests":[{},{},{}]}}"#,
            entry("1.0", &a),
            entry("docker.io/library/nginx:1.27", &b),
            entry("bad+name", &a)
        );
        let mut idx = LayoutIndex::parse(text.as_bytes(), "t").unwrap();
        assert_eq!(
            idx.names(),
            vec![
                ("".to_string(), "1.0".to_string()),
                ("docker.io/library/nginx".to_string(), "1.27".to_string())
            ]
        );
        assert_eq!(idx.tags_of(""), (vec!["1.0".to_string()], 1));
        idx.set("1.0", "m", &b, 9);
        assert_eq!(idx.entries().len(), 3);
        assert_eq!(idx.entries()[2].digest, b);
        let again = LayoutIndex::parse(&idx.to_bytes(), "t").unwrap();
        assert_eq!(again.entries(), idx.entries());
        assert!(
            String::from_utf8(idx.to_bytes())
                .unwrap()
                .contains("x-keep")
        );
    }

    #[test]
    fn entry_count_is_capped() {
        let d = Digest::sha256_of(b"x");
        let one = format!(r#"{{"mediaType":"m","digest":"{d}","size":1}}"#);
        let many = |n: usize| format!(r#"{{"manifests":[{}]}}"#, vec![one.as_str(); n].join(","));
        assert!(LayoutIndex::parse_capped(many(50).as_bytes(), "t", 50).is_ok());
        let e = LayoutIndex::parse_capped(many(51).as_bytes(), "t", 50).unwrap_err();
        assert!(e.to_string().contains("more than 50 entries"), "{e}");
        assert_eq!(MAX_INDEX_ENTRIES, 200_000, "README states this limit");
    }

    #[test]
    fn hostile_entries_are_refused() {
        for bad in [
            r#"{"manifests":[{"mediaType":"m","digest":"sha256:../../etc/passwd","size":1}]}"#,
            r#"{"manifests":[{"mediaType":"m","digest":"sha256:abc","size":-1}]}"#,
            r#"{"manifests":{}}"#,
            r#"[]"#,
        ] {
            assert!(LayoutIndex::parse(bad.as_bytes(), "t").is_err(), "{bad}");
        }
    }
}
