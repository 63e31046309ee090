//! LZF decompression, as used for compressed strings in RDB files.
//!
//! Owns the decoder only (the writer's compressor lives with the writer). It must never
//! read or write outside its buffers: every back reference and literal run is checked,
//! and the output must be exactly the length the file declared.

/// Decompress `input` into exactly `out_len` bytes.
///
/// Runs and references are short (at most 32 and 264 bytes) and most strings small, so
/// copies are made 16 bytes at a time in place where the buffers have room, rather than
/// through a `memcpy` call each (a third of the time decompressing went to those calls).
pub fn decompress(input: &[u8], out_len: usize) -> Result<Vec<u8>, &'static str> {
    let mut out = vec![0u8; out_len];
    decompress_into(input, &mut out)?;
    Ok(out)
}

/// [`decompress`] into `out`, exactly as long as the output must be.
pub fn decompress_into(input: &[u8], out: &mut [u8]) -> Result<(), &'static str> {
    let out_len = out.len();
    let mut op = 0usize;
    let mut ip = 0usize;
    while ip < input.len() {
        let ctrl = input[ip] as usize;
        ip += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            if ip + run > input.len() {
                return Err("literal run past the end of the input");
            }
            if op + run > out_len {
                return Err("output longer than the declared length");
            }
            if ip + 32 <= input.len() && op + 32 <= out_len {
                // Both sides have 32 bytes: copy them all, the run's and some after it
                // (the output after `op + run` is written again later).
                let src: [u8; 32] = input[ip..ip + 32].try_into().unwrap_or([0; 32]);
                out[op..op + 32].copy_from_slice(&src);
            } else {
                out[op..op + run].copy_from_slice(&input[ip..ip + run]);
            }
            ip += run;
            op += run;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input.get(ip).ok_or("back reference cut short")? as usize;
                ip += 1;
            }
            let lo = *input.get(ip).ok_or("back reference cut short")? as usize;
            ip += 1;
            let dist = ((ctrl & 0x1f) << 8) + lo + 1;
            len += 2;
            if dist > op {
                return Err("back reference before the start of the output");
            }
            if op + len > out_len {
                return Err("output longer than the declared length");
            }
            copy_back(out, op, dist, len);
            op += len;
        }
    }
    if op != out_len {
        return Err("output shorter than the declared length");
    }
    Ok(())
}

/// `out[op..op + len] = ` what starts `dist` bytes back, which may overlap it (a pattern
/// of period `dist`). The caller checked `dist <= op` and `op + len <= out.len()`.
fn copy_back(out: &mut [u8], op: usize, dist: usize, len: usize) {
    if dist >= 16 {
        copy_pieces::<16>(out, op, dist, len);
    } else if dist >= 8 {
        copy_pieces::<8>(out, op, dist, len);
    } else if dist == 1 {
        let b = out[op - 1];
        out[op..op + len].fill(b);
    } else {
        let start = op - dist;
        for j in 0..len {
            out[op + j] = out[start + j];
        }
    }
}

/// [`copy_back`] for `dist >= P`: each `P`-byte piece's source ends before the piece
/// starts. The last piece may run past `op + len` where `out` has room: those bytes are
/// not yet decompressed and are written again later (its source is still all before
/// `op`). Where `out` has no room, the rest goes a byte at a time.
fn copy_pieces<const P: usize>(out: &mut [u8], op: usize, dist: usize, len: usize) {
    let start = op - dist;
    let mut i = 0;
    while i < len && op + i + P <= out.len() {
        let v: [u8; P] = out[start + i..start + i + P].try_into().unwrap_or([0; P]);
        out[op + i..op + i + P].copy_from_slice(&v);
        i += P;
    }
    for j in i..len {
        out[op + j] = out[start + j];
    }
}

/// The most output one input byte of LZF can yield (a 3-byte back reference of 264).
pub const MAX_EXPANSION: u64 = 88;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_overlapping_reference() {
        // "abc" literal, then a back reference of distance 3, length 9 (overlapping).
        let input = [2, b'a', b'b', b'c', (7 << 5) as u8, 0, 2];
        // len = 7 + 0 + 2 = 9, dist = 2 + 1 = 3
        let out = decompress(&input, 12).unwrap();
        assert_eq!(&out, b"abcabcabcabc");
    }

    #[test]
    fn lies_are_errors() {
        assert!(decompress(&[5, b'a'], 6).is_err());
        assert!(decompress(&[0, b'a', 0x20, 5], 10).is_err());
        assert!(decompress(&[0, b'a'], 2).is_err());
        assert!(decompress(&[1, b'a', b'b'], 1).is_err());
        assert!(decompress(&[0xe0], 10).is_err());
    }
}

const HASH_BITS: u32 = 14;
const MAX_OFF: usize = 1 << 13;
const MAX_REF: usize = (1 << 8) + (1 << 3);
const MAX_LIT: usize = 1 << 5;

fn flush_literals(out: &mut Vec<u8>, lit: &[u8]) {
    for chunk in lit.chunks(MAX_LIT) {
        out.push((chunk.len() - 1) as u8);
        out.extend_from_slice(chunk);
    }
}

/// Compress `input` into LZF if the result fits in `max_out` bytes; `None` otherwise.
/// The output need not equal the server's byte for byte, only decode to the same input.
pub fn compress(input: &[u8], max_out: usize) -> Option<Vec<u8>> {
    HASH_TABLE.with(|t| compress_with(input, max_out, &mut t.borrow_mut()))
}

thread_local! {
    /// Reused between calls and never cleared: a stale slot is only a candidate, checked
    /// against the bytes before use, so clearing 128 KiB per string would be wasted work.
    static HASH_TABLE: std::cell::RefCell<Vec<u32>> = std::cell::RefCell::new(vec![0; 1 << HASH_BITS]);
}

fn compress_with(input: &[u8], max_out: usize, table: &mut [u32]) -> Option<Vec<u8>> {
    let n = input.len();
    if n >= u32::MAX as usize {
        return None;
    }
    let mut out = Vec::with_capacity(max_out.min(n));
    let mut ip = 0usize;
    let mut lit_start = 0usize;
    while ip + 2 < n {
        let h =
            (u32::from(input[ip]) << 16 | u32::from(input[ip + 1]) << 8 | u32::from(input[ip + 2]))
                .wrapping_mul(2_654_435_761)
                >> (32 - HASH_BITS);
        let r = table[h as usize] as usize;
        table[h as usize] = ip as u32;
        if r < ip && ip - r <= MAX_OFF && input[r..r + 3] == input[ip..ip + 3] {
            let max_len = MAX_REF.min(n - ip);
            let mut len = 3;
            while len < max_len && input[r + len] == input[ip + len] {
                len += 1;
            }
            flush_literals(&mut out, &input[lit_start..ip]);
            let off = ip - r - 1;
            let l = len - 2;
            if l < 7 {
                out.push(((l << 5) | (off >> 8)) as u8);
            } else {
                out.push(((7 << 5) | (off >> 8)) as u8);
                out.push((l - 7) as u8);
            }
            out.push(off as u8);
            ip += len;
            lit_start = ip;
            if out.len() > max_out {
                return None;
            }
        } else {
            ip += 1;
        }
    }
    flush_literals(&mut out, &input[lit_start..]);
    (out.len() <= max_out).then_some(out)
}

#[cfg(test)]
mod compress_tests {
    use super::*;

    #[test]
    fn compress_then_decompress_is_identity() {
        let mut inputs: Vec<Vec<u8>> = vec![
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                .to_vec(),
            b"abcabcabcabcabcabcabcabcabcabc hello hello hello hello world world world".to_vec(),
            vec![b'v'; 100_000],
        ];
        let mut x = 12345u64;
        let text: Vec<u8> = (0..50_000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"the quick brown fox "[(x >> 60) as usize % 20]
            })
            .collect();
        inputs.push(text);
        // Patterns of every period up to 40 (references closer than, as close as and
        // farther than a 16-byte piece), at lengths around the copy sizes.
        for period in 1..=40usize {
            for n in [20usize, 31, 33, 64, 100, 300] {
                let p: Vec<u8> = (0..period).map(|i| b'a' + (i * 7 % 26) as u8).collect();
                let v: Vec<u8> = (0..n).map(|i| p[i % period]).collect();
                if compress(&v, v.len() - 1).is_some() {
                    inputs.push(v);
                }
            }
        }
        for inp in inputs {
            let c = compress(&inp, inp.len()).expect("compressible");
            assert!(c.len() < inp.len());
            assert_eq!(decompress(&c, inp.len()).unwrap(), inp);
        }
        // Random bytes do not shrink: refused rather than grown.
        let mut y = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                y ^= y << 13;
                y ^= y >> 7;
                y ^= y << 17;
                (y >> 32) as u8
            })
            .collect();
        assert!(compress(&noise, noise.len() - 4).is_none());
    }
}
