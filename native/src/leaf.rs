//! A leaf of a prolly tree (`halodb/index/prolly.py`'s `Node` at level 0) read straight into
//! columns: its keys and, for each field asked for, the value each entry's map holds there.
//! Only the canonical DAG-CBOR of `{keys: [String], level: 0, values: [{field: Bytes |
//! String | Null}]}` is taken — keys strictly increasing, as many values as keys, every entry
//! a map of fields asked for — and anything else (links, other keys, other types, another
//! level, any head not in its shortest form) is declined: `None`, and Python decodes the
//! node and decides. What is taken, `Node.from_ipld(decode(block))` takes the same.

use crate::columns::Reader;

/// One entry's value of one field: absent (or null), bytes or text.
#[derive(Clone, Copy)]
pub enum Field<'a> {
    Absent,
    Bytes(&'a [u8]),
    Text(&'a str),
}

pub struct Leaf<'a> {
    pub keys: Vec<&'a str>,
    /// one column per field asked for, one value per key
    pub columns: Vec<Vec<Field<'a>>>,
}

/// The map key `name` next (a text head and its bytes).
fn expect_key(reader: &mut Reader<'_>, name: &str) -> Option<()> {
    let initial = reader.byte()?;
    (initial >> 5 == 3 && reader.text(initial & 0x1F)? == name).then_some(())
}

fn array_length(reader: &mut Reader<'_>) -> Option<usize> {
    let initial = reader.byte()?;
    if initial >> 5 != 4 {
        return None;
    }
    usize::try_from(reader.argument(initial & 0x1F)?).ok()
}

/// The leaf `block` in columns of `fields`, or None (see the module).
pub fn leaf_columns<'a>(block: &'a [u8], fields: &[&str]) -> Option<Leaf<'a>> {
    let mut reader = Reader { data: block, pos: 0 };
    // a map of three entries, in canonical order (by length, then bytes): keys, level, values
    if reader.byte()? != 0xA3 {
        return None;
    }
    expect_key(&mut reader, "keys")?;
    let n = array_length(&mut reader)?;
    if n > block.len() {
        return None; // (each key takes a byte at least: no allocation from a forged length)
    }
    let mut keys: Vec<&'a str> = Vec::with_capacity(n);
    for _ in 0..n {
        let initial = reader.byte()?;
        if initial >> 5 != 3 {
            return None;
        }
        let key = reader.text(initial & 0x1F)?;
        if keys.last().is_some_and(|last| last.as_bytes() >= key.as_bytes()) {
            return None; // (UTF-8 byte order is code point order: Python's order of str)
        }
        keys.push(key);
    }
    expect_key(&mut reader, "level")?;
    if reader.byte()? != 0x00 {
        return None;
    }
    expect_key(&mut reader, "values")?;
    if array_length(&mut reader)? != n {
        return None;
    }
    let mut columns = vec![vec![Field::Absent; n]; fields.len()];
    for row in 0..n {
        let initial = reader.byte()?;
        if initial >> 5 != 5 {
            return None;
        }
        let entries = reader.argument(initial & 0x1F)?;
        let mut last: Option<&str> = None;
        for _ in 0..entries {
            let key_initial = reader.byte()?;
            if key_initial >> 5 != 3 {
                return None;
            }
            let name = reader.text(key_initial & 0x1F)?;
            if last.is_some_and(|last| (last.len(), last.as_bytes()) >= (name.len(), name.as_bytes())) {
                return None; // canonical order, no key twice
            }
            last = Some(name);
            let column = fields.iter().position(|field| *field == name)?;
            let initial = reader.byte()?;
            let info = initial & 0x1F;
            columns[column][row] = match initial >> 5 {
                2 => {
                    let length = usize::try_from(reader.argument(info)?).ok()?;
                    Field::Bytes(reader.take(length)?)
                }
                3 => Field::Text(reader.text(info)?),
                7 if info == 22 => Field::Absent,
                _ => return None,
            };
        }
    }
    (reader.pos == block.len()).then_some(Leaf { keys, columns })
}
