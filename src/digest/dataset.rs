//! The dataset digest being built, key by key in any order: per database, the xor of its
//! keys' digests; [`DatasetDigest::finish`] mixes them in database order as the servers do.
//! It must never depend on the order keys arrive in. Imports the arithmetic and the
//! per-key digest, nothing that imports it.

use std::collections::BTreeMap;

use crate::rdb::KeyEntry;

use super::error::DigestError;
use super::mix::{self, Acc};
use super::target::Rules;
use super::value;

/// The dataset digest being built: per database, the xor of its keys' hashed digests.
#[derive(Debug, Clone)]
pub struct DatasetDigest {
    rules: Rules,
    now_ms: i64,
    dbs: BTreeMap<u64, (Acc, u64)>,
    dropped: u64,
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

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Fold in one key (in any order: the per-database sum is an xor).
    pub fn add(&mut self, entry: &KeyEntry) -> Result<(), DigestError> {
        if entry.db >= self.rules.databases {
            return Err(DigestError::CannotLoad(format!(
                "key {} is in db {}, but the server has {} databases (its `databases` setting)",
                entry.key.escape_ascii(),
                entry.db,
                self.rules.databases
            )));
        }
        match value::key_digest(&self.rules, entry, self.now_ms)? {
            Some(d) => {
                let slot = self.dbs.entry(entry.db).or_insert(([0u8; 20], 0));
                mix::xor_in(&mut slot.0, &d);
                slot.1 += 1;
            }
            None => self.dropped += 1,
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
