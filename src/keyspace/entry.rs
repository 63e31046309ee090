//! One key in one allocation: flags, key, optional expiry and access hints, type byte and
//! the encoded value; or, for a big collection, a handle to its native form.
//!
//! Owns the packed layout the keyspace stores (measured as the only layout under
//! redis-server's memory per key, docs/decisions.md). The value bytes are the RDB encoding
//! of the value for the keyspace's canonical target, so a snapshot can often copy them to
//! the file as they are. Optional parts cost nothing when absent. It must never be read
//! past its own bounds; it is only ever built by [`Entry::build`], so its header is trusted.

use super::varint::{get_varint, put_varint};
use std::sync::Arc;
use triomphe::ThinArc;

use super::digest_slot::DigestSlot;

use super::native::{Native, NativeEntry};
use crate::rdb::Value;

const FLAG_EXPIRE: u8 = 1;
const FLAG_IDLE: u8 = 2;
const FLAG_FREQ: u8 = 4;
const FLAG_META: u8 = 8;

/// What rides along with a key besides its value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hints {
    pub expire_ms: Option<i64>,
    /// LRU idle seconds, as the source file had them.
    pub idle: Option<u64>,
    /// LFU counter, as the source file had it.
    pub freq: Option<u8>,
    /// Redis 8.6+ key metadata: (class spec, raw module-format value).
    pub meta: Vec<(u32, Vec<u8>)>,
}

/// A key and its value, immutable and shared: changing a key builds a new `Entry` (or, for
/// a native value, copies the chunks it changes), so a snapshot holding the old one keeps
/// seeing the old value.
#[derive(Clone)]
pub enum Entry {
    Packed(Packed),
    Native(Arc<NativeEntry>),
}

/// The packed layout: everything in one allocation, behind a thin pointer (16 bytes per
/// table slot for either kind of entry), with the slot where a digest remembers the
/// key's hashed contribution in its header.
#[derive(Clone)]
pub struct Packed(ThinArc<DigestSlot, u8>);

/// The encoded value, for whoever decodes it elsewhere (a digest worker).
impl AsRef<[u8]> for Packed {
    fn as_ref(&self) -> &[u8] {
        self.payload()
    }
}

impl Packed {
    /// A key with only an expiry besides its value.
    pub fn new(key: &[u8], expire_ms: Option<i64>, ty: u8, payload: &[u8]) -> Packed {
        Packed::build(
            key,
            &Hints {
                expire_ms,
                ..Hints::default()
            },
            ty,
            payload,
        )
    }

    pub fn build(key: &[u8], h: &Hints, ty: u8, payload: &[u8]) -> Packed {
        let mut flags = 0;
        let mut v = Vec::with_capacity(1 + 5 + key.len() + 9 + payload.len());
        v.push(0);
        put_varint(&mut v, key.len() as u64);
        v.extend_from_slice(key);
        if let Some(t) = h.expire_ms {
            flags |= FLAG_EXPIRE;
            v.extend_from_slice(&t.to_le_bytes());
        }
        if let Some(i) = h.idle {
            flags |= FLAG_IDLE;
            put_varint(&mut v, i);
        }
        if let Some(f) = h.freq {
            flags |= FLAG_FREQ;
            v.push(f);
        }
        if !h.meta.is_empty() {
            flags |= FLAG_META;
            put_varint(&mut v, h.meta.len() as u64);
            for (spec, raw) in &h.meta {
                v.extend_from_slice(&spec.to_le_bytes());
                put_varint(&mut v, raw.len() as u64);
                v.extend_from_slice(raw);
            }
        }
        v[0] = flags;
        v.push(ty);
        v.extend_from_slice(payload);
        Packed::from_bytes(&v)
    }

    /// A string key with only an expiry: the value encoded as the writer encodes
    /// strings (small canonical integers as integers), built in one buffer.
    pub fn string(key: &[u8], expire_ms: Option<i64>, value: &[u8]) -> Packed {
        let mut v = Vec::with_capacity(1 + 5 + key.len() + 8 + 1 + 9 + value.len());
        v.push(if expire_ms.is_some() { FLAG_EXPIRE } else { 0 });
        put_varint(&mut v, key.len() as u64);
        v.extend_from_slice(key);
        if let Some(t) = expire_ms {
            v.extend_from_slice(&t.to_le_bytes());
        }
        v.push(crate::rdb::types::STRING);
        crate::rdb::writer::encode::string(&mut v, value, false);
        Packed::from_bytes(&v)
    }

    fn from_bytes(v: &[u8]) -> Packed {
        Packed(ThinArc::from_header_and_slice(DigestSlot::default(), v))
    }

    fn bytes(&self) -> &[u8] {
        &self.0.slice
    }

    /// The key's hashed digest as a digest under rules `tag` computed it, if one did.
    pub fn remembered(&self, tag: u32) -> Option<[u8; 20]> {
        self.0.header.header.get(tag)
    }

    /// Remember the key's hashed digest under rules `tag` (kept only by the first).
    pub fn remember(&self, tag: u32, hashed: &[u8; 20]) {
        self.0.header.header.set(tag, hashed)
    }

    fn flags(&self) -> u8 {
        self.bytes()[0]
    }

    fn key_range(&self) -> (usize, usize) {
        let mut pos = 1;
        let n = get_varint(self.bytes(), &mut pos) as usize;
        (pos, pos + n)
    }

    pub fn key(&self) -> &[u8] {
        let (a, b) = self.key_range();
        &self.bytes()[a..b]
    }

    /// Walk the optional parts; returns them and where the type byte is.
    fn parse_hints(&self) -> (Hints, usize) {
        let (_, mut pos) = self.key_range();
        let b = self.bytes();
        let mut h = Hints::default();
        if self.flags() & FLAG_EXPIRE != 0 {
            let mut t = [0u8; 8];
            t.copy_from_slice(&b[pos..pos + 8]);
            h.expire_ms = Some(i64::from_le_bytes(t));
            pos += 8;
        }
        if self.flags() & FLAG_IDLE != 0 {
            h.idle = Some(get_varint(b, &mut pos));
        }
        if self.flags() & FLAG_FREQ != 0 {
            h.freq = Some(b[pos]);
            pos += 1;
        }
        if self.flags() & FLAG_META != 0 {
            let n = get_varint(b, &mut pos);
            for _ in 0..n {
                let mut s = [0u8; 4];
                s.copy_from_slice(&b[pos..pos + 4]);
                pos += 4;
                let len = get_varint(b, &mut pos) as usize;
                h.meta
                    .push((u32::from_le_bytes(s), b[pos..pos + len].to_vec()));
                pos += len;
            }
        }
        (h, pos)
    }

    pub fn hints(&self) -> Hints {
        self.parse_hints().0
    }

    pub fn expire_ms(&self) -> Option<i64> {
        if self.flags() & FLAG_EXPIRE == 0 {
            return None;
        }
        let (_, end) = self.key_range();
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.bytes()[end..end + 8]);
        Some(i64::from_le_bytes(t))
    }

    fn type_at(&self) -> usize {
        if self.flags() & !FLAG_EXPIRE == 0 {
            let (_, end) = self.key_range();
            return end
                + if self.flags() & FLAG_EXPIRE != 0 {
                    8
                } else {
                    0
                };
        }
        self.parse_hints().1
    }

    /// The RDB type byte of the stored encoding.
    pub fn rdb_type(&self) -> u8 {
        self.bytes()[self.type_at()]
    }

    /// The encoded value (what follows the key in an RDB file).
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.type_at() + 1..]
    }

    /// Bytes this entry occupies (excluding allocator overhead and the table slot): the
    /// count, the digest slot and the length, then the bytes.
    pub fn size(&self) -> usize {
        self.bytes().len() + 8 + std::mem::size_of::<DigestSlot>() + 8
    }

    /// The same key and hints with another value (its RDB type and payload), built in
    /// one allocation from this entry's header bytes.
    pub fn with_payload(&self, ty: u8, payload: &[u8]) -> Packed {
        let head = &self.bytes()[..self.type_at()];
        let mut v = Vec::with_capacity(head.len() + 1 + payload.len());
        v.extend_from_slice(head);
        v.push(ty);
        v.extend_from_slice(payload);
        Packed::from_bytes(&v)
    }

    /// The same key, value and access hints with another expiry.
    pub fn with_expire(&self, expire_ms: Option<i64>) -> Packed {
        let (mut h, _) = self.parse_hints();
        h.expire_ms = expire_ms;
        Packed::build(self.key(), &h, self.rdb_type(), self.payload())
    }
}

impl Entry {
    /// A packed key with only an expiry besides its value.
    pub fn new(key: &[u8], expire_ms: Option<i64>, ty: u8, payload: &[u8]) -> Entry {
        Entry::Packed(Packed::new(key, expire_ms, ty, payload))
    }

    /// A packed key with all its hints.
    pub fn build(key: &[u8], h: &Hints, ty: u8, payload: &[u8]) -> Entry {
        Entry::Packed(Packed::build(key, h, ty, payload))
    }

    /// A key holding a native value.
    pub fn native(key: &[u8], hints: Hints, value: Native) -> Entry {
        Entry::Native(Arc::new(NativeEntry {
            key: key.into(),
            hints,
            value,
        }))
    }

    pub fn key(&self) -> &[u8] {
        match self {
            Entry::Packed(p) => p.key(),
            Entry::Native(n) => &n.key,
        }
    }

    pub fn hints(&self) -> Hints {
        match self {
            Entry::Packed(p) => p.hints(),
            Entry::Native(n) => n.hints.clone(),
        }
    }

    pub fn expire_ms(&self) -> Option<i64> {
        match self {
            Entry::Packed(p) => p.expire_ms(),
            Entry::Native(n) => n.hints.expire_ms,
        }
    }

    /// The RDB type byte of the stored encoding (a native value: the master's big one).
    pub fn rdb_type(&self) -> u8 {
        match self {
            Entry::Packed(p) => p.rdb_type(),
            Entry::Native(n) => n.value.rdb_type(),
        }
    }

    /// The encoded value, for a packed entry.
    pub fn payload(&self) -> Option<&[u8]> {
        match self {
            Entry::Packed(p) => Some(p.payload()),
            Entry::Native(_) => None,
        }
    }

    /// The decoded value.
    pub fn decode(&self) -> Result<Value, crate::rdb::RdbError> {
        match self {
            Entry::Packed(p) => {
                crate::rdb::decode_value(p.rdb_type(), p.payload(), crate::rdb::Dialect::Redis)
            }
            Entry::Native(n) => Ok(n.value.to_value()),
        }
    }

    /// The same key, value and access hints with another expiry. A native value is shared,
    /// not copied.
    pub fn with_expire(&self, expire_ms: Option<i64>) -> Entry {
        match self {
            Entry::Packed(p) => Entry::Packed(p.with_expire(expire_ms)),
            Entry::Native(n) => {
                let mut hints = n.hints.clone();
                hints.expire_ms = expire_ms;
                Entry::Native(Arc::new(NativeEntry {
                    key: n.key.clone(),
                    hints,
                    value: n.value.clone(),
                }))
            }
        }
    }

    /// A copy of the value and hints under another key, sharing nothing a write changes in
    /// place (COPY: both keys stay live).
    pub fn copied_to(&self, key: &[u8]) -> Entry {
        match self {
            Entry::Packed(_) => self.with_key(key),
            Entry::Native(n) => Entry::Native(Arc::new(NativeEntry {
                key: key.into(),
                hints: n.hints.clone(),
                value: n.value.deep_clone(),
            })),
        }
    }

    /// The same value and hints under another key (RENAME: the old key goes at once; a
    /// snapshot may keep it, read-only).
    pub fn with_key(&self, key: &[u8]) -> Entry {
        match self {
            Entry::Packed(p) => Entry::build(key, &p.hints(), p.rdb_type(), p.payload()),
            Entry::Native(n) => Entry::Native(Arc::new(NativeEntry {
                key: key.into(),
                hints: n.hints.clone(),
                value: n.value.clone(),
            })),
        }
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
            assert_eq!(e.payload(), Some(&b"payload"[..]));
            let f = e.with_expire(None);
            assert_eq!(
                (f.key(), f.expire_ms(), f.payload()),
                (key, None, Some(&b"payload"[..]))
            );
        }
    }

    #[test]
    fn string_entries_match_the_general_encoding() {
        let ks = crate::keyspace::Keyspace::new();
        for v in [
            &b""[..],
            b"12",
            b"-129",
            b"007",
            b"2147483648",
            &[b'z'; 300][..],
        ] {
            for exp in [None, Some(1_700_000_000_000i64)] {
                let h = Hints {
                    expire_ms: exp,
                    ..Hints::default()
                };
                let general = ks
                    .encode(b"key", &h, &Value::String(v.to_vec()), None)
                    .unwrap();
                let Entry::Packed(g) = general else {
                    panic!("a string is packed")
                };
                assert_eq!(Packed::string(b"key", exp, v).bytes(), g.bytes());
            }
        }
    }

    #[test]
    fn hints_round_trip() {
        let h = Hints {
            expire_ms: Some(123),
            idle: Some(100_000),
            freq: Some(7),
            meta: vec![(0xdead_beef, vec![1, 2, 3]), (5, vec![])],
        };
        let e = Entry::build(b"key", &h, 0, b"\x03abc");
        assert_eq!(e.hints(), h);
        assert_eq!(e.key(), b"key");
        assert_eq!(e.expire_ms(), Some(123));
        assert_eq!((e.rdb_type(), e.payload()), (0, Some(&b"\x03abc"[..])));
        let g = e.with_expire(None);
        assert_eq!(g.hints().idle, Some(100_000));
        assert_eq!(g.expire_ms(), None);
    }
}
