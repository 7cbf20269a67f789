//! `halodb_native`: HaloDB's hot loops in Rust. Optional — HaloDB's Python path does the same
//! work, slower, and decides every case this declines (see `docs/internals/native.md`).

mod cbor;
mod cid;
mod columns;
mod item;
mod json;
mod leaf;
mod prolly;
mod seen;
mod staged;
mod strings;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

/// `prepare_item(line)`: for an ndjson line (a `str`), the tuple
/// `(key, collection, cid, block, data, path, doi)` that `halodb add` stages for it — the
/// item's binary CIDv1 and DAG-CBOR block, its data CID, path and DOI as the Python path
/// computes them — or `None` when the line is not surely a valid, normalized STAC item (the
/// Python path then reads it, and names what is wrong). One line at a time: a reader never
/// waits for lines beyond the one it has.
#[pyfunction]
fn prepare_item<'py>(py: Python<'py>, line: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let Ok(text) = line.cast::<PyString>() else { return Ok(None) };
    let Ok(text) = text.to_str() else { return Ok(None) }; // (a lone surrogate: not UTF-8)
    let Some(p) = item::prepare(text) else { return Ok(None) };
    to_tuple(py, p).map(Some)
}

/// `prepare_lines(lines)`: `prepare_item` of each of `lines` (a list of `str`), computed
/// without holding the GIL, so that another Python thread runs meanwhile.
#[pyfunction]
fn prepare_lines<'py>(py: Python<'py>, lines: &Bound<'py, PyList>) -> PyResult<Bound<'py, PyList>> {
    let texts: Vec<Option<String>> = lines
        .iter()
        .map(|line| line.cast::<PyString>().ok().and_then(|s| s.to_str().ok().map(str::to_owned)))
        .collect();
    let prepared: Vec<Option<item::Prepared>> =
        py.detach(|| texts.iter().map(|t| t.as_deref().and_then(item::prepare)).collect());
    let out = PyList::empty(py);
    for p in prepared {
        match p {
            None => out.append(py.None())?,
            Some(p) => out.append(to_tuple(py, p)?)?,
        }
    }
    Ok(out)
}

fn to_tuple(py: Python<'_>, p: item::Prepared) -> PyResult<Bound<'_, PyTuple>> {
    PyTuple::new(py, [
        p.key.into_pyobject(py)?.into_any(),
        p.collection.into_pyobject(py)?.into_any(),
        PyBytes::new(py, &p.cid).into_any(),
        PyBytes::new(py, &p.block).into_any(),
        p.data.into_pyobject(py)?.into_any(),
        p.path.into_pyobject(py)?.into_any(),
        p.doi.into_pyobject(py)?.into_any(),
    ])
}

/// `item_columns(blocks)`: the columns the cache holds of the STAC items `blocks` (DAG-CBOR,
/// held inline in an index), as `{name: (kind, length, validity, offsets, data, child)}` —
/// `halodb.cache.stac_columns.item_columns` of the decoded items, byte for byte — or `None`
/// when one block is not taken here (Python then decides the whole batch). Without the GIL.
#[pyfunction]
fn item_columns<'py>(py: Python<'py>, blocks: &Bound<'py, PyList>) -> PyResult<Option<Bound<'py, PyDict>>> {
    // (the bytes objects are immutable and held by `held` while the views are read)
    let held: Vec<Bound<'py, PyBytes>> = blocks.iter().map(|block| block.cast_into::<PyBytes>()).collect::<Result<_, _>>()?;
    let views: Vec<&[u8]> = held.iter().map(|block| block.as_bytes()).collect();
    let columns = py.detach(|| columns::item_columns(&views));
    let Some(columns) = columns else { return Ok(None) };
    let out = PyDict::new(py);
    for (name, column) in columns::NAMES.iter().zip(columns) {
        out.set_item(name, buffers(py, &column, *name)?)?;
    }
    Ok(Some(out))
}

/// `leaf_columns(block, fields)`: a prolly tree leaf's keys and, per field, its entries'
/// values (bytes, str, or None where absent or null) as `(keys, (column, ...))`, or `None`
/// when the block is not a canonical leaf of entries holding only those fields, as bytes,
/// text or null (Python then decodes it, and decides). Without the GIL.
#[pyfunction]
fn leaf_columns<'py>(py: Python<'py>, block: &Bound<'py, PyBytes>, fields: Vec<String>) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let names: Vec<&str> = fields.iter().map(String::as_str).collect();
    let data = block.as_bytes();
    let Some(leaf) = py.detach(|| leaf::leaf_columns(data, &names)) else { return Ok(None) };
    let keys = PyList::new(py, leaf.keys.iter().map(|key| PyString::new(py, key)))?;
    let mut columns = Vec::with_capacity(leaf.columns.len());
    for column in &leaf.columns {
        columns.push(PyList::new(py, column.iter().map(|value| match value {
            leaf::Field::Absent => py.None().into_bound(py),
            leaf::Field::Bytes(bytes) => PyBytes::new(py, bytes).into_any(),
            leaf::Field::Text(text) => PyString::new(py, text).into_any(),
        }))?);
    }
    Ok(Some(PyTuple::new(py, [keys.into_any(), PyTuple::new(py, columns)?.into_any()])?))
}

/// `dag_cbor_cid_texts(blocks)`: the CIDv1 text of each DAG-CBOR block —
/// `CID.texts_for_blocks(blocks)` — without the GIL.
#[pyfunction]
fn dag_cbor_cid_texts<'py>(py: Python<'py>, blocks: &Bound<'py, PyList>) -> PyResult<Vec<String>> {
    let held: Vec<Bound<'py, PyBytes>> = blocks.iter().map(|block| block.cast_into::<PyBytes>()).collect::<Result<_, _>>()?;
    let views: Vec<&[u8]> = held.iter().map(|block| block.as_bytes()).collect();
    Ok(py.detach(|| views.iter().map(|block| cid::dag_cbor_cid_text(block)).collect()))
}

/// `string_buffers(values)`: a list whose items are each a `str` or None as the buffers of
/// an Arrow string column, `(validity or None, int32 offsets, UTF-8 data)` — as
/// `halodb.cache.arrow_columns.string_buffers` lays them out — or `None` when an item is
/// anything else or the bytes outgrow int32 offsets (Python then decides, and says what).
#[pyfunction(name = "string_buffers")]
fn string_buffers_py<'py>(py: Python<'py>, values: &Bound<'py, PyList>) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let mut texts: Vec<Option<&str>> = Vec::with_capacity(values.len());
    let held: Vec<Bound<'py, PyAny>> = values.iter().collect();
    for value in &held {
        if value.is_none() {
            texts.push(None);
        } else if let Ok(text) = value.cast::<PyString>() {
            match text.to_str() {
                Ok(text) => texts.push(Some(text)),
                Err(_) => return Ok(None), // (a lone surrogate: Python's encode says so)
            }
        } else {
            return Ok(None);
        }
    }
    let Some((validity, offsets, data)) = strings::string_buffers(&texts) else { return Ok(None) };
    let validity = validity.map(|v| PyBytes::new(py, &v).into_any()).unwrap_or_else(|| py.None().into_bound(py));
    Ok(Some(PyTuple::new(py, [validity, PyBytes::new(py, &offsets).into_any(), PyBytes::new(py, &data).into_any()])?))
}

/// The items of a sequence, held.
fn held_items<'py>(values: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyAny>>> {
    values.try_iter()?.collect()
}

/// A `bytes` or None; `Err(())` for anything else (declined).
fn optional_bytes<'a>(value: &'a Bound<'_, PyAny>) -> Result<Option<&'a [u8]>, ()> {
    if value.is_none() { Ok(None) } else { value.cast::<PyBytes>().map(|b| Some(b.as_bytes())).map_err(|_| ()) }
}

/// A `str` or None; `Err(())` for anything else, and a lone surrogate (declined).
fn optional_text<'a>(value: &'a Bound<'_, PyAny>) -> Result<Option<&'a str>, ()> {
    if value.is_none() {
        return Ok(None);
    }
    value.cast::<PyString>().ok().and_then(|text| text.to_str().ok()).map(Some).ok_or(())
}

/// `staged_bytes(pack, items, held, at, size)`: for staged rows — their items' binary CIDs,
/// the bytes the stage's table holds (or None), where in the pack file (descriptor `pack`,
/// or None) their bytes are (`at`, `size`, or None) — the item bytes of each, checked
/// against its CID (None: none staged), and how many rows that covers: it stops at the
/// first row it does not take (with bytes or without: a CID other than a CIDv1 of a one-byte codec or a CIDv0
/// with SHA-256, bytes that do not hash to it, a pack that cannot be read there), which
/// Python decides. Reads and hashes without the GIL.
#[pyfunction]
fn staged_bytes<'py>(py: Python<'py>, pack: Option<i32>, items: &Bound<'py, PyAny>, held: &Bound<'py, PyAny>,
                     at: &Bound<'py, PyAny>, size: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyList>, usize)> {
    let (items, held, at, size) = (held_items(items)?, held_items(held)?, held_items(at)?, held_items(size)?);
    let mut rows = Vec::with_capacity(items.len());
    for (((item, held), at), size) in items.iter().zip(&held).zip(&at).zip(&size) {
        let place = match (at.extract::<Option<u64>>(), size.extract::<Option<usize>>()) {
            (Ok(Some(at)), Ok(Some(size))) => Some((at, size)),
            (Ok(None), Ok(None)) => None,
            _ => break, // (half a place, or not one: Python decides)
        };
        let (Ok(cid), Ok(held)) = (item.cast::<PyBytes>(), optional_bytes(held)) else { break };
        rows.push(staged::Row { cid: cid.as_bytes(), held, at: place });
    }
    let (bytes, stop) = py.detach(|| staged::staged_bytes(pack, &rows));
    let out = PyList::empty(py);
    for value in bytes {
        match value {
            None => out.append(py.None())?,
            Some(value) => out.append(PyBytes::new(py, &value))?,
        }
    }
    Ok((out, stop))
}

/// `entry_values(items, held, data, paths, dois, inline_max)`: the DAG-CBOR of each dataset
/// entry's value as index format 3 holds its item inline (`{"item": bytes, ...}`:
/// `encode_shallow(entry.to_ipld_holding(held))`), or None for an entry it would not hold so
/// (no bytes, more than `inline_max`, an item not a CIDv1 of DAG-CBOR and SHA-256) or a
/// field of another type (Python decides those). Without the GIL.
#[pyfunction]
fn entry_values<'py>(py: Python<'py>, items: &Bound<'py, PyAny>, held: &Bound<'py, PyAny>, data: &Bound<'py, PyAny>,
                     paths: &Bound<'py, PyAny>, dois: &Bound<'py, PyAny>, inline_max: usize) -> PyResult<Bound<'py, PyList>> {
    let columns = [held_items(items)?, held_items(held)?, held_items(data)?, held_items(paths)?, held_items(dois)?];
    let n = columns[0].len();
    if columns.iter().any(|column| column.len() != n) {
        return Err(pyo3::exceptions::PyValueError::new_err("entry_values: columns of different lengths"));
    }
    let mut entries = Vec::with_capacity(n);
    for row in 0..n {
        let cid = columns[0][row].cast::<PyBytes>().map(|cid| cid.as_bytes());
        let held = optional_bytes(&columns[1][row]);
        let fields = (optional_text(&columns[2][row]), optional_text(&columns[3][row]), optional_text(&columns[4][row]));
        entries.push(match (cid, held, fields) {
            (Ok(cid), Ok(held), (Ok(data), Ok(path), Ok(doi))) => Some(staged::Entry { cid, held, data, path, doi }),
            _ => None,
        });
    }
    let values: Vec<Option<Vec<u8>>> = py.detach(|| {
        entries.iter().map(|entry| entry.as_ref().and_then(|entry| staged::inline_value(entry, inline_max))).collect()
    });
    let out = PyList::empty(py);
    for value in values {
        match value {
            None => out.append(py.None())?,
            Some(value) => out.append(PyBytes::new(py, &value))?,
        }
    }
    Ok(out)
}

fn buffers<'py>(py: Python<'py>, column: &columns::Column, name: &str) -> PyResult<Bound<'py, PyTuple>> {
    let length = column.nulls.len();
    let validity = column.validity().map(|v| PyBytes::new(py, &v).into_any()).unwrap_or_else(|| py.None().into_bound(py));
    let offsets = PyBytes::new(py, &column.offset_bytes()).into_any();
    match &column.child {
        None => PyTuple::new(py, [
            PyString::new(py, "string").into_any(), length.into_pyobject(py)?.into_any(), validity, offsets,
            PyBytes::new(py, &column.data).into_any(), py.None().into_bound(py),
        ]),
        Some(child) => {
            let child = if name == "bbox" {
                PyTuple::new(py, [
                    PyString::new(py, "float64").into_any(), column.child_count.into_pyobject(py)?.into_any(),
                    py.None().into_bound(py), py.None().into_bound(py), PyBytes::new(py, &child.data).into_any(),
                    py.None().into_bound(py),
                ])?
            } else {
                buffers(py, child, "")?
            };
            PyTuple::new(py, [
                PyString::new(py, "list").into_any(), length.into_pyobject(py)?.into_any(), validity, offsets,
                py.None().into_bound(py), child.into_any(),
            ])
        }
    }
}

#[pymodule]
fn halodb_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(prepare_item, m)?)?;
    m.add_function(wrap_pyfunction!(prepare_lines, m)?)?;
    m.add_function(wrap_pyfunction!(item_columns, m)?)?;
    m.add_function(wrap_pyfunction!(leaf_columns, m)?)?;
    m.add_function(wrap_pyfunction!(dag_cbor_cid_texts, m)?)?;
    m.add_function(wrap_pyfunction!(string_buffers_py, m)?)?;
    m.add_function(wrap_pyfunction!(staged_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(entry_values, m)?)?;
    m.add_class::<prolly::LeafCutter>()?;
    m.add_class::<seen::TextSet>()?;
    m.add("MAX_ITEM_SIZE", item::MAX_ITEM_SIZE)?;
    Ok(())
}
