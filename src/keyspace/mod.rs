//! The replica's own dataset: databases of keys, and fork-free snapshots of them.
//!
//! Owns where keys live and how a consistent view is taken while writes go on. Design
//! (measured, docs/decisions.md): every database is split into shards, each a hash table
//! of packed [`Entry`]s behind its own mutex. A snapshot is an epoch bump, O(1) whatever
//! the size. Until the snapshot walker has visited a shard, the first change to a key in
//! it records the key's previous entry ("iterate and record"; a big sorted set without its
//! member map, which a snapshot never reads), so the walker sees each key as it was when
//! the snapshot began, and the extra memory is proportional to what
//! changed. Only the apply thread mutates (`&mut self`); walkers only read.
//!
//! It must never let a walker see a change made after its snapshot began, and never
//! store a value in an encoding it cannot hand back exactly.

mod digest_slot;
mod entry;
pub mod native;
mod rdb;
mod snapshot;
mod varint;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hashbrown::HashTable;

pub use entry::{Entry, Hints, Packed};
pub use native::{Kind, Native, NativeEntry};
pub use rdb::{
    digest_snapshot, digest_snapshot_as_held, digest_snapshot_with, export_snapshot, load_rdb,
    write_snapshot, Exported, LoadReport, RdbIoError,
};
pub use snapshot::Snapshot;

use crate::rdb::value::Value;
use crate::rdb::writer::{encode_value, KeyRecord, Target, WriteError, WriteOptions};
use crate::server_version::{Family, ServerVersion};

/// Shards per database: enough that a shard lock is held briefly (the walker copies one
/// shard's handles at a time), few enough that an empty database stays small.
const SHARDS: usize = 1 << 12;
/// The most shards [`Keyspace::with_shards`] accepts.
const MAX_SHARDS: usize = 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum KeyspaceError {
    #[error("{0}")]
    Encode(#[from] WriteError),
    #[error("stored value of key {key} does not decode: {err}")]
    Corrupt { key: String, err: String },
}

fn hash_key(key: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x5eed).hash_one(key)
}

/// Changes recorded for the snapshot being walked, in a shard the walker has not reached.
struct Record {
    epoch: u64,
    /// Key → its entry when the snapshot began (`None`: it did not exist).
    old: std::collections::HashMap<Box<[u8]>, Option<Entry>>,
}

struct Shard {
    table: HashTable<Entry>,
    /// The last snapshot epoch whose walker has visited this shard.
    walked: u64,
    record: Option<Record>,
}

pub(crate) struct Db {
    shards: Box<[Mutex<Shard>]>,
    keys: AtomicU64,
}

impl Db {
    /// `shards` is a power of two (the shard is picked by masking the hash).
    fn new(shards: usize) -> Db {
        debug_assert!(shards.is_power_of_two());
        Db {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        table: HashTable::new(),
                        walked: 0,
                        record: None,
                    })
                })
                .collect(),
            keys: AtomicU64::new(0),
        }
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        // Bits 32.. pick the shard: the table inside uses the low bits for its bucket and
        // the top 7 for its tags, and both must still vary among one shard's keys.
        let m = &self.shards[((hash >> 32) as usize) & (self.shards.len() - 1)];
        m.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The epoch of the snapshot being walked (0 when none), shared with walkers.
pub(crate) struct SnapState {
    active: AtomicU64,
}

pub struct Keyspace {
    dbs: BTreeMap<u64, Arc<Db>>,
    /// Function libraries (their source code), in load order.
    pub functions: Vec<Vec<u8>>,
    canonical: Target,
    state: Arc<SnapState>,
    last_epoch: u64,
    /// Shards per database (a power of two).
    shards: usize,
}

impl Default for Keyspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Keyspace {
    pub fn new() -> Keyspace {
        Self::with_shards(SHARDS)
    }

    /// A keyspace whose databases have `shards` shards each (rounded up to a power of
    /// two, within 1..=65,536). Fewer shards make an empty database cheaper to create,
    /// flush and walk (tests, the fuzzer); behaviour is otherwise the same.
    pub fn with_shards(shards: usize) -> Keyspace {
        let shards = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        // Values are stored encoded for the newest Redis format, which can hold everything
        // the reader knows (field TTLs, stream IDMP, arrays); snapshots re-encode for older
        // targets where the bytes differ.
        let canonical = Target::for_server(ServerVersion::new(Family::Redis, 8, 10, 0))
            .unwrap_or_else(|_| unreachable!("redis-8.10 is a known target"));
        Keyspace {
            dbs: BTreeMap::new(),
            functions: Vec::new(),
            canonical,
            state: Arc::new(SnapState {
                active: AtomicU64::new(0),
            }),
            last_epoch: 0,
            shards,
        }
    }

    /// Keys in every database.
    pub fn len(&self) -> u64 {
        self.dbs
            .values()
            .map(|d| d.keys.load(Ordering::Relaxed))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (db, keys) for every database that has any.
    pub fn db_counts(&self) -> Vec<(u64, u64)> {
        self.dbs
            .iter()
            .map(|(db, d)| (*db, d.keys.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub fn db_len(&self, db: u64) -> u64 {
        self.dbs
            .get(&db)
            .map_or(0, |d| d.keys.load(Ordering::Relaxed))
    }

    /// Encode a value as the keyspace stores it: natively when it is a big collection
    /// the master holds in its big encoding, packed otherwise.
    pub fn encode(
        &self,
        key: &[u8],
        hints: &Hints,
        value: &Value,
        source_type: Option<u8>,
    ) -> Result<Entry, KeyspaceError> {
        use crate::rdb::types::{ZSET_LISTPACK, ZSET_ZIPLIST};
        let plain_zset = !matches!(source_type, Some(ZSET_ZIPLIST | ZSET_LISTPACK));
        if let Some(n) = Native::from_value(value, plain_zset) {
            return Ok(Entry::native(key, hints.clone(), n));
        }
        let rec = KeyRecord {
            key,
            value,
            expire_ms: hints.expire_ms,
            idle: None,
            freq: None,
            meta: &[],
            source_type,
        };
        let (ty, payload) = encode_value(&rec, &self.canonical, WriteOptions { compress: false })?;
        Ok(Entry::build(key, hints, ty, &payload))
    }

    /// The value of `key`, decoded.
    pub fn get(&self, db: u64, key: &[u8]) -> Result<Option<(Option<i64>, Value)>, KeyspaceError> {
        let Some(d) = self.dbs.get(&db) else {
            return Ok(None);
        };
        let h = hash_key(key);
        let e = d.shard(h).table.find(h, |e| e.key() == key).cloned();
        match e {
            None => Ok(None),
            Some(e) => {
                let v = e.decode().map_err(|err| KeyspaceError::Corrupt {
                    key: crate::rdb::error::escape_key(key),
                    err: err.to_string(),
                })?;
                Ok(Some((e.expire_ms(), v)))
            }
        }
    }

    /// The stored entry of `key` (cheap: a handle, not a decoded value).
    pub fn entry(&self, db: u64, key: &[u8]) -> Option<Entry> {
        let d = self.dbs.get(&db)?;
        let h = hash_key(key);
        d.shard(h).table.find(h, |e| e.key() == key).cloned()
    }

    /// Remove every key of `db` (FLUSHDB). Keys a running snapshot has not reached yet are
    /// recorded first, so the snapshot still sees them.
    pub fn flush_db(&mut self, db: u64) {
        let active = self.state.active.load(Ordering::Acquire);
        let Some(d) = self.dbs.get(&db).cloned() else {
            return;
        };
        for m in d.shards.iter() {
            let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
            if active != 0 && s.walked < active {
                let keys: Vec<(u64, Box<[u8]>)> = s
                    .table
                    .iter()
                    .map(|e| (hash_key(e.key()), e.key().into()))
                    .collect();
                for (h, k) in keys {
                    Self::record_old(&mut s, active, h, &k);
                }
            }
            s.table = HashTable::new();
        }
        d.keys.store(0, Ordering::Relaxed);
    }

    /// Exchange two databases (SWAPDB). A running snapshot keeps the databases it captured
    /// under their old numbers, so it is unaffected.
    pub fn swap_db(&mut self, a: u64, b: u64) {
        let da = self.dbs.remove(&a);
        let dbb = self.dbs.remove(&b);
        if let Some(d) = da {
            self.dbs.insert(b, d);
        }
        if let Some(d) = dbb {
            self.dbs.insert(a, d);
        }
    }

    /// Remove every key of every database (FLUSHALL). Functions stay: the server's
    /// FLUSHALL keeps them too (FUNCTION FLUSH removes them).
    pub fn flush_all(&mut self) {
        let dbs: Vec<u64> = self.dbs.keys().copied().collect();
        for db in dbs {
            self.flush_db(db);
        }
    }

    fn db_mut(&mut self, db: u64) -> &Arc<Db> {
        let shards = self.shards;
        self.dbs
            .entry(db)
            .or_insert_with(|| Arc::new(Db::new(shards)))
    }

    /// Before changing `key` in a locked shard: if a snapshot is being walked and has not
    /// reached this shard, remember what the key was when it began (once per key).
    fn record_old(shard: &mut Shard, active: u64, hash: u64, key: &[u8]) {
        if active == 0 || shard.walked >= active {
            return;
        }
        if shard.record.as_ref().is_none_or(|r| r.epoch != active) {
            shard.record = Some(Record {
                epoch: active,
                old: std::collections::HashMap::new(),
            });
        }
        if shard
            .record
            .as_ref()
            .is_some_and(|r| r.old.contains_key(key))
        {
            return;
        }
        // A big sorted set is recorded without its member map (`snapshot_view`): the live
        // entry stays unshared and its changes copy no map chunk.
        let current = shard.table.find(hash, |e| e.key() == key).map(|e| match e {
            Entry::Native(n) => n
                .snapshot_view()
                .map_or_else(|| e.clone(), |v| Entry::Native(Arc::new(v))),
            Entry::Packed(_) => e.clone(),
        });
        if let Some(rec) = shard.record.as_mut() {
            rec.old.insert(key.into(), current);
        }
    }

    /// Make room for about `keys` more keys in `db` (from an RDB's RESIZEDB hint), so
    /// loading does not rehash every table several times over.
    pub fn reserve(&mut self, db: u64, keys: u64) {
        let d = self.db_mut(db).clone();
        let per_shard = (keys / d.shards.len() as u64 + 1).min(1 << 20) as usize;
        for m in d.shards.iter() {
            let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
            s.table.reserve(per_shard, |e| hash_key(e.key()));
        }
    }

    /// Insert or replace an entry.
    pub fn put(&mut self, db: u64, entry: Entry) {
        let active = self.state.active.load(Ordering::Acquire);
        let d = self.db_mut(db);
        let h = hash_key(entry.key());
        let mut s = d.shard(h);
        Self::record_old(&mut s, active, h, entry.key());
        match s.table.find_mut(h, |e| e.key() == entry.key()) {
            Some(slot) => *slot = entry,
            None => {
                s.table.insert_unique(h, entry, |e| hash_key(e.key()));
                d.keys.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Store a decoded value with only an expiry.
    pub fn set(
        &mut self,
        db: u64,
        key: &[u8],
        expire_ms: Option<i64>,
        value: &Value,
        source_type: Option<u8>,
    ) -> Result<(), KeyspaceError> {
        let hints = Hints {
            expire_ms,
            ..Hints::default()
        };
        self.set_with(db, key, &hints, value, source_type)
    }

    /// Store a decoded value with all its hints (expiry, LRU/LFU, key metadata).
    pub fn set_with(
        &mut self,
        db: u64,
        key: &[u8],
        hints: &Hints,
        value: &Value,
        source_type: Option<u8>,
    ) -> Result<(), KeyspaceError> {
        let e = self.encode(key, hints, value, source_type)?;
        self.put(db, e);
        Ok(())
    }

    /// Change the native value of `key` in place with `f`, if the key holds one (`None`
    /// otherwise: absent or packed). A running snapshot that has not walked the key's
    /// shard keeps the value as it was: the chunks `f` changes are copied, the rest stay
    /// shared. A value left empty deletes the key, as the servers do.
    pub fn with_native<R>(
        &mut self,
        db: u64,
        key: &[u8],
        f: impl FnOnce(&mut Native) -> R,
    ) -> Option<R> {
        let active = self.state.active.load(Ordering::Acquire);
        let d = self.dbs.get(&db)?;
        let h = hash_key(key);
        let mut s = d.shard(h);
        if !matches!(s.table.find(h, |e| e.key() == key), Some(Entry::Native(_))) {
            return None;
        }
        Self::record_old(&mut s, active, h, key);
        let Ok(mut found) = s.table.find_entry(h, |e| e.key() == key) else {
            return None;
        };
        let Entry::Native(arc) = found.get_mut() else {
            return None;
        };
        let ne = Arc::make_mut(arc);
        let r = f(&mut ne.value);
        if ne.value.is_empty() {
            found.remove();
            d.keys.fetch_sub(1, Ordering::Relaxed);
        }
        Some(r)
    }

    /// Store a value it owns with all its hints: a big collection becomes native by moving
    /// its elements, never holding the value twice (a file's keys as they load).
    pub fn set_owned(
        &mut self,
        db: u64,
        key: &[u8],
        hints: Hints,
        value: Value,
        source_type: Option<u8>,
    ) -> Result<(), KeyspaceError> {
        use crate::rdb::types::{ZSET_LISTPACK, ZSET_ZIPLIST};
        let plain_zset = !matches!(source_type, Some(ZSET_ZIPLIST | ZSET_LISTPACK));
        match Native::from_value_owned(value, plain_zset) {
            Ok(n) => self.put(db, Entry::native(key, hints, n)),
            Err(v) => self.set_with(db, key, &hints, &v, source_type)?,
        }
        Ok(())
    }

    /// Delete `key`; true if it existed.
    pub fn remove(&mut self, db: u64, key: &[u8]) -> bool {
        let active = self.state.active.load(Ordering::Acquire);
        let Some(d) = self.dbs.get(&db) else {
            return false;
        };
        let h = hash_key(key);
        let mut s = d.shard(h);
        Self::record_old(&mut s, active, h, key);
        let old = match s.table.find_entry(h, |e| e.key() == key) {
            Ok(occupied) => occupied.remove().0,
            Err(_) => return false,
        };
        d.keys.fetch_sub(1, Ordering::Relaxed);
        // A big value is freed after the shard is unlocked: a walker never waits for it.
        drop(s);
        drop(old);
        true
    }

    /// Take a consistent view as of now. O(1) in the number of keys: the walk happens in
    /// [`Snapshot::walk`], on any thread, while this keyspace goes on changing. `None`
    /// while an earlier snapshot is still being walked: snapshots never overlap.
    pub fn snapshot(&mut self) -> Option<Snapshot> {
        if self.state.active.load(Ordering::Acquire) != 0 {
            return None;
        }
        self.last_epoch += 1;
        let epoch = self.last_epoch;
        // Databases created later are not part of this view: they did not exist yet.
        let dbs: Vec<(u64, Arc<Db>)> = self.dbs.iter().map(|(n, d)| (*n, d.clone())).collect();
        self.state.active.store(epoch, Ordering::Release);
        Some(Snapshot::new(epoch, dbs, self.state.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_two_words_in_the_table() {
        // Both kinds are thin pointers: 16 bytes per key in the table.
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn with_shards_rounds_to_a_power_of_two_within_bounds() {
        for (asked, got) in [
            (0, 1),
            (1, 1),
            (3, 4),
            (8, 8),
            (1 << 16, 1 << 16),
            (usize::MAX, 1 << 16),
        ] {
            let mut ks = Keyspace::with_shards(asked);
            assert_eq!(ks.shards, got, "asked {asked}");
            ks.set(0, b"k", None, &Value::String(b"v".to_vec()), None)
                .unwrap();
            assert_eq!(ks.dbs[&0].shards.len(), got);
            assert_eq!(
                ks.get(0, b"k").unwrap().map(|(_, v)| v),
                Some(Value::String(b"v".to_vec()))
            );
        }
        assert_eq!(Keyspace::new().shards, SHARDS);
    }
}
