//! Byte input for the RDB reader: buffering, offset accounting, the running CRC, limits.
//!
//! Owns the only path by which bytes leave the underlying reader, so the offset in every
//! error and the CRC over the file are exact. It must never allocate from a length field
//! that was not checked: [`Input::read_bytes`] refuses lengths over the cap or over what the
//! input still holds (when its size is known), and even then grows the buffer only as
//! bytes really arrive, so a lying length on a pipe costs at most what the peer sent.

use std::io::Read;

use super::crc::Crc64;
use super::error::{ErrorKind, RdbError, Result};

const BUF_SIZE: usize = 256 * 1024;
/// Largest up-front reservation made on the strength of a length field alone.
const MAX_PREALLOC: u64 = 1 << 20;

/// Bounds on what one length field may make the reader allocate.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest string, blob (ziplist, listpack, …) or decompressed LZF payload accepted.
    pub max_blob: u64,
    /// Largest element count accepted for one collection or one inner encoding.
    pub max_elements: u64,
}

impl Default for Limits {
    fn default() -> Self {
        // Redis refuses bulk strings over proto-max-bulk-len (512 MB by default, settable
        // higher); ziplists and listpacks are bounded by their 32-bit size fields. 4 GiB
        // covers every value a server can write while stopping absurd lengths early.
        Limits {
            max_blob: 4 << 30,
            max_elements: 1 << 32,
        }
    }
}

pub struct Input<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// File offset of `buf[0]`.
    base: u64,
    crc: Crc64,
    /// `buf[..crc_pos]` has been fed to `crc` already.
    crc_pos: usize,
    total_len: Option<u64>,
    pub limits: Limits,
    /// The bytes consumed while recording, but for `buf[rec_from..pos]`: those are copied
    /// when the buffer is refilled or the recording is read, not read by read.
    record: Option<Vec<u8>>,
    rec_from: usize,
}

impl<R: Read> Input<R> {
    /// `total_len` is the size of the whole input when known (a file): lengths are then
    /// checked against what remains, before any allocation.
    pub fn new(inner: R, total_len: Option<u64>, limits: Limits) -> Self {
        // A small known input (one value being decoded) gets a buffer its own size, not 256 KiB.
        let size = total_len.map_or(BUF_SIZE, |t| (t as usize).clamp(16, BUF_SIZE));
        Input {
            inner,
            buf: vec![0u8; size].into_boxed_slice(),
            pos: 0,
            end: 0,
            base: 0,
            crc: Crc64::new(),
            crc_pos: 0,
            total_len,
            limits,
            record: None,
            rec_from: 0,
        }
    }

    /// Offset of the next byte to be read.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Bytes left in the input, when its size is known.
    pub fn remaining(&self) -> Option<u64> {
        self.total_len.map(|t| t.saturating_sub(self.offset()))
    }

    pub fn err(&self, kind: ErrorKind) -> RdbError {
        RdbError::new(self.offset(), kind)
    }

    /// Refill the buffer once it is exhausted. Returns false at end of input.
    fn fill(&mut self) -> Result<bool> {
        if self.pos < self.end {
            return Ok(true);
        }
        self.crc.update(&self.buf[self.crc_pos..self.end]);
        if let Some(rec) = self.record.as_mut() {
            rec.extend_from_slice(&self.buf[self.rec_from..self.end]);
            self.rec_from = 0;
        }
        self.base += self.end as u64;
        self.pos = 0;
        self.end = 0;
        self.crc_pos = 0;
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.err(ErrorKind::Io(e))),
            }
        }
    }

    fn truncated(&self, what: &'static str, needed: u64) -> RdbError {
        self.err(ErrorKind::Truncated { what, needed })
    }

    /// Consume up to `max` buffered bytes, refilling if needed; calls `f` on them.
    fn consume_chunk(
        &mut self,
        max: usize,
        what: &'static str,
        needed: u64,
    ) -> Result<(usize, usize)> {
        if !self.fill()? {
            return Err(self.truncated(what, needed));
        }
        let n = max.min(self.end - self.pos);
        let start = self.pos;
        self.pos += n;
        Ok((start, n))
    }

    /// One byte: inlined where it is in the buffer (most calls), a call to refill.
    #[inline]
    pub fn read_u8(&mut self, what: &'static str) -> Result<u8> {
        if let Some(&b) = self.buf[..self.end].get(self.pos) {
            self.pos += 1;
            return Ok(b);
        }
        self.read_u8_refilled(what)
    }

    #[cold]
    fn read_u8_refilled(&mut self, what: &'static str) -> Result<u8> {
        let (start, _) = self.consume_chunk(1, what, 1)?;
        Ok(self.buf[start])
    }

    pub fn read_exact_into(&mut self, dst: &mut [u8], what: &'static str) -> Result<()> {
        let mut done = 0;
        while done < dst.len() {
            let want = dst.len() - done;
            let (start, n) = self.consume_chunk(want, what, want as u64)?;
            dst[done..done + n].copy_from_slice(&self.buf[start..start + n]);
            done += n;
        }
        Ok(())
    }

    pub fn read_array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        self.read_exact_into(&mut a, what)?;
        Ok(a)
    }

    /// Check a length field before acting on it: against the cap and the input left.
    pub fn check_len(&self, len: u64, cap: u64, what: &'static str) -> Result<()> {
        if len > cap {
            return Err(self.err(ErrorKind::LengthExceedsCap { what, len, cap }));
        }
        if let Some(remaining) = self.remaining() {
            if len > remaining {
                return Err(self.err(ErrorKind::LengthExceedsInput {
                    what,
                    len,
                    remaining,
                }));
            }
        }
        Ok(())
    }

    /// Check an element count: each element takes at least `min_bytes` of input.
    pub fn check_count(&self, count: u64, min_bytes: u64, what: &'static str) -> Result<()> {
        if count > self.limits.max_elements {
            return Err(self.err(ErrorKind::LengthExceedsCap {
                what,
                len: count,
                cap: self.limits.max_elements,
            }));
        }
        if let Some(remaining) = self.remaining() {
            if count.saturating_mul(min_bytes) > remaining {
                return Err(self.err(ErrorKind::LengthExceedsInput {
                    what,
                    len: count,
                    remaining,
                }));
            }
        }
        Ok(())
    }

    /// Read `len` bytes into a new vector, after checking `len`.
    pub fn read_bytes(&mut self, len: u64, what: &'static str) -> Result<Vec<u8>> {
        self.check_len(len, self.limits.max_blob, what)?;
        let mut out = Vec::with_capacity(len.min(MAX_PREALLOC) as usize);
        let mut left = len;
        while left > 0 {
            let want = left.min(usize::MAX as u64) as usize;
            let (start, n) = self.consume_chunk(want, what, left)?;
            out.extend_from_slice(&self.buf[start..start + n]);
            left -= n as u64;
        }
        Ok(out)
    }

    /// Skip `len` bytes (still counted in the CRC and any recording).
    pub fn skip(&mut self, len: u64, what: &'static str) -> Result<()> {
        let mut left = len;
        while left > 0 {
            let want = left.min(usize::MAX as u64) as usize;
            let (_, n) = self.consume_chunk(want, what, left)?;
            left -= n as u64;
        }
        Ok(())
    }

    /// True when no byte is left (reads ahead one buffer if needed).
    pub fn at_end(&mut self) -> Result<bool> {
        Ok(!self.fill()?)
    }

    /// CRC-64 of every byte consumed so far.
    pub fn crc_so_far(&mut self) -> u64 {
        self.crc.update(&self.buf[self.crc_pos..self.pos]);
        self.crc_pos = self.pos;
        self.crc.value()
    }

    /// Start keeping a copy of every byte consumed (for opaque module payloads).
    pub fn start_recording(&mut self) {
        self.start_recording_into(Vec::with_capacity(64));
    }

    /// Start recording at the end of `into` (kept as it is).
    pub fn start_recording_into(&mut self, into: Vec<u8>) {
        self.record = Some(into);
        self.rec_from = self.pos;
    }

    /// How long the recording is (0 when not recording).
    pub fn recorded_len(&self) -> usize {
        self.record
            .as_ref()
            .map_or(0, |r| r.len() + (self.pos - self.rec_from))
    }

    /// The next byte, not consumed; `None` at the end of the input.
    pub fn peek_u8(&mut self) -> Result<Option<u8>> {
        Ok(if self.fill()? {
            Some(self.buf[self.pos])
        } else {
            None
        })
    }

    pub fn take_recording(&mut self) -> Vec<u8> {
        match self.record.take() {
            Some(mut rec) => {
                rec.extend_from_slice(&self.buf[self.rec_from..self.pos]);
                rec
            }
            None => Vec::new(),
        }
    }

    pub fn is_recording(&self) -> bool {
        self.record.is_some()
    }

    /// The underlying reader and the bytes read from it but not consumed yet.
    pub fn into_parts(self) -> (R, Vec<u8>) {
        let rest = self.buf[self.pos..self.end].to_vec();
        (self.inner, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked_before_allocation() {
        let data = [7u8; 100];
        let mut inp = Input::new(&data[..], Some(100), Limits::default());
        let e = inp.read_bytes(1_000_000_000, "string").unwrap_err();
        assert!(
            matches!(e.kind, ErrorKind::LengthExceedsInput { remaining: 100, .. }),
            "{e}"
        );
        let mut inp = Input::new(
            &data[..],
            None,
            Limits {
                max_blob: 50,
                max_elements: 10,
            },
        );
        let e = inp.read_bytes(60, "string").unwrap_err();
        assert!(
            matches!(e.kind, ErrorKind::LengthExceedsCap { cap: 50, .. }),
            "{e}"
        );
        // Unknown size: a lie is found when the bytes run out.
        inp.read_bytes(45, "a").unwrap();
        inp.read_bytes(45, "b").unwrap();
        let e = inp.read_bytes(45, "c").unwrap_err();
        assert!(
            matches!(e.kind, ErrorKind::Truncated { needed: 35, .. }),
            "{e}"
        );
    }

    #[test]
    fn offset_crc_and_recording_follow_every_byte() {
        let data: Vec<u8> = (0..(BUF_SIZE as u32 * 2 + 17))
            .map(|i| (i % 253) as u8)
            .collect();
        let mut inp = Input::new(&data[..], Some(data.len() as u64), Limits::default());
        assert_eq!(inp.read_u8("x").unwrap(), 0);
        inp.start_recording();
        let v = inp.read_bytes(BUF_SIZE as u64, "blob").unwrap();
        assert_eq!(&v[..], &data[1..BUF_SIZE + 1]);
        let rec = inp.take_recording();
        assert_eq!(rec, v);
        inp.skip(BUF_SIZE as u64, "skip").unwrap();
        assert_eq!(inp.offset(), 2 * BUF_SIZE as u64 + 1);
        let crc = inp.crc_so_far();
        assert_eq!(crc, super::super::crc::crc64(&data[..2 * BUF_SIZE + 1]));
        let rest = inp.read_bytes(16, "rest").unwrap();
        assert_eq!(&rest[..], &data[2 * BUF_SIZE + 1..]);
        assert!(inp.at_end().unwrap());
    }

    /// A reader that gives at most 7 bytes a read: every recording spans refills.
    struct Trickle<'a>(&'a [u8]);

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = out.len().min(7).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn recordings_across_refills_hold_every_byte_once() {
        let data: Vec<u8> = (0..500u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut inp = Input::new(Trickle(&data), None, Limits::default());
        inp.skip(3, "x").unwrap();
        // Into an arena that already holds bytes; lengths seen along the way.
        inp.start_recording_into(b"kept".to_vec());
        assert_eq!(inp.recorded_len(), 4);
        assert_eq!(inp.read_u8("a").unwrap(), data[3]);
        inp.skip(20, "b").unwrap();
        assert_eq!(inp.recorded_len(), 4 + 21);
        let mut a = [0u8; 30];
        inp.read_exact_into(&mut a, "c").unwrap();
        let v = inp.read_bytes(100, "d").unwrap();
        assert_eq!(&v[..], &data[54..154]);
        let rec = inp.take_recording();
        assert_eq!(&rec[..4], b"kept");
        assert_eq!(&rec[4..], &data[3..154]);
        assert!(!inp.is_recording());
        inp.skip(10, "e").unwrap();
        inp.start_recording();
        inp.skip(336, "f").unwrap();
        assert_eq!(inp.take_recording(), &data[164..]);
    }
}
