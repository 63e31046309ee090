//! Builders for the packed encodings the writer emits: listpack, ziplist, intset.
//!
//! Owns producing blobs that the servers' own validators accept (sizes, counts, back
//! lengths, prev lengths, tail offsets). Strings that are canonical integers are stored as
//! integers, as the servers do; anything else stays a string, byte for byte.

/// Parse `s` as the servers' `string2ll` would: a canonical decimal i64 (no sign but a
/// leading '-', no leading zeros, no "-0"), so that printing it back gives `s` again.
pub fn canonical_int(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let x = i64::from(d - b'0');
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(x)?
        } else {
            v.checked_add(x)?
        };
    }
    Some(v)
}

/// A listpack under construction.
pub struct Listpack {
    buf: Vec<u8>,
    count: usize,
}

impl Default for Listpack {
    fn default() -> Self {
        Self::new()
    }
}

fn backlen(l: usize, out: &mut Vec<u8>) {
    if l <= 127 {
        out.push(l as u8);
    } else if l < 16383 {
        out.push((l >> 7) as u8);
        out.push((l & 127) as u8 | 128);
    } else if l < 2_097_151 {
        out.push((l >> 14) as u8);
        out.push(((l >> 7) & 127) as u8 | 128);
        out.push((l & 127) as u8 | 128);
    } else if l < 268_435_455 {
        out.push((l >> 21) as u8);
        out.push(((l >> 14) & 127) as u8 | 128);
        out.push(((l >> 7) & 127) as u8 | 128);
        out.push((l & 127) as u8 | 128);
    } else {
        out.push((l >> 28) as u8);
        out.push(((l >> 21) & 127) as u8 | 128);
        out.push(((l >> 14) & 127) as u8 | 128);
        out.push(((l >> 7) & 127) as u8 | 128);
        out.push((l & 127) as u8 | 128);
    }
}

/// Append one listpack entry for `s` to `out` (canonical integers as integers, as the
/// servers store them): encoding, data and back length.
pub fn listpack_entry(s: &[u8], out: &mut Vec<u8>) {
    match canonical_int(s) {
        Some(v) => listpack_int_entry(v, out),
        None => listpack_str_entry(s, out),
    }
}

fn listpack_int_entry(v: i64, out: &mut Vec<u8>) {
    let start = out.len();
    if (0..=127).contains(&v) {
        out.push(v as u8);
    } else if (-4096..4096).contains(&v) {
        let u = (v as u64 & 0x1fff) as u16;
        out.push(0xc0 | (u >> 8) as u8);
        out.push(u as u8);
    } else if i64::from(v as i16) == v {
        out.push(0xf1);
        out.extend_from_slice(&(v as i16).to_le_bytes());
    } else if (-(1 << 23)..(1 << 23)).contains(&v) {
        out.push(0xf2);
        out.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
    } else if i64::from(v as i32) == v {
        out.push(0xf3);
        out.extend_from_slice(&(v as i32).to_le_bytes());
    } else {
        out.push(0xf4);
        out.extend_from_slice(&v.to_le_bytes());
    }
    let l = out.len() - start;
    backlen(l, out);
}

fn listpack_str_entry(s: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let n = s.len();
    if n < 64 {
        out.push(0x80 | n as u8);
    } else if n < 4096 {
        out.push(0xe0 | (n >> 8) as u8);
        out.push(n as u8);
    } else {
        out.push(0xf0);
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }
    out.extend_from_slice(s);
    let l = out.len() - start;
    backlen(l, out);
}

/// A finished listpack from entries already encoded back to back (`count` of them).
pub fn listpack_from_entries(entries: &[u8], count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() + 7);
    out.extend_from_slice(&((entries.len() + 7) as u32).to_le_bytes());
    out.extend_from_slice(&(count.min(65535) as u16).to_le_bytes());
    out.extend_from_slice(entries);
    out.push(0xff);
    out
}

impl Listpack {
    pub fn new() -> Self {
        Listpack {
            buf: vec![0u8; 6],
            count: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the finished listpack will take.
    pub fn bytes(&self) -> usize {
        self.buf.len() + 1
    }

    pub fn push_int(&mut self, v: i64) {
        listpack_int_entry(v, &mut self.buf);
        self.count += 1;
    }

    /// Push a string element; canonical integers are stored as integers.
    pub fn push(&mut self, s: &[u8]) {
        if let Some(v) = canonical_int(s) {
            return self.push_int(v);
        }
        self.push_str(s);
    }

    /// Push bytes as a string entry, never as an integer.
    pub fn push_str(&mut self, s: &[u8]) {
        listpack_str_entry(s, &mut self.buf);
        self.count += 1;
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(0xff);
        let total = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&total.to_le_bytes());
        let n = if self.count < 65535 {
            self.count as u16
        } else {
            65535
        };
        self.buf[4..6].copy_from_slice(&n.to_le_bytes());
        self.buf
    }
}

/// A ziplist under construction (the compact encoding of RDB 9 and older servers).
pub struct Ziplist {
    buf: Vec<u8>,
    count: usize,
    prev_len: usize,
    tail: usize,
}

impl Default for Ziplist {
    fn default() -> Self {
        Self::new()
    }
}

impl Ziplist {
    pub fn new() -> Self {
        Ziplist {
            buf: vec![0u8; 10],
            count: 0,
            prev_len: 0,
            tail: 10,
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn bytes(&self) -> usize {
        self.buf.len() + 1
    }

    pub fn push(&mut self, s: &[u8]) {
        let start = self.buf.len();
        if self.prev_len < 254 {
            self.buf.push(self.prev_len as u8);
        } else {
            self.buf.push(254);
            self.buf
                .extend_from_slice(&(self.prev_len as u32).to_le_bytes());
        }
        // Integers as the server's zipTryEncoding does: only strings shorter than 32 bytes.
        match canonical_int(s).filter(|_| s.len() < 32) {
            Some(v) if (0..=12).contains(&v) => self.buf.push(0xf1 + v as u8),
            Some(v) if i64::from(v as i8) == v => {
                self.buf.push(0xfe);
                self.buf.push(v as i8 as u8);
            }
            Some(v) if i64::from(v as i16) == v => {
                self.buf.push(0xc0);
                self.buf.extend_from_slice(&(v as i16).to_le_bytes());
            }
            Some(v) if (-(1 << 23)..(1 << 23)).contains(&v) => {
                self.buf.push(0xf0);
                self.buf.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
            }
            Some(v) if i64::from(v as i32) == v => {
                self.buf.push(0xd0);
                self.buf.extend_from_slice(&(v as i32).to_le_bytes());
            }
            Some(v) => {
                self.buf.push(0xe0);
                self.buf.extend_from_slice(&v.to_le_bytes());
            }
            None => {
                let n = s.len();
                if n < 64 {
                    self.buf.push(n as u8);
                } else if n < 16384 {
                    self.buf.push(0x40 | (n >> 8) as u8);
                    self.buf.push(n as u8);
                } else {
                    self.buf.push(0x80);
                    self.buf.extend_from_slice(&(n as u32).to_be_bytes());
                }
                self.buf.extend_from_slice(s);
            }
        }
        self.tail = start;
        self.prev_len = self.buf.len() - start;
        self.count += 1;
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(0xff);
        let total = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&total.to_le_bytes());
        self.buf[4..8].copy_from_slice(&(self.tail as u32).to_le_bytes());
        let n = if self.count < 65535 {
            self.count as u16
        } else {
            65535
        };
        self.buf[8..10].copy_from_slice(&n.to_le_bytes());
        self.buf
    }
}

/// An intset of the given sorted, distinct values (None if any is not an integer).
pub fn intset(values: &[i64]) -> Vec<u8> {
    let width: usize = if values.iter().all(|&v| i64::from(v as i16) == v) {
        2
    } else if values.iter().all(|&v| i64::from(v as i32) == v) {
        4
    } else {
        8
    };
    let mut out = Vec::with_capacity(8 + width * values.len());
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for &v in values {
        out.extend_from_slice(&v.to_le_bytes()[..width]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::super::packed;
    use super::*;

    #[test]
    fn canonical_ints_round_trip_only() {
        assert_eq!(canonical_int(b"0"), Some(0));
        assert_eq!(canonical_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(canonical_int(b"9223372036854775807"), Some(i64::MAX));
        for s in [
            &b"9223372036854775808"[..],
            b"-0",
            b"01",
            b"+1",
            b"",
            b"-",
            b"1 ",
            b"1.0",
        ] {
            assert_eq!(canonical_int(s), None, "{:?}", String::from_utf8_lossy(s));
        }
    }

    fn samples() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = [
            "",
            "a",
            "0",
            "12",
            "13",
            "-1",
            "127",
            "128",
            "-4096",
            "4095",
            "4096",
            "32767",
            "-32769",
            "8388607",
            "8388608",
            "2147483647",
            "2147483648",
            "-9223372036854775808",
            "007",
            "-0",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        v.push(vec![b'x'; 63]);
        v.push(vec![b'y'; 64]);
        v.push(vec![b'z'; 4095]);
        v.push(vec![b'w'; 4096]);
        v.push(vec![b'v'; 20000]);
        v.push(vec![0, 0xff, b'\n']);
        v
    }

    #[test]
    fn listpack_round_trips_through_the_validating_reader() {
        let items = samples();
        let mut lp = Listpack::new();
        for it in &items {
            lp.push(it);
        }
        let blob = lp.finish();
        let back: Vec<Vec<u8>> = packed::listpack(&blob)
            .unwrap()
            .into_iter()
            .map(|e| e.to_bytes())
            .collect();
        assert_eq!(back, items);
    }

    #[test]
    fn ziplist_round_trips_through_the_validating_reader() {
        let items = samples();
        let mut zl = Ziplist::new();
        for it in &items {
            zl.push(it);
        }
        let blob = zl.finish();
        let back: Vec<Vec<u8>> = packed::ziplist(&blob)
            .unwrap()
            .into_iter()
            .map(|e| e.to_bytes())
            .collect();
        assert_eq!(back, items);
    }

    #[test]
    fn intset_widths() {
        for vals in [
            vec![-3i64, 0, 7],
            vec![1, 70000],
            vec![i64::MIN, 0, i64::MAX],
        ] {
            assert_eq!(packed::intset(&intset(&vals)).unwrap(), vals);
        }
    }
}
