//! AVX-512: sixteen short messages hashed at once, one per 32-bit lane of a vector.
//!
//! SHA-NI runs one message's rounds per instruction chain; here each round is a handful of
//! ordinary vector instructions (`VPTERNLOGD` for the round function, `VPROLD` for the
//! rotations) applied to sixteen messages together, which on a core with 512-bit integer
//! units does more blocks per cycle than interleaved SHA-NI chains. The messages are read
//! with masked loads (bytes past a message's end are not touched), padded in registers,
//! and turned from one block per vector into one word per vector by a 16×16 transpose.
//!
//! Why the `unsafe` is sound: [`short16`] is called only after [`super::has_wide`] saw
//! every feature it enables; its loads are masked to the bytes inside each message (an
//! AVX-512 masked load does not access masked-off bytes), and the only pointer offset
//! (`+ 64`) is taken when the message is longer than 64 bytes.

use core::arch::x86_64::*;

/// Messages hashed together.
pub(super) const WIDTH: usize = 16;

const K: [u32; 4] = [0x5A82_7999, 0x6ED9_EBA1, 0x8F1B_BCDC, 0xCA62_C1D6];

/// The 16×16 transpose of 32-bit words: row `i` of the input is lane `i` of every output.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose(r: [__m512i; 16]) -> [__m512i; 16] {
    // After the 32- and 64-bit unpacks, `s[4g + j]` holds, for rows `4g..4g+4`, the
    // columns `j, j+4, j+8, j+12` in its four 128-bit quarters.
    let mut s = r;
    for g in 0..4 {
        let b = 4 * g;
        let t0 = _mm512_unpacklo_epi32(r[b], r[b + 1]);
        let t1 = _mm512_unpackhi_epi32(r[b], r[b + 1]);
        let t2 = _mm512_unpacklo_epi32(r[b + 2], r[b + 3]);
        let t3 = _mm512_unpackhi_epi32(r[b + 2], r[b + 3]);
        s[b] = _mm512_unpacklo_epi64(t0, t2);
        s[b + 1] = _mm512_unpackhi_epi64(t0, t2);
        s[b + 2] = _mm512_unpacklo_epi64(t1, t3);
        s[b + 3] = _mm512_unpackhi_epi64(t1, t3);
    }
    // Quarters gathered: `t[j]` holds columns j and j+8, `t[j+4]` columns j+4 and j+12,
    // for rows 0..8 (`t[j]`, `t[j+4]`) and 8..16 (`t[j+8]`, `t[j+12]`).
    let mut t = s;
    for j in 0..4 {
        t[j] = _mm512_shuffle_i32x4::<0x88>(s[j], s[j + 4]);
        t[j + 4] = _mm512_shuffle_i32x4::<0xdd>(s[j], s[j + 4]);
        t[j + 8] = _mm512_shuffle_i32x4::<0x88>(s[j + 8], s[j + 12]);
        t[j + 12] = _mm512_shuffle_i32x4::<0xdd>(s[j + 8], s[j + 12]);
    }
    let mut out = t;
    for j in 0..4 {
        out[j] = _mm512_shuffle_i32x4::<0x88>(t[j], t[j + 8]);
        out[j + 8] = _mm512_shuffle_i32x4::<0xdd>(t[j], t[j + 8]);
        out[j + 4] = _mm512_shuffle_i32x4::<0x88>(t[j + 4], t[j + 12]);
        out[j + 12] = _mm512_shuffle_i32x4::<0xdd>(t[j + 4], t[j + 12]);
    }
    out
}

/// Eighty rounds of one block in every lane: `s` is A..E, `w` the block's words.
#[inline]
#[target_feature(enable = "avx512f")]
fn block(s: &mut [__m512i; 5], mut w: [__m512i; 16]) {
    let [mut a, mut b, mut c, mut d, mut e] = *s;
    macro_rules! round {
        ($t:expr, $f:literal, $k:expr) => {{
            let t: usize = $t;
            if t >= 16 {
                let x = _mm512_ternarylogic_epi32::<0x96>(
                    w[(t + 13) % 16],
                    w[(t + 8) % 16],
                    w[(t + 2) % 16],
                );
                w[t % 16] = _mm512_rol_epi32::<1>(_mm512_xor_si512(x, w[t % 16]));
            }
            let f = _mm512_ternarylogic_epi32::<$f>(b, c, d);
            let x = _mm512_add_epi32(_mm512_add_epi32(e, $k), w[t % 16]);
            let x = _mm512_add_epi32(_mm512_add_epi32(x, f), _mm512_rol_epi32::<5>(a));
            e = d;
            d = c;
            c = _mm512_rol_epi32::<30>(b);
            b = a;
            a = x;
        }};
    }
    // Written out round by round, so that every `w` index is a constant and the sixteen
    // words stay in registers (a loop kept them in memory).
    macro_rules! rounds {
        ($f:literal, $k:expr; $($t:literal)*) => {
            let k = _mm512_set1_epi32($k as i32);
            $( round!($t, $f, k); )*
        };
    }
    // (b & c) | (!b & d)
    rounds!(0xCA, K[0]; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19);
    // b ^ c ^ d
    rounds!(0x96, K[1]; 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39);
    // majority
    rounds!(0xE8, K[2]; 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59);
    rounds!(0x96, K[3]; 60 61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79);
    for (x, y) in s.iter_mut().zip([a, b, c, d, e]) {
        *x = _mm512_add_epi32(*x, y);
    }
}

/// `h = SHA1(h)` for up to sixteen running digests at once (`hs.len() <= WIDTH`). The
/// digests lie one after another, so each of the five words is one masked gather (word `w`
/// of digest `l` is 32-bit word `5l + w` of `hs`), and the block is those five, the pad
/// and the length: no per-message load, padding or transpose.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn rehash16(hs: &mut [[u8; 20]], h0: [u32; 5]) {
    let k = hs.len().min(WIDTH);
    let lanes: __mmask16 = if k == WIDTH {
        u16::MAX
    } else {
        (1u16 << k) - 1
    };
    let swap = _mm512_set4_epi32(0x0c0d_0e0f, 0x0809_0a0b, 0x0405_0607, 0x0001_0203);
    let five = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32(5),
    );
    let zero = _mm512_setzero_si512();
    let mut w = [zero; 16];
    let base = hs.as_ptr().cast::<i32>();
    for (i, x) in w.iter_mut().take(5).enumerate() {
        let idx = _mm512_add_epi32(five, _mm512_set1_epi32(i as i32));
        // SAFETY: lane `l < k` reads 32-bit word `5l + i < 5k` of `hs`, inside its
        // `20k` bytes; the other lanes are masked off and read nothing.
        let v = unsafe { _mm512_mask_i32gather_epi32::<4>(zero, lanes, idx, base) };
        *x = _mm512_shuffle_epi8(v, swap);
    }
    w[5] = _mm512_set1_epi32(0x8000_0000u32 as i32);
    w[15] = _mm512_set1_epi32(160);
    let mut s = h0.map(|h| _mm512_set1_epi32(h as i32));
    block(&mut s, w);
    let mut words = [[0u32; WIDTH]; 5];
    for (o, x) in words.iter_mut().zip(s) {
        // SAFETY: `o` is 64 writable bytes; the store is unaligned.
        unsafe { _mm512_storeu_si512(o.as_mut_ptr().cast(), _mm512_shuffle_epi8(x, swap)) };
    }
    for (l, o) in hs.iter_mut().take(k).enumerate() {
        for (i, w) in words.iter().enumerate() {
            o[4 * i..4 * i + 4].copy_from_slice(&w[l].to_ne_bytes());
        }
    }
}

/// SHA-1 of sixteen messages of at most [`super::SHORT`] bytes each (longer ones are cut
/// there: the caller hashes those elsewhere).
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn short16(msgs: &[&[u8]; WIDTH], h0: [u32; 5]) -> [[u8; 20]; WIDTH] {
    // Each 32-bit word's bytes reversed: SHA-1 reads big-endian words.
    let swap = _mm512_set4_epi32(0x0c0d_0e0f, 0x0809_0a0b, 0x0405_0607, 0x0001_0203);
    let pad = _mm512_set1_epi8(0x80u8 as i8);
    let mut first = [_mm512_setzero_si512(); WIDTH];
    let mut second = [_mm512_setzero_si512(); WIDTH];
    let mut two: u16 = 0;
    for (l, m) in msgs.iter().enumerate() {
        let n = m.len().min(super::SHORT);
        let upto = |k: usize| if k >= 64 { u64::MAX } else { (1u64 << k) - 1 };
        // SAFETY: the mask covers bytes `0..min(n, 64)` of `m`, all inside it.
        let b0 = unsafe { _mm512_maskz_loadu_epi8(upto(n), m.as_ptr().cast()) };
        let b1 = if n > 64 {
            // SAFETY: `n > 64`: `m.as_ptr() + 64` is inside `m`, and the mask covers
            // bytes `64..n` only.
            unsafe { _mm512_maskz_loadu_epi8(upto(n - 64), m.as_ptr().add(64).cast()) }
        } else {
            _mm512_setzero_si512()
        };
        let (b0, b1) = if n < 64 {
            (_mm512_mask_mov_epi8(b0, 1u64 << n, pad), b1)
        } else {
            (b0, _mm512_mask_mov_epi8(b1, 1u64 << (n - 64), pad))
        };
        let (b0, b1) = (_mm512_shuffle_epi8(b0, swap), _mm512_shuffle_epi8(b1, swap));
        let bits = _mm512_set1_epi32((n * 8) as i32);
        if n <= 55 {
            first[l] = _mm512_mask_mov_epi32(b0, 1 << 15, bits);
        } else {
            first[l] = b0;
            second[l] = _mm512_mask_mov_epi32(b1, 1 << 15, bits);
            two |= 1 << l;
        }
    }
    let mut s = h0.map(|h| _mm512_set1_epi32(h as i32));
    block(&mut s, transpose(first));
    if two != 0 {
        let mut s2 = s;
        block(&mut s2, transpose(second));
        for (x, y) in s.iter_mut().zip(s2) {
            *x = _mm512_mask_mov_epi32(*x, two, y);
        }
    }
    let mut words = [[0u32; WIDTH]; 5];
    for (o, x) in words.iter_mut().zip(s) {
        // SAFETY: `o` is 64 writable bytes; the store is unaligned.
        unsafe { _mm512_storeu_si512(o.as_mut_ptr().cast(), _mm512_shuffle_epi8(x, swap)) };
    }
    let mut out = [[0u8; 20]; WIDTH];
    for (l, o) in out.iter_mut().enumerate() {
        for (i, w) in words.iter().enumerate() {
            o[4 * i..4 * i + 4].copy_from_slice(&w[l].to_ne_bytes());
        }
    }
    out
}
