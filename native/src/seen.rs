//! `TextSet`: which texts were noted before, kept as 64-bit hashes (8 bytes each where a
//! Python set of the strings would keep ~110): a first sync asks it whether a chunk's item
//! CIDs repeat one of an earlier chunk's, and looks those up only when one may.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hasher};

use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

/// A set of texts by their hashes: `add_all(texts)` notes them and says whether one of them
/// (or a text of an equal hash: then the caller looks it up, so a collision costs a look-up,
/// never an answer) was noted before.
#[pyclass(module = "halodb_native")]
pub struct TextSet {
    hashes: HashSet<u64>,
}

fn text_hash(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new(); // (SipHash with fixed keys: the same in every process)
    hasher.write(text.as_bytes());
    hasher.finish()
}

#[pymethods]
impl TextSet {
    #[new]
    fn new() -> Self {
        TextSet { hashes: HashSet::new() }
    }

    /// Note `texts` (a list of `str`); whether one of them was noted before. Without the GIL.
    fn add_all(&mut self, py: Python<'_>, texts: &Bound<'_, PyList>) -> PyResult<bool> {
        let held: Vec<Bound<'_, PyString>> = texts.iter().map(|text| text.cast_into::<PyString>()).collect::<Result<_, _>>()?;
        let views: Vec<&str> = held.iter().map(|text| text.to_str()).collect::<Result<_, _>>()?;
        let hashes = &mut self.hashes;
        Ok(py.detach(|| {
            hashes.reserve(views.len());
            let mut again = false;
            for view in &views {
                again |= !hashes.insert(text_hash(view));
            }
            again
        }))
    }

    fn __len__(&self) -> usize {
        self.hashes.len()
    }
}
