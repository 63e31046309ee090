//! The dataset digest being built, key by key in any order: per database, the xor of its
//! keys' digests; [`DatasetDigest::finish`] mixes them in database order as the servers do.
//! It must never depend on the order keys arrive in. Imports the arithmetic and the
//! per-key digest, nothing that imports it.

use std::collections::BTreeMap;

use crate::rdb::{KeyEntry, Value};

use super::error::DigestError;
use super::mix::{self, Acc, KNOWN};
use super::sha1x::{rehash_batch, sha1_batch};
use super::target::Rules;
use super::value;

/// Keys hashed side by side by [`DatasetDigest::add_batch`].
const GROUP: usize = 32;

/// The dataset digest being built: per database, the xor of its keys' hashed digests.
#[derive(Debug, Clone)]
pub struct DatasetDigest {
    rules: Rules,
    now_ms: i64,
    dbs: BTreeMap<u64, (Acc, u64)>,
    dropped: u64,
}

/// A key's digest but for the expiry mark, computed elsewhere ([`DatasetDigest::add_bodies`]).
pub struct Body<'a> {
    pub db: u64,
    pub expire_ms: Option<i64>,
    /// Where the key is in the file (for an error).
    pub offset: u64,
    pub name: &'a [u8],
    /// `None`: an empty collection, which the server drops.
    pub acc: Option<Acc>,
}

impl<'a> Body<'a> {
    pub fn of(entry: &'a KeyEntry, acc: Option<Acc>) -> Self {
        Body {
            db: entry.db,
            expire_ms: entry.expire_ms,
            offset: entry.offset,
            name: &entry.key,
            acc,
        }
    }
}

impl DatasetDigest {
    pub fn new(rules: Rules, now_ms: i64) -> Self {
        DatasetDigest {
            rules,
            now_ms,
            dbs: BTreeMap::new(),
            dropped: 0,
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Fold in one key's digest computed elsewhere (`None`: the server drops the key).
    pub fn add_digest(&mut self, db: u64, key: &[u8], d: Option<Acc>) -> Result<(), DigestError> {
        if db >= self.rules.databases {
            return Err(DigestError::CannotLoad(format!(
                "key {} is in db {db}, but the server has {} databases (its `databases` setting)",
                key.escape_ascii(),
                self.rules.databases
            )));
        }
        match d {
            Some(d) => {
                let slot = self.dbs.entry(db).or_insert(([0u8; 20], 0));
                mix::xor_in(&mut slot.0, &d);
                slot.1 += 1;
            }
            None => self.dropped += 1,
        }
        Ok(())
    }

    /// Fold in keys whose digests but for the expiry mark were computed elsewhere, in file
    /// order: the first key in a database the server does not have is the error, at its
    /// offset.
    pub fn add_bodies<'a>(
        &mut self,
        bodies: impl IntoIterator<Item = Body<'a>>,
    ) -> Result<(), (u64, DigestError)> {
        let mut kept = Vec::new();
        let mut accs = Vec::new();
        for b in bodies {
            self.check_db_of(b.db, b.name).map_err(|e| (b.offset, e))?;
            let expired = matches!(b.expire_ms, Some(t) if t < self.now_ms);
            match b.acc {
                Some(mut acc) if !expired => {
                    if b.expire_ms.is_some() {
                        mix::xor_raw(&mut acc, &KNOWN.expire_mark);
                    }
                    kept.push(b.db);
                    accs.push(acc);
                }
                _ => self.dropped += 1,
            }
        }
        // xor_in(db, key digest) hashes the key's digest first: side by side.
        rehash_batch(&mut accs);
        for (db, a) in kept.into_iter().zip(&accs) {
            let slot = self.dbs.entry(db).or_insert(([0u8; 20], 0));
            mix::xor_raw(&mut slot.0, a);
            slot.1 += 1;
        }
        Ok(())
    }

    /// Fold in one key's hashed digest (what [`Self::add_batch_with`] reported for it).
    pub fn add_hashed(&mut self, db: u64, key: &[u8], hashed: &Acc) -> Result<(), DigestError> {
        if db >= self.rules.databases {
            return self.add_digest(db, key, None);
        }
        let slot = self.dbs.entry(db).or_insert(([0u8; 20], 0));
        mix::xor_raw(&mut slot.0, hashed);
        slot.1 += 1;
        Ok(())
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    fn check_db(&self, entry: &KeyEntry) -> Result<(), DigestError> {
        self.check_db_of(entry.db, &entry.key)
    }

    fn check_db_of(&self, db: u64, key: &[u8]) -> Result<(), DigestError> {
        if db >= self.rules.databases {
            return Err(DigestError::CannotLoad(format!(
                "key {} is in db {db}, but the server has {} databases (its `databases` setting)",
                key.escape_ascii(),
                self.rules.databases
            )));
        }
        Ok(())
    }

    /// Fold in one key (in any order: the per-database sum is an xor).
    pub fn add(&mut self, entry: &KeyEntry) -> Result<(), DigestError> {
        self.check_db(entry)?;
        let d = value::key_digest(&self.rules, entry, self.now_ms)?;
        self.add_digest(entry.db, &entry.key, d)
    }

    /// Fold in keys as [`Self::add`] does one by one, with the independent hashes of
    /// several keys computed side by side. On an error, the key that failed (its file
    /// offset) is the first in `keys` that cannot load, as one by one.
    pub fn add_batch(&mut self, keys: &[Box<KeyEntry>]) -> Result<(), (u64, DigestError)> {
        self.add_batch_with(keys, &mut |_, _| {})
    }

    /// [`Self::add_batch`], telling `hashed` the hashed digest of each string or
    /// collection key that counts (its index in `keys`): what [`Self::add_hashed`] takes.
    pub fn add_batch_with(
        &mut self,
        keys: &[Box<KeyEntry>],
        hashed: &mut dyn FnMut(usize, &Acc),
    ) -> Result<(), (u64, DigestError)> {
        for (g, group) in keys.chunks(GROUP).enumerate() {
            self.add_group(group, &mut |i, a| hashed(g * GROUP + i, a))?;
        }
        Ok(())
    }

    fn add_group(
        &mut self,
        keys: &[Box<KeyEntry>],
        hashed: &mut dyn FnMut(usize, &Acc),
    ) -> Result<(), (u64, DigestError)> {
        // The keys that count, in file order. Values whose digest can fail (or is rare)
        // are digested on their own right here, so errors come in file order.
        let mut kept = [0usize; GROUP];
        let mut n = 0;
        for (i, k) in keys.iter().enumerate() {
            let fail = |e| (k.offset, e);
            self.check_db(k).map_err(fail)?;
            match k.value {
                Value::String(_)
                | Value::List(_)
                | Value::Set(_)
                | Value::SortedSet(_)
                | Value::Hash(_)
                | Value::Stream(_) => {
                    if value::kept(&self.rules, k, self.now_ms) {
                        kept[n] = i;
                        n += 1;
                    } else {
                        self.dropped += 1;
                    }
                }
                _ => {
                    let d = value::key_digest(&self.rules, k, self.now_ms).map_err(fail)?;
                    self.add_digest(k.db, &k.key, d).map_err(fail)?;
                }
            }
        }
        let kept = &kept[..n];
        // mix_in(0, name) = SHA1(SHA1(name)).
        let mut acc = [[0u8; 20]; GROUP];
        let mut msgs: [&[u8]; GROUP] = [&[]; GROUP];
        for (m, &i) in msgs.iter_mut().zip(kept) {
            *m = &keys[i].key;
        }
        sha1_batch(&msgs[..n], &mut acc[..n]);
        rehash_batch(&mut acc[..n]);
        // Strings side by side: the type, then the value.
        let mut strings = [0usize; GROUP];
        let mut ns = 0;
        for (j, &i) in kept.iter().enumerate() {
            if let Value::String(v) = &keys[i].value {
                strings[ns] = j;
                msgs[ns] = v;
                ns += 1;
            }
        }
        let mut sacc = [[0u8; 20]; GROUP];
        for (s, &j) in sacc.iter_mut().zip(&strings[..ns]) {
            *s = acc[j];
            mix::xor_raw(s, &KNOWN.obj_type[super::elements::OBJ_STRING as usize]);
        }
        rehash_batch(&mut sacc[..ns]);
        let mut hv = [[0u8; 20]; GROUP];
        sha1_batch(&msgs[..ns], &mut hv[..ns]);
        for (s, h) in sacc.iter_mut().zip(&hv[..ns]) {
            mix::xor_raw(s, h);
        }
        rehash_batch(&mut sacc[..ns]);
        for (s, &j) in sacc.iter().zip(&strings[..ns]) {
            acc[j] = *s;
        }
        // Collections one by one (their elements are hashed side by side).
        for (a, &i) in acc.iter_mut().zip(kept) {
            let k = &keys[i];
            if !matches!(k.value, Value::String(_)) {
                value::body(a, &self.rules, k, self.now_ms).map_err(|e| (k.offset, e))?;
            }
            if k.expire_ms.is_some() {
                mix::xor_raw(a, &KNOWN.expire_mark);
            }
        }
        // xor_in(db, key digest) hashes the key's digest first.
        rehash_batch(&mut acc[..n]);
        for (a, &i) in acc.iter().zip(kept) {
            let slot = self.dbs.entry(keys[i].db).or_insert(([0u8; 20], 0));
            mix::xor_raw(&mut slot.0, a);
            slot.1 += 1;
            hashed(i, a);
        }
        Ok(())
    }

    /// The digest of everything added: for each database that holds keys, in ascending
    /// order, the db number is mixed into the running result and the database's xor of
    /// key digests is xored onto it. Nothing at all gives twenty zero bytes.
    pub fn finish(&self) -> Acc {
        let mut out = [0u8; 20];
        for (&db, (sum, n)) in &self.dbs {
            if *n == 0 {
                continue;
            }
            mix::mix_in(&mut out, &(db as u32).to_be_bytes());
            mix::xor_raw(&mut out, sum);
        }
        out
    }

    pub fn keys(&self) -> u64 {
        self.dbs.values().map(|(_, n)| n).sum()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Fold in what another digest of the same rules and time collected (keys of the same
    /// dataset added elsewhere): per-database xors are xored, counts added.
    pub fn merge(&mut self, other: DatasetDigest) {
        for (db, (sum, n)) in other.dbs {
            let slot = self.dbs.entry(db).or_insert(([0u8; 20], 0));
            mix::xor_raw(&mut slot.0, &sum);
            slot.1 += n;
        }
        self.dropped += other.dropped;
    }
}
