//! The RDB primitive encodings: lengths, strings (raw, integer, LZF), doubles, times.
//!
//! Owns the decoding of the building blocks every object and opcode is made of. It must
//! never trust a length: all go through [`Input`]'s checks before anything is allocated.

use std::io::Read;

use super::error::{ErrorKind, Result};
use super::input::Input;
use super::lzf;

/// A length field, or the marker of a specially encoded string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Len {
    Len(u64),
    Encoded(u8),
}

pub const ENC_INT8: u8 = 0;
pub const ENC_INT16: u8 = 1;
pub const ENC_INT32: u8 = 2;
pub const ENC_LZF: u8 = 3;

impl<R: Read> Input<R> {
    pub fn read_len_or_enc(&mut self, what: &'static str) -> Result<Len> {
        let b = self.read_u8(what)?;
        match b >> 6 {
            0 => Ok(Len::Len(u64::from(b & 0x3f))),
            1 => {
                let b2 = self.read_u8(what)?;
                Ok(Len::Len((u64::from(b & 0x3f) << 8) | u64::from(b2)))
            }
            2 => match b {
                0x80 => Ok(Len::Len(u64::from(u32::from_be_bytes(
                    self.read_array(what)?,
                )))),
                0x81 => Ok(Len::Len(u64::from_be_bytes(self.read_array(what)?))),
                _ => Err(self.err(ErrorKind::BadLengthEncoding(b))),
            },
            _ => Ok(Len::Encoded(b & 0x3f)),
        }
    }

    /// A length that must not be a special encoding.
    pub fn read_len(&mut self, what: &'static str) -> Result<u64> {
        let at = self.offset();
        match self.read_len_or_enc(what)? {
            Len::Len(n) => Ok(n),
            Len::Encoded(e) => Err(super::error::RdbError::new(
                at,
                ErrorKind::invalid(
                    what,
                    format!("expected a length, found string encoding {e}"),
                ),
            )),
        }
    }

    /// An element count, checked against the input: each element takes `min_bytes` or more.
    pub fn read_count(&mut self, min_bytes: u64, what: &'static str) -> Result<u64> {
        let at = self.offset();
        let n = self.read_len(what)?;
        self.check_count(n, min_bytes, what)
            .map_err(|e| at_length_field(e, at))?;
        Ok(n)
    }

    /// A string in any of its encodings, returned as its bytes (integers as decimal text).
    pub fn read_string(&mut self, what: &'static str) -> Result<Vec<u8>> {
        let at = self.offset();
        match self.read_len_or_enc(what)? {
            Len::Len(n) => self.read_bytes(n, what).map_err(|e| at_length_field(e, at)),
            Len::Encoded(ENC_INT8) => {
                let v = self.read_u8(what)? as i8;
                Ok(v.to_string().into_bytes())
            }
            Len::Encoded(ENC_INT16) => {
                let v = i16::from_le_bytes(self.read_array(what)?);
                Ok(v.to_string().into_bytes())
            }
            Len::Encoded(ENC_INT32) => {
                let v = i32::from_le_bytes(self.read_array(what)?);
                Ok(v.to_string().into_bytes())
            }
            Len::Encoded(ENC_LZF) => self.read_lzf(what),
            Len::Encoded(e) => Err(self.err(ErrorKind::BadStringEncoding(e))),
        }
    }

    fn read_lzf(&mut self, what: &'static str) -> Result<Vec<u8>> {
        let clen_at = self.offset();
        let clen = self.read_len(what)?;
        let ulen = self.read_len(what)?;
        self.check_len(clen, self.limits.max_blob, what)
            .map_err(|e| at_length_field(e, clen_at))?;
        if ulen > self.limits.max_blob {
            return Err(self.err(ErrorKind::LengthExceedsCap {
                what,
                len: ulen,
                cap: self.limits.max_blob,
            }));
        }
        if ulen > clen.saturating_mul(lzf::MAX_EXPANSION) {
            return Err(self.err(ErrorKind::invalid(
                "LZF string",
                format!("{clen} compressed bytes cannot expand to {ulen}"),
            )));
        }
        let at = self.offset();
        let data = self.read_bytes(clen, what)?;
        lzf::decompress(&data, ulen as usize)
            .map_err(|e| super::error::RdbError::new(at, ErrorKind::Lzf(e)))
    }

    /// A double in the old text form: a length byte (253 NaN, 254 +inf, 255 -inf) + ASCII.
    pub fn read_text_double(&mut self, what: &'static str) -> Result<f64> {
        let at = self.offset();
        let n = self.read_u8(what)?;
        match n {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            _ => {
                let mut buf = [0u8; 255];
                let s = &mut buf[..n as usize];
                self.read_exact_into(s, what)?;
                parse_double(s).ok_or_else(|| {
                    super::error::RdbError::new(
                        at,
                        ErrorKind::invalid(
                            what,
                            format!("not a number: {:?}", String::from_utf8_lossy(s)),
                        ),
                    )
                })
            }
        }
    }

    pub fn read_binary_double(&mut self, what: &'static str) -> Result<f64> {
        Ok(f64::from_le_bytes(self.read_array(what)?))
    }

    pub fn read_ms_time(&mut self, what: &'static str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.read_array(what)?))
    }
}

/// A length that was refused is reported at the offset of its own field, where an operator
/// looking at a hex dump finds it.
pub(super) fn at_length_field(mut e: super::error::RdbError, at: u64) -> super::error::RdbError {
    if matches!(
        e.kind,
        ErrorKind::LengthExceedsInput { .. } | ErrorKind::LengthExceedsCap { .. }
    ) {
        e.offset = at;
    }
    e
}

/// Parse a number as the server's `strtod`-based loaders accept it (decimal, inf, nan).
pub fn parse_double(s: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(s).ok()?.trim_start();
    if t.is_empty() {
        return None;
    }
    t.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::super::input::Limits;
    use super::*;

    fn inp(data: &[u8]) -> Input<&[u8]> {
        Input::new(data, Some(data.len() as u64), Limits::default())
    }

    #[test]
    fn lengths_in_every_width() {
        assert_eq!(inp(&[0x3f]).read_len("l").unwrap(), 63);
        assert_eq!(inp(&[0x41, 0x02]).read_len("l").unwrap(), 0x102);
        assert_eq!(inp(&[0x80, 0, 1, 0, 0]).read_len("l").unwrap(), 65536);
        assert_eq!(
            inp(&[0x81, 0, 0, 0, 1, 0, 0, 0, 0]).read_len("l").unwrap(),
            1 << 32
        );
        assert!(inp(&[0x82]).read_len("l").is_err());
        assert!(inp(&[0xc0, 1]).read_len("l").is_err());
    }

    #[test]
    fn strings_in_every_encoding() {
        assert_eq!(
            inp(&[3, b'a', b'b', b'c']).read_string("s").unwrap(),
            b"abc"
        );
        assert_eq!(inp(&[0xc0, 0xff]).read_string("s").unwrap(), b"-1");
        assert_eq!(inp(&[0xc1, 0x39, 0x30]).read_string("s").unwrap(), b"12345");
        assert_eq!(
            inp(&[0xc2, 0, 0, 0, 0x80]).read_string("s").unwrap(),
            b"-2147483648"
        );
        // LZF: clen 4, ulen 6: literal "ab", back ref len 4 dist 2
        assert_eq!(
            inp(&[0xc3, 5, 6, 1, b'a', b'b', 0x40, 1])
                .read_string("s")
                .unwrap(),
            b"ababab"
        );
        assert!(inp(&[0xc4]).read_string("s").is_err());
        assert!(
            inp(&[0xc3, 1, 0x3f, 0]).read_string("s").is_err(),
            "expansion beyond LZF's maximum"
        );
    }

    #[test]
    fn text_doubles() {
        assert_eq!(
            inp(&[3, b'1', b'.', b'5']).read_text_double("d").unwrap(),
            1.5
        );
        assert!(inp(&[253]).read_text_double("d").unwrap().is_nan());
        assert_eq!(inp(&[254]).read_text_double("d").unwrap(), f64::INFINITY);
        assert_eq!(
            inp(&[255]).read_text_double("d").unwrap(),
            f64::NEG_INFINITY
        );
        assert!(inp(&[2, b'x', b'y']).read_text_double("d").is_err());
    }
}
