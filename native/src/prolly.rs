//! The leaves of a prolly tree built in key order: HaloDB's chunking rule and node layout
//! (`halodb/index/prolly.py`: `_SortedBuilder.push` at level 0, `_node_bytes`), byte for byte.
//! Python hands over each entry's key and its value's DAG-CBOR; a finished leaf comes back
//! as `(first key, entries, CID, bytes)`. The levels above stay in Python (a few nodes).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};
use sha2::{Digest, Sha256};

use crate::cbor::{head, text};

/// `{"keys": [...], "level": n, "values": [...]}`: the map head and its first key
const NODE_HEAD: &[u8] = b"\xa3\x64keys";

#[pyclass(module = "halodb_native")]
pub struct LeafCutter {
    /// the size rule's leaf size (index format 3), or 0: the fanout rule
    leaf_bytes: u64,
    /// the fanout rule's threshold
    threshold: u64,
    /// the class of links (`halodb.ipld.CID`)
    cid_type: Py<PyType>,
    first: Option<String>,
    n: u64,
    keys: Vec<u8>,
    values: Vec<u8>,
}

impl LeafCutter {
    /// `value`'s DAG-CBOR into `out` when it is of a shape encoded here (see `push_value`).
    fn encode(&self, value: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<bool> {
        if value.is_none() {
            out.push(0xF6);
        } else if let Ok(s) = value.cast_exact::<PyString>() {
            text(out, s.to_str()?);
        } else if let Ok(map) = value.cast_exact::<PyDict>() {
            let mut fields: Vec<(String, Bound<'_, PyAny>)> = Vec::with_capacity(map.len());
            for (k, v) in map.iter() {
                let Ok(k) = k.cast_exact::<PyString>() else { return Ok(false) };
                fields.push((k.to_str()?.to_owned(), v));
            }
            fields.sort_unstable_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes())));
            head(out, 5, fields.len() as u64);
            for (k, v) in fields {
                text(out, &k);
                if v.is_none() {
                    out.push(0xF6);
                } else if let Ok(s) = v.cast_exact::<PyString>() {
                    text(out, s.to_str()?);
                } else if let Ok(bytes) = v.cast_exact::<PyBytes>() {
                    head(out, 2, bytes.as_bytes().len() as u64);
                    out.extend_from_slice(bytes.as_bytes());
                } else if v.get_type().is(self.cid_type.bind(value.py())) {
                    let buffer = v.getattr("buffer")?;
                    let buffer = buffer.cast_exact::<PyBytes>()?.as_bytes();
                    out.extend_from_slice(&[0xD8, 0x2A]); // tag 42: a link
                    head(out, 2, buffer.len() as u64 + 1);
                    out.push(0x00); // (the identity multibase prefix)
                    out.extend_from_slice(buffer);
                } else {
                    return Ok(false);
                }
            }
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    fn boundary(&self, utf8: &[u8], value_len: usize) -> bool {
        let threshold = if self.leaf_bytes > 0 {
            let size = (utf8.len() + value_len) as u128;
            ((size << 32) / self.leaf_bytes as u128).min(1 << 32) as u64
        } else {
            self.threshold
        };
        let mut hasher = Sha256::new();
        hasher.update([0u8]);
        hasher.update(utf8);
        let h = hasher.finalize();
        u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]])) < threshold
    }

    fn add(&mut self, key: &str, value: &[u8]) -> bool {
        if self.first.is_none() {
            self.first = Some(key.to_owned());
        }
        text(&mut self.keys, key);
        self.values.extend_from_slice(value);
        self.n += 1;
        self.boundary(key.as_bytes(), value.len())
    }

    fn take<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some(first) = self.first.take() else { return Ok(None) };
        let mut node = Vec::with_capacity(NODE_HEAD.len() + self.keys.len() + self.values.len() + 32);
        node.extend_from_slice(NODE_HEAD);
        head(&mut node, 4, self.n);
        node.extend_from_slice(&self.keys);
        node.extend_from_slice(b"\x65level\x00\x66values");
        head(&mut node, 4, self.n);
        node.extend_from_slice(&self.values);
        let mut cid = vec![0x01, 0x71, 0x12, 0x20];
        cid.extend_from_slice(&Sha256::digest(&node));
        let n = self.n;
        self.n = 0;
        self.keys.clear();
        self.values.clear();
        PyTuple::new(py, [
            PyString::new(py, &first).into_any(),
            n.into_pyobject(py)?.into_any(),
            PyBytes::new(py, &cid).into_any(),
            PyBytes::new(py, &node).into_any(),
        ]).map(Some)
    }
}

#[pymethods]
impl LeafCutter {
    /// `LeafCutter(leaf_bytes, threshold, cid_type)`: `leaf_bytes` 0 for the fanout rule;
    /// `cid_type` the class whose instances are links (their binary form in `.buffer`).
    #[new]
    fn new(leaf_bytes: u64, threshold: u64, cid_type: Py<PyType>) -> Self {
        LeafCutter { leaf_bytes, threshold, cid_type, first: None, n: 0, keys: Vec::new(), values: Vec::new() }
    }

    /// Add the entries `keys` (str) with their values' DAG-CBOR `values` (bytes), in key
    /// order; the leaves they finish, in order.
    fn push<'py>(&mut self, py: Python<'py>, keys: &Bound<'py, PyList>, values: &Bound<'py, PyList>)
                 -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for (key, value) in keys.iter().zip(values.iter()) {
            let key = key.cast::<PyString>()?;
            let value = value.cast::<PyBytes>()?;
            if self.add(key.to_str()?, value.as_bytes()) {
                if let Some(node) = self.take(py)? {
                    out.append(node)?;
                }
            }
        }
        Ok(out)
    }

    /// Add the entries `keys` (str, strictly increasing) with their values' DAG-CBOR
    /// `values` (bytes); the leaves they finish, in order, how many entries were added, and
    /// whether the keys were in order. It stops before a key not above the one before it
    /// (`False`), and, with `to_boundary`, after the first entry that finishes a leaf.
    fn push_sorted<'py>(&mut self, py: Python<'py>, keys: &Bound<'py, PyList>, values: &Bound<'py, PyList>,
                        to_boundary: bool) -> PyResult<(Bound<'py, PyList>, usize, bool)> {
        if keys.len() != values.len() {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "push_sorted: {} keys but {} values", keys.len(), values.len())));
        }
        let out = PyList::empty(py);
        let mut before: Option<Bound<'py, PyString>> = None;
        let mut added = 0;
        for (key, value) in keys.iter().zip(values.iter()) {
            let key = key.cast_into::<PyString>()?;
            let value = value.cast::<PyBytes>()?;
            let text = key.to_str()?;
            if let Some(before) = &before {
                if before.to_str()?.as_bytes() >= text.as_bytes() {
                    return Ok((out, added, false));
                }
            }
            added += 1;
            if self.add(text, value.as_bytes()) {
                if let Some(node) = self.take(py)? {
                    out.append(node)?;
                }
                if to_boundary {
                    break;
                }
            }
            before = Some(key);
        }
        Ok((out, added, true))
    }

    /// Add one entry; the leaf it finishes, or None.
    fn push_one<'py>(&mut self, py: Python<'py>, key: &str, value: &[u8]) -> PyResult<Option<Bound<'py, PyTuple>>> {
        if self.add(key, value) { self.take(py) } else { Ok(None) }
    }

    /// Add one entry, its value encoded here when it is a text, null, or a map of texts to
    /// texts, nulls, bytes and links (a dataset's entry, a lookup tree's value) — as
    /// `encode_shallow` encodes it; any other value: `NotImplemented`, nothing added (the
    /// caller encodes it and calls `push_one`).
    fn push_value<'py>(&mut self, py: Python<'py>, key: &str, value: &Bound<'py, PyAny>) -> PyResult<Py<PyAny>> {
        let mut encoded = Vec::new();
        if !self.encode(value, &mut encoded)? {
            return Ok(py.NotImplemented());
        }
        if self.add(key, &encoded) {
            if let Some(node) = self.take(py)? {
                return Ok(node.into_any().unbind());
            }
        }
        Ok(py.None())
    }

    /// The unfinished leaf as a node (None: there is none); the cutter is empty after.
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.take(py)
    }

    /// Whether a leaf is begun and not finished.
    fn pending(&self) -> bool {
        self.first.is_some()
    }
}
