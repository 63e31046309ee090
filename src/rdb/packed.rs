//! The packed inner encodings held in RDB string blobs: ziplist, listpack, intset, zipmap.
//!
//! Owns their validation and decoding into borrowed elements. Each decoder checks the
//! whole structure (declared sizes, element counts, back lengths, prev lengths, tail
//! pointers, end markers, integer encodings, ordering) and must never index outside the
//! blob: a structure that lies is a [`PackedError`] naming the byte where it lies.

use std::fmt;

/// One element of a packed encoding: a byte string or an integer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Elem<'a> {
    Str(&'a [u8]),
    Int(i64),
}

impl Elem<'_> {
    /// The element as the server shows it: integers in decimal.
    pub fn to_bytes(self) -> Vec<u8> {
        match self {
            Elem::Str(s) => s.to_vec(),
            Elem::Int(i) => i.to_string().into_bytes(),
        }
    }

    /// The element as an integer (a string holding a decimal integer also counts).
    pub fn as_int(self) -> Option<i64> {
        match self {
            Elem::Int(i) => Some(i),
            Elem::Str(s) => std::str::from_utf8(s).ok()?.parse().ok(),
        }
    }

    /// The element as a score, the way the server's `zzlGetScore` reads it.
    pub fn as_f64(self) -> Option<f64> {
        match self {
            Elem::Int(i) => Some(i as f64),
            Elem::Str(s) => super::prim::parse_double(s),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PackedError {
    /// Byte position inside the (decompressed) blob.
    pub pos: usize,
    pub msg: String,
}

impl fmt::Display for PackedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {} of the blob: {}", self.pos, self.msg)
    }
}

fn perr<T>(pos: usize, msg: impl Into<String>) -> Result<T, PackedError> {
    Err(PackedError {
        pos,
        msg: msg.into(),
    })
}

fn get(b: &[u8], pos: usize, n: usize, what: &str) -> Result<usize, PackedError> {
    match pos.checked_add(n) {
        Some(end) if end <= b.len() => Ok(end),
        _ => perr(
            pos,
            format!(
                "{what} of {n} bytes overruns the blob ({} bytes left)",
                b.len().saturating_sub(pos)
            ),
        ),
    }
}

fn le_u32(b: &[u8], pos: usize) -> u32 {
    u32::from_le_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]])
}

// ---------------------------------------------------------------- ziplist

/// Decode and validate a ziplist (RDB types 10, 12, 13 and quicklist 14 nodes).
pub fn ziplist(b: &[u8]) -> Result<Vec<Elem<'_>>, PackedError> {
    const HEADER: usize = 10;
    if b.len() < HEADER + 1 {
        return perr(
            0,
            format!("ziplist of {} bytes is shorter than its header", b.len()),
        );
    }
    let zlbytes = le_u32(b, 0) as usize;
    if zlbytes != b.len() {
        return perr(
            0,
            format!("ziplist declares {zlbytes} bytes but holds {}", b.len()),
        );
    }
    let zltail = le_u32(b, 4) as usize;
    let zllen = u16::from_le_bytes([b[8], b[9]]);
    let mut out = Vec::with_capacity(usize::from(zllen).min(4096));
    let mut p = HEADER;
    let mut prev_size = 0usize;
    let mut last_start = HEADER;
    loop {
        if p >= b.len() {
            return perr(p, "ziplist has no end marker");
        }
        if b[p] == 0xff {
            break;
        }
        let start = p;
        let prevlen = if b[p] < 254 {
            p += 1;
            b[p - 1] as usize
        } else {
            // 0xfe then a 4-byte length; 0xff was the end marker above.
            p = get(b, p, 5, "ziplist prevlen")?;
            le_u32(b, start + 1) as usize
        };
        if prevlen != prev_size {
            return perr(
                start,
                format!("ziplist prevlen {prevlen} but the previous entry has {prev_size} bytes"),
            );
        }
        let enc_at = p;
        if p >= b.len() {
            return perr(p, "ziplist entry encoding missing");
        }
        let enc = b[p];
        let elem = match enc >> 6 {
            0 => {
                let n = (enc & 0x3f) as usize;
                let s = p + 1;
                p = get(b, s, n, "ziplist entry")?;
                Elem::Str(&b[s..p])
            }
            1 => {
                get(b, p, 2, "ziplist entry header")?;
                let n = (((enc & 0x3f) as usize) << 8) | b[p + 1] as usize;
                let s = p + 2;
                p = get(b, s, n, "ziplist entry")?;
                Elem::Str(&b[s..p])
            }
            2 => {
                get(b, p, 5, "ziplist entry header")?;
                let n = u32::from_be_bytes([b[p + 1], b[p + 2], b[p + 3], b[p + 4]]) as usize;
                let s = p + 5;
                p = get(b, s, n, "ziplist entry")?;
                Elem::Str(&b[s..p])
            }
            _ => {
                let (n, v): (usize, i64) = match enc {
                    0xc0 => {
                        let e = get(b, p + 1, 2, "ziplist int16")?;
                        (
                            e - p - 1,
                            i64::from(i16::from_le_bytes([b[p + 1], b[p + 2]])),
                        )
                    }
                    0xd0 => {
                        let e = get(b, p + 1, 4, "ziplist int32")?;
                        (e - p - 1, i64::from(le_u32(b, p + 1) as i32))
                    }
                    0xe0 => {
                        let e = get(b, p + 1, 8, "ziplist int64")?;
                        let mut a = [0u8; 8];
                        a.copy_from_slice(&b[p + 1..e]);
                        (8, i64::from_le_bytes(a))
                    }
                    0xf0 => {
                        get(b, p + 1, 3, "ziplist int24")?;
                        let raw = i32::from_le_bytes([0, b[p + 1], b[p + 2], b[p + 3]]) >> 8;
                        (3, i64::from(raw))
                    }
                    0xfe => {
                        get(b, p + 1, 1, "ziplist int8")?;
                        (1, i64::from(b[p + 1] as i8))
                    }
                    0xf1..=0xfd => (0, i64::from(enc & 0x0f) - 1),
                    _ => {
                        return perr(
                            enc_at,
                            format!("invalid ziplist entry encoding 0x{enc:02x}"),
                        )
                    }
                };
                p += 1 + n;
                Elem::Int(v)
            }
        };
        prev_size = p - start;
        last_start = start;
        out.push(elem);
    }
    if p != b.len() - 1 {
        return perr(
            p,
            format!(
                "ziplist end marker at byte {p} but the blob has {} bytes",
                b.len()
            ),
        );
    }
    if zltail != last_start {
        return perr(
            4,
            format!("ziplist tail offset {zltail} but the last entry starts at {last_start}"),
        );
    }
    if zllen != u16::MAX && usize::from(zllen) != out.len() {
        return perr(
            8,
            format!("ziplist declares {zllen} entries but holds {}", out.len()),
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------- listpack

fn backlen_size(l: usize) -> usize {
    if l <= 127 {
        1
    } else if l < 16383 {
        2
    } else if l < 2_097_151 {
        3
    } else if l < 268_435_455 {
        4
    } else {
        5
    }
}

fn backlen_matches(bytes: &[u8], l: usize) -> bool {
    // Written so it reads right to left: the first byte holds the highest 7 bits and has
    // no continuation bit, every later byte sets 0x80.
    let n = bytes.len();
    let mut v = 0usize;
    for (i, &x) in bytes.iter().enumerate() {
        let cont = x & 0x80 != 0;
        if (i == 0) == cont {
            return false;
        }
        v = (v << 7) | (x & 0x7f) as usize;
    }
    n == backlen_size(l) && v == l
}

/// Decode and validate a listpack (types 16–21, 25, stream nodes, quicklist 2 nodes).
pub fn listpack(b: &[u8]) -> Result<Vec<Elem<'_>>, PackedError> {
    let mut out = Vec::with_capacity(listpack_declared(b).min(4096));
    walk_listpack(b, |e, _| out.push(e))?;
    Ok(out)
}

/// Decode and validate a listpack like [`listpack`], each element with the byte range of
/// its whole entry (encoding, data and back length), for editing without re-encoding.
pub fn listpack_entries(b: &[u8]) -> Result<Vec<(Elem<'_>, std::ops::Range<usize>)>, PackedError> {
    let mut out = Vec::with_capacity(listpack_declared(b).min(4096));
    walk_listpack(b, |e, r| out.push((e, r)))?;
    Ok(out)
}

/// The element count a listpack's header declares (0 when it has no header).
fn listpack_declared(b: &[u8]) -> usize {
    match b.get(4..6) {
        Some(n) => usize::from(u16::from_le_bytes([n[0], n[1]])),
        None => 0,
    }
}

fn walk_listpack<'a>(
    b: &'a [u8],
    mut emit: impl FnMut(Elem<'a>, std::ops::Range<usize>),
) -> Result<(), PackedError> {
    const HEADER: usize = 6;
    if b.len() < HEADER + 1 {
        return perr(
            0,
            format!("listpack of {} bytes is shorter than its header", b.len()),
        );
    }
    let total = le_u32(b, 0) as usize;
    if total != b.len() {
        return perr(
            0,
            format!("listpack declares {total} bytes but holds {}", b.len()),
        );
    }
    let num = u16::from_le_bytes([b[4], b[5]]);
    let mut seen = 0usize;
    let mut p = HEADER;
    loop {
        if p >= b.len() {
            return perr(p, "listpack has no end marker");
        }
        let enc = b[p];
        if enc == 0xff {
            break;
        }
        let start = p;
        let (hdr, dlen, elem): (usize, usize, Option<Elem>) = if enc & 0x80 == 0 {
            (1, 0, Some(Elem::Int(i64::from(enc & 0x7f))))
        } else if enc & 0xc0 == 0x80 {
            (1, (enc & 0x3f) as usize, None)
        } else if enc & 0xe0 == 0xc0 {
            get(b, p, 2, "listpack int13")?;
            let mut v = (i64::from(enc & 0x1f) << 8) | i64::from(b[p + 1]);
            if v >= 1 << 12 {
                v -= 1 << 13;
            }
            (2, 0, Some(Elem::Int(v)))
        } else if enc & 0xf0 == 0xe0 {
            get(b, p, 2, "listpack string header")?;
            (2, (((enc & 0x0f) as usize) << 8) | b[p + 1] as usize, None)
        } else {
            match enc {
                0xf0 => {
                    get(b, p, 5, "listpack string header")?;
                    (5, le_u32(b, p + 1) as usize, None)
                }
                0xf1 => {
                    get(b, p, 3, "listpack int16")?;
                    (
                        3,
                        0,
                        Some(Elem::Int(i64::from(i16::from_le_bytes([
                            b[p + 1],
                            b[p + 2],
                        ])))),
                    )
                }
                0xf2 => {
                    get(b, p, 4, "listpack int24")?;
                    let v = i32::from_le_bytes([0, b[p + 1], b[p + 2], b[p + 3]]) >> 8;
                    (4, 0, Some(Elem::Int(i64::from(v))))
                }
                0xf3 => {
                    get(b, p, 5, "listpack int32")?;
                    (5, 0, Some(Elem::Int(i64::from(le_u32(b, p + 1) as i32))))
                }
                0xf4 => {
                    get(b, p, 9, "listpack int64")?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&b[p + 1..p + 9]);
                    (9, 0, Some(Elem::Int(i64::from_le_bytes(a))))
                }
                _ => return perr(p, format!("invalid listpack entry encoding 0x{enc:02x}")),
            }
        };
        let data_start = p + hdr;
        let data_end = get(b, data_start, dlen, "listpack entry")?;
        let entry_len = hdr + dlen;
        let bl = backlen_size(entry_len);
        let bl_end = get(b, data_end, bl, "listpack back length")?;
        if bl_end >= b.len() {
            return perr(data_end, "listpack entry runs into the end of the blob");
        }
        if !backlen_matches(&b[data_end..bl_end], entry_len) {
            return perr(
                data_end,
                format!("listpack back length does not encode the entry size {entry_len}"),
            );
        }
        emit(
            elem.unwrap_or(Elem::Str(&b[data_start..data_end])),
            start..bl_end,
        );
        seen += 1;
        p = bl_end;
    }
    if p != b.len() - 1 {
        return perr(
            p,
            format!(
                "listpack end marker at byte {p} but the blob has {} bytes",
                b.len()
            ),
        );
    }
    if num != u16::MAX && usize::from(num) != seen {
        return perr(
            4,
            format!("listpack declares {num} entries but holds {seen}"),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- intset

/// Decode and validate an intset (type 11): strictly ascending integers of one width.
pub fn intset(b: &[u8]) -> Result<Vec<i64>, PackedError> {
    if b.len() < 8 {
        return perr(
            0,
            format!("intset of {} bytes is shorter than its header", b.len()),
        );
    }
    let enc = le_u32(b, 0) as usize;
    if !matches!(enc, 2 | 4 | 8) {
        return perr(0, format!("invalid intset encoding {enc}"));
    }
    let len = le_u32(b, 4) as usize;
    let want = len.checked_mul(enc).and_then(|n| n.checked_add(8));
    if want != Some(b.len()) {
        return perr(
            4,
            format!(
                "intset declares {len} entries of {enc} bytes but holds {} bytes",
                b.len() - 8
            ),
        );
    }
    if len == 0 {
        // The servers' integrity check refuses an empty intset (unlike other empty values,
        // which they skip), so a loader would stop here too.
        return perr(4, "empty intset");
    }
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        let p = 8 + i * enc;
        let v = match enc {
            2 => i64::from(i16::from_le_bytes([b[p], b[p + 1]])),
            4 => i64::from(le_u32(b, p) as i32),
            _ => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[p..p + 8]);
                i64::from_le_bytes(a)
            }
        };
        if let Some(&last) = out.last() {
            if v <= last {
                return perr(
                    p,
                    format!("intset is not strictly ascending ({v} after {last})"),
                );
            }
        }
        out.push(v);
    }
    Ok(out)
}

// ---------------------------------------------------------------- zipmap

/// Decode and validate a zipmap (type 9): field/value pairs, flattened.
pub fn zipmap(b: &[u8]) -> Result<Vec<&[u8]>, PackedError> {
    fn zm_len(b: &[u8], p: &mut usize) -> Result<Option<usize>, PackedError> {
        if *p >= b.len() {
            return perr(*p, "zipmap ends without its end marker");
        }
        match b[*p] {
            255 => Ok(None),
            254 => {
                get(b, *p, 5, "zipmap length")?;
                let n = le_u32(b, *p + 1) as usize;
                *p += 5;
                Ok(Some(n))
            }
            n => {
                *p += 1;
                Ok(Some(n as usize))
            }
        }
    }
    if b.is_empty() {
        return perr(0, "empty zipmap");
    }
    let declared = b[0];
    let mut p = 1;
    let mut out = Vec::new();
    while let Some(klen) = zm_len(b, &mut p)? {
        let ks = p;
        p = get(b, p, klen, "zipmap key")?;
        out.push(&b[ks..p]);
        let Some(vlen) = zm_len(b, &mut p)? else {
            return perr(p, "zipmap key without a value");
        };
        get(b, p, 1, "zipmap free byte")?;
        let free = b[p] as usize;
        p += 1;
        let vs = p;
        p = get(b, p, vlen, "zipmap value")?;
        out.push(&b[vs..p]);
        p = get(b, p, free, "zipmap free space")?;
    }
    if p != b.len() - 1 {
        return perr(
            p,
            format!(
                "zipmap end marker at byte {p} but the blob has {} bytes",
                b.len()
            ),
        );
    }
    if out.is_empty() {
        return perr(0, "empty zipmap (servers refuse it)");
    }
    if declared < 254 && usize::from(declared) != out.len() / 2 {
        return perr(
            0,
            format!(
                "zipmap declares {declared} pairs but holds {}",
                out.len() / 2
            ),
        );
    }
    Ok(out)
}

#[cfg(test)]
#[path = "packed_tests.rs"]
mod tests;
