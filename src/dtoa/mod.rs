//! Doubles to text exactly as Redis and Valkey print them: C's `%.17g` (Redis up to 7.0),
//! `fpconv_dtoa` (Redis 7.2+ and every Valkey) and `d2string`, which picks between those
//! and an integer. The digest needs the very same digits a server prints (scores in
//! `DEBUG DIGEST`, array floats), and the RDB writer stores a sorted-set score in a
//! listpack or ziplist as the text the target server would have stored, so that a restored
//! key's `DUMP` is the source's byte for byte.
//!
//! A leaf: it imports nothing of ours and knows no server version; callers pick the style.

mod grisu;
mod printf;

pub use printf::{printf_17g, printf_17g_into};

/// `n` in decimal at the end of `buf`, two digits at a time; where the digits start.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> usize {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut p = buf.len();
    while n >= 100 {
        let d = (n % 100) as usize * 2;
        p -= 2;
        buf[p..p + 2].copy_from_slice(&PAIRS[d..d + 2]);
        n /= 100;
    }
    if n >= 10 {
        let d = n as usize * 2;
        p -= 2;
        buf[p..p + 2].copy_from_slice(&PAIRS[d..d + 2]);
    } else {
        p -= 1;
        buf[p] = b'0' + n as u8;
    }
    p
}

/// `fpconv_dtoa`: Grisu2 digits with the servers' own layout (not always the shortest text).
pub fn fpconv(x: f64) -> String {
    grisu::dtoa(x)
}

/// [`fpconv`] appended to `out` (no allocation of its own when `out` has room).
pub fn fpconv_into(x: f64, out: &mut String) {
    grisu::dtoa_into(x, out)
}

/// Which server's `d2string` to follow for a sorted set's score text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScoreText {
    /// Redis before 7.0 (`d2string`): `-0` kept, integers below 2^52 as integers, else `%.17g`.
    Redis62,
    /// Redis 7.0: whole numbers within ±2^62 as integers (`double2ll` in `zzlInsertAt`),
    /// else `%.17g`.
    Redis70,
    /// Redis 7.2+ and Valkey: the same integers, else `fpconv_dtoa`.
    #[default]
    Fpconv,
}

/// Redis's `double2ll`: `d` as an integer when it is one within ±(i64::MAX / 2).
pub fn double_to_ll(d: f64) -> Option<i64> {
    const LIM: f64 = (i64::MAX / 2) as f64;
    if !(-LIM..=LIM).contains(&d) {
        return None;
    }
    let i = d as i64;
    (i as f64 == d).then_some(i)
}

/// The text a server of `style` stores for sorted-set score `d` in a listpack or ziplist.
/// A negative zero stays `-0` for every style: a 7.0+ master turns a fresh `-0` into the
/// integer 0 before it gets here, but a `-0` it loaded from an older file is kept as such,
/// and writing it as 0 would change the value (and the digest).
pub fn score_text(d: f64, style: ScoreText) -> String {
    if d.is_nan() {
        return "nan".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.into();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0" } else { "0" }.into();
    }
    match style {
        ScoreText::Redis62 => {
            // (2^52 - 1) and 2^52, as util.c's d2string compares them (strictly).
            if d > -4503599627370495.0 && d < 4503599627370496.0 && d.fract() == 0.0 {
                (d as i64).to_string()
            } else {
                printf_17g(d)
            }
        }
        ScoreText::Redis70 => match double_to_ll(d) {
            Some(i) => i.to_string(),
            None => printf_17g(d),
        },
        ScoreText::Fpconv => match double_to_ll(d) {
            Some(i) => i.to_string(),
            None => fpconv(d),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_text_per_server() {
        use ScoreText::*;
        let cases: &[(f64, [&str; 3])] = &[
            (1.5, ["1.5", "1.5", "1.5"]),
            (0.1, ["0.10000000000000001", "0.10000000000000001", "0.1"]),
            (-2.0, ["-2", "-2", "-2"]),
            (-0.0, ["-0", "-0", "-0"]),
            (0.0, ["0", "0", "0"]),
            (1e17, ["1e+17", "100000000000000000", "100000000000000000"]),
            (1e20, ["1e+20", "1e+20", "1e+20"]),
            (f64::INFINITY, ["inf", "inf", "inf"]),
            (f64::NEG_INFINITY, ["-inf", "-inf", "-inf"]),
            (
                4503599627370496.0,
                ["4503599627370496", "4503599627370496", "4503599627370496"],
            ),
        ];
        for (d, want) in cases {
            for (style, w) in [Redis62, Redis70, Fpconv].into_iter().zip(want) {
                assert_eq!(score_text(*d, style), *w, "{d:e} {style:?}");
            }
        }
        assert_eq!(double_to_ll(4611686018427387904.0), Some(1 << 62));
        assert_eq!(double_to_ll(9223372036854775807.0), None);
        assert_eq!(double_to_ll(2.5), None);
    }

    #[test]
    fn score_text_round_trips() {
        for d in [
            0.1,
            1.0 / 3.0,
            -1e-300,
            5e-324,
            1e300,
            123456789012345678.0,
            2.5e-5,
        ] {
            for style in [ScoreText::Redis62, ScoreText::Redis70, ScoreText::Fpconv] {
                let t = score_text(d, style);
                assert_eq!(t.parse::<f64>().unwrap(), d, "{t} {style:?}");
            }
        }
    }
}
