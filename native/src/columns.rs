//! The columns the cache holds of a batch of STAC items held inline in an index (index format
//! 3), from their DAG-CBOR blocks: `halodb/cache/stac_columns.py`'s `item_columns` of what
//! `halodb/sync/items.py`'s `read_inline_item_columns` decodes, byte for byte — the item's
//! JSON text as orjson writes it, and the fields pulled out of it leniently. A batch with
//! anything this does not take (bytes, links, a block not in the canonical form, an item the
//! cache skips) is declined whole: `None`, and Python decides.

use std::borrow::Cow;

use crate::item::py_strip;
use crate::json::Value;

/// Nested deeper than this is declined (HaloDB refuses 64 levels in an item).
const MAX_DEPTH: usize = 60;

/// A reader of canonical DAG-CBOR: every head in its shortest form, definite lengths only.
pub struct Reader<'a> {
    pub data: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// A head's argument, in the shortest form only (DAG-CBOR's canonical form).
    pub fn argument(&mut self, info: u8) -> Option<u64> {
        let n = match info {
            0..=23 => return Some(u64::from(info)),
            24 => u64::from(self.byte()?),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().ok()?)),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().ok()?)),
            27 => u64::from_be_bytes(self.take(8)?.try_into().ok()?),
            _ => return None,
        };
        let least = match info {
            24 => 24,
            25 => 0x100,
            26 => 0x1_0000,
            _ => 0x1_0000_0000,
        };
        (n >= least).then_some(n)
    }

    pub fn text(&mut self, info: u8) -> Option<&'a str> {
        let n = usize::try_from(self.argument(info)?).ok()?;
        std::str::from_utf8(self.take(n)?).ok()
    }

    fn value(&mut self, depth: usize) -> Option<Value<'a>> {
        let initial = self.byte()?;
        let (major, info) = (initial >> 5, initial & 0x1F);
        Some(match major {
            0 => Value::Int(i64::try_from(self.argument(info)?).ok()?),
            1 => Value::Int(-1 - i64::try_from(self.argument(info)?).ok()?),
            3 => Value::Str(Cow::Borrowed(self.text(info)?)),
            4 => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                let n = self.argument(info)?;
                let mut items = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            5 => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                let n = self.argument(info)?;
                let mut entries: Vec<(Cow<'a, str>, Value<'a>)> = Vec::with_capacity(n.min(1024) as usize);
                let mut last = None;
                for _ in 0..n {
                    let key = self.key(&mut last)?;
                    let value = self.value(depth + 1)?;
                    entries.push((Cow::Borrowed(key), value));
                }
                Value::Object(entries)
            }
            7 => match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 => Value::Null,
                27 => {
                    let x = f64::from_be_bytes(self.take(8)?.try_into().ok()?);
                    if !x.is_finite() {
                        return None;
                    }
                    Value::Float(x)
                }
                _ => return None,
            },
            _ => return None, // bytes (2) and tags (6: links) are Python's to write
        })
    }
}

impl<'a> Reader<'a> {
    /// A map's next key: text, after the one before in DAG-CBOR's canonical order (by
    /// length, then bytes; so never twice).
    fn key(&mut self, last: &mut Option<&'a str>) -> Option<&'a str> {
        let initial = self.byte()?;
        if initial >> 5 != 3 {
            return None;
        }
        let key = self.text(initial & 0x1F)?;
        if let Some(last) = *last {
            if (last.len(), last.as_bytes()) >= (key.len(), key.as_bytes()) {
                return None;
            }
        }
        *last = Some(key);
        Some(key)
    }

    /// Writes the JSON text of the value here into `out` as orjson writes the value `value`
    /// reads (compact, keys in the order of the map), without building it; None where
    /// `value` is None (`out` then holds part of a value: the caller declines the batch).
    fn transcode(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        let initial = self.byte()?;
        let (major, info) = (initial >> 5, initial & 0x1F);
        match major {
            0 => out.extend_from_slice(itoa::Buffer::new().format(i64::try_from(self.argument(info)?).ok()?).as_bytes()),
            1 => {
                let n = -1 - i64::try_from(self.argument(info)?).ok()?;
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            }
            3 => write_str(out, self.text(info)?),
            4 => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                let n = self.argument(info)?;
                out.push(b'[');
                for i in 0..n {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.transcode(out, depth + 1)?;
                }
                out.push(b']');
            }
            5 => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.pos -= 1; // (the head again, for transcode_map)
                self.transcode_map(out, |reader, out, _| reader.transcode(out, depth + 1))?;
            }
            7 => match info {
                20 => out.extend_from_slice(b"false"),
                21 => out.extend_from_slice(b"true"),
                22 => out.extend_from_slice(b"null"),
                27 => {
                    let x = f64::from_be_bytes(self.take(8)?.try_into().ok()?);
                    if !x.is_finite() {
                        return None;
                    }
                    write_float(out, x);
                }
                _ => return None,
            },
            _ => return None, // bytes (2) and tags (6: links) are Python's to write
        }
        Some(())
    }

    /// The map here written as JSON: `{`, each key (in canonical order, checked) and the value
    /// `value` writes for it, `}`; None where it is not a map, or `value` is None.
    fn transcode_map(&mut self, out: &mut Vec<u8>,
                     mut value: impl FnMut(&mut Self, &mut Vec<u8>, &'a str) -> Option<()>) -> Option<()> {
        let initial = self.byte()?;
        if initial >> 5 != 5 {
            return None;
        }
        let n = self.argument(initial & 0x1F)?;
        let mut last = None;
        out.push(b'{');
        for i in 0..n {
            if i > 0 {
                out.push(b',');
            }
            let key = self.key(&mut last)?;
            write_str(out, key);
            out.push(b':');
            value(self, out, key)?;
        }
        out.push(b'}');
        Some(())
    }

    /// `transcode` of the value here, and its bytes in the block (a field read afterwards).
    fn transcode_kept(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<&'a [u8]> {
        let start = self.pos;
        self.transcode(out, depth)?;
        Some(&self.data[start..self.pos])
    }
}

/// The fields of an item the columns hold besides its text: each value's DAG-CBOR bytes in
/// the block (decoded once the whole item has been written), None where the key is absent.
#[derive(Default)]
struct Fields<'a> {
    kind: Option<&'a [u8]>,
    id: Option<&'a [u8]>,
    collection: Option<&'a [u8]>,
    bbox: Option<&'a [u8]>,
    properties: bool,
    datetime: Option<&'a [u8]>,
    start_datetime: Option<&'a [u8]>,
    end_datetime: Option<&'a [u8]>,
    platform: Option<&'a [u8]>,
    instruments: Option<&'a [u8]>,
    title: Option<&'a [u8]>,
    keywords: Option<&'a [u8]>,
}

/// The JSON text of the item `block` written into `out` and its fields, in one pass over the
/// block; None where the block is not one whole value `Reader::value` reads, or not a map.
fn transcode_item<'a>(block: &'a [u8], out: &mut Vec<u8>) -> Option<Fields<'a>> {
    let mut reader = Reader { data: block, pos: 0 };
    let mut fields = Fields::default();
    reader.transcode_map(out, |reader, out, key| {
        match key {
            "type" => fields.kind = Some(reader.transcode_kept(out, 1)?),
            "id" => fields.id = Some(reader.transcode_kept(out, 1)?),
            "collection" => fields.collection = Some(reader.transcode_kept(out, 1)?),
            "bbox" => fields.bbox = Some(reader.transcode_kept(out, 1)?),
            "properties" if reader.data.get(reader.pos).is_some_and(|b| b >> 5 == 5) => {
                fields.properties = true;
                transcode_properties(reader, out, &mut fields)?;
            }
            _ => reader.transcode(out, 1)?,
        }
        Some(())
    })?; // (not a map: not an item)
    (reader.pos == block.len()).then_some(fields)
}

/// `transcode` of the item's `properties` map (at depth 1), keeping the fields the columns hold.
fn transcode_properties<'a>(reader: &mut Reader<'a>, out: &mut Vec<u8>, fields: &mut Fields<'a>) -> Option<()> {
    reader.transcode_map(out, |reader, out, key| {
        let kept = match key {
            "datetime" => &mut fields.datetime,
            "start_datetime" => &mut fields.start_datetime,
            "end_datetime" => &mut fields.end_datetime,
            "platform" => &mut fields.platform,
            "instruments" => &mut fields.instruments,
            "title" => &mut fields.title,
            "keywords" => &mut fields.keywords,
            _ => return reader.transcode(out, 2),
        };
        *kept = Some(reader.transcode_kept(out, 2)?);
        Some(())
    })
}

/// The value of a field's bytes (already read whole by `transcode`, so never None for a
/// field that is there).
fn field(bytes: Option<&[u8]>) -> Option<Value<'_>> {
    bytes.and_then(|bytes| Reader { data: bytes, pos: 0 }.value(0))
}

/// `x` as orjson writes a float: the shortest digits that read back as `x`, in fixed notation
/// for decimal exponents -5 to 15 (with `.0` when whole), else `1.5e-6` / `1e+16`.
pub fn write_float(out: &mut Vec<u8>, x: f64) {
    // ryu gives the shortest round-trip digits ("-1.2345e-6", "1e16", "0.001", "123.0"); only
    // where the point goes is laid out again here
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(x).as_bytes();
    if !text.contains(&b'e') {
        // ryu writes fixed notation for the same exponents, -5 to 15, and as orjson does
        // (tests/test_native.py: floats of every magnitude against orjson's text)
        out.extend_from_slice(text);
        return;
    }
    let (sign, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (mantissa, shift) = match text.iter().position(|&b| b == b'e') {
        Some(at) => (&text[..at], parse_exponent(&text[at + 1..])),
        None => (text, 0),
    };
    // the digits without the point, leading zeros and trailing zeros; `exponent`: the decimal
    // exponent of the first digit
    let point = mantissa.iter().position(|&b| b == b'.').unwrap_or(mantissa.len());
    let mut digits = [0u8; 24];
    let mut n = 0;
    let mut exponent = point as i32 - 1 + shift;
    let mut leading = true;
    for &b in mantissa {
        if b == b'.' {
            continue;
        }
        if leading && b == b'0' {
            exponent -= 1;
            continue;
        }
        leading = false;
        digits[n] = b;
        n += 1;
    }
    while n > 1 && digits[n - 1] == b'0' {
        n -= 1;
    }
    if n == 0 {
        // zero: "0.0" (and "-0.0")
        digits[0] = b'0';
        n = 1;
        exponent = 0;
    }
    let digits = &digits[..n];
    if sign {
        out.push(b'-');
    }
    if (-5..16).contains(&exponent) {
        if exponent < 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat(b'0').take((-exponent - 1) as usize));
            out.extend_from_slice(digits);
        } else {
            let whole = exponent as usize + 1;
            if digits.len() <= whole {
                out.extend_from_slice(digits);
                out.extend(std::iter::repeat(b'0').take(whole - digits.len()));
                out.extend_from_slice(b".0");
            } else {
                out.extend_from_slice(&digits[..whole]);
                out.push(b'.');
                out.extend_from_slice(&digits[whole..]);
            }
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        if exponent >= 0 {
            out.push(b'+');
        }
        out.extend_from_slice(itoa::Buffer::new().format(exponent).as_bytes());
    }
}

fn parse_exponent(text: &[u8]) -> i32 {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let value = digits.iter().fold(0i32, |acc, &d| acc * 10 + i32::from(d - b'0'));
    if negative {
        -value
    } else {
        value
    }
}

/// What a byte of a string becomes in JSON: 0 as it is, `u` as `\u00XX`, else `\` and this.
static ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0A] = b'n';
    table[0x0C] = b'f';
    table[0x0D] = b'r';
    table
};

/// Whether one of the 8 bytes of `word` is below 0x20, `"` or `\` (exact as a yes or no: a
/// borrow only ever spreads from a byte that matched).
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    (below | (quote.wrapping_sub(ONES) & !quote) | (backslash.wrapping_sub(ONES) & !backslash)) & HIGHS != 0
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut plain = 0; // start of the run of bytes written as they are
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            if !word_needs_escape(u64::from_le_bytes(word.try_into().expect("8 bytes"))) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let escape = ESCAPES[b as usize];
        if escape != 0 {
            out.extend_from_slice(&bytes[plain..i]);
            plain = i + 1;
            if escape == b'u' {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xF) as usize]);
            } else {
                out.push(b'\\');
                out.push(escape);
            }
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

/// One column: Arrow's validity bitmap (None: no NULLs), int32 offsets and data.
#[derive(Default)]
pub struct Column {
    pub nulls: Vec<bool>,
    pub offsets: Vec<i32>,
    pub data: Vec<u8>,
    /// a list column's values
    pub child: Option<Box<Column>>,
    pub child_count: usize,
}

impl Column {
    fn new() -> Self {
        Column { offsets: vec![0], ..Default::default() }
    }

    fn with_child() -> Self {
        Column { offsets: vec![0], child: Some(Box::new(Column::new())), ..Default::default() }
    }

    fn push_str(&mut self, s: Option<&str>) {
        self.nulls.push(s.is_none());
        if let Some(s) = s {
            self.data.extend_from_slice(s.as_bytes());
        }
        self.offsets.push(self.data.len() as i32);
    }

    /// A list of strings, or NULL (a value that is not a list of strings only).
    fn push_strings(&mut self, value: Option<&Value<'_>>) {
        let strings = match value {
            Some(Value::Array(items)) if items.iter().all(|v| matches!(v, Value::Str(_))) => Some(items),
            _ => None,
        };
        let child = self.child.as_mut().expect("a list column");
        self.nulls.push(strings.is_none());
        for item in strings.into_iter().flatten() {
            child.push_str(item.as_str());
            self.child_count += 1;
        }
        self.offsets.push(self.child_count as i32);
    }

    /// A list of numbers (not booleans) as doubles, or NULL.
    fn push_numbers(&mut self, value: Option<&Value<'_>>) {
        let numbers = match value {
            Some(Value::Array(items)) if items.iter().all(|v| matches!(v, Value::Int(_) | Value::Float(_))) => Some(items),
            _ => None,
        };
        let child = self.child.as_mut().expect("a list column");
        self.nulls.push(numbers.is_none());
        for item in numbers.into_iter().flatten() {
            let x = match item {
                Value::Int(n) => *n as f64,
                Value::Float(x) => *x,
                _ => unreachable!(),
            };
            child.data.extend_from_slice(&x.to_le_bytes());
            self.child_count += 1;
        }
        self.offsets.push(self.child_count as i32);
    }

    /// The validity bitmap (bit i set: value i is not NULL), or None when nothing is NULL.
    pub fn validity(&self) -> Option<Vec<u8>> {
        if !self.nulls.iter().any(|&n| n) {
            return None;
        }
        let mut bits = vec![0u8; self.nulls.len().div_ceil(8)];
        for (i, null) in self.nulls.iter().enumerate() {
            if !null {
                bits[i >> 3] |= 1 << (i & 7);
            }
        }
        Some(bits)
    }

    pub fn offset_bytes(&self) -> Vec<u8> {
        self.offsets.iter().flat_map(|o| o.to_le_bytes()).collect()
    }
}

fn text_of<'v>(value: Option<&'v Value<'_>>) -> Option<&'v str> {
    value.and_then(Value::as_str)
}

/// The names of the columns made here, in order (the item CID column is Python's).
pub const NAMES: [&str; 11] = [
    "id", "collection", "datetime_text", "start_datetime_text", "end_datetime_text", "bbox", "platform",
    "instruments", "title", "keywords", "item",
];

/// The columns of `blocks`, or None (see the module). Each item is written as JSON straight
/// from its block, its fields kept on the way (`transcode_item`), without building its value.
pub fn item_columns(blocks: &[&[u8]]) -> Option<Vec<Column>> {
    let mut columns: Vec<Column> = NAMES
        .iter()
        .map(|name| if matches!(*name, "bbox" | "instruments" | "keywords") { Column::with_child() } else { Column::new() })
        .collect();
    // (JSON text takes about 1.3 times the DAG-CBOR's bytes: quotes, colons, commas)
    columns[10].data.reserve(blocks.iter().map(|b| b.len() * 3 / 2).sum());
    for block in blocks {
        let fields = transcode_item(block, &mut columns[10].data)?;
        let kind = field(fields.kind);
        let id = field(fields.id);
        // `is_item`: `type` "Feature", a string `id` not blank, a map `properties`
        let is_item = kind.as_ref().and_then(Value::as_str) == Some("Feature")
            && id.as_ref().and_then(Value::as_str).is_some_and(|id| !py_strip(id).is_empty())
            && fields.properties;
        if !is_item {
            return None;
        }
        let item = &mut columns[10];
        item.nulls.push(false);
        item.offsets.push(item.data.len() as i32);
        columns[0].push_str(text_of(id.as_ref()));
        columns[1].push_str(text_of(field(fields.collection).as_ref()));
        columns[2].push_str(text_of(field(fields.datetime).as_ref()));
        columns[3].push_str(text_of(field(fields.start_datetime).as_ref()));
        columns[4].push_str(text_of(field(fields.end_datetime).as_ref()));
        columns[5].push_numbers(field(fields.bbox).as_ref());
        columns[6].push_str(text_of(field(fields.platform).as_ref()));
        columns[7].push_strings(field(fields.instruments).as_ref());
        columns[8].push_str(text_of(field(fields.title).as_ref()));
        columns[9].push_strings(field(fields.keywords).as_ref());
    }
    Some(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_needs_escaping_exactly_when_one_of_its_bytes_does() {
        // every byte value at every place, among bytes that need nothing and bytes that do
        for fill in [b'a', 0x7F, 0xC3, 0x20, b'"'] {
            for b in 0..=255u8 {
                for at in 0..8 {
                    let mut word = [fill; 8];
                    word[at] = b;
                    let naive = word.iter().any(|&c| ESCAPES[c as usize] != 0);
                    assert_eq!(word_needs_escape(u64::from_le_bytes(word)), naive, "{word:?}");
                }
            }
        }
    }

    #[test]
    fn strings_are_escaped_as_orjson_escapes_them() {
        let mut out = Vec::new();
        write_str(&mut out, "plain text, long enough for words \" \\ \u{8}\t\n\u{c}\r\u{0}\u{1f}\u{7f} é");
        assert_eq!(out, b"\"plain text, long enough for words \\\" \\\\ \\b\\t\\n\\f\\r\\u0000\\u001f\x7f \xc3\xa9\"");
    }

    #[test]
    fn an_item_is_written_in_one_pass_with_its_fields() {
        // {"id": "x", "bbox": [1.5, 2], "type": "Feature", "properties": {"title": "t", "z": null}}
        let block: &[u8] = b"\xa4\x62id\x61x\x64bbox\x82\xfb\x3f\xf8\x00\x00\x00\x00\x00\x00\x02\x64type\x67Feature\x6aproperties\xa2\x61z\xf6\x65title\x61t";
        let mut out = Vec::new();
        let fields = transcode_item(block, &mut out).expect("an item");
        assert_eq!(out, br#"{"id":"x","bbox":[1.5,2],"type":"Feature","properties":{"z":null,"title":"t"}}"#);
        assert!(fields.properties);
        assert_eq!(field(fields.title).as_ref().and_then(Value::as_str), Some("t"));
        assert!(fields.datetime.is_none());
        // keys out of canonical order, a trailing byte, a tag: declined
        assert!(transcode_item(b"\xa2\x64type\x61x\x62id\x61x", &mut Vec::new()).is_none());
        let mut longer = block.to_vec();
        longer.push(0);
        assert!(transcode_item(&longer, &mut Vec::new()).is_none());
        assert!(transcode_item(b"\xa1\x61a\xd8\x2a\x40", &mut Vec::new()).is_none());
    }
}
