//! The cardinality estimate PFCOUNT computes (Redis 5 and later, every Valkey): Otmar Ertl's
//! improved estimator ("New cardinality estimation algorithms for HyperLogLog sketches",
//! arXiv:1702.01284) over the histogram of register values.
//!
//! The estimate is cached in the value's header, so it is part of the bytes we must
//! reproduce: every floating-point step below follows the servers' order of operations, with
//! no fused multiply-add, so the rounding is the same.

use super::{P, REGISTERS};

/// The largest value a register can get from an element: 64 - P + 1.
const MAX_PATTERN: usize = 64 - P as usize + 1;
/// 0.5 / ln 2, as the servers write the constant.
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

/// How many registers hold each value 0..=63 (6 bits cannot hold more).
pub(crate) type Histogram = [u32; 64];

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if before == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        // The server writes pow(1 - x, 2), which compilers turn into one exact-rounded
        // multiplication; (1 - x) * (1 - x) is that multiplication.
        let d = 1.0 - x;
        z -= d * d * y;
        if before == z {
            return z / 3.0;
        }
    }
}

/// The estimate for a histogram, as the `u64` the server stores and replies.
///
/// Registers above 51 (only a hand-made dense value has them) count nowhere, as on the
/// server. If every register is above 51 the quotient is infinite; the server then converts
/// out of range (llroundl gives the x86-64 "integer indefinite" 0x8000000000000000) and stores
/// a cardinality whose top bit, the cache's "invalid" flag, is set. We give the same bits.
pub(crate) fn estimate(hist: &Histogram) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - f64::from(hist[MAX_PATTERN])) / m);
    for j in (1..MAX_PATTERN).rev() {
        z += f64::from(hist[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(hist[0]) / m);
    let e = ALPHA_INF * m * m / z;
    // llroundl: half away from zero, like f64::round; converting the double to long double
    // first is exact, so rounding the double is the same.
    let r = e.round();
    if (0.0..9_223_372_036_854_775_808.0).contains(&r) {
        r as u64
    } else {
        1u64 << 63
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_zero() {
        let mut h = [0u32; 64];
        h[0] = REGISTERS as u32;
        assert_eq!(estimate(&h), 0);
    }

    #[test]
    fn small_counts_are_close() {
        // n registers at 1 and the rest at 0 estimates about n (linear-counting regime).
        for n in [1u32, 10, 100, 1000] {
            let mut h = [0u32; 64];
            h[0] = REGISTERS as u32 - n;
            h[1] = n;
            let e = estimate(&h) as f64;
            assert!(
                (e - f64::from(n) * 1.0).abs() <= f64::from(n) * 0.2 + 1.0,
                "{n}: {e}"
            );
        }
    }

    #[test]
    fn alpha_is_the_servers_constant() {
        // The servers write 0.721347520444481703680; both literals name the same double.
        assert_eq!("0.721347520444481703680".parse::<f64>(), Ok(ALPHA_INF));
    }

    #[test]
    fn all_registers_above_51_give_the_invalid_bit() {
        let mut h = [0u32; 64];
        h[63] = REGISTERS as u32;
        assert_eq!(estimate(&h), 1 << 63);
    }
}
