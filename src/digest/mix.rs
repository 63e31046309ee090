//! The two SHA-1 combinators every `DEBUG DIGEST` is built from.
//!
//! Owns the arithmetic only: "xor in" for unordered parts (set members, hash fields,
//! keys of a database) and "mix in" for ordered parts (list elements, stream entries,
//! the parts of one element). Both take the bytes of the part, never its digest: the
//! server hashes whatever it is given first. See docs/digest.md.

use sha1::digest::generic_array::{typenum::U64, GenericArray};
use sha1::{Digest as _, Sha1};

type Block = GenericArray<u8, U64>;

/// A running 20-byte digest, as the server keeps it (`unsigned char[20]`).
pub type Acc = [u8; 20];

const H0: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// SHA-1 of `data`. Most of what a digest hashes (a key, a member, a running digest) fits
/// one or two 64-byte blocks once padded: those are compressed directly, without the
/// streaming hasher's buffering, which cost a tenth of a `verify`.
pub fn sha1(data: &[u8]) -> Acc {
    let n = data.len();
    if n > 119 {
        let mut out = [0u8; 20];
        out.copy_from_slice(&Sha1::digest(data));
        return out;
    }
    let used = if n <= 55 { 1 } else { 2 };
    let mut flat = [0u8; 128];
    flat[..n].copy_from_slice(data);
    flat[n] = 0x80;
    let end = used * 64;
    flat[end - 8..end].copy_from_slice(&((n as u64) * 8).to_be_bytes());
    let mut blocks: [Block; 2] = Default::default();
    for (b, f) in blocks.iter_mut().zip(flat.chunks_exact(64)) {
        b.copy_from_slice(f);
    }
    let mut state = H0;
    sha1::compress(&mut state, &blocks[..used]);
    let mut out = [0u8; 20];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// `acc ^= SHA1(data)`: order-independent accumulation.
pub fn xor_in(acc: &mut Acc, data: &[u8]) {
    let h = sha1(data);
    for (a, b) in acc.iter_mut().zip(h) {
        *a ^= b;
    }
}

/// `acc = SHA1(acc ^ SHA1(data))`: order-dependent accumulation.
pub fn mix_in(acc: &mut Acc, data: &[u8]) {
    xor_in(acc, data);
    *acc = sha1(acc);
}

/// `a ^= b` without hashing (used to merge per-database partial sums).
pub fn xor_raw(a: &mut Acc, b: &Acc) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= *y;
    }
}

pub fn hex(acc: &Acc) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(40);
    for b in acc {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_order_dependent_and_xor_is_not() {
        let (mut a, mut b) = ([0u8; 20], [0u8; 20]);
        xor_in(&mut a, b"x");
        xor_in(&mut a, b"y");
        xor_in(&mut b, b"y");
        xor_in(&mut b, b"x");
        assert_eq!(a, b);
        let (mut a, mut b) = ([0u8; 20], [0u8; 20]);
        mix_in(&mut a, b"x");
        mix_in(&mut a, b"y");
        mix_in(&mut b, b"y");
        mix_in(&mut b, b"x");
        assert_ne!(a, b);
        // Every length around the one- and two-block paths agrees with the streaming hasher.
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..data.len() {
            let want = Sha1::digest(&data[..n]);
            assert_eq!(sha1(&data[..n])[..], want[..], "length {n}");
        }
        // SHA1("abc") is the FIPS 180 test vector.
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
