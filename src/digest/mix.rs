//! The two SHA-1 combinators every `DEBUG DIGEST` is built from.
//!
//! Owns the arithmetic only: "xor in" for unordered parts (set members, hash fields,
//! keys of a database) and "mix in" for ordered parts (list elements, stream entries,
//! the parts of one element). Both take the bytes of the part, never its digest: the
//! server hashes whatever it is given first. See docs/digest.md.

use std::sync::LazyLock;

use super::sha1x;

/// A running 20-byte digest, as the server keeps it (`unsigned char[20]`).
pub type Acc = [u8; 20];

/// SHA-1 of `data` ([`sha1x`]: short messages padded and compressed directly, without the
/// streaming hasher's buffering).
pub fn sha1(data: &[u8]) -> Acc {
    sha1x::sha1(data)
}

/// `acc ^= SHA1(data)`: order-independent accumulation.
pub fn xor_in(acc: &mut Acc, data: &[u8]) {
    xor_raw(acc, &sha1(data));
}

/// `acc = SHA1(acc ^ SHA1(data))`: order-dependent accumulation.
pub fn mix_in(acc: &mut Acc, data: &[u8]) {
    mix_hash(acc, &sha1(data));
}

/// [`mix_in`] of a part whose SHA-1 `h` is already known: `acc = SHA1(acc ^ h)`.
pub fn mix_hash(acc: &mut Acc, h: &Acc) {
    xor_raw(acc, h);
    *acc = sha1x::rehash(acc);
}

/// Xored into a key's digest when it has a TTL (only its presence counts).
pub const EXPIRE_MARK: &[u8] = b"!!expire!!";
/// Xored into a hash field's digest when it has a TTL (Redis 7.4+).
pub const FIELD_TTL_MARK: &[u8] = b"!!hexpire!!";
/// What a hole in a sparse array (Redis 8.8+) is mixed in as.
pub const ARRAY_HOLE: &[u8] = b"(null)";

/// The SHA-1 of parts every key or element may hash: the object types (`OBJ_*` as a 4-byte
/// big-endian number) and the marks. Computed once, so each use costs an xor.
pub struct Known {
    /// Indexed by the `OBJ_*` number.
    pub obj_type: [Acc; 8],
    pub expire_mark: Acc,
    pub field_ttl_mark: Acc,
    pub array_hole: Acc,
}

pub static KNOWN: LazyLock<Known> = LazyLock::new(|| Known {
    obj_type: std::array::from_fn(|t| sha1(&(t as u32).to_be_bytes())),
    expire_mark: sha1(EXPIRE_MARK),
    field_ttl_mark: sha1(FIELD_TTL_MARK),
    array_hole: sha1(ARRAY_HOLE),
});

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
        use sha1::{Digest as _, Sha1};
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..data.len() {
            let want = Sha1::digest(&data[..n]);
            assert_eq!(sha1(&data[..n])[..], want[..], "length {n}");
        }
        // mix_hash of a known hash is mix_in of its part.
        let (mut a, mut b) = ([7u8; 20], [7u8; 20]);
        mix_in(&mut a, b"part");
        mix_hash(&mut b, &sha1(b"part"));
        assert_eq!(a, b);
        assert_eq!(KNOWN.obj_type[4], sha1(&4u32.to_be_bytes()));
        assert_eq!(KNOWN.expire_mark, sha1(b"!!expire!!"));
        // SHA1("abc") is the FIPS 180 test vector.
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
