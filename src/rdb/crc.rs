//! CRC-64/Jones, the checksum in every RDB trailer and DUMP payload since RDB 5.
//!
//! Owns the one set of CRC parameters the format uses. It must never be swapped for
//! `crc64fast`: that crate computes CRC-64/XZ, a different polynomial, and every check
//! would fail (see docs/decisions.md).

use crc_fast::{CrcParams, Digest};

/// Check value of CRC-64/Jones (reflected, init 0, xorout 0) over b"123456789".
pub const CHECK_VALUE: u64 = 0xe9c6_d914_c4b8_d9ca;

fn params() -> CrcParams {
    CrcParams::new(
        "CRC-64/JONES",
        64,
        0xad93_d235_94c9_35a9,
        0,
        true,
        0,
        CHECK_VALUE,
    )
}

/// A running CRC-64/Jones.
#[derive(Clone)]
pub struct Crc64 {
    digest: Digest,
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc64 {
    pub fn new() -> Self {
        Crc64 {
            digest: Digest::new_with_params(params()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
    }

    pub fn value(&self) -> u64 {
        self.digest.finalize()
    }
}

/// CRC-64/Jones of one buffer.
pub fn crc64(data: &[u8]) -> u64 {
    let mut c = Crc64::new();
    c.update(data);
    c.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_matches_jones() {
        assert_eq!(crc64(b"123456789"), CHECK_VALUE);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut c = Crc64::new();
        for chunk in data.chunks(37) {
            c.update(chunk);
        }
        assert_eq!(c.value(), crc64(&data));
        assert_ne!(c.value(), 0);
    }
}
