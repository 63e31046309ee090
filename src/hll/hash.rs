//! Which register an element lands in, and the value it offers that register.
//!
//! The servers hash with their endian-neutral variant of MurmurHash2-64A, seed 0xadc83b19:
//! the low 14 bits of the hash pick the register, and the run of zero bits above them, plus
//! one, is the value. Every server version we follow agrees on this (6.2 counts the run with a
//! loop, 7.2+ with a count-trailing-zeros builtin; the result is the same).

use super::{P, REGISTERS};

/// The seed every server passes to the hash.
const SEED: u64 = 0xadc8_3b19;
/// The multiplier and shift of MurmurHash2-64A.
const M: u64 = 0xc6a4_a793_5bd1_e995;
const R: u32 = 47;

/// MurmurHash2-64A as the servers compute it: 8-byte blocks read little-endian whatever the
/// host, so the register an element picks is the same on every machine.
pub(crate) fn murmur64a(data: &[u8]) -> u64 {
    // The server passes the length as a C `int` and multiplies it as 64 bits; values longer
    // than 2^31 bytes cannot reach a command (proto-max-bulk-len caps them lower), so the
    // plain widening is exact for every element we can be given.
    let mut h = SEED ^ (data.len() as u64).wrapping_mul(M);
    let mut blocks = data.chunks_exact(8);
    for block in &mut blocks {
        let mut word = [0u8; 8];
        word.copy_from_slice(block);
        let mut k = u64::from_le_bytes(word);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        // Tail bytes go in at their little-endian positions; the multiply happens once, and
        // only when there is a tail.
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// `(register index, value)` for one element: the value is 1 + the number of zero bits above
/// the index bits, capped at 51 (a guard bit at position 50 of the shifted hash).
pub(crate) fn pattern(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> P) | (1u64 << (64 - P));
    // trailing_zeros of a non-zero u64 is at most 50 here, so the value fits a u8.
    (index, (rest.trailing_zeros() + 1) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_stay_in_range() {
        for i in 0u32..2000 {
            let (idx, v) = pattern(&i.to_le_bytes());
            assert!(idx < REGISTERS);
            assert!((1..=51).contains(&v));
        }
    }

    #[test]
    fn tail_lengths_differ() {
        // Each tail length takes its own path; none may collide on a simple prefix family.
        let data = b"abcdefghijklmnop";
        let hashes: Vec<u64> = (0..=data.len()).map(|n| murmur64a(&data[..n])).collect();
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
