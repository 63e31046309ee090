//! Big collections held natively: sets, hashes, sorted sets, lists and streams past
//! [`NATIVE_MIN`] elements (or [`NATIVE_MIN_BYTES`] of data), changed in place.
//!
//! Owns the native value model and its conversion from and to the decoded [`Value`]. A
//! packed entry costs O(size) per write (decode, change, encode); a native one costs O(1)
//! or O(log n), and copy-on-write happens per chunk (see [`chunkmap`], [`zindex`],
//! [`chunklist`], [`streamlog`]), so the first write to a value a snapshot still holds copies one chunk.
//! Only values the master itself holds in its big encodings become native (a sorted set
//! here is always the master's skiplist, which keeps -0), so the encoding never changes
//! what the data is. It must never lose a fact the packed form keeps (field TTLs,
//! element order of lists).

pub mod alias;
pub mod chunklist;
pub mod chunkmap;
pub mod collect;
pub mod export;
pub mod streamlog;
pub mod thin;
pub mod zindex;

use crate::rdb::types::{HASH, LIST_QUICKLIST_2, SET, STREAM_LISTPACKS_3, ZSET_2};
use crate::rdb::value::{HashField, Stream, StreamEntry};
use crate::rdb::Value;

use super::Hints;
pub use chunklist::ChunkList;
pub use chunkmap::{ChunkMap, MapItem};
pub use streamlog::StreamLog;
pub use thin::Thin;
pub use zindex::ZIndex;

/// Elements from which a collection is held natively (measured: docs/decisions.md).
pub const NATIVE_MIN: usize = 256;
/// Bytes of element data from which a collection is held natively whatever its count.
pub const NATIVE_MIN_BYTES: usize = 64 * 1024;

/// A set member.
#[derive(Clone)]
pub struct Member(pub Thin);

impl MapItem for Member {
    fn key(&self) -> &[u8] {
        &self.0
    }
}

/// One hash field in one allocation: flag, field length (LEB128), field, optional TTL,
/// value.
#[derive(Clone)]
pub struct HashRec(Thin);

impl HashRec {
    pub fn new(field: &[u8], value: &[u8], ttl: Option<u64>) -> HashRec {
        // Exactly sized, then copied once into its thin allocation.
        let mut v = Vec::with_capacity(1 + 10 + field.len() + 8 + value.len());
        v.push(u8::from(ttl.is_some()));
        let mut n = field.len();
        while n >= 0x80 {
            v.push((n & 0x7f) as u8 | 0x80);
            n >>= 7;
        }
        v.push(n as u8);
        v.extend_from_slice(field);
        if let Some(t) = ttl {
            v.extend_from_slice(&t.to_le_bytes());
        }
        v.extend_from_slice(value);
        HashRec(Thin::new(&v))
    }
    /// Where the field starts and ends.
    fn field_span(&self) -> (usize, usize) {
        let b: &[u8] = &self.0;
        let (mut n, mut i) = (0usize, 1);
        loop {
            let x = b[i];
            n |= ((x & 0x7f) as usize) << (7 * (i - 1));
            i += 1;
            if x & 0x80 == 0 {
                return (i, i + n);
            }
        }
    }
    pub fn field(&self) -> &[u8] {
        let (a, b) = self.field_span();
        &self.0[a..b]
    }
    pub fn ttl(&self) -> Option<u64> {
        if self.0[0] == 0 {
            return None;
        }
        let at = self.field_span().1;
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.0[at..at + 8]);
        Some(u64::from_le_bytes(t))
    }
    pub fn value(&self) -> &[u8] {
        let at = self.field_span().1 + if self.0[0] == 0 { 0 } else { 8 };
        &self.0[at..]
    }
}

impl MapItem for HashRec {
    fn key(&self) -> &[u8] {
        self.field()
    }
}

/// A sorted-set member and its score.
#[derive(Clone)]
pub struct ZMember {
    pub member: Thin,
    pub score: f64,
}

impl MapItem for ZMember {
    fn key(&self) -> &[u8] {
        &self.member
    }
}

/// A big sorted set: member → score, and the score order.
#[derive(Clone, Default)]
pub struct ZSetNative {
    dict: ChunkMap<ZMember>,
    order: ZIndex,
}

impl ZSetNative {
    /// Members, counted in the order (a snapshot's view has no member map).
    pub fn len(&self) -> usize {
        self.order.len()
    }
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.dict.get(member).map(|z| z.score)
    }
    /// Set a member's score (adding it if absent).
    pub fn set(&mut self, member: &[u8], score: f64) {
        let old = self.dict.insert_with(
            ZMember {
                member: member.into(),
                score,
            },
            |old| old.score,
        );
        if let Some(old) = old {
            self.order.remove(old, member);
        }
        self.order.insert(score, member);
    }

    /// An empty set sized for about `n` members.
    pub fn with_capacity(n: usize) -> ZSetNative {
        ZSetNative {
            dict: ChunkMap::with_capacity(n),
            order: ZIndex::default(),
        }
    }

    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self.dict.remove_with(member, |z| z.score) {
            Some(score) => self.order.remove(score, member),
            None => false,
        }
    }
    /// Remove and return the lowest (`min`) or highest member.
    pub fn pop(&mut self, min: bool) -> Option<(f64, Vec<u8>)> {
        let (s, m) = self.order.end(min).map(|(s, m)| (s, m.to_vec()))?;
        self.remove(&m);
        Some((s, m))
    }
    pub fn order(&self) -> &ZIndex {
        &self.order
    }
    /// The score order alone, the member map let go (a snapshot writes only the order).
    pub fn into_order(self) -> ZIndex {
        self.order
    }
}

/// Whether `v` is a collection big enough to be held natively.
fn is_big(v: &Value, plain_zset: bool) -> bool {
    fn big<'a>(n: usize, bytes: impl Iterator<Item = &'a [u8]>) -> bool {
        n >= NATIVE_MIN || bytes.map(<[u8]>::len).sum::<usize>() >= NATIVE_MIN_BYTES
    }
    match v {
        Value::Set(m) | Value::List(m) => big(m.len(), m.iter().map(|x| &x[..])),
        Value::Hash(f) => big(f.len(), f.iter().map(|x| &x.value[..])),
        Value::SortedSet(p) => plain_zset && big(p.len(), p.iter().map(|x| &x.0[..])),
        Value::Stream(s) => big(
            s.entries.len(),
            s.entries
                .iter()
                .flat_map(|e| e.fields.iter().flat_map(|(f, v)| [&f[..], &v[..]])),
        ),
        _ => false,
    }
}

/// A collection held natively.
#[derive(Clone)]
pub enum Native {
    Set(ChunkMap<Member>),
    Hash(ChunkMap<HashRec>),
    ZSet(ZSetNative),
    List(ChunkList),
    Stream(Box<StreamNative>),
}

impl Native {
    /// A copy sharing no item with this value, for a second key (COPY). `Clone` shares the
    /// nodes and is only for a snapshot's read-only view: two live values must never
    /// share a set's, hash's or sorted set's nodes (see [`alias`]). Lists and streams copy
    /// whole byte chunks on write and may share.
    pub fn deep_clone(&self) -> Native {
        match self {
            Native::Set(m) => Native::Set(m.deep_clone()),
            Native::Hash(m) => Native::Hash(m.deep_clone()),
            Native::ZSet(z) => Native::ZSet(ZSetNative {
                dict: z.dict.deep_clone(),
                order: z.order.deep_clone(),
            }),
            Native::List(_) | Native::Stream(_) => self.clone(),
        }
    }
}

/// A big stream: its entries natively, the rest (metadata, consumer groups, IDMP state)
/// as decoded, `head.entries` always empty. `head.length` and `head.first_id` are kept
/// by the code that changes it (the stream commands), as on the server.
#[derive(Clone)]
pub struct StreamNative {
    pub head: Stream,
    pub log: StreamLog,
}

impl StreamNative {
    /// Move a decoded stream's entries into nodes; `Err` gives it back when its IDs are
    /// not strictly increasing (a file the servers would refuse: kept decoded, as read).
    pub fn from_stream(mut s: Box<Stream>) -> Result<StreamNative, Box<Stream>> {
        if s.entries.windows(2).any(|w| w[0].id >= w[1].id) {
            return Err(s);
        }
        let mut log = StreamLog::default();
        for e in std::mem::take(&mut s.entries) {
            log.push(e.id, &e.view().fields);
        }
        Ok(StreamNative { head: *s, log })
    }

    /// The decoded stream (a copy of every entry).
    pub fn to_stream(&self) -> Stream {
        let mut s = self.head.clone();
        s.entries = self
            .log
            .iter()
            .map(|e| StreamEntry {
                id: e.id,
                fields: e
                    .fields
                    .iter()
                    .map(|(f, v)| (f.to_vec(), v.to_vec()))
                    .collect(),
            })
            .collect();
        s
    }

    /// Whether it is big enough to stay native (else the caller stores it packed).
    pub fn is_big(&self) -> bool {
        self.log.len() >= NATIVE_MIN || self.log.data_bytes() >= NATIVE_MIN_BYTES
    }
}

/// A key whose value is native: the key, its hints and the value.
#[derive(Clone)]
pub struct NativeEntry {
    pub key: Box<[u8]>,
    pub hints: Hints,
    pub value: Native,
}

impl NativeEntry {
    /// What a snapshot records of this key when it is first changed before the walk gets
    /// there, when that is not the entry itself: a sorted set without its member map (a
    /// snapshot writes, digests and decodes only the order). The live entry then stays
    /// unshared, so its first change copies an order leaf, never a map chunk. Such a view
    /// answers no score lookups; it is only walked.
    pub fn snapshot_view(&self) -> Option<NativeEntry> {
        match &self.value {
            Native::ZSet(z) => Some(NativeEntry {
                key: self.key.clone(),
                hints: self.hints.clone(),
                value: Native::ZSet(ZSetNative {
                    dict: ChunkMap::new(),
                    order: z.order.clone(),
                }),
            }),
            _ => None,
        }
    }
}

impl Native {
    pub fn len(&self) -> usize {
        match self {
            Native::Set(m) => m.len(),
            Native::Hash(m) => m.len(),
            Native::ZSet(z) => z.len(),
            Native::List(l) => l.len(),
            Native::Stream(s) => s.log.len(),
        }
    }

    /// Whether the key goes away: an emptied collection does, a stream never (the servers
    /// keep a stream without entries).
    pub fn is_empty(&self) -> bool {
        !matches!(self, Native::Stream(_)) && self.len() == 0
    }

    /// The RDB type of the master's encoding of such a value.
    pub fn rdb_type(&self) -> u8 {
        match self {
            Native::Set(_) => SET,
            Native::Hash(_) => HASH,
            Native::ZSet(_) => ZSET_2,
            Native::List(_) => LIST_QUICKLIST_2,
            Native::Stream(_) => STREAM_LISTPACKS_3,
        }
    }

    /// The decoded value (lists in order; sorted sets from the lowest score).
    pub fn to_value(&self) -> Value {
        match self {
            Native::Set(m) => Value::Set(m.iter().map(|x| x.0.to_vec()).collect()),
            Native::Hash(m) => Value::Hash(
                m.iter()
                    .map(|r| HashField {
                        field: r.field().to_vec(),
                        value: r.value().to_vec(),
                        expire_ms: r.ttl(),
                    })
                    .collect(),
            ),
            Native::ZSet(z) => {
                Value::SortedSet(z.order().iter().map(|(s, m)| (m.to_vec(), s)).collect())
            }
            Native::List(l) => Value::List(l.iter().map(<[u8]>::to_vec).collect()),
            Native::Stream(s) => Value::Stream(Box::new(s.to_stream())),
        }
    }

    /// The native form of `v` if it is a collection big enough to be held natively;
    /// `plain_zset`: the master holds a sorted set as a skiplist (it keeps -0).
    pub fn from_value(v: &Value, plain_zset: bool) -> Option<Native> {
        if is_big(v, plain_zset) {
            Native::from_value_any(v)
        } else {
            None
        }
    }

    /// Like [`Native::from_value`], consuming the value: each element is moved (sets) or
    /// copied and freed at once, so a big value loaded from a file is never held twice.
    /// `Err` gives the value back when it is not held natively.
    pub fn from_value_owned(v: Value, plain_zset: bool) -> Result<Native, Value> {
        if !is_big(&v, plain_zset) {
            return Err(v);
        }
        Ok(match v {
            Value::Set(m) => {
                let mut s = ChunkMap::new();
                for x in m {
                    s.insert(Member(Thin::new(&x)));
                }
                Native::Set(s)
            }
            Value::Hash(f) => {
                let mut h = ChunkMap::new();
                for x in f {
                    h.insert(HashRec::new(&x.field, &x.value, x.expire_ms));
                }
                Native::Hash(h)
            }
            Value::SortedSet(p) => {
                let mut z = ZSetNative::default();
                for (m, s) in p {
                    z.set(&m, s);
                }
                Native::ZSet(z)
            }
            Value::List(l) => {
                let mut n = ChunkList::default();
                for x in l {
                    n.push_back(&x);
                }
                Native::List(n)
            }
            Value::Stream(s) => Native::Stream(Box::new(
                StreamNative::from_stream(s).map_err(Value::Stream)?,
            )),
            other => return Err(other),
        })
    }

    /// The native form of any set, hash, sorted set (taken as a skiplist) or list.
    pub fn from_value_any(v: &Value) -> Option<Native> {
        Some(match v {
            Value::Set(m) => {
                let mut s = ChunkMap::new();
                for x in m {
                    s.insert(Member(x.as_slice().into()));
                }
                Native::Set(s)
            }
            Value::Hash(f) => {
                let mut h = ChunkMap::new();
                for x in f {
                    h.insert(HashRec::new(&x.field, &x.value, x.expire_ms));
                }
                Native::Hash(h)
            }
            Value::SortedSet(p) => {
                let mut z = ZSetNative::default();
                for (m, s) in p {
                    z.set(m, *s);
                }
                Native::ZSet(z)
            }
            Value::List(l) => {
                let mut n = ChunkList::default();
                for x in l {
                    n.push_back(x);
                }
                Native::List(n)
            }
            Value::Stream(s) => {
                Native::Stream(Box::new(StreamNative::from_stream(s.clone()).ok()?))
            }
            _ => return None,
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Native::Set(_) => Kind::Set,
            Native::Hash(_) => Kind::Hash,
            Native::ZSet(_) => Kind::ZSet,
            Native::List(_) => Kind::List,
            Native::Stream(_) => Kind::Stream,
        }
    }

    /// An empty value of `kind` (for a key a command creates).
    pub fn empty_like(kind: Kind) -> Native {
        match kind {
            Kind::Set => Native::Set(ChunkMap::new()),
            Kind::Hash => Native::Hash(ChunkMap::new()),
            Kind::ZSet => Native::ZSet(ZSetNative::default()),
            Kind::List => Native::List(ChunkList::default()),
            Kind::Stream => Native::Stream(Box::new(StreamNative {
                head: Stream::default(),
                log: StreamLog::default(),
            })),
        }
    }
}

/// The kinds of collection that can be native.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Set,
    Hash,
    ZSet,
    List,
    Stream,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_records_keep_field_value_and_ttl() {
        for (f, v, t) in [
            (&b""[..], &b""[..], None),
            (&b"field"[..], &b"value"[..], Some(123u64)),
            (&b"f"[..], &[0u8; 300][..], Some(u64::MAX)),
            // Field lengths whose LEB128 takes two and three bytes.
            (&[7u8; 128][..], &b"v"[..], None),
            (&[9u8; 20_000][..], &b""[..], Some(1)),
        ] {
            let r = HashRec::new(f, v, t);
            assert_eq!((r.field(), r.value(), r.ttl()), (f, v, t));
        }
    }

    #[test]
    fn a_sorted_sets_snapshot_view_is_its_order_alone() {
        let pairs: Vec<(Vec<u8>, f64)> = (0..5000u32)
            .map(|i| (i.to_string().into_bytes(), f64::from(i % 97)))
            .collect();
        let value = Native::from_value(&Value::SortedSet(pairs), true).unwrap();
        let live = NativeEntry {
            key: b"z".as_slice().into(),
            hints: Hints::default(),
            value,
        };
        let view = live.snapshot_view().unwrap();
        assert_eq!(view.value.len(), live.value.len());
        assert_eq!(view.value.to_value(), live.value.to_value());
        let Native::ZSet(z) = &live.value else {
            panic!()
        };
        assert_eq!(z.dict.shared_chunks(), 0, "a change copies no map chunk");
        assert!(z.order().shared_leaves() > 0, "the order is shared");
        let list = Native::List(ChunkList::default());
        let other = NativeEntry {
            value: list,
            ..live
        };
        assert!(
            other.snapshot_view().is_none(),
            "other values are recorded as they are"
        );
    }

    #[test]
    fn values_round_trip_through_the_native_form() {
        let list: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_string().into_bytes()).collect();
        let v = Value::List(list.clone());
        let n = Native::from_value(&v, true).unwrap();
        assert_eq!(n.to_value(), v);
        assert!(Native::from_value(&Value::List(list[..10].to_vec()), true).is_none());
        let pairs: Vec<(Vec<u8>, f64)> = (0..300u16)
            .map(|i| (i.to_be_bytes().to_vec(), -f64::from(i)))
            .collect();
        let n = Native::from_value(&Value::SortedSet(pairs.clone()), true).unwrap();
        let Value::SortedSet(back) = n.to_value() else {
            panic!()
        };
        let mut want = pairs;
        want.reverse();
        assert_eq!(back, want);
        assert!(Native::from_value(&Value::SortedSet(want), false).is_none());
    }
}
