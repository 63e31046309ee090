//! SHA-1 of many independent short messages at once, the one hash `DEBUG DIGEST` is built
//! from.
//!
//! Owns the compression function and the padding. A digest hashes hundreds of millions of
//! messages, nearly all one or two blocks long (a key, a member, a running 20-byte digest);
//! one SHA-1 block on SHA-NI is a chain of 20 dependent `SHA1RNDS4`, so a single message at
//! a time leaves the core waiting on latency. [`compress`] steps `N` independent states
//! through their rounds side by side, so the `N` chains overlap in the pipeline.
//!
//! On a CPU with AVX-512 ([`has_wide`]), batches go sixteen at a time through
//! [`wide::short16`] instead: one message per 32-bit lane, each round a few plain vector
//! instructions, which does more blocks per cycle than the SHA-NI chains (verify of the
//! 246 MB benchmark file: 4.2 to 3.6 CPU-seconds). Batches of fewer than [`WIDE_MIN`]
//! left over, and single messages, stay on SHA-NI.
//!
//! Why the `unsafe` is sound: the calls of the `#[target_feature]` functions
//! [`ni::compress`] and [`ni::short_lanes`] are made only after [`has_sha_ni`] saw at run
//! time that the CPU has every feature they enable, and of [`wide::short16`] after
//! [`has_wide`] did. Inside, `compress` works on values only; `short_lanes` reads message
//! bytes with unaligned 16-byte loads only where all 16 are inside the slice (checked just
//! before); `short16` reads with loads masked to each message's bytes. Without SHA-NI (or
//! off x86-64) the `sha1` crate's compression runs lane by lane.
//!
//! A leaf: it knows bytes and SHA-1, nothing of digests, and must never allocate.

/// SHA-1's chaining state: five 32-bit words.
pub type State = [u32; 5];

/// A 64-byte block as sixteen big-endian words.
pub type Block = [u32; 16];

/// A SHA-1 result.
pub type Hash = [u8; 20];

/// How many messages [`sha1_batch`] and [`rehash_batch`] hash side by side.
pub const LANES: usize = 4;

/// Messages up to this long are padded into at most two blocks here; longer ones are
/// streamed through the `sha1` crate one at a time.
pub const SHORT: usize = 119;

pub const H0: State = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// Whether this CPU runs [`ni::compress`] (checked once; cached by std).
#[inline]
pub fn has_sha_ni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Compress one block into each of `N` states.
#[inline]
pub fn compress<const N: usize>(states: &mut [State; N], blocks: &[Block; N]) {
    #[cfg(target_arch = "x86_64")]
    if has_sha_ni() {
        // SAFETY: the CPU has every feature `ni::compress` enables (checked just above).
        unsafe { ni::compress(states, blocks) };
        return;
    }
    portable(states, blocks);
}

fn portable<const N: usize>(states: &mut [State; N], blocks: &[Block; N]) {
    use sha1::digest::generic_array::GenericArray;
    for (s, b) in states.iter_mut().zip(blocks) {
        let mut bytes = GenericArray::default();
        for (o, w) in bytes.chunks_exact_mut(4).zip(b) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        sha1::compress(s, &[bytes]);
    }
}

fn output(s: &State) -> Hash {
    let mut out = [0u8; 20];
    for (o, w) in out.chunks_exact_mut(4).zip(s) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// `data` (at most [`SHORT`] bytes) padded: its blocks and how many there are (1 or 2).
/// Built word by word, without an intermediate byte buffer.
fn pad(data: &[u8]) -> ([Block; 2], usize) {
    let n = data.len().min(SHORT);
    let mut blocks = [[0u32; 16]; 2];
    let w = blocks.as_flattened_mut();
    let whole = n / 4;
    for (x, c) in w.iter_mut().zip(data[..whole * 4].chunks_exact(4)) {
        *x = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
    }
    let mut tail = [0u8; 4];
    let rest = &data[whole * 4..n];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    w[whole] = u32::from_be_bytes(tail);
    let used = if n <= 55 { 1 } else { 2 };
    let bits = (n as u64) * 8;
    w[used * 16 - 2] = (bits >> 32) as u32;
    w[used * 16 - 1] = bits as u32;
    (blocks, used)
}

/// The one block of a 20-byte message, built from its words directly.
#[inline]
fn block_of_hash(h: &Hash) -> Block {
    let w = |i: usize| u32::from_be_bytes([h[4 * i], h[4 * i + 1], h[4 * i + 2], h[4 * i + 3]]);
    let mut b = [0u32; 16];
    for (i, x) in b.iter_mut().take(5).enumerate() {
        *x = w(i);
    }
    b[5] = 0x8000_0000;
    b[15] = 160;
    b
}

/// SHA-1 of any message.
pub fn sha1(data: &[u8]) -> Hash {
    if data.len() > SHORT {
        use sha1::{Digest as _, Sha1};
        let mut out = [0u8; 20];
        out.copy_from_slice(&Sha1::digest(data));
        return out;
    }
    let (blocks, used) = pad(data);
    let mut s = [H0];
    for b in &blocks[..used] {
        compress(&mut s, &[*b]);
    }
    output(&s[0])
}

/// SHA-1 of a 20-byte message (a running digest).
#[inline]
pub fn rehash(h: &Hash) -> Hash {
    let mut s = [H0];
    compress(&mut s, &[block_of_hash(h)]);
    output(&s[0])
}

/// The bytes of `s` (shorter than 16) as a little-endian number, read with at most two
/// overlapping loads of 8, 4 or 1 bytes each, none outside `s`: a byte at a time was most
/// of the time spent on a short message.
#[inline(always)]
fn tail(s: &[u8]) -> u128 {
    let n = s.len();
    let le8 = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let le4 = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or([0; 4]));
    if n >= 8 {
        // The last 8 bytes, shifted down past the ones the first load has.
        let hi = if n > 8 {
            le8(&s[n - 8..]) >> (8 * (16 - n))
        } else {
            0
        };
        u128::from(le8(&s[..8])) | u128::from(hi) << 64
    } else if n >= 4 {
        let hi = if n > 4 {
            le4(&s[n - 4..]) >> (8 * (8 - n))
        } else {
            0
        };
        u128::from(le4(&s[..4])) | u128::from(hi) << 32
    } else {
        s.iter()
            .enumerate()
            .fold(0, |x, (i, &b)| x | u128::from(b) << (8 * i))
    }
}

/// Whether this CPU runs [`wide::short16`] (checked once; cached by std).
#[inline]
pub fn has_wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Fewer messages than this left over go through SHA-NI lanes rather than a sixteen-wide
/// pass with empty lanes.
#[cfg(target_arch = "x86_64")]
const WIDE_MIN: usize = 6;

/// `out[i] = SHA1(msgs[i])` for every `i`: sixteen at a time on AVX-512, else [`LANES`]
/// at a time. `out` is as long as `msgs`.
pub fn sha1_batch(msgs: &[&[u8]], out: &mut [Hash]) {
    debug_assert_eq!(msgs.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if msgs.len() >= WIDE_MIN && has_wide() {
        for (m, o) in msgs.chunks(SORTED).zip(out.chunks_mut(SORTED)) {
            wide_sorted(m, o);
        }
        return;
    }
    for (m, o) in msgs.chunks(LANES).zip(out.chunks_mut(LANES)) {
        sha1_lanes(m, o);
    }
}

/// Messages ordered by their number of blocks at a time, at most.
#[cfg(target_arch = "x86_64")]
const SORTED: usize = 256;

/// The longest message that pads into one block.
#[cfg(target_arch = "x86_64")]
const ONE_BLOCK: usize = 55;

/// Up to [`SORTED`] messages sixteen at a time, the one-block ones grouped before the
/// others: a group runs a second block for all its lanes when one of them needs it, and
/// keys of mixed sizes (in a file's random order) would make nearly every group pay it.
/// Fewer than [`WIDE_MIN`] left over go through SHA-NI lanes.
#[cfg(target_arch = "x86_64")]
fn wide_sorted(msgs: &[&[u8]], out: &mut [Hash]) {
    let mut order = [0u16; SORTED];
    let mut n = 0;
    for pass_long in [false, true] {
        for (i, m) in msgs.iter().enumerate() {
            if (m.len() > ONE_BLOCK) == pass_long {
                order[n] = i as u16;
                n += 1;
            }
        }
    }
    let order = &order[..n];
    let mut done = 0;
    while n - done >= WIDE_MIN {
        let group = &order[done..(done + wide::WIDTH).min(n)];
        let mut lanes: [&[u8]; wide::WIDTH] = [&[]; wide::WIDTH];
        for (l, &i) in lanes.iter_mut().zip(group) {
            *l = msgs[usize::from(i)];
        }
        // SAFETY: the CPU has every feature `short16` enables (checked by the caller).
        let hs = unsafe { wide::short16(&lanes, H0) };
        for (h, &i) in hs.iter().zip(group) {
            let m = msgs[usize::from(i)];
            out[usize::from(i)] = if m.len() <= SHORT { *h } else { sha1(m) };
        }
        done += group.len();
    }
    let rest = &order[done..];
    let mut few: [&[u8]; WIDE_MIN] = [&[]; WIDE_MIN];
    let mut hs = [[0u8; 20]; WIDE_MIN];
    for (f, &i) in few.iter_mut().zip(rest) {
        *f = msgs[usize::from(i)];
    }
    let k = rest.len();
    for (m, o) in few[..k].chunks(LANES).zip(hs[..k].chunks_mut(LANES)) {
        sha1_lanes(m, o);
    }
    for (h, &i) in hs.iter().zip(rest) {
        out[usize::from(i)] = *h;
    }
}

/// Up to [`LANES`] messages side by side; long ones on their own.
fn sha1_lanes(msgs: &[&[u8]], out: &mut [Hash]) {
    #[cfg(target_arch = "x86_64")]
    if msgs.len() == LANES && msgs.iter().all(|m| m.len() <= SHORT) && has_sha_ni() {
        let m: &[&[u8]; LANES] = msgs.try_into().expect("LANES messages");
        // SAFETY: the CPU has every feature `short_lanes` enables (checked just above).
        let states = unsafe { ni::short_lanes(m) };
        for (o, s) in out.iter_mut().zip(&states) {
            *o = output(s);
        }
        return;
    }
    let mut states = [H0; LANES];
    let mut first = [[0u32; 16]; LANES];
    let mut second = [[0u32; 16]; LANES];
    let mut two = [false; LANES];
    let mut short = 0;
    for (i, m) in msgs.iter().enumerate().take(LANES) {
        if m.len() <= SHORT {
            let (b, used) = pad(m);
            first[i] = b[0];
            second[i] = b[1];
            two[i] = used == 2;
            short += 1;
        }
    }
    if short > 0 {
        compress(&mut states, &first);
        if two.iter().any(|&t| t) {
            let mut after = states;
            compress(&mut after, &second);
            for ((s, a), t) in states.iter_mut().zip(after).zip(two) {
                if t {
                    *s = a;
                }
            }
        }
    }
    for ((m, o), s) in msgs.iter().zip(out.iter_mut()).zip(&states) {
        *o = if m.len() <= SHORT { output(s) } else { sha1(m) };
    }
}

/// `h = SHA1(h)` for every running digest, side by side as [`sha1_batch`] does.
pub fn rehash_batch(hs: &mut [Hash]) {
    #[cfg(target_arch = "x86_64")]
    let hs = if hs.len() >= WIDE_MIN && has_wide() {
        let mut done = 0;
        while hs.len() - done >= WIDE_MIN {
            let k = (hs.len() - done).min(wide::WIDTH);
            // SAFETY: the CPU has every feature `rehash16` enables (checked just above).
            unsafe { wide::rehash16(&mut hs[done..done + k], H0) };
            done += k;
        }
        &mut hs[done..]
    } else {
        hs
    };
    for chunk in hs.chunks_mut(LANES) {
        let mut states = [H0; LANES];
        let mut blocks = [[0u32; 16]; LANES];
        for (b, h) in blocks.iter_mut().zip(chunk.iter()) {
            *b = block_of_hash(h);
        }
        compress(&mut states, &blocks);
        for (h, s) in chunk.iter_mut().zip(&states) {
            *h = output(s);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod ni;
#[cfg(target_arch = "x86_64")]
mod wide;

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest as _, Sha1};

    fn reference(data: &[u8]) -> Hash {
        let mut out = [0u8; 20];
        out.copy_from_slice(&Sha1::digest(data));
        out
    }

    /// A xorshift stream: random-looking bytes without a dependency.
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn wide_width() -> usize {
        #[cfg(target_arch = "x86_64")]
        return wide::WIDTH;
        #[cfg(not(target_arch = "x86_64"))]
        LANES
    }

    #[test]
    fn tails_are_read_whole() {
        let bytes: Vec<u8> = (1..=16).collect();
        for n in 0..16 {
            let want = bytes[..n]
                .iter()
                .rev()
                .fold(0u128, |x, &b| x << 8 | u128::from(b));
            assert_eq!(tail(&bytes[..n]), want, "{n} bytes");
        }
    }

    #[test]
    fn every_length_matches_the_sha1_crate() {
        for n in 0..=200 {
            for seed in 0..4u64 {
                let d = bytes(seed * 1000 + n as u64, n);
                assert_eq!(sha1(&d), reference(&d), "length {n}");
            }
        }
        assert_eq!(
            sha1(b"abc"),
            reference(b"abc"),
            "the FIPS 180 vector through this path"
        );
        assert_eq!(sha1(b"abc")[..4], [0xa9, 0x99, 0x3e, 0x36]);
    }

    #[test]
    fn batches_of_mixed_lengths_match() {
        // Every batch size (including partial last groups), lengths 0..=200 mixed so a group
        // holds one-block, two-block and streamed messages together.
        // Past 256 messages, a batch is ordered by blocks in pieces of that many.
        let msgs: Vec<Vec<u8>> = (0..=700usize)
            .map(|i| bytes(i as u64 + 7, (i * 37) % 201))
            .collect();
        for count in [
            1,
            2,
            3,
            4,
            5,
            7,
            8,
            9,
            64,
            201,
            255,
            256,
            257,
            262,
            600,
            msgs.len(),
        ] {
            let refs: Vec<&[u8]> = msgs.iter().take(count).map(|m| &m[..]).collect();
            let mut out = vec![[0u8; 20]; refs.len()];
            sha1_batch(&refs, &mut out);
            for (m, o) in refs.iter().zip(&out) {
                assert_eq!(*o, reference(m), "length {} in a batch of {count}", m.len());
            }
        }
    }

    #[test]
    fn groups_of_short_messages_match() {
        // Whole groups of short messages take the path that reads them in place: every
        // length up to SHORT, each at every position of a group, sliced out of a larger
        // buffer so that bytes past the end are there (and must not be hashed).
        let buf = bytes(42, 4 * 256);
        for shift in 0..2 * wide_width() {
            let refs: Vec<&[u8]> = (0..=SHORT)
                .map(|n| {
                    let n = (n + shift) % (SHORT + 1);
                    &buf[3 * n..3 * n + n]
                })
                .collect();
            let mut out = vec![[0u8; 20]; refs.len()];
            sha1_batch(&refs, &mut out);
            for (m, o) in refs.iter().zip(&out) {
                assert_eq!(*o, reference(m), "length {}", m.len());
            }
        }
    }

    #[test]
    fn rehash_matches() {
        let mut hs: Vec<Hash> = (0..11u64)
            .map(|i| bytes(i + 99, 20).try_into().expect("20"))
            .collect();
        let want: Vec<Hash> = hs.iter().map(|h| reference(h)).collect();
        assert_eq!(
            hs.iter().map(rehash).collect::<Vec<_>>(),
            want,
            "one at a time"
        );
        rehash_batch(&mut hs);
        assert_eq!(hs, want);
        // Every batch size around the wide widths (full and partial groups).
        for n in 1..=40u64 {
            let mut hs: Vec<Hash> = (0..n)
                .map(|i| bytes(i * 31 + n, 20).try_into().expect("20"))
                .collect();
            let want: Vec<Hash> = hs.iter().map(|h| reference(h)).collect();
            rehash_batch(&mut hs);
            assert_eq!(hs, want, "{n} digests");
        }
    }

    #[test]
    fn lanes_agree_with_the_portable_compression() {
        let blocks: [Block; 3] = std::array::from_fn(|i| {
            let b = bytes(i as u64 + 3, 64);
            std::array::from_fn(|j| {
                u32::from_be_bytes([b[4 * j], b[4 * j + 1], b[4 * j + 2], b[4 * j + 3]])
            })
        });
        let start: [State; 3] = [H0, [1, 2, 3, 4, 5], [u32::MAX; 5]];
        let mut a = start;
        let mut b = start;
        compress(&mut a, &blocks);
        portable(&mut b, &blocks);
        assert_eq!(a, b);
        if !has_sha_ni() {
            eprintln!("no SHA-NI here: only the portable path was checked");
        }
    }
}
