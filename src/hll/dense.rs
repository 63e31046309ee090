//! The dense encoding: 16384 registers of 6 bits packed from the least significant bit of
//! each byte upwards, register `i` starting at bit `6 * i` of the 12288-byte body.

use super::{HEADER_LEN, REGISTERS};

/// Register `index` of a dense body (the bytes after the header).
pub(crate) fn get(body: &[u8], index: usize) -> u8 {
    let bit = index * 6;
    let byte = bit / 8;
    let shift = bit % 8;
    let lo = u16::from(body.get(byte).copied().unwrap_or(0));
    // The last register ends inside the last byte; the server reads its string's NUL
    // terminator as the next byte, whose bits the mask discards. We read 0 instead.
    let hi = u16::from(body.get(byte + 1).copied().unwrap_or(0));
    (((lo | (hi << 8)) >> shift) & 0x3f) as u8
}

/// Set register `index` of a dense body to `value` (at most 63).
pub(crate) fn set(body: &mut [u8], index: usize, value: u8) {
    let bit = index * 6;
    let byte = bit / 8;
    let shift = bit % 8;
    let value = u16::from(value & 0x3f) << shift;
    let mask = 0x3fu16 << shift;
    if let Some(b) = body.get_mut(byte) {
        *b = (*b & !(mask as u8)) | value as u8;
    }
    if shift > 2 {
        if let Some(b) = body.get_mut(byte + 1) {
            *b = (*b & !((mask >> 8) as u8)) | (value >> 8) as u8;
        }
    }
}

/// Raise register `index` to `value` if it is lower; true if it changed.
pub(crate) fn raise(value_bytes: &mut [u8], index: usize, value: u8) -> bool {
    let body = &mut value_bytes[HEADER_LEN..];
    if value > get(body, index) {
        set(body, index, value);
        true
    } else {
        false
    }
}

/// Every register of a dense body, one byte each.
pub(crate) fn registers(body: &[u8]) -> Vec<u8> {
    (0..REGISTERS).map(|i| get(body, i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hll::DENSE_LEN;

    #[test]
    fn set_get_roundtrip_without_touching_neighbours() {
        let mut body = vec![0u8; DENSE_LEN - HEADER_LEN];
        let mut expect = vec![0u8; REGISTERS];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..4 {
            for (i, e) in expect.iter_mut().enumerate() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if (i + round) % 3 != 0 {
                    *e = (x % 64) as u8;
                    set(&mut body, i, *e);
                }
            }
            assert_eq!(registers(&body), expect);
        }
    }

    #[test]
    fn packing_matches_the_documented_layout() {
        // Register 1 takes the top two bits of byte 0 and the low four of byte 1.
        let mut body = vec![0u8; 3];
        set(&mut body, 1, 0x3f);
        assert_eq!(body, [0xc0, 0x0f, 0x00]);
        set(&mut body, 3, 0x21);
        assert_eq!(body, [0xc0, 0x0f, 0x84]);
    }
}
