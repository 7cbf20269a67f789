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
                for _ in 0..n {
                    let key_initial = self.byte()?;
                    if key_initial >> 5 != 3 {
                        return None;
                    }
                    let key = self.text(key_initial & 0x1F)?;
                    if let Some((last, _)) = entries.last() {
                        // canonical order (by length, then bytes), no key twice
                        if (last.len(), last.as_bytes()) >= (key.len(), key.as_bytes()) {
                            return None;
                        }
                    }
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

/// The value of a whole block, or None (see the module).
pub fn decode(block: &[u8]) -> Option<Value<'_>> {
    let mut reader = Reader { data: block, pos: 0 };
    let value = reader.value(0)?;
    (reader.pos == block.len()).then_some(value)
}

/// `x` as orjson writes a float: the shortest digits that read back as `x`, in fixed notation
/// for decimal exponents -5 to 15 (with `.0` when whole), else `1.5e-6` / `1e+16`.
pub fn write_float(out: &mut Vec<u8>, x: f64) {
    // ryu gives the shortest round-trip digits ("-1.2345e-6", "1e16", "0.001", "123.0"); only
    // where the point goes is laid out again here
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(x).as_bytes();
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

fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut plain = 0; // start of the run of bytes written as they are
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0A => b"\\n",
            0x0C => b"\\f",
            0x0D => b"\\r",
            0x00..=0x1F => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..i]);
        plain = i + 1;
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xF) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

/// The compact JSON text of `value`, as orjson writes it (keys in the order of the map).
pub fn write_json(out: &mut Vec<u8>, value: &Value<'_>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        Value::Float(x) => write_float(out, *x),
        Value::Str(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, item);
            }
            out.push(b']');
        }
        Value::Object(entries) => {
            out.push(b'{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_json(out, v);
            }
            out.push(b'}');
        }
    }
}

/// `item_problem` is None: a map with `type` "Feature", a string `id` not blank, a map `properties`.
pub fn is_item(value: &Value<'_>) -> bool {
    matches!(value, Value::Object(_))
        && value.get("type").and_then(Value::as_str) == Some("Feature")
        && value.get("id").and_then(Value::as_str).is_some_and(|id| !py_strip(id).is_empty())
        && matches!(value.get("properties"), Some(Value::Object(_)))
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

    fn push_bytes(&mut self, bytes: &[u8]) {
        self.nulls.push(false);
        self.data.extend_from_slice(bytes);
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

/// The columns of `blocks`, or None (see the module).
pub fn item_columns(blocks: &[&[u8]]) -> Option<Vec<Column>> {
    let mut columns: Vec<Column> = NAMES
        .iter()
        .map(|name| if matches!(*name, "bbox" | "instruments" | "keywords") { Column::with_child() } else { Column::new() })
        .collect();
    let mut text = Vec::new();
    // (JSON text takes about 1.3 times the DAG-CBOR's bytes: quotes, colons, commas)
    columns[10].data.reserve(blocks.iter().map(|b| b.len() * 3 / 2).sum());
    for block in blocks {
        let item = decode(block)?;
        if !is_item(&item) {
            return None;
        }
        let props = item.get("properties")?;
        columns[0].push_str(text_of(item.get("id")));
        columns[1].push_str(text_of(item.get("collection")));
        columns[2].push_str(text_of(props.get("datetime")));
        columns[3].push_str(text_of(props.get("start_datetime")));
        columns[4].push_str(text_of(props.get("end_datetime")));
        columns[5].push_numbers(item.get("bbox"));
        columns[6].push_str(text_of(props.get("platform")));
        columns[7].push_strings(props.get("instruments"));
        columns[8].push_str(text_of(props.get("title")));
        columns[9].push_strings(props.get("keywords"));
        text.clear();
        write_json(&mut text, &item);
        columns[10].push_bytes(&text);
    }
    Some(columns)
}
