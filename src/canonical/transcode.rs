//! A fast path from JSON text straight to canonical JSON text, without
//! building a `serde_json::Value` tree (which dominates bundling time).
//!
//! It must produce exactly the bytes of the reference path
//! (`canonical::parse` then `canonical::write`). Whenever the input needs
//! anything subtle — escaped object keys, duplicate keys, deep nesting,
//! malformed text — it gives up (`None`) and the caller takes the reference
//! path, which then also decides what the error is.

use super::{write_float, MAX_DEPTH};

/// A transcoded document: its canonical bytes and, when it is an object,
/// the canonical text of its `"id"` and `"@id"` members' values.
pub(crate) struct Transcoded {
    pub json: Vec<u8>,
    pub id: Option<(usize, usize)>,
    pub at_id: Option<(usize, usize)>,
}

/// Transcodes one JSON value (surrounding whitespace allowed).
pub(crate) fn transcode(input: &[u8]) -> Option<Transcoded> {
    let mut t = Transcoder { input, pos: 0, out: Vec::with_capacity(input.len()), scratch: Vec::new() };
    t.skip_ws();
    let top_object = t.peek() == Some(b'{');
    let mut ids = (None, None);
    t.value(0, if top_object { Some(&mut ids) } else { None })?;
    t.skip_ws();
    if t.pos != input.len() {
        return None;
    }
    Some(Transcoded { json: t.out, id: ids.0, at_id: ids.1 })
}

type IdSlots = (Option<(usize, usize)>, Option<(usize, usize)>);

struct Transcoder<'a> {
    input: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    /// Reused buffer for reordering object members.
    scratch: Vec<u8>,
}

impl Transcoder<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, lit: &[u8]) -> Option<()> {
        if self.input.get(self.pos..self.pos + lit.len())? == lit {
            self.pos += lit.len();
            Some(())
        } else {
            None
        }
    }

    fn value(&mut self, depth: usize, ids: Option<&mut IdSlots>) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth, ids),
            b'[' => self.array(depth),
            b'"' => self.string(),
            b't' => self.expect(b"true").map(|()| self.out.extend_from_slice(b"true")),
            b'f' => self.expect(b"false").map(|()| self.out.extend_from_slice(b"false")),
            b'n' => self.expect(b"null").map(|()| self.out.extend_from_slice(b"null")),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth + 1 >= MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        self.out.push(b'[');
        self.skip_ws();
        if self.peek()? == b']' {
            self.pos += 1;
            self.out.push(b']');
            return Some(());
        }
        loop {
            self.skip_ws();
            self.value(depth + 1, None)?;
            self.skip_ws();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    self.out.push(b',');
                }
                b']' => {
                    self.pos += 1;
                    self.out.push(b']');
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, depth: usize, ids: Option<&mut IdSlots>) -> Option<()> {
        if depth + 1 >= MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        let start = self.out.len();
        self.out.push(b'{');
        // (key start, key end, member start, member end) in `out`; keys are
        // the raw bytes between the quotes, which contain no escapes.
        let mut members: Vec<(usize, usize, usize, usize)> = Vec::new();
        self.skip_ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            self.out.push(b'}');
            return Some(());
        }
        loop {
            self.skip_ws();
            if self.peek()? != b'"' {
                return None;
            }
            let member_start = self.out.len();
            let key_start = self.out.len() + 1;
            self.string()?;
            let key_end = self.out.len() - 1;
            if self.out[key_start..key_end].contains(&b'\\') {
                return None; // escaped keys: order by decoded bytes — reference path
            }
            self.skip_ws();
            if self.peek()? != b':' {
                return None;
            }
            self.pos += 1;
            self.out.push(b':');
            self.skip_ws();
            self.value(depth + 1, None)?;
            members.push((key_start, key_end, member_start, self.out.len()));
            self.skip_ws();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    self.out.push(b',');
                }
                b'}' => {
                    self.pos += 1;
                    break;
                }
                _ => return None,
            }
        }
        let out = &self.out;
        let key = |m: &(usize, usize, usize, usize)| &out[m.0..m.1];
        let sorted = members.windows(2).all(|w| key(&w[0]) < key(&w[1]));
        if !sorted {
            let mut order: Vec<usize> = (0..members.len()).collect();
            order.sort_unstable_by(|&a, &b| key(&members[a]).cmp(key(&members[b])));
            if order.windows(2).any(|w| key(&members[w[0]]) == key(&members[w[1]])) {
                return None; // duplicate keys: the reference path decides
            }
            self.scratch.clear();
            for (i, &m) in order.iter().enumerate() {
                if i > 0 {
                    self.scratch.push(b',');
                }
                let (_, _, s, e) = members[m];
                self.scratch.extend_from_slice(&self.out[s..e]);
            }
            // Recompute positions after reordering.
            let mut pos = start + 1;
            let mut reordered = Vec::with_capacity(members.len());
            for &m in &order {
                let (ks, ke, s, e) = members[m];
                reordered.push((pos + (ks - s), pos + (ke - s), pos, pos + (e - s)));
                pos += e - s + 1;
            }
            self.out.truncate(start + 1);
            self.out.extend_from_slice(&self.scratch);
            members = reordered;
        }
        self.out.push(b'}');
        if let Some(ids) = ids {
            for &(ks, ke, _, e) in &members {
                match &self.out[ks..ke] {
                    b"id" => ids.0 = Some((ke + 2, e)),
                    b"@id" => ids.1 = Some((ke + 2, e)),
                    _ => {}
                }
            }
        }
        Some(())
    }

    /// Copies a string, re-escaping it canonically. The input must be valid
    /// UTF-8 with no raw control characters.
    fn string(&mut self) -> Option<()> {
        self.pos += 1;
        self.out.push(b'"');
        let rest = &self.input[self.pos..];
        // Fast path: no escapes until the closing quote.
        let end = special_byte(rest)?;
        if rest[end] == b'"' {
            let s = std::str::from_utf8(&rest[..end]).ok()?;
            self.out.extend_from_slice(s.as_bytes());
            self.out.push(b'"');
            self.pos += end + 1;
            return Some(());
        }
        // Slow path: decode the whole string, then write it canonically.
        let mut decoded: Vec<u8> = Vec::with_capacity(end + 16);
        let mut i = 0;
        loop {
            let b = *rest.get(i)?;
            match b {
                b'"' => break,
                b'\\' => {
                    let e = *rest.get(i + 1)?;
                    i += 2;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = hex4(rest.get(i..i + 4)?)?;
                            i += 4;
                            if (0xD800..0xDC00).contains(&hi) {
                                if rest.get(i..i + 2)? != b"\\u" {
                                    return None;
                                }
                                let lo = hex4(rest.get(i + 2..i + 6)?)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                i += 6;
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                            } else {
                                char::from_u32(hi)?
                            }
                        }
                        _ => return None,
                    };
                    let mut buf = [0u8; 4];
                    decoded.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0x00..=0x1f => return None,
                _ => {
                    decoded.push(b);
                    i += 1;
                }
            }
        }
        let s = std::str::from_utf8(&decoded).ok()?;
        self.out.pop();
        super::write_string(s, &mut self.out);
        self.pos += i + 1;
        Some(())
    }

    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        let bytes = self.input;
        let mut i = start;
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let int_len = i - int_start;
        if int_len == 0 || (int_len > 1 && bytes[int_start] == b'0') {
            return None;
        }
        let mut integer = true;
        if bytes.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            let frac = i;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == frac {
                return None;
            }
        }
        if let Some(b'e' | b'E') = bytes.get(i) {
            integer = false;
            i += 1;
            if let Some(b'+' | b'-') = bytes.get(i) {
                i += 1;
            }
            let exp = i;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == exp {
                return None;
            }
        }
        let text = std::str::from_utf8(&bytes[start..i]).ok()?;
        self.pos = i;
        if integer {
            use std::io::Write as _;
            if let Ok(u) = text.parse::<u64>() {
                let _ = write!(self.out, "{u}");
                return Some(());
            }
            if let Ok(n) = text.parse::<i64>() {
                let _ = write!(self.out, "{n}");
                return Some(());
            }
        }
        // Same as serde_json (float_roundtrip): correctly rounded f64.
        let f: f64 = text.parse().ok()?;
        if !f.is_finite() {
            return None;
        }
        write_float(f, &mut self.out);
        Some(())
    }
}

/// The position of the first `"`, `\\` or control character (< 0x20) of
/// `text`. Eight bytes at a time (SWAR): string bodies are most of a
/// document's bytes, and a byte-at-a-time scan was the largest single cost
/// of checking a bundle's documents (`memchr` finds two or three bytes, not a
/// range).
fn special_byte(text: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // The high bit of each byte of `x` that is below `n` (n <= 0x80). Bytes
    // above the first such byte may be flagged wrongly (a borrow), never
    // the first one: only the lowest flag is used.
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGHS;
    let mut chunks = text.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let flags = below(word ^ (ONES * u64::from(b'"')), 1) | below(word ^ (ONES * u64::from(b'\\')), 1) | below(word, 0x20);
        if flags != 0 {
            return Some(at + (flags.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks.remainder().iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).map(|i| at + i)
}

fn hex4(b: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(b).ok()?;
    if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(text: &str) -> Option<Vec<u8>> {
        super::super::canonicalize(text.as_bytes()).ok()
    }

    #[test]
    fn agrees_with_the_reference_path() {
        for text in [
            r#"{"b":1,"a":{"d":[1,2.50,-0,1e2],"c":"x\"y\u00e9\ud83d\ude00\n"}}"#,
            r#" [ true , false , null , "" , {} , [] , 0.1 , 1E+21, -1.5e-7, 18446744073709551615, -9223372036854775808, 12345678901234567890123 ] "#,
            r#"{"id":"a","@id":7,"z":{"y":1,"x":2}}"#,
            "\"tab\\there\\u0001\\/\"",
            r#"{"\u0062":1,"a":2}"#,
        ] {
            let fast = transcode(text.as_bytes()).map(|t| t.json);
            assert_eq!(fast, reference(text), "{text}");
        }
    }

    #[test]
    fn gives_up_on_what_the_reference_path_must_decide() {
        for text in [r#"{"a":1,"a":2}"#, r#"{"a\"b":1}"#, "[1,]", "01", "[", "{\"a\" 1}", "\"\u{1}\"", "1 2", "nul", "\"\\ud800\""] {
            assert!(transcode(text.as_bytes()).is_none(), "{text}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(transcode(deep.as_bytes()).is_none());
    }

    #[test]
    fn special_byte_finds_the_first_quote_backslash_or_control_character() {
        let naive = |t: &[u8]| t.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        let mut cases: Vec<Vec<u8>> = vec![b"".to_vec(), b"plain text with no end".to_vec(), "ünïcödé \u{1F600} then \"".as_bytes().to_vec()];
        // Every special byte (and the bytes around the borders of the
        // tests: 0x1f/0x20, 0x21/0x22/0x23, 0x5b/0x5c/0x5d, 0x7f, 0x80, 0xff)
        // at every position of a 0..24 byte text, after any earlier one.
        for len in 0..24 {
            for at in 0..len {
                for b in [0x00, 0x1f, 0x20, 0x21, b'"', 0x23, 0x5b, b'\\', 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff] {
                    let mut t = vec![b'a'; len];
                    t[at] = b;
                    cases.push(t.clone());
                    if at + 1 < len {
                        t[at + 1] = b'"';
                        cases.push(t);
                    }
                }
            }
        }
        for t in &cases {
            assert_eq!(special_byte(t), naive(t), "{t:?}");
        }
    }

    #[test]
    fn finds_top_level_ids() {
        let t = transcode(br#"{"x":{"id":"inner"},"id":"outer","@id":12}"#).unwrap();
        let (s, e) = t.id.unwrap();
        assert_eq!(&t.json[s..e], br#""outer""#);
        let (s, e) = t.at_id.unwrap();
        assert_eq!(&t.json[s..e], b"12");
    }

    fn arb_json_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
            (-1e6f64..1e6).prop_map(|f| f.to_string()),
            "[ -~é😀\\n\\t\\u{1}]{0,10}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just(r#""\u00e9\ud83d\ude00\/""#.to_string()),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[ {} ]", v.join(" , "))),
                prop::collection::vec(("[a-zA-Z@_]{0,4}", inner), 0..5)
                    .prop_map(|v| format!("{{{}}}", v.into_iter().map(|(k, v)| format!("\"{k}\" : {v}")).collect::<Vec<_>>().join(","))),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]
        #[test]
        fn never_disagrees_with_the_reference(text in arb_json_text()) {
            if let Some(fast) = transcode(text.as_bytes()) {
                prop_assert_eq!(Some(fast.json), reference(&text), "{}", text);
            }
        }
    }
}
