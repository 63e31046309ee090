//! One archive segment as stored: its name and its bytes.
//!
//! Owns the format: `RSNAPSEG` (8 bytes), a big-endian u32 header length, the JSON
//! [`Header`], then the stream bytes compressed as one LZ4 block. The header names the
//! history, the first offset and the end offset (the offset after the last byte, which is
//! the replica's offset once they are applied), (unix ms, offset) samples for time lookups,
//! and the SHA-256 of the uncompressed bytes. Decoding treats the object as hostile: the
//! header and the decompressed size are bounded before anything is allocated, and the
//! offsets, length and checksum must agree. It must never return bytes it did not check.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ArchiveError;

const MAGIC: &[u8; 8] = b"RSNAPSEG";
const HEADER_LIMIT: usize = 1 << 20;
/// The most stream bytes one segment may hold (`[archive] segment_bytes` is capped below).
pub const RAW_LIMIT: u64 = 512 << 20;
/// The most bytes a stored segment object may have when read back: the raw limit plus
/// headroom for incompressible data (LZ4 grows it by at most 0.4 %) and the header.
pub const OBJECT_LIMIT: u64 = RAW_LIMIT + (16 << 20);
pub const FORMAT_VERSION: u32 = 1;
/// How often (at most) the writer records a (time, offset) sample: the resolution of
/// `fetch --at`.
pub const SAMPLE_MS: i64 = 100;

fn legacy_sample_ms() -> i64 {
    1000
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    /// `<replid>-<offset>` where the history started.
    pub history: String,
    pub first_offset: i64,
    /// The offset after the last byte.
    pub end_offset: i64,
    /// (unix milliseconds, offset) when the command at that offset was applied: the
    /// first one's, then the first one applied `sample_ms` or more after the last sample.
    pub samples: Vec<(i64, i64)>,
    /// The sampling interval: every command between two samples (or after the last) was
    /// applied less than this many ms after the earlier one (1000 in segments written
    /// before the field existed).
    #[serde(default = "legacy_sample_ms")]
    pub sample_ms: i64,
    pub compression: String,
    /// Lowercase hex SHA-256 of the uncompressed stream bytes.
    pub sha256: String,
}

/// A decoded, checked segment.
#[derive(Debug)]
pub struct Segment {
    pub header: Header,
    pub bytes: Vec<u8>,
}

fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The stored form of `bytes` (the stream from `first_offset`).
pub fn encode(history: &str, first_offset: i64, samples: Vec<(i64, i64)>, bytes: &[u8]) -> Vec<u8> {
    let header = Header {
        version: FORMAT_VERSION,
        history: history.to_string(),
        first_offset,
        end_offset: first_offset + bytes.len() as i64,
        samples,
        sample_ms: SAMPLE_MS,
        compression: "lz4".into(),
        sha256: sha_hex(bytes),
    };
    let json = serde_json::to_vec(&header).unwrap_or_default();
    // Compressed straight into the object (no separate body to copy): a segment is up to
    // tens of MB, and the copy was one more of them held at once (the soak's RSS swings).
    let start = 12 + json.len();
    let mut out = vec![0u8; start + lz4_flex::block::get_maximum_output_size(bytes.len())];
    out[..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&(json.len() as u32).to_be_bytes());
    out[12..start].copy_from_slice(&json);
    // Cannot fail: the output holds the bound lz4_flex gives for this input.
    let n = lz4_flex::block::compress_into(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + n);
    out
}

/// Check and decode a stored segment; `what` names it in errors.
pub fn decode(data: &[u8], what: &str) -> Result<Segment, ArchiveError> {
    let bad = |reason: String| ArchiveError::Corrupt {
        what: what.to_string(),
        reason,
    };
    if data.len() < 12 || &data[..8] != MAGIC {
        return Err(bad("not an archive segment (no RSNAPSEG magic)".into()));
    }
    let hlen = u32::from_be_bytes([data[8], data[9], data[10], data[11]]) as usize;
    if hlen > HEADER_LIMIT || 12 + hlen > data.len() {
        return Err(bad(format!("header length {hlen} out of bounds")));
    }
    let header: Header =
        serde_json::from_slice(&data[12..12 + hlen]).map_err(|e| bad(format!("header: {e}")))?;
    if header.version != FORMAT_VERSION || header.compression != "lz4" {
        return Err(bad(format!(
            "format {} compression {:?}: not supported",
            header.version, header.compression
        )));
    }
    let raw = header
        .end_offset
        .checked_sub(header.first_offset)
        .filter(|n| *n >= 0);
    let raw = match raw {
        Some(n) if (n as u64) <= RAW_LIMIT && header.first_offset >= 0 => n as usize,
        _ => {
            return Err(bad(format!(
                "offsets {}..{} out of bounds",
                header.first_offset, header.end_offset
            )))
        }
    };
    let bytes = lz4_flex::block::decompress(&data[12 + hlen..], raw)
        .map_err(|e| bad(format!("decompress: {e}")))?;
    if bytes.len() != raw {
        return Err(bad(format!(
            "{} bytes where the offsets say {raw}",
            bytes.len()
        )));
    }
    let sum = sha_hex(&bytes);
    if sum != header.sha256 {
        return Err(bad(format!("sha256 {sum}, header says {}", header.sha256)));
    }
    Ok(Segment { header, bytes })
}

/// Offsets are zero-padded to 20 digits so names sort by offset.
pub fn history_name(replid: &str, offset: i64) -> String {
    format!("{replid}-{offset:020}")
}

/// `archive/<history>/<first>-<end>-<first unix s>-<last unix s>.seg`.
pub fn object_key(history: &str, first: i64, end: i64, t0_ms: i64, t1_ms: i64) -> String {
    format!(
        "archive/{history}/{first:020}-{end:020}-{}-{}.seg",
        t0_ms.div_euclid(1000),
        t1_ms.div_euclid(1000)
    )
}

/// What a segment's key says: (history, first, end, first unix s, last unix s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub history: String,
    pub first: i64,
    pub end: i64,
    pub t0: i64,
    pub t1: i64,
}

pub fn parse_key(key: &str) -> Option<KeyInfo> {
    let rest = key.strip_prefix("archive/")?;
    let (history, name) = rest.split_once('/')?;
    let name = name.strip_suffix(".seg")?;
    let mut it = name.split('-').map(|p| p.parse::<i64>().ok());
    let (first, end, t0, t1) = (it.next()??, it.next()??, it.next()??, it.next()??);
    if it.next().is_some() || end < first || history.is_empty() || history.contains('/') {
        return None;
    }
    Some(KeyInfo {
        history: history.to_string(),
        first,
        end,
        t0,
        t1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_check() {
        let raw = b"*1\r\n$4\r\nPING\r\n".repeat(100);
        let data = encode("abc-00000000000000000007", 7, vec![(1000, 7)], &raw);
        let s = decode(&data, "t").unwrap();
        assert_eq!(s.bytes, raw);
        assert_eq!(s.header.end_offset, 7 + raw.len() as i64);
        // A flipped byte in the body or header is refused, never returned.
        for i in [5, 20, data.len() - 3] {
            let mut d = data.clone();
            d[i] ^= 0x40;
            assert!(decode(&d, "t").is_err(), "flip at {i}");
        }
        assert!(decode(&data[..data.len() - 1], "t").is_err());
        assert!(decode(b"RSNAPSEG\xff\xff\xff\xff", "t").is_err());
    }

    #[test]
    fn keys_sort_by_offset_and_parse_back() {
        let k = object_key(
            "r-00000000000000000001",
            10,
            200,
            1_700_000_000_123,
            1_700_000_009_999,
        );
        assert_eq!(
            k,
            "archive/r-00000000000000000001/00000000000000000010-00000000000000000200-1700000000-1700000009.seg"
        );
        let i = parse_key(&k).unwrap();
        assert_eq!(
            (i.first, i.end, i.t0, i.t1),
            (10, 200, 1_700_000_000, 1_700_000_009)
        );
        assert!(object_key("h", 9, 10, 0, 0) < object_key("h", 10, 11, 0, 0));
        assert!(parse_key("archive/h/1-2.seg").is_none());
        assert!(parse_key("archive/h/2-1-0-0.seg").is_none());
    }
}
