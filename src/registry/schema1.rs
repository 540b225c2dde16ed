//! Docker image manifest schema 1 (`application/vnd.docker.distribution.
//! manifest.v1+json`, and `…v1+prettyjws` when signed), the format Docker
//! replaced with schema 2 in 2016 and stopped pulling in Docker 20.10 (see
//! docs.docker.com "Deprecated features": "Pushing and pulling with image
//! manifest v2 schema 1"). Old repositories still serve tags in it.
//!
//! Such a tag is recognised by its media type before its bytes are checked
//! (a signed manifest's digest covers its payload only, not the bytes
//! served, see [`payload`]). By default it is reported as not copied; with
//! `convert_schema1 = true` (or `import --convert-schema1`) it is read here
//! ([`Schema1::parse`]) and rewritten as a schema 2 image the way
//! containers/image (skopeo) converts it: layers base first, empty
//! (`throwaway`) layers left out, a config built from the newest
//! `v1Compatibility` entry with `history` and `rootfs.diff_ids` added. The
//! JWS signature of a signed manifest cannot survive the conversion and is
//! dropped.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::Digest;

/// Media type of an unsigned schema 1 manifest.
pub const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Media type of a signed (JWS) schema 1 manifest.
pub const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Media type of the converted manifest.
pub const SCHEMA2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of the converted config.
pub const SCHEMA2_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Media type of a gzip-compressed converted layer.
pub const LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Media type of an uncompressed converted layer.
pub const LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Most `fsLayers`/`history` entries read (Docker itself stops at 127
/// layers; the rest leaves room for empty ones).
pub const MAX_ENTRIES: usize = 1024;
/// Largest `v1Compatibility` string read.
pub const MAX_V1_COMPATIBILITY: usize = 1 << 20;

/// True for the two schema 1 media types.
pub fn is_schema1(media_type: &str) -> bool {
    media_type == SCHEMA1 || media_type == SCHEMA1_SIGNED
}

/// Why a schema 1 manifest is not copied, and what to do.
pub fn not_copied_detail(media_type: &str) -> String {
    format!(
        "the registry serves a Docker schema 1 manifest ({media_type}), a format Docker \
         deprecated in 2016 and no longer pulls; regmirror copies schema 1 images only when \
         asked to convert them to schema 2 under a new digest (a mirror's `convert_schema1 = \
         true`, `import --convert-schema1`), as `skopeo copy` does; without it a mirror reports \
         such a tag as unsupported and goes on: it is not a failure"
    )
}

/// The bytes a schema 1 manifest's digest covers: for a signed manifest,
/// its JSON without the `signatures` (the first signature's protected
/// header gives the payload's length and closing bytes, libtrust's
/// "pretty" JWS); otherwise the bytes themselves.
pub fn payload(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("the schema 1 manifest is not valid JSON: {e}"))?;
    let Some(first) = v
        .get("signatures")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
    else {
        return Ok(bytes.to_vec());
    };
    let protected = first
        .get("protected")
        .and_then(Value::as_str)
        .and_then(b64url)
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .ok_or("the schema 1 signature has no readable protected header")?;
    let length = protected
        .get("formatLength")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n <= bytes.len())
        .ok_or("the schema 1 signature's formatLength is missing or past the manifest's end")?;
    let tail = protected
        .get("formatTail")
        .and_then(Value::as_str)
        .and_then(b64url)
        .ok_or("the schema 1 signature's formatTail is missing or not base64url")?;
    let mut out = bytes[..length].to_vec();
    out.extend_from_slice(&tail);
    Ok(out)
}

/// Unpadded (or padded) base64url.
fn b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// One `history` entry's `v1Compatibility`, the fields conversion reads.
struct Entry {
    /// The whole object (the newest one becomes the config).
    object: Map<String, Value>,
    /// `id` (empty when absent).
    id: String,
    /// `throwaway`: the entry's layer is empty and not kept.
    throwaway: bool,
}

/// A schema 1 manifest, read for conversion.
pub struct Schema1 {
    /// Layers kept (not `throwaway`), base first.
    pub layers: Vec<Digest>,
    /// `v1Compatibility` entries, newest first, repeated IDs removed.
    entries: Vec<Entry>,
}

impl Schema1 {
    /// Read a schema 1 manifest: `fsLayers` and `history` of the same
    /// non-zero length (at most [`MAX_ENTRIES`]), each `v1Compatibility` a
    /// JSON object. Consecutive entries with the same `id` count once (the
    /// oldest kept), as containers/image does.
    pub fn parse(bytes: &[u8]) -> Result<Schema1, String> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("the schema 1 manifest is not valid JSON: {e}"))?;
        if v.get("schemaVersion").and_then(Value::as_u64) != Some(1) {
            return Err("the manifest does not say schemaVersion 1".to_string());
        }
        let list = |key: &str| {
            v.get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| format!("the schema 1 manifest has no {key} list"))
        };
        let (fs, history) = (list("fsLayers")?, list("history")?);
        if fs.is_empty() || fs.len() != history.len() {
            return Err(format!(
                "the schema 1 manifest lists {} fsLayers and {} history entries; they must be \
                 as many, and at least one",
                fs.len(),
                history.len()
            ));
        }
        if fs.len() > MAX_ENTRIES {
            return Err(format!(
                "the schema 1 manifest lists {} layers, more than the {MAX_ENTRIES} read",
                fs.len()
            ));
        }
        let mut pairs = Vec::with_capacity(fs.len());
        for (i, (l, h)) in fs.iter().zip(history).enumerate() {
            let digest = l
                .get("blobSum")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Digest>().ok())
                .ok_or_else(|| format!("fsLayers[{i}] has no valid blobSum digest"))?;
            pairs.push((digest, entry(i, h)?));
        }
        // Newest first; a run of one ID keeps its last (oldest) entry.
        let mut kept: Vec<(Digest, Entry)> = Vec::with_capacity(pairs.len());
        let mut iter = pairs.into_iter().peekable();
        while let Some(pair) = iter.next() {
            let repeated = iter
                .peek()
                .is_some_and(|next| !pair.1.id.is_empty() && next.1.id == pair.1.id);
            if !repeated {
                kept.push(pair);
            }
        }
        let layers = kept
            .iter()
            .rev()
            .filter(|(_, e)| !e.throwaway)
            .map(|(d, _)| d.clone())
            .collect();
        let entries = kept.into_iter().map(|(_, e)| e).collect();
        Ok(Schema1 { layers, entries })
    }

    /// The schema 2 config: the newest `v1Compatibility` object without
    /// `id`, `parent`, `parent_id`, `layer_id`, `throwaway` and `Size`, with
    /// `rootfs` (`diff_ids`, one per kept layer, base first) and `history`
    /// (base first) added; top-level keys sorted and `<`, `>`, `&` escaped
    /// as Go's encoder writes them, so the bytes match containers/image's.
    pub fn config(&self, diff_ids: &[Digest]) -> Vec<u8> {
        let mut top = self.entries[0].object.clone();
        for k in ["id", "parent", "parent_id", "layer_id", "throwaway", "Size"] {
            top.remove(k);
        }
        let history: Vec<Value> = self.entries.iter().rev().map(history_item).collect();
        top.insert(
            "rootfs".to_string(),
            serde_json::json!({
                "type": "layers",
                "diff_ids": diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        );
        top.insert("history".to_string(), Value::Array(history));
        let mut keys: Vec<(String, Value)> = top.into_iter().collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        go_json(&Value::Object(keys.into_iter().collect()))
    }
}

/// `history[i]`'s `v1Compatibility`, read.
fn entry(i: usize, h: &Value) -> Result<Entry, String> {
    let text = h
        .get("v1Compatibility")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("history[{i}] has no v1Compatibility string"))?;
    if text.len() > MAX_V1_COMPATIBILITY {
        return Err(format!(
            "history[{i}].v1Compatibility is {} bytes, more than the {MAX_V1_COMPATIBILITY} read",
            text.len()
        ));
    }
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => o,
        _ => return Err(format!("history[{i}].v1Compatibility is not a JSON object")),
    };
    Ok(Entry {
        id: object
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        throwaway: object
            .get("throwaway")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        object,
    })
}

/// A schema 2 `history` item from a `v1Compatibility` entry: `created`,
/// `created_by` (the words of `container_config.Cmd`), `author`, `comment`,
/// `empty_layer`; empty ones left out.
fn history_item(e: &Entry) -> Value {
    let o = &e.object;
    let text = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or_default();
    let created_by = o
        .get("container_config")
        .and_then(|c| c.get("Cmd"))
        .and_then(Value::as_array)
        .map(|words| {
            words
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let mut item = Map::new();
    item.insert(
        "created".to_string(),
        Value::String(match text("created") {
            "" => "0001-01-01T00:00:00Z".to_string(),
            t => go_time(t),
        }),
    );
    for (k, v) in [
        ("created_by", created_by),
        ("author", text("author").to_string()),
        ("comment", text("comment").to_string()),
    ] {
        if !v.is_empty() {
            item.insert(k.to_string(), Value::String(v));
        }
    }
    if e.throwaway {
        item.insert("empty_layer".to_string(), Value::Bool(true));
    }
    Value::Object(item)
}

/// An RFC 3339 time as Go's encoder writes it back (`RFC3339Nano`): the
/// trailing zeros of the fraction of a second dropped, and the dot with
/// them when nothing is left.
fn go_time(t: &str) -> String {
    let Some(dot) = t.find('.') else {
        return t.to_string();
    };
    let digits = t[dot + 1..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(t.len(), |i| dot + 1 + i);
    match t[dot + 1..digits].trim_end_matches('0') {
        "" => format!("{}{}", &t[..dot], &t[digits..]),
        fraction => format!("{}.{fraction}{}", &t[..dot], &t[digits..]),
    }
}

/// A kept layer of the converted image.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Its digest (the `blobSum`).
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// True when gzip-compressed (else a plain tar).
    pub gzip: bool,
}

/// The schema 2 manifest of a converted image, compact JSON in the field
/// order Docker's and containers/image's encoders use.
pub fn schema2_manifest(config: &[u8], layers: &[Layer]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "mediaType": if l.gzip { LAYER_GZIP } else { LAYER_TAR },
                "size": l.size,
                "digest": l.digest.to_string(),
            })
        })
        .collect();
    go_json(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": SCHEMA2,
        "config": {
            "mediaType": SCHEMA2_CONFIG,
            "size": config.len(),
            "digest": Digest::sha256_of(config).to_string(),
        },
        "layers": layers,
    }))
}

/// Compact JSON with `<`, `>`, `&`, U+2028 and U+2029 escaped, as Go's
/// `encoding/json` writes them (these characters only occur inside
/// strings, so replacing them everywhere is exact).
fn go_json(v: &Value) -> Vec<u8> {
    let text = v.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn manifest(entries: &[(&str, Value)]) -> Vec<u8> {
        let fs: Vec<Value> = entries
            .iter()
            .map(|(d, _)| serde_json::json!({ "blobSum": d }))
            .collect();
        let h: Vec<Value> = entries
            .iter()
            .map(|(_, c)| serde_json::json!({ "v1Compatibility": c.to_string() }))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": fs, "history": h
        }))
        .unwrap()
    }

    #[test]
    fn both_media_types_are_schema1() {
        assert!(is_schema1(SCHEMA1) && is_schema1(SCHEMA1_SIGNED));
        assert!(!is_schema1(SCHEMA2));
        assert!(not_copied_detail(SCHEMA1_SIGNED).contains("prettyjws"));
    }

    #[test]
    fn layers_go_base_first_without_throwaway_ones_and_the_config_follows_the_top() {
        let m = manifest(&[
            (
                A,
                serde_json::json!({"id": "2", "parent": "1", "throwaway": true,
                    "created": "2015-01-01T00:00:00Z", "config": {"Cmd": ["/a && b"]}, "Size": 0}),
            ),
            (
                B,
                serde_json::json!({"id": "1", "created": "2014-01-01T00:00:00Z",
                    "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ADD x"]}}),
            ),
        ]);
        let s = Schema1::parse(&m).unwrap();
        assert_eq!(s.layers, vec![B.parse::<Digest>().unwrap()]);
        let config: Value = serde_json::from_slice(&s.config(&[A.parse().unwrap()])).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!([A]));
        assert!(config.get("id").is_none() && config.get("Size").is_none());
        assert_eq!(config["config"]["Cmd"][0], "/a && b");
        assert_eq!(
            config["history"],
            serde_json::json!([
                {"created": "2014-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD x"},
                {"created": "2015-01-01T00:00:00Z", "empty_layer": true}
            ])
        );
        let raw = String::from_utf8(s.config(&[])).unwrap();
        assert!(
            raw.contains("\\u0026\\u0026") && raw.starts_with("{\"config\""),
            "{raw}"
        );
    }

    #[test]
    fn history_times_are_written_as_go_writes_them() {
        assert_eq!(go_time("2016-01-01T00:00:00Z"), "2016-01-01T00:00:00Z");
        assert_eq!(go_time("2016-01-01T00:00:00.000Z"), "2016-01-01T00:00:00Z");
        assert_eq!(
            go_time("2014-12-31T22:57:59.178729040+01:00"),
            "2014-12-31T22:57:59.17872904+01:00"
        );
        assert_eq!(go_time("odd."), "odd");
    }

    #[test]
    fn repeated_ids_count_once_and_bad_input_is_an_error_not_a_panic() {
        let c = serde_json::json!({"id": "1"});
        let s = Schema1::parse(&manifest(&[(A, c.clone()), (B, c)])).unwrap();
        assert_eq!(s.layers, vec![B.parse::<Digest>().unwrap()]);
        for bad in [
            &b"{"[..],
            br#"{"schemaVersion":2}"#,
            br#"{"schemaVersion":1,"fsLayers":[],"history":[]}"#,
            br#"{"schemaVersion":1,"fsLayers":[{"blobSum":"x"}],"history":[{"v1Compatibility":"{}"}]}"#,
            br#"{"schemaVersion":1,"fsLayers":[{"blobSum":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}],"history":[{"v1Compatibility":"[]"}]}"#,
        ] {
            assert!(Schema1::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let many: Vec<(&str, Value)> = (0..=MAX_ENTRIES)
            .map(|_| (A, serde_json::json!({})))
            .collect();
        let Err(e) = Schema1::parse(&manifest(&many)) else {
            panic!("{} entries were read", many.len())
        };
        assert!(e.contains("more than"), "{e}");
    }

    #[test]
    fn the_payload_of_a_signed_manifest_leaves_the_signatures_out() {
        let body = "{\n   \"schemaVersion\": 1";
        let protected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{{\"formatLength\":{},\"formatTail\":\"{}\"}}",
            body.len(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("\n}")
        ));
        let signed =
            format!("{body},\n   \"signatures\": [{{\"protected\": \"{protected}\"}}]\n}}");
        assert_eq!(
            payload(signed.as_bytes()).unwrap(),
            format!("{body}\n}}").into_bytes()
        );
        assert_eq!(payload(b"{\"a\":1}").unwrap(), b"{\"a\":1}");
        let bad = signed.replace(&protected, "e30");
        assert!(payload(bad.as_bytes()).is_err());
    }
}
