//! One STAC item line to what `halodb add` stages of it — or `None` to leave it to Python.
//!
//! This is the Python path's quick check (`halodb/stac/items.py`: `_quick_ok` and the
//! functions after `parse_item`) written again, for the item that is surely valid and
//! already normalized; every other item — an invalid one, one whose date-times need
//! rewriting, one with an unusual CID or a percent-escaped path — is declined, and Python
//! validates it (and names its error). The promise, checked by `tests/test_native.py` on
//! generated and hostile items: whatever this returns, Python returns the same.

use crate::cbor;
use crate::cid::is_plain_cid;
use crate::json::{self, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::cmp::Ordering;

/// An item's block may not be larger (`halodb.ipld.limits.MAX_ITEM_SIZE`).
pub const MAX_ITEM_SIZE: usize = 1 << 20;
/// A DOI longer than this (in characters) is refused (`halodb.util.doi.MAX_DOI_LENGTH`).
const MAX_DOI_LENGTH: usize = 256;
const DATETIME_PROPERTIES: [&str; 5] = ["datetime", "start_datetime", "end_datetime", "created", "updated"];

/// What one item line becomes.
pub struct Prepared {
    pub key: String,
    pub collection: String,
    /// the binary CIDv1 (dag-cbor, sha2-256) of `block`
    pub cid: [u8; 36],
    pub block: Vec<u8>,
    pub data: Option<String>,
    pub path: Option<String>,
    pub doi: Option<String>,
}

/// Python's `str.isspace()` of one character.
fn py_space(c: char) -> bool {
    matches!(c, '\t'..='\r' | '\u{1c}'..=' ' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}'
        | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}')
}

/// Python's `s.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

/// `_is_text`: a string that is not blank.
fn is_text(value: Option<&Value>) -> bool {
    matches!(value, Some(Value::Str(s)) if !py_strip(s).is_empty())
}

/// `_optional_str`: absent, null or a string.
fn optional_str(obj: &Value, name: &str) -> bool {
    matches!(obj.get(name), None | Some(Value::Null | Value::Str(_)))
}

fn list_of(value: Option<&Value>, check: impl Fn(&Value) -> bool) -> bool {
    matches!(value, Some(Value::Array(items)) if items.iter().all(check))
}

fn is_number(value: &Value) -> bool {
    matches!(value, Value::Int(_) | Value::Float(_))
}

/// `_position`: a list of at least `least` numbers.
fn position(value: &Value, least: usize) -> bool {
    matches!(value, Value::Array(items) if items.len() >= least && items.iter().all(is_number))
}

fn positions(value: &Value, least: usize) -> bool {
    matches!(value, Value::Array(items) if items.len() >= least && items.iter().all(|p| position(p, 2)))
}

fn polygon(value: &Value) -> bool {
    matches!(value, Value::Array(rings) if rings.iter().all(|r| positions(r, 4)))
}

fn geometry_ok(geometry: &Value) -> bool {
    if !matches!(geometry, Value::Object(_)) {
        return false;
    }
    let kind = geometry.get("type").and_then(Value::as_str);
    if kind == Some("GeometryCollection") {
        return list_of(geometry.get("geometries"), geometry_ok);
    }
    let Some(c) = geometry.get("coordinates") else { return false };
    match kind {
        Some("Point") => position(c, 2),
        Some("LineString") => positions(c, 2),
        Some("Polygon") => polygon(c),
        Some("MultiPoint") => positions(c, 0),
        Some("MultiLineString") => list_of(Some(c), |line| positions(line, 2)),
        Some("MultiPolygon") => list_of(Some(c), polygon),
        _ => false,
    }
}

/// Python's comparison of two numbers; `None` where a double might not tell (to decline).
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    const EXACT: i64 = 1 << 53;
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Int(x), Value::Float(y)) if x.abs() <= EXACT => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) if y.abs() <= EXACT => x.partial_cmp(&(*y as f64)),
        _ => None,
    }
}

fn le(a: &Value, b: &Value) -> Option<bool> {
    compare(a, b).map(|o| o != Ordering::Greater)
}

/// `_bbox_ok`; `None` to decline.
fn bbox_ok(value: &Value) -> Option<bool> {
    let Value::Array(v) = value else { return Some(false) };
    if !position(value, 4) || !(v.len() == 4 || v.len() == 6) {
        return Some(false);
    }
    let half = v.len() / 2;
    let (west, south, east, north) = (&v[0], &v[1], &v[half], &v[half + 1]);
    let (m90, p90, m180, p180) = (Value::Float(-90.0), Value::Float(90.0), Value::Float(-180.0), Value::Float(180.0));
    Some(le(&m90, south)? && le(south, north)? && le(north, &p90)?
        && le(&m180, west)? && le(west, &p180)? && le(&m180, east)? && le(east, &p180)?
        && (half == 2 || le(&v[2], &v[5])?))
}

fn leap(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// `_canonical_time`: `YYYY-MM-DDTHH:MM:SSZ`, a real date and time (ASCII digits only).
fn canonical_time(value: &Value) -> bool {
    let Value::Str(s) = value else { return false };
    let b = s.as_bytes();
    if b.len() != 20 || b[19] != b'Z' || b[10] != b'T' || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return false;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) =
        (num(0..4), num(5..7), num(8..10), num(11..13), num(14..16), num(17..19)) else { return false };
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap(year) => 29,
        2 => 28,
        _ => return false,
    };
    year >= 1 && day >= 1 && day <= days && hour < 24 && minute < 60 && second < 60
}

/// `bad_segment`: a name a folder's entry may not have.
fn bad_segment(segment: &str) -> bool {
    matches!(segment, "" | "." | "..") || segment.chars().any(|c| c == '/' || c <= '\u{1f}' || ('\u{7f}'..='\u{9f}').contains(&c))
}

fn properties_ok(props: &Value) -> bool {
    if !matches!(props, Value::Object(_)) || props.get("datetime").is_none() {
        return false;
    }
    if !DATETIME_PROPERTIES.iter().all(|name| props.get_some(name).is_none_or(canonical_time)) {
        return false;
    }
    if !(optional_str(props, "title") && optional_str(props, "description")) {
        return false;
    }
    match props.get_some("halodb:path") {
        None => {}
        Some(Value::Str(path)) if !path.is_empty() && !path.split('/').any(bad_segment) => {}
        Some(_) => return false,
    }
    let stub = match props.get_some("halodb:stub") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return false,
    };
    let (start, end) = (props.get_some("start_datetime"), props.get_some("end_datetime"));
    match (start, end) {
        (None, None) => {}
        (Some(Value::Str(s)), Some(Value::Str(e))) if s <= e => {} // (canonical: text order is time order)
        _ => return false,
    }
    !(props.get_some("datetime").is_none() && !stub && start.is_none())
}

fn link_ok(link: &Value) -> bool {
    matches!(link, Value::Object(_)) && is_text(link.get("rel")) && is_text(link.get("href"))
        && optional_str(link, "type") && optional_str(link, "title")
}

fn asset_ok(asset: &Value) -> bool {
    matches!(asset, Value::Object(_)) && is_text(asset.get("href"))
        && optional_str(asset, "type") && optional_str(asset, "title") && optional_str(asset, "description")
        && asset.get_some("roles").is_none_or(|roles| list_of(Some(roles), |r| matches!(r, Value::Str(_))))
}

/// `_STAC_1X`: `1.<digits>.<digits>` with an optional `-<pre-release>` (ASCII only).
fn stac_1x(version: &str) -> bool {
    let (core, pre) = match version.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (version, None),
    };
    let mut parts = core.split('.');
    let digits = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    parts.next() == Some("1") && digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
        && pre.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
}

/// `_quick_ok`; `None` to decline.
fn quick_ok(item: &Value) -> Option<bool> {
    if item.get("type").and_then(Value::as_str) != Some("Feature") {
        return Some(false);
    }
    let geometry = item.get("geometry")?;
    if !item.get("stac_version").and_then(Value::as_str).is_some_and(stac_1x) {
        return Some(false);
    }
    if !item.get_some("stac_extensions").is_none_or(|e| list_of(Some(e), |x| matches!(x, Value::Str(_)))) {
        return Some(false);
    }
    if !is_text(item.get("id")) {
        return Some(false);
    }
    if !item.get_some("collection").is_none_or(|c| is_text(Some(c))) {
        return Some(false);
    }
    let bbox = item.get_some("bbox");
    match (geometry, bbox) {
        (Value::Null, None) => {}
        (Value::Null, Some(_)) | (_, None) => return Some(false),
        (g, Some(b)) => {
            if !geometry_ok(g) || !bbox_ok(b)? {
                return Some(false);
            }
        }
    }
    if !item.get("properties").is_some_and(properties_ok) {
        return Some(false);
    }
    let Some(Value::Object(assets)) = item.get("assets") else { return Some(false) };
    Some(list_of(item.get("links"), link_ok) && assets.iter().all(|(_, a)| asset_ok(a)))
}

/// `(asset key, cid, sub-path)` of the data asset (`_data_asset`): `data` first, then by key.
fn data_asset<'v>(item: &'v Value<'_>) -> Option<(&'v str, &'v str)> {
    let Some(Value::Object(assets)) = item.get("assets") else { return None };
    let mut keys: Vec<&(Cow<'_, str>, Value<'_>)> = assets.iter().collect();
    keys.sort_by(|(a, _), (b, _)| (a != "data", a.as_ref()).cmp(&(b != "data", b.as_ref())));
    for (_, asset) in keys {
        if let Some(Value::Str(href)) = asset.get("href") {
            let rest = href.strip_prefix("ipfs://").or_else(|| href.strip_prefix("/ipfs/"));
            if let Some(rest) = rest {
                let rest = rest.split('#').next().unwrap_or("").split('?').next().unwrap_or("");
                return Some(rest.split_once('/').unwrap_or((rest, "")));
            }
        }
    }
    None
}

/// `normalize_doi`; `None` to decline (not a DOI: Python names the problem).
fn normalize_doi(text: &str) -> Option<String> {
    let mut bare = py_strip(text);
    let lower: String = bare.chars().take(24).collect::<String>().to_ascii_lowercase();
    for prefix in ["doi:", "https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/"] {
        if lower.starts_with(prefix) {
            bare = &bare[prefix.len()..]; // (ASCII: the same length in bytes)
            break;
        }
    }
    if bare.chars().count() > MAX_DOI_LENGTH || bare.chars().any(|c| c < '\u{20}' || ('\u{7f}'..'\u{a0}').contains(&c)) {
        return None;
    }
    let (prefix, suffix) = bare.split_once('/')?;
    let registrant = prefix.strip_prefix("10.")?;
    if !(4..=9).contains(&registrant.len()) || !registrant.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if suffix.is_empty() || suffix.chars().any(py_space) {
        return None;
    }
    Some(bare.to_ascii_lowercase())
}

/// The line `text` as staged, or `None` to leave it to the Python path.
pub fn prepare(text: &str) -> Option<Prepared> {
    let item = json::parse(text)?;
    if !quick_ok(&item)? {
        return None;
    }
    let id = item.get("id")?.as_str()?;
    let collection = item.get_some("collection")?.as_str()?;
    if py_strip(collection).is_empty() || collection.contains('/') {
        return None;
    }
    let mut block = Vec::with_capacity(text.len());
    cbor::encode(&mut block, &item);
    if block.len() > MAX_ITEM_SIZE {
        return None;
    }
    let mut cid = [0u8; 36];
    cid[..4].copy_from_slice(&[0x01, 0x71, 0x12, 0x20]);
    cid[4..].copy_from_slice(&Sha256::digest(&block));

    let found = data_asset(&item);
    let data = match found {
        None => None,
        Some((cid_text, sub)) => {
            if !is_plain_cid(cid_text) || sub.contains('%') {
                return None; // (an unusual CID, or a path to unquote: Python's to check)
            }
            let clean = sub.trim_matches('/');
            if !clean.is_empty() && clean.split('/').any(bad_segment) {
                return None;
            }
            Some(cid_text.to_owned())
        }
    };
    let props = item.get("properties")?;
    let path = match props.get_some("halodb:path") {
        Some(Value::Str(p)) if !p.is_empty() => Some(p.to_string()),
        _ => found.map(|(_, sub)| sub.trim_matches('/')).filter(|s| !s.is_empty()).map(str::to_owned),
    };
    let doi = match props.get_some("sci:doi") {
        None => None,
        Some(Value::Str(text)) => Some(normalize_doi(text)?),
        Some(_) => return None,
    };
    Some(Prepared { key: format!("{collection}/{id}"), collection: collection.to_owned(), cid, block, data, path, doi })
}
