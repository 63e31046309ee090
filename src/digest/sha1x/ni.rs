//! SHA-NI: `N` independent states stepped through their rounds side by side.
//!
//! A leaf under [`super`]: called only after [`super::has_sha_ni`] saw the features.

use core::arch::x86_64::*;

use super::{Block, State};

/// Words `4i..4i+4` of a block, the first in the highest lane (as SHA-NI wants them).
macro_rules! words {
    ($b:expr, $i:expr) => {
        _mm_set_epi32(
            $b[4 * $i] as i32,
            $b[4 * $i + 1] as i32,
            $b[4 * $i + 2] as i32,
            $b[4 * $i + 3] as i32,
        )
    };
}

/// Four rounds of every lane: `e` is the lane's E input (E plus the message words),
/// `F` the round function (0..=3).
macro_rules! rounds {
    ($n:ident, $abcd:ident, $e:ident, $f:literal) => {
        for l in 0..$n {
            $abcd[l] = _mm_sha1rnds4_epu32::<$f>($abcd[l], $e[l]);
        }
    };
}

/// One block into each of `N` lanes: `abcd` (A in the highest dword) and `e0` (E in the
/// highest dword) are updated, `w` is each lane's block as four vectors of big-endian
/// words (the first word in the highest dword).
///
/// The schedule: `W[i] = msg2(msg1(W[i-4], W[i-3]) ^ W[i-2], W[i-1])` for the groups
/// of four words from the fifth on; the E input of group `i > 0` is
/// `nexte(ABCD before group i-1, W[i])`, and of group 0 `E + W[0]`. The lanes'
/// instructions are interleaved group by group.
macro_rules! block {
    ($n:ident, $abcd:ident, $e0:ident, $w:ident) => {{
        let saved_abcd = $abcd;
        let mut e = [_mm_setzero_si128(); $n];
        let mut prev = $abcd;
        for l in 0..$n {
            e[l] = _mm_add_epi32($e0[l], $w[l][0]);
        }
        rounds!($n, $abcd, e, 0);
        macro_rules! group {
            ($i:literal, $f:literal) => {
                for l in 0..$n {
                    if $i >= 4 {
                        let t = _mm_sha1msg1_epu32($w[l][$i % 4], $w[l][($i + 1) % 4]);
                        let t = _mm_xor_si128(t, $w[l][($i + 2) % 4]);
                        $w[l][$i % 4] = _mm_sha1msg2_epu32(t, $w[l][($i + 3) % 4]);
                    }
                    e[l] = _mm_sha1nexte_epu32(prev[l], $w[l][$i % 4]);
                    prev[l] = $abcd[l];
                }
                rounds!($n, $abcd, e, $f);
            };
        }
        group!(1, 0);
        group!(2, 0);
        group!(3, 0);
        group!(4, 0);
        group!(5, 1);
        group!(6, 1);
        group!(7, 1);
        group!(8, 1);
        group!(9, 1);
        group!(10, 2);
        group!(11, 2);
        group!(12, 2);
        group!(13, 2);
        group!(14, 2);
        group!(15, 3);
        group!(16, 3);
        group!(17, 3);
        group!(18, 3);
        group!(19, 3);
        for l in 0..$n {
            $e0[l] = _mm_sha1nexte_epu32(prev[l], $e0[l]);
            $abcd[l] = _mm_add_epi32($abcd[l], saved_abcd[l]);
        }
    }};
}

macro_rules! state_out {
    ($abcd:expr, $e:expr) => {
        [
            _mm_extract_epi32::<3>($abcd) as u32,
            _mm_extract_epi32::<2>($abcd) as u32,
            _mm_extract_epi32::<1>($abcd) as u32,
            _mm_extract_epi32::<0>($abcd) as u32,
            _mm_extract_epi32::<3>($e) as u32,
        ]
    };
}

/// One block into each of `N` states.
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub(super) fn compress<const N: usize>(states: &mut [State; N], blocks: &[Block; N]) {
    let zero = _mm_setzero_si128();
    let mut abcd = [zero; N];
    let mut e0 = [zero; N];
    let mut w = [[zero; 4]; N];
    for l in 0..N {
        let s = &states[l];
        abcd[l] = _mm_set_epi32(s[0] as i32, s[1] as i32, s[2] as i32, s[3] as i32);
        e0[l] = _mm_set_epi32(s[4] as i32, 0, 0, 0);
        for i in 0..4 {
            w[l][i] = words!(blocks[l], i);
        }
    }
    block!(N, abcd, e0, w);
    for l in 0..N {
        states[l] = state_out!(abcd[l], e0[l]);
    }
}

/// SHA-1 of `N` messages of at most [`super::SHORT`] bytes each, read straight from
/// where they are (no padded copy whose stores the loads would wait on): 16 bytes at a
/// time while they are inside the message, the tail byte by byte into a register, the
/// `0x80` and the bit length put in in registers.
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub(super) fn short_lanes<const N: usize>(msgs: &[&[u8]; N]) -> [State; N] {
    // Reverses the 16 bytes: big-endian words, the first in the highest dword.
    let rev = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0a0b_0c0d_0e0f);
    let zero = _mm_setzero_si128();
    let h0 = super::H0;
    let mut abcd = [_mm_set_epi32(h0[0] as i32, h0[1] as i32, h0[2] as i32, h0[3] as i32); N];
    let mut e0 = [_mm_set_epi32(h0[4] as i32, 0, 0, 0); N];
    let mut w = [[[zero; 4]; N]; 2];
    let mut two = [false; N];
    for l in 0..N {
        let m = msgs[l];
        let n = m.len().min(super::SHORT);
        let used = if n <= 55 { 1 } else { 2 };
        two[l] = used == 2;
        for c in 0..8 {
            let off = 16 * c;
            let v = if off + 16 <= n {
                // SAFETY: `off + 16 <= n <= m.len()`: the 16 bytes are inside `m`.
                unsafe { _mm_loadu_si128(m.as_ptr().add(off).cast()) }
            } else {
                // The tail (and the 0x80 after it), put together in a register from
                // reads inside the message: nothing is stored for the vector to be
                // loaded from.
                let x = if off <= n {
                    super::tail(&m[off..n]) | 0x80u128 << (8 * (n - off))
                } else {
                    0
                };
                _mm_set_epi64x((x >> 64) as i64, x as i64)
            };
            let mut v = _mm_shuffle_epi8(v, rev);
            if c == 4 * used - 1 {
                v = _mm_or_si128(v, _mm_cvtsi64_si128((n as u64 * 8) as i64));
            }
            w[c / 4][l][c % 4] = v;
        }
    }
    let [mut first, mut second] = w;
    block!(N, abcd, e0, first);
    if two.iter().any(|&t| t) {
        let (mut a2, mut e2) = (abcd, e0);
        block!(N, a2, e2, second);
        for l in 0..N {
            if two[l] {
                abcd[l] = a2[l];
                e0[l] = e2[l];
            }
        }
    }
    let mut out = [h0; N];
    for l in 0..N {
        out[l] = state_out!(abcd[l], e0[l]);
    }
    out
}
