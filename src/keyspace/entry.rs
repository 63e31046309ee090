//! One key in one allocation: flags, key, optional expiry, type byte and the encoded value.
//!
//! Owns the packed layout the keyspace stores (measured as the only layout under
//! redis-server's memory per key, docs/decisions.md). The value bytes are the RDB encoding
//! of the value for the keyspace's canonical target, so a snapshot can often copy them to
//! the file as they are. It must never be read past its own bounds; it is only ever built
//! by [`Entry::new`], so its header is trusted.

use std::sync::Arc;

const FLAG_EXPIRE: u8 = 1;

/// A key and its value, immutable and shared: changing a key builds a new `Entry`, so a
/// snapshot holding the old one keeps seeing the old value.
#[derive(Clone)]
pub struct Entry(Arc<[u8]>);

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let x = b[*pos];
        *pos += 1;
        v |= u64::from(x & 0x7f) << shift;
        if x & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

impl Entry {
    pub fn new(key: &[u8], expire_ms: Option<i64>, ty: u8, payload: &[u8]) -> Entry {
        let mut v = Vec::with_capacity(1 + 5 + key.len() + 9 + payload.len());
        v.push(if expire_ms.is_some() { FLAG_EXPIRE } else { 0 });
        put_varint(&mut v, key.len() as u64);
        v.extend_from_slice(key);
        if let Some(t) = expire_ms {
            v.extend_from_slice(&t.to_le_bytes());
        }
        v.push(ty);
        v.extend_from_slice(payload);
        Entry(Arc::from(v))
    }

    fn key_range(&self) -> (usize, usize) {
        let mut pos = 1;
        let n = get_varint(&self.0, &mut pos) as usize;
        (pos, pos + n)
    }

    pub fn key(&self) -> &[u8] {
        let (a, b) = self.key_range();
        &self.0[a..b]
    }

    pub fn expire_ms(&self) -> Option<i64> {
        if self.0[0] & FLAG_EXPIRE == 0 {
            return None;
        }
        let (_, end) = self.key_range();
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.0[end..end + 8]);
        Some(i64::from_le_bytes(t))
    }

    fn type_at(&self) -> usize {
        let (_, end) = self.key_range();
        end + if self.0[0] & FLAG_EXPIRE != 0 { 8 } else { 0 }
    }

    /// The RDB type byte of the stored encoding.
    pub fn rdb_type(&self) -> u8 {
        self.0[self.type_at()]
    }

    /// The encoded value (what follows the key in an RDB file).
    pub fn payload(&self) -> &[u8] {
        &self.0[self.type_at() + 1..]
    }

    /// Bytes this entry occupies (excluding allocator overhead and the table slot).
    pub fn size(&self) -> usize {
        self.0.len() + 16
    }

    /// The same key and value with another expiry.
    pub fn with_expire(&self, expire_ms: Option<i64>) -> Entry {
        Entry::new(self.key(), expire_ms, self.rdb_type(), self.payload())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let long_key = vec![7u8; 300];
        for (key, exp) in [
            (&b""[..], None),
            (&b"k"[..], Some(-5i64)),
            (&long_key[..], Some(i64::MAX)),
        ] {
            let e = Entry::new(key, exp, 16, b"payload");
            assert_eq!(e.key(), key);
            assert_eq!(e.expire_ms(), exp);
            assert_eq!(e.rdb_type(), 16);
            assert_eq!(e.payload(), b"payload");
            let f = e.with_expire(None);
            assert_eq!(
                (f.key(), f.expire_ms(), f.payload()),
                (key, None, &b"payload"[..])
            );
        }
    }
}
