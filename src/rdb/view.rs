//! A framed value ([`super::Framed::Encoded`]) read in place: its elements borrowed from
//! its bytes where the encoding holds them as bytes, for a reader that looks at each
//! element once (the digest) and would only throw a decoded copy away.
//!
//! Owns nothing but the reading: the layouts are those of `object.rs`, the packed
//! encodings those of [`super::packed`]. It must accept nothing that
//! [`super::decode_value`] refuses — every length, count, container and score is checked
//! as there — and it does not explain what it refuses: `None` means "decode the value to
//! learn what is wrong", so an error reads the same whichever way the value was read.

use super::input::Limits;
use super::lzf;
use super::packed::{self, Elem};
use super::prim::{ENC_INT16, ENC_INT32, ENC_INT8, ENC_LZF};
use super::types::*;
use super::value::Value;

/// One element of a plain encoding, or one packed blob: bytes in the value, an integer,
/// or bytes that had to be decompressed.
#[derive(Debug)]
pub enum Piece<'a> {
    Str(&'a [u8]),
    Int(i64),
    Owned(Vec<u8>),
}

/// A collection's pieces: its elements (plain encodings) or the blobs that pack them.
#[derive(Debug)]
pub struct Pieces<'a> {
    ty: u8,
    pieces: Vec<Piece<'a>>,
    /// The quicklist containers: a plain node (1) is one element, a packed one (2) a blob.
    containers: Vec<u64>,
}

/// Whether [`pieces`] reads values of type `ty` (the others: decode them): the framed
/// types but strings ([`string`]) and those whose elements are not all strings (sorted
/// sets in the plain layout, with binary or text scores; zipmaps).
pub fn viewed(ty: u8) -> bool {
    super::frame::framed(ty) && !matches!(ty, STRING | ZSET | ZSET_2 | HASH_ZIPMAP)
}

/// A cursor over a value's bytes with the reader's checks. Not [`super::input::Input`]:
/// that one buffers a stream and keeps a CRC, whose setup per value was a measured part of
/// decoding small values on the digest workers; the length encodings are those of `prim.rs`.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    limits: Limits,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> u64 {
        (self.b.len() - self.pos) as u64
    }

    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }

    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        if n > self.left() {
            return None;
        }
        let s = &self.b[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Some(s)
    }

    /// A length, or the marker of an encoded string (`Err`).
    fn len_or_enc(&mut self) -> Option<Result<u64, u8>> {
        let b = self.u8()?;
        Some(match b >> 6 {
            0 => Ok(u64::from(b & 0x3f)),
            1 => Ok((u64::from(b & 0x3f) << 8) | u64::from(self.u8()?)),
            2 => match b {
                0x80 => Ok(u64::from(u32::from_be_bytes(
                    self.take(4)?.try_into().ok()?,
                ))),
                0x81 => Ok(u64::from_be_bytes(self.take(8)?.try_into().ok()?)),
                _ => return None,
            },
            _ => Err(b & 0x3f),
        })
    }

    fn len(&mut self) -> Option<u64> {
        self.len_or_enc()?.ok()
    }

    fn count(&mut self, min_bytes: u64) -> Option<u64> {
        let n = self.len()?;
        (n <= self.limits.max_elements && n.saturating_mul(min_bytes) <= self.left()).then_some(n)
    }

    fn string(&mut self) -> Option<Piece<'a>> {
        match self.len_or_enc()? {
            Ok(n) if n <= self.limits.max_blob => self.take(n).map(Piece::Str),
            Ok(_) => None,
            Err(ENC_INT8) => Some(Piece::Int(i64::from(self.u8()? as i8))),
            Err(ENC_INT16) => Some(Piece::Int(i64::from(i16::from_le_bytes(
                self.take(2)?.try_into().ok()?,
            )))),
            Err(ENC_INT32) => Some(Piece::Int(i64::from(i32::from_le_bytes(
                self.take(4)?.try_into().ok()?,
            )))),
            Err(ENC_LZF) => {
                let (data, ulen) = self.lzf()?;
                lzf::decompress(data, ulen).ok().map(Piece::Owned)
            }
            Err(_) => None,
        }
    }

    /// After the LZF marker: the compressed bytes and the length they decompress to.
    fn lzf(&mut self) -> Option<(&'a [u8], usize)> {
        let clen = self.len()?;
        let ulen = self.len()?;
        if clen > self.limits.max_blob
            || ulen > self.limits.max_blob
            || ulen > clen.saturating_mul(lzf::MAX_EXPANSION)
        {
            return None;
        }
        Some((self.take(clen)?, ulen as usize))
    }
}

/// Room for decompressed strings, reused: what [`string_in`] decompresses goes here rather
/// than into an allocation of its own (zeroed, then freed, for every compressed string).
#[derive(Default)]
pub struct Scratch {
    buf: Vec<u8>,
    used: usize,
}

impl Scratch {
    /// Forget what it holds (its room is kept).
    pub fn clear(&mut self) {
        self.used = 0;
    }

    /// The room it holds, in bytes.
    pub fn room_held(&self) -> usize {
        self.buf.len()
    }

    /// Bytes [`string_in`] placed at `at`.
    pub fn get(&self, at: std::ops::Range<usize>) -> &[u8] {
        self.buf.get(at).unwrap_or_default()
    }

    /// `n` bytes of room after what it holds. The buffer is zeroed only as it grows.
    fn room(&mut self, n: usize) -> (std::ops::Range<usize>, &mut [u8]) {
        let at = self.used..self.used + n;
        if self.buf.len() < at.end {
            self.buf.resize(at.end.max(2 * self.buf.len()), 0);
        }
        self.used = at.end;
        (at.clone(), &mut self.buf[at])
    }
}

/// A string read by [`string_in`]: in place, or decompressed into the scratch at a range.
pub enum InScratch<'a> {
    Piece(Piece<'a>),
    At(std::ops::Range<usize>),
}

/// A string value (type 0) read in place, a compressed one decompressed into `scratch`.
pub fn string_in<'a>(b: &'a [u8], scratch: &mut Scratch) -> Option<InScratch<'a>> {
    let mut c = Cursor {
        b,
        pos: 0,
        limits: Limits::default(),
    };
    if b.first().is_some_and(|&m| m == 0xc0 | ENC_LZF) {
        c.pos = 1;
        let (data, ulen) = c.lzf()?;
        if c.left() != 0 {
            return None;
        }
        let (at, out) = scratch.room(ulen);
        if lzf::decompress_into(data, out).is_err() {
            scratch.used = at.start;
            return None;
        }
        return Some(InScratch::At(at));
    }
    let p = c.string()?;
    (c.left() == 0).then_some(InScratch::Piece(p))
}

/// A string value (type 0) read in place.
pub fn string(b: &[u8]) -> Option<Piece<'_>> {
    let mut c = Cursor {
        b,
        pos: 0,
        limits: Limits::default(),
    };
    let p = c.string()?;
    (c.left() == 0).then_some(p)
}

/// A string value (type 0) as a [`Value`], its bytes kept where they are in `encoded`
/// (moved to its front); `Err(encoded)` for another type or a damaged string.
pub fn string_value(ty: u8, mut encoded: Vec<u8>) -> Result<Value, Vec<u8>> {
    if ty != STRING {
        return Err(encoded);
    }
    let v = match string(&encoded) {
        Some(Piece::Str(s)) => {
            let prefix = encoded.len() - s.len();
            encoded.drain(..prefix);
            encoded
        }
        Some(Piece::Int(i)) => i.to_string().into_bytes(),
        Some(Piece::Owned(v)) => v,
        None => return Err(encoded),
    };
    Ok(Value::String(v))
}

/// The pieces of a collection of a [`viewed`] type.
pub fn pieces(ty: u8, b: &[u8]) -> Option<Pieces<'_>> {
    let mut c = Cursor {
        b,
        pos: 0,
        limits: Limits::default(),
    };
    let mut pieces = Vec::new();
    let mut containers = Vec::new();
    match ty {
        LIST | SET | HASH => {
            let n = c.count(if ty == HASH { 2 } else { 1 })?;
            let n = if ty == HASH { n.checked_mul(2)? } else { n };
            pieces.reserve(n.min(4096) as usize);
            for _ in 0..n {
                pieces.push(c.string()?);
            }
        }
        LIST_QUICKLIST | LIST_QUICKLIST_2 => {
            let nodes = c.count(2)?;
            for _ in 0..nodes {
                let container = if ty == LIST_QUICKLIST_2 { c.len()? } else { 2 };
                if container != 1 && container != 2 {
                    return None;
                }
                let p = c.string()?;
                if container == 1 && bytes(&p).is_none_or(<[u8]>::is_empty) {
                    return None;
                }
                containers.push(container);
                pieces.push(p);
            }
        }
        _ => pieces.push(c.string()?),
    }
    (c.left() == 0).then_some(Pieces {
        ty,
        pieces,
        containers,
    })
}

/// A listpack's or a ziplist's elements.
fn packed_one(b: &[u8], listpack: bool) -> Option<Vec<Elem<'_>>> {
    if listpack {
        packed::listpack(b).ok()
    } else {
        packed::ziplist(b).ok()
    }
}

/// A piece's bytes, when it is bytes (a blob must be).
fn bytes<'p>(p: &'p Piece<'_>) -> Option<&'p [u8]> {
    match p {
        Piece::Str(s) => Some(s),
        Piece::Owned(v) => Some(v),
        Piece::Int(_) => None,
    }
}

impl Pieces<'_> {
    pub fn rdb_type(&self) -> u8 {
        self.ty
    }

    /// Every element in order (a hash: field, value, …; a sorted set: member, score, …),
    /// checked as the decoder checks them.
    pub fn elements(&self) -> Option<Vec<Elem<'_>>> {
        let out = match self.ty {
            LIST | SET | HASH => self
                .pieces
                .iter()
                .map(|p| match p {
                    Piece::Int(i) => Elem::Int(*i),
                    p => Elem::Str(bytes(p).unwrap_or_default()),
                })
                .collect(),
            LIST_QUICKLIST | LIST_QUICKLIST_2 => {
                let mut out = Vec::new();
                for (p, &container) in self.pieces.iter().zip(&self.containers) {
                    let b = bytes(p)?;
                    if container == 1 {
                        out.push(Elem::Str(b));
                    } else {
                        out.extend(packed_one(b, self.ty == LIST_QUICKLIST_2)?);
                    }
                }
                out
            }
            SET_INTSET => packed::intset(bytes(self.pieces.first()?)?)
                .ok()?
                .into_iter()
                .map(Elem::Int)
                .collect(),
            ty => {
                let listpack = matches!(ty, HASH_LISTPACK | ZSET_LISTPACK | SET_LISTPACK);
                packed_one(bytes(self.pieces.first()?)?, listpack)?
            }
        };
        let paired = matches!(
            self.ty,
            HASH | HASH_ZIPLIST | HASH_LISTPACK | ZSET_ZIPLIST | ZSET_LISTPACK
        );
        if paired && out.len() % 2 != 0 {
            return None;
        }
        if matches!(self.ty, ZSET_ZIPLIST | ZSET_LISTPACK)
            && out
                .chunks_exact(2)
                .any(|p| p[1].as_f64().is_none_or(f64::is_nan))
        {
            return None;
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_in_every_encoding() {
        let cases: [(&[u8], Option<&[u8]>); 4] = [
            (b"\x03abc", Some(b"abc")),
            (b"\xc0\xfe", None),
            (b"\x03ab", None),
            (b"\x02abc", None),
        ];
        for (enc, want) in cases {
            match (string(enc), want) {
                (Some(Piece::Str(s)), Some(w)) => assert_eq!(s, w),
                (Some(Piece::Int(-2)), None) if enc[0] == 0xc0 => {}
                (None, None) if enc[0] != 0xc0 => {}
                (got, _) => panic!("{enc:?}: {got:?}"),
            }
        }
    }
}
