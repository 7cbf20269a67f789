//! DAG-CBOR of a JSON value, byte for byte what `halodb.ipld.encode_json` (libipld) writes:
//! the shortest head for every length and integer, floats always as 64 bits (negative zero
//! as zero), map keys sorted by length and then bytewise.

use crate::json::Value;

/// The shortest CBOR head of `major` with argument `n`.
pub fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let top = major << 5;
    if n < 24 {
        out.push(top | n as u8);
    } else if n < 0x100 {
        out.extend_from_slice(&[top | 24, n as u8]);
    } else if n < 0x10000 {
        out.push(top | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n < 0x1_0000_0000 {
        out.push(top | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(top | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// A text string: its head and UTF-8.
pub fn text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Append the encoding of `value` to `out`.
pub fn encode(out: &mut Vec<u8>, value: &Value<'_>) {
    match value {
        Value::Null => out.push(0xF6),
        Value::Bool(false) => out.push(0xF4),
        Value::Bool(true) => out.push(0xF5),
        Value::Int(n) if *n >= 0 => head(out, 0, *n as u64),
        Value::Int(n) => head(out, 1, (-1 - *n) as u64),
        Value::Float(x) => {
            out.push(0xFB);
            let x = if *x == 0.0 { 0.0 } else { *x }; // (libipld writes -0.0 as 0.0)
            out.extend_from_slice(&x.to_be_bytes());
        }
        Value::Str(s) => text(out, s),
        Value::Array(items) => {
            head(out, 4, items.len() as u64);
            for item in items {
                encode(out, item);
            }
        }
        Value::Object(entries) => {
            let mut sorted: Vec<&(std::borrow::Cow<'_, str>, Value<'_>)> = entries.iter().collect();
            sorted.sort_unstable_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes())));
            head(out, 5, sorted.len() as u64);
            for (k, v) in sorted {
                text(out, k);
                encode(out, v);
            }
        }
    }
}
