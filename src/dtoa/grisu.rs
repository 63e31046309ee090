//! Shortest-ish double to text as Redis 7.2+ and Valkey print doubles (`fpconv_dtoa`).
//!
//! Those servers format a score with `fpconv_dtoa` (deps/fpconv): Florian Loitsch's Grisu2
//! with 64-bit cached powers of ten, then their own layout rules. Grisu2 always round-trips
//! but is not always the shortest text (Rust's `{}` is), so the digest needs the very same
//! digits: this is an independent implementation of the same algorithm and layout,
//! checked value by value against real servers (tests/digest.rs) and described in
//! docs/digest.md.

/// Normalized 64-bit approximations of 10^k, k = -348, -340, …, 340, as `(f, e)` with
/// `f * 2^e ≈ 10^k` and `2^63 <= f < 2^64`, rounded to nearest. Derived with exact
/// rational arithmetic (see docs/digest.md); the `u128` test below re-derives a few.
const POWERS: [(u64, i32); 87] = [
    (18054884314459144840, -1220),
    (13451937075301367670, -1193),
    (10022474136428063862, -1166),
    (14934650266808366570, -1140),
    (11127181549972568877, -1113),
    (16580792590934885855, -1087),
    (12353653155963782858, -1060),
    (18408377700990114895, -1034),
    (13715310171984221708, -1007),
    (10218702384817765436, -980),
    (15227053142812498563, -954),
    (11345038669416679861, -927),
    (16905424996341287883, -901),
    (12595523146049147757, -874),
    (9384396036005875287, -847),
    (13983839803942852151, -821),
    (10418772551374772303, -794),
    (15525180923007089351, -768),
    (11567161174868858868, -741),
    (17236413322193710309, -715),
    (12842128665889583758, -688),
    (9568131466127621947, -661),
    (14257626930069360058, -635),
    (10622759856335341974, -608),
    (15829145694278690180, -582),
    (11793632577567316726, -555),
    (17573882009934360870, -529),
    (13093562431584567480, -502),
    (9755464219737475723, -475),
    (14536774485912137811, -449),
    (10830740992659433045, -422),
    (16139061738043178685, -396),
    (12024538023802026127, -369),
    (17917957937422433684, -343),
    (13349918974505688015, -316),
    (9946464728195732843, -289),
    (14821387422376473014, -263),
    (11042794154864902060, -236),
    (16455045573212060422, -210),
    (12259964326927110867, -183),
    (18268770466636286478, -157),
    (13611294676837538539, -130),
    (10141204801825835212, -103),
    (15111572745182864684, -77),
    (11258999068426240000, -50),
    (16777216000000000000, -24),
    (12500000000000000000, 3),
    (9313225746154785156, 30),
    (13877787807814456755, 56),
    (10339757656912845936, 83),
    (15407439555097886824, 109),
    (11479437019748901445, 136),
    (17105694144590052135, 162),
    (12744735289059618216, 189),
    (9495567745759798747, 216),
    (14149498560666738074, 242),
    (10542197943230523224, 269),
    (15709099088952724970, 295),
    (11704190886730495818, 322),
    (17440603504673385349, 348),
    (12994262207056124023, 375),
    (9681479787123295682, 402),
    (14426529090290212157, 428),
    (10748601772107342003, 455),
    (16016664761464807395, 481),
    (11933345169920330789, 508),
    (17782069995880619868, 534),
    (13248674568444952270, 561),
    (9871031767461413346, 588),
    (14708983551653345445, 614),
    (10959046745042015199, 641),
    (16330252207878254650, 667),
    (12166986024289022870, 694),
    (18130221999122236476, 720),
    (13508068024458167312, 747),
    (10064294952495520794, 774),
    (14996968138956309548, 800),
    (11173611982879273257, 827),
    (16649979327439178909, 853),
    (12405201291620119593, 880),
    (9242595204427927429, 907),
    (13772540099066387757, 933),
    (10261342003245940623, 960),
    (15290591125556738113, 986),
    (11392378155556871081, 1013),
    (16975966327722178521, 1039),
    (12648080533535911531, 1066),
];
const FIRST_POWER: i32 = -348;
const POWER_STEP: i32 = 8;
/// The window the scaled upper boundary's binary exponent must land in.
const EXP_MIN: i32 = -60;
const EXP_MAX: i32 = -32;

const FRAC_MASK: u64 = 0x000F_FFFF_FFFF_FFFF;
const EXP_MASK: u64 = 0x7FF0_0000_0000_0000;
const HIDDEN: u64 = 0x0010_0000_0000_0000;
const SIGN: u64 = 0x8000_0000_0000_0000;
const EXP_BIAS: i32 = 1023 + 52;

/// Powers of ten 10^19 … 10^0.
const TENS: [u64; 20] = {
    let mut t = [1u64; 20];
    let mut i = 19;
    while i > 0 {
        t[i - 1] = t[i] * 10;
        i -= 1;
    }
    t
};

/// A "do-it-yourself" float: `frac * 2^exp`.
#[derive(Clone, Copy, Debug)]
struct Fp {
    frac: u64,
    exp: i32,
}

fn decompose(bits: u64) -> Fp {
    let frac = bits & FRAC_MASK;
    let e = ((bits & EXP_MASK) >> 52) as i32;
    if e != 0 {
        Fp {
            frac: frac + HIDDEN,
            exp: e - EXP_BIAS,
        }
    } else {
        Fp {
            frac,
            exp: 1 - EXP_BIAS,
        }
    }
}

/// Shift left until the top bit of 64 is set.
fn normalized(mut fp: Fp) -> Fp {
    while fp.frac & HIDDEN == 0 {
        fp.frac <<= 1;
        fp.exp -= 1;
    }
    fp.frac <<= 11;
    fp.exp -= 11;
    fp
}

/// The neighbours half-way to the adjacent doubles, both with the upper one's exponent.
fn boundaries(fp: Fp) -> (Fp, Fp) {
    let mut hi = Fp {
        frac: (fp.frac << 1) + 1,
        exp: fp.exp - 1,
    };
    while hi.frac & (HIDDEN << 1) == 0 {
        hi.frac <<= 1;
        hi.exp -= 1;
    }
    hi.frac <<= 10;
    hi.exp -= 10;
    // The gap below a power of two is half the gap above it.
    let l_shift = if fp.frac == HIDDEN { 2 } else { 1 };
    let mut lo = Fp {
        frac: (fp.frac << l_shift) - 1,
        exp: fp.exp - l_shift,
    };
    lo.frac <<= (lo.exp - hi.exp) as u32;
    lo.exp = hi.exp;
    (lo, hi)
}

/// The high 64 bits of the 128-bit product, rounded half up on bit 63.
fn multiply(a: Fp, b: Fp) -> Fp {
    let p = u128::from(a.frac) * u128::from(b.frac) + (1u128 << 63);
    Fp {
        frac: (p >> 64) as u64,
        exp: a.exp + b.exp + 64,
    }
}

/// The cached power that brings `exp` into [EXP_MIN, EXP_MAX], and its decimal exponent.
fn cached_power(exp: i32) -> (Fp, i32) {
    const LOG10_2: f64 = 0.30102999566398114;
    // Same estimate, same truncations, so the same starting index and walk.
    let approx = (f64::from(-(exp + 87)) * LOG10_2) as i32;
    let mut idx = (approx - FIRST_POWER) / POWER_STEP;
    loop {
        let i = idx.clamp(0, 86) as usize;
        let cur = exp + POWERS[i].1 + 64;
        if cur < EXP_MIN && idx < 86 {
            idx += 1;
        } else if cur > EXP_MAX && idx > 0 {
            idx -= 1;
        } else {
            return (
                Fp {
                    frac: POWERS[i].0,
                    exp: POWERS[i].1,
                },
                FIRST_POWER + idx * POWER_STEP,
            );
        }
    }
}

/// Move the last digit down while that brings it closer to the exact value.
fn round_last(digits: &mut [u8], delta: u64, mut rem: u64, kappa: u64, frac: u64) {
    let Some(last) = digits.last_mut() else {
        return;
    };
    while rem < frac
        && delta.wrapping_sub(rem) >= kappa
        && (rem.wrapping_add(kappa) < frac
            || frac.wrapping_sub(rem) > rem.wrapping_add(kappa).wrapping_sub(frac))
    {
        *last = last.wrapping_sub(1);
        rem = rem.wrapping_add(kappa);
    }
}

/// Digits of the scaled value and the decimal exponent `k` of the last one.
fn digits(w: Fp, hi: Fp, lo: Fp, k: &mut i32, out: &mut Vec<u8>) {
    let wfrac = hi.frac.wrapping_sub(w.frac);
    let mut delta = hi.frac.wrapping_sub(lo.frac);
    let shift = (-hi.exp) as u32;
    let one = 1u64 << shift;
    let mut part1 = hi.frac >> shift;
    let mut part2 = hi.frac & (one - 1);

    // Integral part: divisors 10^9 down to 10^0.
    let mut kappa: i32 = 10;
    let mut di = 10;
    while kappa > 0 {
        let div = TENS[di];
        let digit = part1 / div;
        if digit != 0 || !out.is_empty() {
            out.push(b'0' + digit as u8);
        }
        part1 -= digit * div;
        kappa -= 1;
        let rest = (part1 << shift).wrapping_add(part2);
        if rest <= delta {
            *k += kappa;
            round_last(out, delta, rest, div << shift, wfrac);
            return;
        }
        di += 1;
    }

    // Fractional part, one decimal at a time.
    let mut unit = 18usize;
    loop {
        part2 = part2.wrapping_mul(10);
        delta = delta.wrapping_mul(10);
        kappa -= 1;
        let digit = part2 >> shift;
        if digit != 0 || !out.is_empty() {
            out.push(b'0' + digit as u8);
        }
        part2 &= one - 1;
        if part2 < delta || unit == 0 || out.len() >= 24 {
            *k += kappa;
            round_last(out, delta, part2, one, wfrac.wrapping_mul(TENS[unit]));
            return;
        }
        unit -= 1;
    }
}

/// The layout: plain integer, plain decimal, or `d.ddde±x`.
fn layout(digits: &[u8], k: i32, neg: bool, out: &mut String) {
    let n = digits.len() as i32;
    let mut exp = (k + n - 1).abs();
    let push = |out: &mut String, d: &[u8]| out.extend(d.iter().map(|&c| c as char));

    if k >= 0 && exp < n + 7 {
        push(out, digits);
        out.extend(std::iter::repeat_n('0', k as usize));
        return;
    }
    if k < 0 && (k > -7 || exp < 4) {
        let offset = n - k.abs();
        if offset <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-offset) as usize));
            push(out, digits);
        } else {
            push(out, &digits[..offset as usize]);
            out.push('.');
            push(out, &digits[offset as usize..]);
        }
        return;
    }
    let n = n.min(18 - i32::from(neg));
    out.push(digits[0] as char);
    if n > 1 {
        out.push('.');
        push(out, &digits[1..n as usize]);
    }
    out.push('e');
    out.push(if k + n - 1 < 0 { '-' } else { '+' });
    let mut cent = 0;
    if exp > 99 {
        cent = exp / 100;
        out.push((b'0' + cent as u8) as char);
        exp -= cent * 100;
    }
    if exp > 9 {
        let dec = exp / 10;
        out.push((b'0' + dec as u8) as char);
        exp -= dec * 10;
    } else if cent != 0 {
        out.push('0');
    }
    out.push((b'0' + (exp % 10) as u8) as char);
}

/// `d` as the servers' `fpconv_dtoa` writes it: "-0", "inf", "nan", "0.1", "1e+300", …
pub fn dtoa(d: f64) -> String {
    let mut out = String::with_capacity(24);
    dtoa_into(d, &mut out);
    out
}

/// [`dtoa`] appended to `out`.
pub fn dtoa_into(d: f64, out: &mut String) {
    let bits = d.to_bits();
    let neg = bits & SIGN != 0;
    if neg {
        out.push('-');
    }
    if d == 0.0 {
        out.push('0');
        return;
    }
    if bits & EXP_MASK == EXP_MASK {
        out.push_str(if bits & FRAC_MASK != 0 { "nan" } else { "inf" });
        return;
    }
    let w = decompose(bits);
    let (lo, hi) = boundaries(w);
    let w = normalized(w);
    let (cp, mk) = cached_power(hi.exp);
    let w = multiply(w, cp);
    let mut hi = multiply(hi, cp);
    let mut lo = multiply(lo, cp);
    lo.frac = lo.frac.wrapping_add(1);
    hi.frac = hi.frac.wrapping_sub(1);
    let mut k = -mk;
    let mut ds = Vec::with_capacity(24);
    digits(w, hi, lo, &mut k, &mut ds);
    if ds.is_empty() {
        ds.push(b'0');
    }
    layout(&ds, k, neg, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_powers_are_powers_of_ten() {
        // Entries whose power fits u128 exactly: k = 0, 8, …, 32.
        for (i, &(f, e)) in POWERS.iter().enumerate() {
            let k = FIRST_POWER + POWER_STEP * i as i32;
            if !(0..=32).contains(&k) {
                continue;
            }
            let exact = 10u128.pow(k as u32);
            let shift = 128 - exact.leading_zeros() as i32 - 64;
            let expect = if shift <= 0 {
                (exact << -shift) as u64
            } else {
                let q = exact >> shift;
                let rem = exact - (q << shift);
                let half = 1u128 << (shift - 1);
                (q + u128::from(rem > half || (rem == half && q & 1 == 1))) as u64
            };
            assert_eq!((f, e), (expect, shift), "10^{k}");
        }
    }

    #[test]
    fn layouts_match_the_servers() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (0.1, "0.1"),
            (2.2, "2.2"),
            (1e21, "1e+21"),
            (1e20, "1e+20"),
            (1e15, "1e+15"),
            (1e7, "10000000"),
            (1e8, "1e+8"),
            (1e300, "1e+300"),
            (5e-324, "5e-324"),
            (1e-7, "1e-7"),
            (0.000001, "0.000001"),
            (123456.789, "123456.789"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ];
        for &(x, want) in cases {
            assert_eq!(dtoa(x), want, "{x:e}");
        }
    }

    #[test]
    fn not_always_the_shortest() {
        // Grisu2 gives up on the shortest form for about 0.15% of doubles; the servers
        // print these longer texts (checked in tests/digest.rs).
        let cases: &[(u64, &str)] = &[
            (0x9d2a917faa5d2809, "-3.5199547955152923e-168"),
            (0x19d3c5d40cd06dd5, "2.9083730276543477e-184"),
            (0x42e2d93924dc6844, "165793407361858.12"),
            (0xdb1ac2368d2ad7ab, "-7.4192883739025635e+130"),
            (0xc3c00a17af88ac92, "-2311524594107360300"),
        ];
        for &(bits, want) in cases {
            assert_eq!(dtoa(f64::from_bits(bits)), want);
        }
    }

    #[test]
    fn output_round_trips() {
        // A cheap deterministic sweep over bit patterns.
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let x = f64::from_bits(s);
            if !x.is_finite() {
                continue;
            }
            let t = dtoa(x);
            assert_eq!(t.parse::<f64>().unwrap().to_bits(), x.to_bits(), "{t}");
        }
    }
}
