//! Canonical JSON: the one byte form of a JSON value that coffer hashes and
//! stores, so that the same data gives the same bytes wherever it is written
//! (native, wasm, server).
//!
//! Rules (normative copy in docs/FORMAT.md §2):
//! - no whitespace;
//! - object keys sorted by their UTF-8 bytes, no duplicates;
//! - strings escaped minimally: `"` `\` and U+0000..U+001F only, the latter as
//!   `\b \f \n \r \t` or `\u00XX` (lower-case hex);
//! - numbers: an integer that fits in i64/u64 is written as an integer; a float
//!   with no fractional part and |x| < 2^53 is written as that integer (so `1.0`
//!   and `1` are the same number, as in JavaScript); any other float in the
//!   shortest form that reads back to the same f64 (ryu), e.g. `0.1`, `1e+21`;
//! - nesting deeper than [`MAX_DEPTH`] is refused.
//!
//! Keys are sorted here rather than by relying on `serde_json::Map`'s order,
//! because a dependency enabling `serde_json/preserve_order` anywhere in the
//! build would otherwise change our bytes silently.

mod transcode;

use serde_json::Value;

use crate::error::{Error, Result};

/// Deepest nesting of arrays/objects we accept (serde_json's parser stops at 128 too).
pub const MAX_DEPTH: usize = 128;

/// Largest integer magnitude a float may have to be written as an integer (2^53).
const MAX_SAFE_FLOAT_INT: f64 = 9_007_199_254_740_992.0;

/// Appends the canonical form of `value` to `out`.
pub fn write(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    write_at(value, out, 0)
}

/// The canonical form of `value`.
pub fn to_vec(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    write(value, &mut out)?;
    Ok(out)
}

/// Parses JSON text (bounded nesting) and returns its canonical form.
pub fn canonicalize(json: &[u8]) -> Result<Vec<u8>> {
    match transcode::transcode(json) {
        Some(t) => Ok(t.json),
        None => to_vec(&parse(json)?),
    }
}

/// Whether `json` is exactly the canonical form of the value it encodes.
/// Readers use it to refuse a second encoding of the same data (which would
/// give the same snapshot a second digest).
pub fn is_canonical(json: &[u8]) -> bool {
    match transcode::transcode(json) {
        Some(t) => t.json == json,
        None => parse(json).and_then(|value| to_vec(&value)).is_ok_and(|c| c == json),
    }
}

/// Parses `json`, which must be the canonical form of a value of type `T`
/// (re-encoding the parsed value gives back exactly `json`); anything else is
/// `CORRUPT`, `what` naming the record in the message.
pub(crate) fn from_canonical<T: serde::de::DeserializeOwned + serde::Serialize>(json: &[u8], what: &str) -> Result<T> {
    let value: Value = parse(json).map_err(|e| Error::corrupt(format!("{what}: {e}")))?;
    let typed: T = serde_json::from_value(value).map_err(|e| Error::corrupt(format!("{what}: {e}")))?;
    let again = serde_json::to_value(&typed).map_err(|e| Error::corrupt(format!("{what}: {e}")))?;
    if to_vec(&again)? != json {
        return Err(Error::corrupt(format!("{what} is not in canonical form")));
    }
    Ok(typed)
}

/// Canonicalizes one document given as JSON text and returns it with its id
/// (see [`crate::snapshot::document_id`]). Takes the fast transcoding path
/// when it can, the reference path otherwise; both give the same bytes.
pub fn document(json: &[u8]) -> Result<(String, Vec<u8>)> {
    if let Some(t) = transcode::transcode(json) {
        let id = match (t.id, t.at_id) {
            (Some(range), _) if &t.json[range.0..range.1] != b"null" => id_from_canonical(&t.json[range.0..range.1]),
            (_, Some(range)) if &t.json[range.0..range.1] != b"null" => id_from_canonical(&t.json[range.0..range.1]),
            _ => Some(crate::snapshot::content_id(&t.json)),
        };
        if let Some(id) = id {
            crate::snapshot::validate_id("document", &id)?;
            return Ok((id, t.json));
        }
    }
    let value = parse(json)?;
    let id = crate::snapshot::document_id(&value)?;
    Ok((id, to_vec(&value)?))
}

/// The id for a canonical `"id"` value: a string without escapes as is, a
/// number as its text; anything else goes the reference path.
fn id_from_canonical(value: &[u8]) -> Option<String> {
    match value.first()? {
        b'"' if !value.contains(&b'\\') => std::str::from_utf8(&value[1..value.len() - 1]).ok().map(str::to_string),
        b'-' | b'0'..=b'9' => std::str::from_utf8(value).ok().map(str::to_string),
        _ => None,
    }
}

/// Parses JSON text into a value; malformed text is `INVALID_INPUT`, nesting
/// deeper than 128 is `LIMIT_EXCEEDED`.
pub fn parse(json: &[u8]) -> Result<Value> {
    serde_json::from_slice(json).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            Error::limit(format!("JSON nested deeper than {MAX_DEPTH}"))
        } else {
            Error::invalid(format!("malformed JSON: {e}"))
        }
    })
}

fn write_at(value: &Value, out: &mut Vec<u8>, depth: usize) -> Result<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            check_depth(depth)?;
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_at(item, out, depth + 1)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            check_depth(depth)?;
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_at(item, out, depth + 1)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn check_depth(depth: usize) -> Result<()> {
    if depth >= MAX_DEPTH {
        return Err(Error::limit(format!("JSON nested deeper than {MAX_DEPTH}")));
    }
    Ok(())
}

fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    use std::io::Write as _;
    if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(f) = n.as_f64() {
        write_float(f, out);
    }
}

/// Writes a finite float: as an integer when it is one below 2^53, else in
/// ryu's shortest round-trip form (as serde_json writes f64).
pub(crate) fn write_float(f: f64, out: &mut Vec<u8>) {
    use std::io::Write as _;
    if f.fract() == 0.0 && f.abs() < MAX_SAFE_FLOAT_INT {
        // -0.0 becomes 0 here, as JSON.stringify does.
        let _ = write!(out, "{}", f as i64);
    } else {
        // JSON cannot hold NaN or infinities, so `f` is finite.
        let _ = serde_json::to_writer(&mut *out, &f);
    }
}

pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(text: &str) -> String {
        String::from_utf8(canonicalize(text.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        assert_eq!(canon(r#"{ "b": 1, "a": [ true, null ], "A": {"y":2,"x":1} }"#), r#"{"A":{"x":1,"y":2},"a":[true,null],"b":1}"#);
    }

    #[test]
    fn one_number_form() {
        assert_eq!(canon("[1.0, -0.0, 1e2, 0.1, 1e21, 18446744073709551615, -5, 2.5e-7]"), "[1,0,100,0.1,1e+21,18446744073709551615,-5,2.5e-7]");
    }

    #[test]
    fn minimal_string_escapes() {
        let v = json!({"s": "a\"b\\c\n\u{1}é😀/"});
        assert_eq!(String::from_utf8(to_vec(&v).unwrap()).unwrap(), "{\"s\":\"a\\\"b\\\\c\\n\\u0001é😀/\"}");
    }

    #[test]
    fn canonical_form_is_a_fixed_point() {
        let once = canon(r#"{"z":[1.50,{"k":"\u00e9"}],"a":-1.0e-3}"#);
        assert_eq!(canon(&once), once);
    }

    #[test]
    fn depth_is_bounded() {
        let mut v = json!(1);
        for _ in 0..MAX_DEPTH + 1 {
            v = json!([v]);
        }
        assert_eq!(to_vec(&v).unwrap_err().code(), "LIMIT_EXCEEDED");
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(canonicalize(deep.as_bytes()).unwrap_err().code(), "LIMIT_EXCEEDED");
        assert_eq!(canonicalize(b"{nope").unwrap_err().code(), "INVALID_INPUT");
    }
}
