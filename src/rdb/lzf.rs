//! LZF decompression, as used for compressed strings in RDB files.
//!
//! Owns the decoder only (the writer's compressor lives with the writer). It must never
//! read or write outside its buffers: every back reference and literal run is checked,
//! and the output must be exactly the length the file declared.

/// Decompress `input` into exactly `out_len` bytes.
pub fn decompress(input: &[u8], out_len: usize) -> Result<Vec<u8>, &'static str> {
    let mut out = vec![0u8; out_len];
    let mut op = 0usize;
    let mut ip = 0usize;
    while ip < input.len() {
        let ctrl = input[ip] as usize;
        ip += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            let src = input
                .get(ip..ip + run)
                .ok_or("literal run past the end of the input")?;
            let dst = out
                .get_mut(op..op + run)
                .ok_or("output longer than the declared length")?;
            dst.copy_from_slice(src);
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
            let start = op - dist;
            if dist >= len {
                out.copy_within(start..start + len, op);
            } else {
                // The reference overlaps its own output, a pattern of period `dist`: copy
                // what is already written, doubling each step (`done` stays a multiple of
                // `dist`, so the source always starts in phase).
                let mut done = 0;
                while done < len {
                    let n = (dist + done).min(len - done);
                    out.copy_within(start..start + n, op + done);
                    done += n;
                }
            }
            op += len;
        }
    }
    if op != out_len {
        return Err("output shorter than the declared length");
    }
    Ok(out)
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
