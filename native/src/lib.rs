//! `halodb_native`: HaloDB's hot loops in Rust. Optional — HaloDB's Python path does the same
//! work, slower, and decides every case this declines (see `docs/internals/native.md`).

mod cbor;
mod cid;
mod item;
mod json;
mod prolly;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

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

#[pymodule]
fn halodb_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(prepare_item, m)?)?;
    m.add_function(wrap_pyfunction!(prepare_lines, m)?)?;
    m.add_class::<prolly::LeafCutter>()?;
    m.add("MAX_ITEM_SIZE", item::MAX_ITEM_SIZE)?;
    Ok(())
}
