//! JSON documents edited without a generic value tree: an object is its
//! fields in order, each kept as the raw text of its value
//! ([`serde_json::value::RawValue`]), and arrays split into raw elements
//! with a cap checked while reading. Reading costs about the size of the
//! input (a `serde_json::Value` tree costs 30 to 200 times more for small
//! values); writing emits compact JSON (whitespace outside strings
//! removed, everything else as it was written).

use std::collections::HashMap;
use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON object as ordered fields of raw values; a repeated key keeps
/// its first position and its last value (as `serde_json::Value` does).
#[derive(Debug, Clone, Default)]
pub struct RawObject {
    fields: Vec<(String, Box<RawValue>)>,
}

impl<'de> serde::Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut fields: Vec<(String, Box<RawValue>)> = Vec::new();
                let mut at: HashMap<String, usize> = HashMap::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    match at.get(&k) {
                        Some(&i) => fields[i].1 = v,
                        None => {
                            at.insert(k.clone(), fields.len());
                            fields.push((k, v));
                        }
                    }
                }
                Ok(RawObject { fields })
            }
        }
        d.deserialize_map(V)
    }
}

impl RawObject {
    /// Parse an object; anything else is an error.
    pub fn parse(text: &[u8]) -> Result<RawObject, serde_json::Error> {
        serde_json::from_slice(text)
    }

    /// Parse a raw value that should be an object; `None` when it is not.
    pub fn of(value: &RawValue) -> Option<RawObject> {
        serde_json::from_str(value.get()).ok()
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &**v)
    }

    /// Remove `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Box<RawValue>> {
        let i = self.fields.iter().position(|(k, _)| k == key)?;
        Some(self.fields.remove(i).1)
    }

    /// Set `key`: in place when present, else at the end.
    pub fn set(&mut self, key: &str, value: Box<RawValue>) {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(f) => f.1 = value,
            None => self.fields.push((key.to_string(), value)),
        }
    }

    /// Set `key` to a value serialised now.
    pub fn set_value<T: serde::Serialize>(&mut self, key: &str, value: &T) {
        self.set(key, to_raw(value));
    }

    /// Compact JSON text.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }

    /// Append compact JSON text to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut *out, k).expect("a string serialises");
            out.push(b':');
            minify(v.get(), out);
        }
        out.push(b'}');
    }

    /// This object as a raw value.
    pub fn to_raw(&self) -> Box<RawValue> {
        RawValue::from_string(String::from_utf8(self.to_vec()).expect("JSON text is UTF-8"))
            .expect("written as JSON")
    }
}

/// A value serialised to a raw value.
pub fn to_raw<T: serde::Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("plain data serialises")
}

/// An array of raw values, written compact.
pub fn array_to_raw(items: &[Box<RawValue>]) -> Box<RawValue> {
    let mut out = vec![b'['];
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        minify(v.get(), &mut out);
    }
    out.push(b']');
    RawValue::from_string(String::from_utf8(out).expect("JSON text is UTF-8")).expect("JSON")
}

/// Why an array could not be split.
#[derive(Debug)]
pub enum ArrayError {
    /// Not an array (`null` included).
    NotArray,
    /// More elements than the cap.
    TooMany(usize),
    /// Broken JSON.
    Json(serde_json::Error),
}

/// Split a raw JSON array into its elements, reading at most `max` of
/// them (an error as soon as one more is seen).
pub fn split_array(value: &RawValue, max: usize) -> Result<Vec<Box<RawValue>>, ArrayError> {
    if !value.get().trim_start().starts_with('[') {
        return Err(ArrayError::NotArray);
    }
    let mut de = serde_json::Deserializer::from_str(value.get());
    match (Capped { max }).deserialize(&mut de) {
        Ok(v) => Ok(v),
        Err(e) if e.to_string().starts_with(TOO_MANY) => Err(ArrayError::TooMany(max)),
        Err(e) => Err(ArrayError::Json(e)),
    }
}

const TOO_MANY: &str = "regmirror: too many elements";

struct Capped {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for Capped {
    type Value = Vec<Box<RawValue>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Capped {
    type Value = Vec<Box<RawValue>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Box<RawValue>>()? {
            if out.len() == self.max {
                return Err(serde::de::Error::custom(TOO_MANY));
            }
            out.push(v);
        }
        Ok(out)
    }
}

/// Append `text` (valid JSON) with the whitespace outside strings removed.
pub fn minify(text: &str, out: &mut Vec<u8>) {
    let (mut in_string, mut escaped) = (false, false);
    for &b in text.as_bytes() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_survive_in_order_and_compact() {
        let text = br#"{ "b" : [1, 2, {"x": "a b\" c"}], "a": null, "b": 3 , "z": {"k": 1}}"#;
        let mut o = RawObject::parse(text).unwrap();
        assert_eq!(o.get("b").unwrap().get(), "3");
        o.set_value("a", &"new");
        o.set_value("n", &5);
        assert_eq!(
            String::from_utf8(o.to_vec()).unwrap(),
            r#"{"b":3,"a":"new","z":{"k":1},"n":5}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&o.to_vec()).unwrap();
        assert_eq!(v["z"]["k"], 1);
        let arr = to_raw(&serde_json::json!([1, " a ", {"k": [ ]}]));
        let items = split_array(&arr, 3).unwrap();
        assert_eq!(items.len(), 3);
        assert!(matches!(split_array(&arr, 2), Err(ArrayError::TooMany(2))));
        assert!(matches!(
            split_array(&to_raw(&()), 2),
            Err(ArrayError::NotArray)
        ));
        let mut out = Vec::new();
        minify(r#"[ "a  \\" , "\" x" ]"#, &mut out);
        assert_eq!(out, br#"["a  \\","\" x"]"#);
        assert!(RawObject::parse(b"[]").is_err());
    }
}
