//! A strict JSON reader for one ndjson line, to the values HaloDB's Python reader makes of it.
//!
//! It accepts a subset of what Python accepts and declines (returns `None`) everything else,
//! so that the Python path decides — and names the error — for any line it does not take:
//! RFC 8259 only (no NaN or Infinity, no raw control characters in strings, no lone
//! surrogates), an object never names a key twice, integers fit 64 bits signed, floats are
//! finite, nesting stays below `MAX_DEPTH`. Numbers keep the distinction Python makes: a
//! number without a fraction or an exponent is an integer (so `-0` is the integer 0), any
//! other a float, rounded to the nearest double as Python's `float()` rounds it.

/// Deeper than this (objects and arrays) is declined; HaloDB refuses 64 levels in an item.
pub const MAX_DEPTH: usize = 60;

use std::borrow::Cow;

/// A JSON value; its strings borrow from the line unless they hold an escape.
#[derive(Debug)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    /// entries in the order written (no key twice)
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The value of `name` in an object; `None` for a missing key and for anything not an object.
    pub fn get(&self, name: &str) -> Option<&Value<'a>> {
        match self {
            Value::Object(entries) => entries.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Python's `obj.get(name)` is not None: present and not null.
    pub fn get_some(&self, name: &str) -> Option<&Value<'a>> {
        match self.get(name) {
            None | Some(Value::Null) => None,
            found => found,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The value of `text`, or `None` to leave the line to the Python path.
pub fn parse(text: &str) -> Option<Value<'_>> {
    let mut reader = Reader { text, bytes: text.as_bytes(), pos: 0 };
    reader.skip_ws();
    let value = reader.value(0)?;
    reader.skip_ws();
    if reader.pos != reader.bytes.len() {
        return None;
    }
    Some(value)
}

fn has_duplicates(entries: &[(Cow<'_, str>, Value<'_>)]) -> bool {
    if entries.len() <= 16 {
        return entries.iter().enumerate().any(|(i, (k, _))| entries[..i].iter().any(|(j, _)| j == k));
    }
    let mut keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_ref()).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8], value: Value<'a>) -> Option<Value<'a>> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Some(value)
        } else {
            None
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value<'a>> {
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(Value::Str),
            b't' => self.literal(b"true", Value::Bool(true)),
            b'f' => self.literal(b"false", Value::Bool(false)),
            b'n' => self.literal(b"null", Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn object(&mut self, depth: usize) -> Option<Value<'a>> {
        let mut entries: Vec<(Cow<'a, str>, Value<'a>)> = Vec::new();
        self.sequence(depth, b'}', |reader| {
            if reader.peek()? != b'"' {
                return None;
            }
            let key = reader.string()?;
            reader.skip_ws();
            if reader.peek()? != b':' {
                return None;
            }
            reader.pos += 1;
            reader.skip_ws();
            entries.push((key, reader.value(depth)?));
            Some(())
        })?;
        // a key twice: which one counts is the Python path's to say
        (!has_duplicates(&entries)).then_some(Value::Object(entries))
    }

    fn array(&mut self, depth: usize) -> Option<Value<'a>> {
        let mut items = Vec::new();
        self.sequence(depth, b']', |reader| {
            items.push(reader.value(depth)?);
            Some(())
        })?;
        Some(Value::Array(items))
    }

    /// The elements of an object or array (at its opening bracket) up to `close`, separated
    /// by commas, each read by `element`; None past `MAX_DEPTH` or for anything malformed.
    fn sequence(&mut self, depth: usize, close: u8, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.pos += 1; // the opening bracket
        self.skip_ws();
        if self.peek()? == close {
            self.pos += 1;
            return Some(());
        }
        loop {
            self.skip_ws();
            element(self)?;
            self.skip_ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b if b == close => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes.get(self.pos..self.pos + 4)?;
        let mut n = 0u32;
        for &d in digits {
            n = n * 16 + (d as char).to_digit(16)?;
        }
        self.pos += 4;
        Some(n)
    }

    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.pos += 1; // "
        let start = self.pos;
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(Cow::Borrowed(&self.text[start..self.pos - 1]));
                }
                b'\\' => return self.escaped(start).map(Cow::Owned),
                0x00..=0x1F => return None, // a raw control character
                _ => self.pos += 1,
            }
        }
    }

    /// The rest of a string that holds an escape (at `self.pos`), from `start`.
    fn escaped(&mut self, mut start: usize) -> Option<String> {
        let mut out = String::new();
        loop {
            let b = self.peek()?;
            match b {
                b'"' => {
                    out.push_str(&self.text[start..self.pos]);
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    out.push_str(&self.text[start..self.pos]);
                    self.pos += 1;
                    let escaped = self.peek()?;
                    self.pos += 1;
                    match escaped {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let first = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&first) {
                                if self.bytes.get(self.pos..self.pos + 2)? != b"\\u" {
                                    return None; // a lone surrogate
                                }
                                self.pos += 2;
                                let second = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&second) {
                                    return None;
                                }
                                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                            } else {
                                first
                            };
                            out.push(char::from_u32(code)?); // (a lone low surrogate is None)
                        }
                        _ => return None,
                    }
                    start = self.pos;
                }
                0x00..=0x1F => return None,
                _ => self.pos += 1,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Option<Value<'a>> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let first = self.peek()?;
        let whole = self.digits();
        if whole == 0 || (first == b'0' && whole > 1) {
            return None; // no digits, or a leading zero
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return None;
            }
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            float = true;
        }
        let token = &self.text[start..self.pos];
        if float {
            let x: f64 = token.parse().ok()?; // (correctly rounded, as Python's float())
            x.is_finite().then_some(Value::Float(x))
        } else {
            token.parse::<i64>().ok().map(Value::Int) // (past 64 bits signed: declined)
        }
    }
}
