//! CID text as HaloDB's Python `CID.parse` (libipld) surely accepts it: a CIDv0 `Qm…`, or a
//! CIDv1 in base32 (`b…`) with a one-byte codec and a sha2-256 multihash — what IPFS tools
//! write. Anything else (other bases, other hashes, surrounding space) is declined, and the
//! Python path decides.

use data_encoding::{Encoding, Specification};
use std::sync::OnceLock;

pub fn base32_lower() -> &'static Encoding {
    static ENCODING: OnceLock<Encoding> = OnceLock::new();
    ENCODING.get_or_init(|| {
        let mut spec = Specification::new();
        spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
        spec.check_trailing_bits = true;
        spec.encoding().expect("a valid base32 alphabet")
    })
}

/// Whether `text` is a CID in one of the two forms above.
pub fn is_plain_cid(text: &str) -> bool {
    if text.len() == 46 && text.starts_with("Qm") {
        return match bs58::decode(text).into_vec() {
            Ok(bytes) => bytes.len() == 34 && bytes[0] == 0x12 && bytes[1] == 0x20,
            Err(_) => false,
        };
    }
    if let Some(rest) = text.strip_prefix('b') {
        return match base32_lower().decode(rest.as_bytes()) {
            Ok(bytes) => bytes.len() == 36 && bytes[0] == 0x01 && bytes[1] < 0x80 && bytes[2] == 0x12 && bytes[3] == 0x20,
            Err(_) => false,
        };
    }
    false
}

/// The text of the CIDv1 of a DAG-CBOR block (`b` + base32 of 0x01 0x71 0x12 0x20 + its
/// SHA-256): `str(CID.for_bytes(block, DAG_CBOR))`.
pub fn dag_cbor_cid_text(block: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut binary = [0u8; 36];
    binary[..4].copy_from_slice(&[0x01, 0x71, 0x12, 0x20]);
    binary[4..].copy_from_slice(&Sha256::digest(block));
    let mut text = String::with_capacity(59);
    text.push('b');
    base32_lower().encode_append(&binary, &mut text);
    text
}
