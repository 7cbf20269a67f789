//! `string_buffers`: a list of `str` (or None) as the three buffers of an Arrow string
//! column — validity bits, int32 offsets, UTF-8 bytes — what
//! `halodb.cache.arrow_columns.string_buffers` lays out in Python, one value at a time.

/// The buffers of `values` (each a text or absent): `(validity, offsets, data)`, validity
/// `None` when no value is absent; `None` when the bytes outgrow int32 offsets.
pub fn string_buffers(values: &[Option<&str>]) -> Option<(Option<Vec<u8>>, Vec<u8>, Vec<u8>)> {
    let total: usize = values.iter().map(|v| v.map_or(0, str::len)).sum();
    if total > i32::MAX as usize {
        return None;
    }
    let mut data = Vec::with_capacity(total);
    let mut offsets = Vec::with_capacity((values.len() + 1) * 4);
    offsets.extend_from_slice(&0i32.to_le_bytes());
    let mut validity = None;
    for (i, value) in values.iter().enumerate() {
        match value {
            Some(text) => data.extend_from_slice(text.as_bytes()),
            None => {
                let bits = validity.get_or_insert_with(|| {
                    let mut all = vec![0xffu8; values.len().div_ceil(8)];
                    if values.len() % 8 != 0 {
                        let last = all.len() - 1;
                        all[last] = (1u8 << (values.len() % 8)) - 1;
                    }
                    all
                });
                bits[i >> 3] &= !(1u8 << (i & 7));
            }
        }
        offsets.extend_from_slice(&(data.len() as i32).to_le_bytes());
    }
    Some((validity, offsets, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_texts_and_absent_values() {
        let (validity, offsets, data) = string_buffers(&[Some("ab"), None, Some("c")]).unwrap();
        assert_eq!(validity, Some(vec![0b101]));
        assert_eq!(offsets, [0i32, 2, 2, 3].iter().flat_map(|o| o.to_le_bytes()).collect::<Vec<u8>>());
        assert_eq!(data, b"abc");
        assert_eq!(string_buffers(&[Some("x")]).unwrap().0, None);
    }
}
