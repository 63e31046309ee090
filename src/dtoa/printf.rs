//! C's `"%.17g"` as glibc prints a double: what Redis up to 7.0 answers for a sorted-set
//! score in `DEBUG DIGEST` and stores as a score's text in a ziplist or listpack.

/// C's `%.17g` as glibc prints it: 17 significant digits correctly rounded (ties to
/// even), fixed notation for decimal exponents -4..=16, else `d.ddde±XX`; trailing zeros
/// dropped; `inf`, `-inf`, `nan`, `-0`.
pub fn printf_17g(x: f64) -> String {
    let mut out = String::with_capacity(24);
    printf_17g_into(x, &mut out);
    out
}

/// [`printf_17g`] appended to `out`: typical scores (see [`exact_17g`]) without an
/// allocation of their own when `out` has room.
pub fn printf_17g_into(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str(if x.is_sign_negative() { "-nan" } else { "nan" });
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "inf" } else { "-inf" });
    } else if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0" } else { "0" });
    } else if !exact_17g(x, out) {
        out.push_str(&general_17g(x));
    }
}

/// `%.17g` of a finite nonzero double, by exact formatting.
fn general_17g(x: f64) -> String {
    // Rust's exact formatting rounds the exact binary value half to even, as glibc does.
    let sci = format!("{:.16e}", x.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    let mut out = String::with_capacity(26);
    if x < 0.0 {
        out.push('-');
    }
    let text = |d: &[u8]| d.iter().map(|&c| c as char).collect::<String>();
    let trim = |d: &[u8]| -> usize { d.iter().rposition(|&c| c != b'0').map_or(0, |p| p + 1) };
    if !(-4..17).contains(&exp) {
        out.push(digits[0] as char);
        let frac = &digits[1..1 + trim(&digits[1..])];
        if !frac.is_empty() {
            out.push('.');
            out.push_str(&text(frac));
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        out.push_str(&text(&digits[..int_len]));
        let frac = &digits[int_len..int_len + trim(&digits[int_len..])];
        if !frac.is_empty() {
            out.push('.');
            out.push_str(&text(frac));
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&text(&digits[..trim(&digits)]));
    }
    out
}

/// `%.17g` of a double whose exact decimal value has at most 17 significant digits and
/// prints in fixed notation (`1e-4 <= |x| < 1e17`): those digits, as they are, which is
/// what rounding to 17 digits and dropping trailing zeros leaves. Typical scores (integers,
/// halves, quarters) take this path instead of exact big-number formatting. Appended to
/// `out`; `false` (and nothing written): not such a double.
fn exact_17g(x: f64, out: &mut String) -> bool {
    let a = x.abs();
    if !(1e-4..1e17).contains(&a) {
        return false;
    }
    // a = m * 2^q exactly, m odd (a is normal here: at least 1e-4).
    let bits = a.to_bits();
    let mut m = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    let mut q = ((bits >> 52) & 0x7ff) as i32 - 1075;
    let tz = m.trailing_zeros();
    m >>= tz;
    q += tz as i32;
    // An integer below 1e17 has every digit printed; else a = m * 5^k / 10^k, whose
    // digits are those of m * 5^k (never ending in 0: m is odd), below 1e17 or not taken.
    let (int, frac) = if q >= 0 {
        (a as u64, None)
    } else {
        let k = (-q) as u32;
        let n = match (m as u128).checked_mul(5u128.pow(k.min(25))) {
            Some(n) if k <= 24 && n < 100_000_000_000_000_000 => n as u64,
            _ => return false,
        };
        // 10^k overflows a u64 past k = 19, where n (below 1e17) is all fraction.
        match 10u64.checked_pow(k) {
            Some(p) => (n / p, Some((n % p, k as usize))),
            None => (0, Some((n, k as usize))),
        }
    };
    if x < 0.0 {
        out.push('-');
    }
    push_digits(out, int, 0);
    if let Some((f, width)) = frac {
        out.push('.');
        push_digits(out, f, width);
    }
    true
}

/// `n` in decimal, zero-padded to `width` digits.
fn push_digits(out: &mut String, n: u64, width: usize) {
    let mut buf = [0u8; 20];
    let start = super::decimal(n, &mut buf);
    out.extend(std::iter::repeat_n(
        '0',
        width.saturating_sub(buf.len() - start),
    ));
    out.extend(buf[start..].iter().map(|&c| char::from(c)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact-digits path's text, `None` where it declines (and then it wrote nothing).
    fn exact(x: f64) -> Option<String> {
        let mut out = String::from("pre");
        let taken = exact_17g(x, &mut out);
        assert!(taken || out == "pre", "{x:e}: wrote {out:?} and declined");
        taken.then(|| out["pre".len()..].to_string())
    }

    #[test]
    fn printf_17g_matches_glibc() {
        // Expected strings from glibc printf("%.17g").
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (-1.0, "-1"),
            (0.1, "0.10000000000000001"),
            (2.2, "2.2000000000000002"),
            (1e300, "1.0000000000000001e+300"),
            (5e-324, "4.9406564584124654e-324"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            // Exact ties at the 17th digit (1e15 + 0.25, 1e15 + 0.75) round to even.
            (f64::from_bits(0x430c6bf526340002), "1000000000000000.2"),
            (f64::from_bits(0x430c6bf526340006), "1000000000000000.8"),
            (-0.0, "-0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (1.000033e25, "1.000033e+25"),
            (9007199254740992.0, "9007199254740992"),
        ];
        for &(x, want) in cases {
            assert_eq!(printf_17g(x), want, "{x:e}");
        }
        // The exact-digits path: the same text as the general one, and it is taken.
        for (x, want) in [
            (1.5, "1.5"),
            (-4.25, "-4.25"),
            (0.0001220703125, "0.0001220703125"),
            (123456.75, "123456.75"),
            (99999999999999984.0, "99999999999999984"),
        ] {
            assert_eq!(exact(x).as_deref(), Some(want), "{x:e}");
        }
        for x in [0.1, 1e17, 1e-5, 1.0 / 3.0, 0.000099, 2f64.powi(-30)] {
            assert_eq!(exact(x), None, "{x:e}");
        }
    }

    #[test]
    fn exact_digits_agree_with_exact_formatting() {
        // Dyadic rationals of every scale the fast path accepts, and near its edges: where it
        // answers, it must answer what the general formatting does.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut taken = 0;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let m = (x >> 11) >> (i % 53);
            let e = (i % 90) as i32 - 60;
            let v = m as f64 * 2f64.powi(e) * if i % 2 == 0 { 1.0 } else { -1.0 };
            if v == 0.0 || !v.is_finite() {
                continue;
            }
            if let Some(fast) = exact(v) {
                taken += 1;
                assert_eq!(fast, general_17g(v), "{v:e}");
            }
        }
        assert!(taken > 50_000, "the fast path was taken {taken} times");
    }
}
