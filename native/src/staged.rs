//! A commit's two per-entry steps before the leaves, for a batch of staged rows at a time:
//! the stage's item bytes read from its pack file and checked against the item's CID
//! (`halodb/api/stagedb.py`'s `_entry`), and each entry's tree value encoded as index
//! format 3 holds it (`halodb/index/index.py`'s `_held_values`, `encode_shallow`). A row of
//! any other shape is declined, and Python decides it (and says what is wrong).

use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

use crate::cbor::{head, text};

/// The SHA-256 digest a binary CID names: a CIDv1 of a one-byte codec, or a CIDv0; None
/// for any other CID (another hash, a longer codec: declined).
pub fn sha256_digest(cid: &[u8]) -> Option<&[u8]> {
    match cid.len() {
        36 if cid[0] == 0x01 && cid[1] < 0x80 && cid[2] == 0x12 && cid[3] == 0x20 => Some(&cid[4..]),
        34 if cid[0] == 0x12 && cid[1] == 0x20 => Some(&cid[2..]),
        _ => None,
    }
}

/// One staged row's item: its binary CID, the bytes the stage holds in its table (if any),
/// and where in the pack its bytes are (if there).
pub struct Row<'a> {
    pub cid: &'a [u8],
    pub held: Option<&'a [u8]>,
    pub at: Option<(u64, usize)>,
}

/// What the stage holds of each row (None: no bytes, the block store has the item), up to
/// the first row declined: a CID not of the forms above (with bytes or without), bytes that do not hash to it (a
/// damaged stage, or a pack cut short), a pack that cannot be read. `pack`: the pack file's
/// descriptor (borrowed, not closed), or None.
pub fn staged_bytes(pack: Option<i32>, rows: &[Row<'_>]) -> (Vec<Option<Vec<u8>>>, usize) {
    // (the descriptor stays the caller's: the File is never dropped)
    let file = pack.map(|fd| ManuallyDrop::new(unsafe { File::from_raw_fd(fd) }));
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(digest) = sha256_digest(row.cid) else { break };
        let bytes = match (row.at, row.held) {
            (Some((at, size)), _) => {
                let Some(file) = &file else { break };
                let mut buffer = vec![0u8; size];
                if file.read_exact_at(&mut buffer, at).is_err() {
                    break;
                }
                Some(buffer)
            }
            (None, Some(held)) => Some(held.to_vec()),
            (None, None) => None,
        };
        if let Some(bytes) = &bytes {
            if Sha256::digest(bytes).as_slice() != digest {
                break;
            }
        }
        out.push(bytes);
    }
    let stop = out.len();
    (out, stop)
}

/// One entry of a batch: its item's binary CID, its item bytes if held, its data CID, path
/// and DOI.
pub struct Entry<'a> {
    pub cid: &'a [u8],
    pub held: Option<&'a [u8]>,
    pub data: Option<&'a str>,
    pub path: Option<&'a str>,
    pub doi: Option<&'a str>,
}

/// The DAG-CBOR of the entry's value holding its item inline — `{"doi"?, "data"?, "item":
/// bytes, "path"?}` in DAG-CBOR's key order — or None (declined) when index format 3 would
/// not hold it so: no bytes held, more than `inline_max` of them, or an item that is not a
/// CIDv1 of DAG-CBOR and SHA-256.
pub fn inline_value(entry: &Entry<'_>, inline_max: usize) -> Option<Vec<u8>> {
    let held = entry.held?;
    let cid = entry.cid;
    if held.len() > inline_max || cid.len() != 36 || cid[..4] != [0x01, 0x71, 0x12, 0x20] {
        return None;
    }
    let fields = 1 + [entry.doi, entry.data, entry.path].iter().filter(|f| f.is_some()).count();
    let mut out = Vec::with_capacity(held.len() + 16 + entry.path.map_or(0, str::len) + 64);
    head(&mut out, 5, fields as u64);
    // (shorter keys first, then bytewise: doi, data, item, path)
    if let Some(doi) = entry.doi {
        text(&mut out, "doi");
        text(&mut out, doi);
    }
    if let Some(data) = entry.data {
        text(&mut out, "data");
        text(&mut out, data);
    }
    text(&mut out, "item");
    head(&mut out, 2, held.len() as u64);
    out.extend_from_slice(held);
    if let Some(path) = entry.path {
        text(&mut out, "path");
        text(&mut out, path);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_the_two_forms_only() {
        let mut v1 = vec![0x01, 0x71, 0x12, 0x20];
        v1.extend([7u8; 32]);
        assert_eq!(sha256_digest(&v1), Some(&[7u8; 32][..]));
        let mut v0 = vec![0x12, 0x20];
        v0.extend([7u8; 32]);
        assert_eq!(sha256_digest(&v0), Some(&[7u8; 32][..]));
        v1[2] = 0x13; // sha2-512's code
        assert_eq!(sha256_digest(&v1), None);
    }

    #[test]
    fn a_wrong_hash_stops_the_batch() {
        let bytes = b"\xa0";
        let mut cid = vec![0x01, 0x71, 0x12, 0x20];
        cid.extend_from_slice(&Sha256::digest(bytes));
        let mut wrong = cid.clone();
        wrong[10] ^= 1;
        let rows = [
            Row { cid: &cid, held: Some(bytes), at: None },
            Row { cid: &cid, held: None, at: None },
            Row { cid: &wrong, held: Some(bytes), at: None },
            Row { cid: &cid, held: Some(bytes), at: None },
        ];
        let (held, stop) = staged_bytes(None, &rows);
        assert_eq!(stop, 2);
        assert_eq!(held, vec![Some(bytes.to_vec()), None]);
        // a row in a pack, with no pack: declined
        let (_, stop) = staged_bytes(None, &[Row { cid: &cid, held: None, at: Some((0, 1)) }]);
        assert_eq!(stop, 0);
    }

    #[test]
    fn inline_values_in_key_order() {
        let mut cid = vec![0x01, 0x71, 0x12, 0x20];
        cid.extend([0u8; 32]);
        let entry = Entry { cid: &cid, held: Some(b"\xa0"), data: Some("d"), path: Some("p"), doi: Some("x") };
        let value = inline_value(&entry, 10).unwrap();
        assert_eq!(value, b"\xa4\x63doi\x61x\x64data\x61d\x64item\x41\xa0\x64path\x61p");
        assert!(inline_value(&entry, 0).is_none());
        assert!(inline_value(&Entry { held: None, ..entry }, 10).is_none());
    }
}
