//! Checksums of a stored RDB, computed on the bytes as they pass on their way to storage.
//!
//! Owns what "the RDB is stored and its checksum confirmed" (SPEC §3) means byte for byte:
//! the length, the SHA-256 of the whole file, and the CRC-64/Jones of everything before the
//! 8-byte trailer next to the trailer itself. Every backend's sink and `fetch` use this one
//! definition. It must never buffer the file: it keeps a fixed 8-byte tail and nothing else.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::rdb::crc::Crc64;

/// What a backend stored, as seen by the bytes that went through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub bytes: u64,
    /// Lowercase hex of the SHA-256 of the whole file.
    pub sha256: String,
    /// CRC-64/Jones of every byte before the last 8: what an RDB trailer must hold.
    pub crc64: u64,
    /// The last 8 bytes as a little-endian number (the RDB trailer); None under 8 bytes.
    pub trailer_crc64: Option<u64>,
}

impl StoredObject {
    /// True when the file's trailer holds the CRC of its bytes: the RDB arrived whole.
    pub fn crc64_confirmed(&self) -> bool {
        self.trailer_crc64 == Some(self.crc64)
    }

    /// The CRC as the manifest and `inspect` spell it: 16 lowercase hex digits.
    pub fn crc64_hex(&self) -> String {
        format!("{:016x}", self.crc64)
    }
}

/// Running checksums over a stream of writes.
#[derive(Clone)]
pub struct ObjectHasher {
    sha: Sha256,
    crc: Crc64,
    bytes: u64,
    // The CRC must not cover the trailer, which is only known once the stream ends: the
    // last 8 bytes seen are held back from the CRC until more arrive.
    tail: [u8; 8],
    tail_len: usize,
}

impl Default for ObjectHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectHasher {
    pub fn new() -> Self {
        ObjectHasher {
            sha: Sha256::new(),
            crc: Crc64::new(),
            bytes: 0,
            tail: [0; 8],
            tail_len: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.sha.update(data);
        self.bytes += data.len() as u64;
        if data.len() >= 8 {
            self.crc.update(&self.tail[..self.tail_len]);
            let (body, last) = data.split_at(data.len() - 8);
            self.crc.update(body);
            self.tail.copy_from_slice(last);
            self.tail_len = 8;
        } else {
            let mut buf = [0u8; 16];
            let total = self.tail_len + data.len();
            buf[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            buf[self.tail_len..total].copy_from_slice(data);
            let spill = total.saturating_sub(8);
            self.crc.update(&buf[..spill]);
            self.tail[..total - spill].copy_from_slice(&buf[spill..total]);
            self.tail_len = total - spill;
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn finish(self) -> StoredObject {
        let sha = self.sha.finalize();
        let sha256 = sha.iter().map(|b| format!("{b:02x}")).collect();
        StoredObject {
            bytes: self.bytes,
            sha256,
            crc64: self.crc.value(),
            trailer_crc64: (self.tail_len == 8).then(|| u64::from_le_bytes(self.tail)),
        }
    }
}

/// A reader that feeds every byte it passes on to `hasher` (checking bytes while another
/// consumer, a parser or a copy, reads them).
pub struct HashingReader<'a, R> {
    pub inner: R,
    pub hasher: &'a mut ObjectHasher,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Read `r` to its end and return its checksums (for `fetch` and `verify`).
pub fn hash_reader(r: &mut dyn Read) -> io::Result<StoredObject> {
    let mut h = ObjectHasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(h.finish()),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::crc::crc64;

    fn rdb_like(n: usize) -> Vec<u8> {
        let mut v: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
        let c = crc64(&v);
        v.extend_from_slice(&c.to_le_bytes());
        v
    }

    #[test]
    fn any_split_gives_the_same_result() {
        let data = rdb_like(1000);
        let mut whole = ObjectHasher::new();
        whole.update(&data);
        let whole = whole.finish();
        assert!(whole.crc64_confirmed());
        assert_eq!(whole.crc64, crc64(&data[..1000]));
        assert_eq!(whole.bytes, 1008);
        for chunk in [1, 3, 7, 8, 9, 15, 16, 17, 333] {
            let mut h = ObjectHasher::new();
            for c in data.chunks(chunk) {
                h.update(c);
            }
            assert_eq!(h.finish(), whole, "chunks of {chunk}");
        }
        assert_eq!(hash_reader(&mut &data[..]).unwrap(), whole);
    }

    #[test]
    fn known_sha256_and_short_files() {
        let mut h = ObjectHasher::new();
        h.update(b"abc");
        let o = h.finish();
        assert_eq!(
            o.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(o.trailer_crc64, None);
        assert!(!o.crc64_confirmed());
        let mut bad = rdb_like(10);
        bad[0] ^= 1;
        assert!(!hash_reader(&mut &bad[..]).unwrap().crc64_confirmed());
    }
}
