//! The decoded form of one RDB value: what the file says, independent of how it was packed.
//!
//! Owns the data model the reader hands out (and a later writer takes in). It keeps every
//! fact the format carries that a faithful rewrite or a digest needs: hash field TTLs,
//! stream metadata and consumer groups, module payloads byte for byte. It must never drop
//! such a fact for convenience.

/// A stream entry or consumer-group position: milliseconds and sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub fn from_be_bytes(b: &[u8; 16]) -> Self {
        let mut ms = [0u8; 8];
        let mut seq = [0u8; 8];
        ms.copy_from_slice(&b[..8]);
        seq.copy_from_slice(&b[8..]);
        StreamId {
            ms: u64::from_be_bytes(ms),
            seq: u64::from_be_bytes(seq),
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One hash field, with its own expiry (absolute Unix ms) where the format carries one.
#[derive(Debug, Clone, PartialEq)]
pub struct HashField {
    pub field: Vec<u8>,
    pub value: Vec<u8>,
    pub expire_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    pub id: StreamId,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl StreamEntry {
    pub fn view(&self) -> EntryRef<'_> {
        EntryRef {
            id: self.id,
            fields: self.fields.iter().map(|(f, v)| (&f[..], &v[..])).collect(),
        }
    }
}

/// A stream entry borrowed from wherever it is held (a decoded stream or a native one).
#[derive(Debug, Clone, PartialEq)]
pub struct EntryRef<'a> {
    pub id: StreamId,
    pub fields: Vec<(&'a [u8], &'a [u8])>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PendingEntry {
    pub id: StreamId,
    pub delivery_time_ms: i64,
    pub delivery_count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Consumer {
    pub name: Vec<u8>,
    pub seen_time_ms: i64,
    /// Last successful read or claim (stream format 3 and later).
    pub active_time_ms: Option<i64>,
    /// IDs this consumer owns in the group's PEL.
    pub pending: Vec<StreamId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerGroup {
    pub name: Vec<u8>,
    pub last_id: StreamId,
    /// Logical read counter (format 2+); `None` in format 1 files. The server's
    /// "invalid" marker (-1) is kept as `Some(-1)`.
    pub entries_read: Option<i64>,
    pub pending: Vec<PendingEntry>,
    pub consumers: Vec<Consumer>,
    /// Format 5 (Redis 8.8+): pending IDs no consumer owns (the "NACK zone").
    pub unowned: Option<Vec<StreamId>>,
}

/// Redis 8.6+ idempotent-producer state (stream format 4 and later).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamIdmp {
    pub duration_s: u64,
    pub max_entries: u64,
    pub producers: Vec<IdmpProducer>,
    pub iids_added: u64,
    pub iids_duplicates: u64,
}

/// One producer's recent idempotency ids, oldest first, with the entry each produced.
#[derive(Debug, Clone, PartialEq)]
pub struct IdmpProducer {
    pub id: Vec<u8>,
    pub entries: Vec<(Vec<u8>, StreamId)>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stream {
    /// Live (not deleted) entries in ID order.
    pub entries: Vec<StreamEntry>,
    /// The length the file declares.
    pub length: u64,
    pub last_id: StreamId,
    /// Format 2+ metadata; `None` for format 1 files.
    pub first_id: Option<StreamId>,
    pub max_deleted_id: Option<StreamId>,
    pub entries_added: Option<u64>,
    pub groups: Vec<ConsumerGroup>,
    /// Format 4 (Redis 8.6+) only.
    pub idmp: Option<StreamIdmp>,
}

/// A module value (type 7), kept opaque and exact.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleValue {
    pub module_id: u64,
    /// The bytes after the type byte up to and including the payload's EOF marker: the
    /// module id and the self-describing payload, so it can be written back unchanged.
    pub raw: Vec<u8>,
}

impl ModuleValue {
    /// The 9-character module type name and the encoding version packed in the id.
    pub fn name_and_version(&self) -> (String, u32) {
        module_name(self.module_id)
    }
}

/// Decode a 64-bit module type id: 9 characters of 6 bits each, then a 10-bit version.
pub fn module_name(id: u64) -> (String, u32) {
    const CHARSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut name = String::with_capacity(9);
    for i in 0..9 {
        let c = (id >> (64 - 6 * (i + 1))) & 63;
        name.push(CHARSET[c as usize] as char);
    }
    (name, (id & 1023) as u32)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    /// Members with scores, in the file's order.
    SortedSet(Vec<(Vec<u8>, f64)>),
    Hash(Vec<HashField>),
    Stream(Box<Stream>),
    Module(ModuleValue),
    /// Redis 8.8+ sparse array (type 28).
    Array(Box<SparseArray>),
    /// Redis 8.10 rate-limiter state built with GCRA (type 33): the theoretical arrival time.
    Gcra(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ArrayElem {
    Str(Vec<u8>),
    Int(i64),
    Float(f64),
}

/// A sparse array: present indexes in ascending order, and the insert position if set.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SparseArray {
    /// The index the last ARINSERT used, as the file stores it (the server's next insert
    /// position, ARINFO's `next-insert-index`, is this plus one), or `None` if never set.
    pub insert_idx: Option<u64>,
    pub elems: Vec<(u64, ArrayElem)>,
}

impl Value {
    /// The name `TYPE` answers and `inspect` counts by.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::SortedSet(_) => "zset",
            Value::Hash(_) => "hash",
            Value::Stream(_) => "stream",
            Value::Module(_) => "module",
            Value::Array(_) => "array",
            Value::Gcra(_) => "gcra",
        }
    }

    /// Elements in a collection (0 for strings and modules).
    pub fn len(&self) -> usize {
        match self {
            Value::String(_) | Value::Module(_) | Value::Gcra(_) => 0,
            Value::Array(a) => a.elems.len(),
            Value::List(v) | Value::Set(v) => v.len(),
            Value::SortedSet(v) => v.len(),
            Value::Hash(v) => v.len(),
            Value::Stream(s) => s.entries.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True for a collection a server drops on load because it holds nothing.
    /// Streams are kept even when empty; strings and modules never are "empty".
    pub fn is_empty_collection(&self) -> bool {
        match self {
            Value::List(v) | Value::Set(v) => v.is_empty(),
            Value::SortedSet(v) => v.is_empty(),
            Value::Hash(v) => v.is_empty(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_ids_decode_to_name_and_version() {
        // "hellotype" version 0, packed as the server does.
        const CHARSET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut id = 0u64;
        for c in b"hellotype" {
            id = (id << 6) | CHARSET.iter().position(|x| x == c).unwrap() as u64;
        }
        id = (id << 10) | 3;
        assert_eq!(module_name(id), ("hellotype".to_string(), 3));
    }
}
