//! Primitive encodings on the way out: lengths, strings (integer and LZF forms), doubles.

use super::super::lzf;
use super::super::prim::{ENC_INT16, ENC_INT32, ENC_INT8, ENC_LZF};
use super::packed::canonical_int;
use super::target::Target;

pub fn len(buf: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        buf.push(n as u8);
    } else if n < 1 << 14 {
        buf.push(0x40 | (n >> 8) as u8);
        buf.push(n as u8);
    } else if n <= u64::from(u32::MAX) {
        buf.push(0x80);
        buf.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        buf.push(0x81);
        buf.extend_from_slice(&n.to_be_bytes());
    }
}

/// A string, as the server writes it: a small canonical integer in its integer form, a
/// compressible string over 20 bytes as LZF (when `compress`), else raw.
pub fn string(buf: &mut Vec<u8>, s: &[u8], compress: bool) {
    if s.len() <= 11 {
        if let Some(v) = canonical_int(s) {
            if let Ok(b) = i8::try_from(v) {
                buf.push(0xc0 | ENC_INT8);
                buf.push(b as u8);
                return;
            } else if let Ok(h) = i16::try_from(v) {
                buf.push(0xc0 | ENC_INT16);
                buf.extend_from_slice(&h.to_le_bytes());
                return;
            } else if let Ok(w) = i32::try_from(v) {
                buf.push(0xc0 | ENC_INT32);
                buf.extend_from_slice(&w.to_le_bytes());
                return;
            }
        }
    }
    if compress && s.len() > 20 {
        if let Some(c) = lzf::compress(s, s.len() - 4) {
            buf.push(0xc0 | ENC_LZF);
            len(buf, c.len() as u64);
            len(buf, s.len() as u64);
            buf.extend_from_slice(&c);
            return;
        }
    }
    len(buf, s.len() as u64);
    buf.extend_from_slice(s);
}

pub fn binary_double(buf: &mut Vec<u8>, d: f64) {
    buf.extend_from_slice(&d.to_le_bytes());
}

pub fn ms_time(buf: &mut Vec<u8>, t: i64) {
    buf.extend_from_slice(&t.to_le_bytes());
}

/// An RDB length (not a special encoding) at the start of `p`: the length and the bytes
/// it took.
fn read_len(p: &[u8]) -> Option<(u64, usize)> {
    let b = *p.first()?;
    Some(match b >> 6 {
        0 => (u64::from(b & 0x3f), 1),
        1 => ((u64::from(b & 0x3f) << 8) | u64::from(*p.get(1)?), 2),
        2 if b == 0x80 => (
            u64::from(u32::from_be_bytes(p.get(1..5)?.try_into().ok()?)),
            5,
        ),
        2 if b == 0x81 => (u64::from_be_bytes(p.get(1..9)?.try_into().ok()?), 9),
        _ => return None,
    })
}

/// The RDB string at the start of `p` copied into `buf` as [`string`] with compression
/// writes it (an integer or LZF string is copied as it is); the bytes it took in `p`.
/// `None`: `p` does not start with a whole string. For values kept encoded: they are
/// written compressed without being decoded.
pub fn recompress_string(buf: &mut Vec<u8>, p: &[u8]) -> Option<usize> {
    let first = *p.first()?;
    if first >> 6 == 3 {
        let n = match first & 0x3f {
            ENC_INT8 => 2,
            ENC_INT16 => 3,
            ENC_INT32 => 5,
            ENC_LZF => {
                let (clen, a) = read_len(&p[1..])?;
                let (_, b) = read_len(p.get(1 + a..)?)?;
                (1 + a + b).checked_add(usize::try_from(clen).ok()?)?
            }
            _ => return None,
        };
        buf.extend_from_slice(p.get(..n)?);
        return Some(n);
    }
    let (len, hdr) = read_len(p)?;
    let end = hdr.checked_add(usize::try_from(len).ok()?)?;
    string(buf, p.get(hdr..end)?, true);
    Some(end)
}

/// A length at the start of `p` copied into `buf`; the bytes it took.
pub fn copy_len(buf: &mut Vec<u8>, p: &[u8]) -> Option<(u64, usize)> {
    let (n, used) = read_len(p)?;
    buf.extend_from_slice(&p[..used]);
    Some((n, used))
}

/// A score as listpack/ziplist text: what `target`'s own `d2string` stores for it (its
/// `DUMP` is then the server's byte for byte); every form reads back to the same double.
pub fn score_text(d: f64, target: &Target) -> Vec<u8> {
    crate::dtoa::score_text(d, target.server.score_text()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::super::input::{Input, Limits};
    use super::*;

    #[test]
    fn strings_and_lengths_round_trip() {
        let long = vec![b'q'; 5000];
        let cases: Vec<&[u8]> = vec![
            b"",
            b"0",
            b"-128",
            b"128",
            b"-32769",
            b"2147483647",
            b"2147483648",
            b"007",
            b"hello",
            &long,
        ];
        for c in cases {
            for compress in [false, true] {
                let mut b = Vec::new();
                string(&mut b, c, compress);
                let mut inp = Input::new(&b[..], Some(b.len() as u64), Limits::default());
                assert_eq!(inp.read_string("s").unwrap(), c);
                assert!(inp.at_end().unwrap());
            }
        }
        for n in [0u64, 63, 64, 16383, 16384, u32::MAX as u64, 1 << 40] {
            let mut b = Vec::new();
            len(&mut b, n);
            let mut inp = Input::new(&b[..], None, Limits::default());
            assert_eq!(inp.read_len("l").unwrap(), n);
        }
    }

    #[test]
    fn recompressed_strings_read_back_the_same() {
        let long = vec![b'q'; 5000];
        let varied: Vec<u8> = (0..300u32).map(|i| (i * 7 % 251) as u8).collect();
        let cases: Vec<&[u8]> = vec![b"", b"12", b"-32769", b"hello", &long, &varied];
        for c in cases {
            for compress in [false, true] {
                // Whatever form the held string has (plain, integer, LZF), the copy is
                // whole, reads back the same, and is compressed as `string` would be.
                let mut held = string_of(c, compress);
                held.extend_from_slice(b"tail");
                let mut out = Vec::new();
                let used = recompress_string(&mut out, &held).expect("a whole string");
                assert_eq!(used, held.len() - 4, "{c:?}");
                let mut inp = Input::new(&out[..], Some(out.len() as u64), Limits::default());
                assert_eq!(inp.read_string("s").unwrap(), c);
                assert!(inp.at_end().unwrap());
                assert_eq!(out, string_of(c, true), "{c:?} held compressed: {compress}");
            }
        }
        // Truncated or not a string: refused, nothing claimed.
        for bad in [
            &[][..],
            &[0x05, b'a'],
            &[0x40],
            &[0xc3, 0x05],
            &[0xc1, 0x01],
            &[0xc7],
        ] {
            assert_eq!(recompress_string(&mut Vec::new(), bad), None, "{bad:?}");
        }
    }

    fn string_of(s: &[u8], compress: bool) -> Vec<u8> {
        let mut b = Vec::new();
        string(&mut b, s, compress);
        b
    }

    #[test]
    fn score_text_round_trips() {
        for d in [
            0.0,
            -0.0,
            1.0,
            -3.0,
            1.5,
            0.1,
            1e300,
            -1e-300,
            5e-324,
            f64::INFINITY,
            f64::NEG_INFINITY,
            9.0e15,
            123456789012345678.0,
        ] {
            for server in ["redis-6.2", "redis-7.0", "redis-7.2", "valkey-9.1"] {
                let target = Target::for_server(server.parse().unwrap()).unwrap();
                let t = score_text(d, &target);
                let back = super::super::super::prim::parse_double(&t).unwrap();
                assert_eq!(
                    back.to_bits(),
                    d.to_bits(),
                    "{d} -> {} for {server}",
                    String::from_utf8_lossy(&t)
                );
            }
        }
    }
}
