//! One restore target's side of a restore: the commands each key becomes for that
//! target's version ([`send_key`]; strings without an expiry gathered into one `MSETNX`
//! on a single server, a collection the target loads as the file holds it sent as is,
//! [`Sink::key_encoded`]), handed to its pipeline ([`super::pipeline`]), its counts and
//! the digest of what was sent to it. A single-server restore has one [`Sink`]; a cluster
//! restore one per target primary, keys routed to them by slot (`super::cluster`).
//!
//! Owns the per-target work, not which target a key goes to. It must never hold more than
//! a few batches of commands per target (bounded channels), and never group keys that may
//! belong to different slots (a cluster refuses such a command).

use std::sync::mpsc::{Receiver, SyncSender};

use super::conn::{encode_bulk, Batch, ConnError, Name, Refused};
use super::pipeline::Pipeline;
use super::plain;
use super::{dump_payload, framing, Framing, RestoreError, RestoreOptions, RestoreSummary};
use crate::digest::ParallelDigest;
use crate::rdb::value::Value;
use crate::rdb::writer::{encode_value, KeyRecord, Target, WriteOptions};
use crate::rdb::KeyEntry;

/// What a target is, learnt before anything is written to it.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub target: Target,
    pub rules: crate::digest::Rules,
    pub version: String,
    /// Keys it held before.
    pub keys: u64,
    /// It answers DEBUG (and the caller wants its digest compared).
    pub digestible: bool,
    pub max_bulk: u64,
    /// `SET … PXAT` (6.2+).
    pub plain_strings: bool,
}

/// Strings without an expiry sent together in one `MSETNX` (`MSET` when replacing):
/// a target spends far less on one command of many keys than on as many `SET`s.
#[derive(Default)]
struct Group {
    /// key, value, key, value, … RESP-encoded.
    tail: Vec<u8>,
    keys: u32,
    first: Vec<u8>,
    db: u64,
}

/// Strings per group at most, and bytes of arguments.
const GROUP_KEYS: u32 = 64;
const GROUP_BYTES: usize = 256 << 10;

/// One target: its pipeline, its counts, the digest of what it was sent.
pub(crate) struct Sink<'o> {
    p: Pipeline<'o>,
    /// Strings waiting to be sent together (`None`: each is sent alone, as on a cluster,
    /// where keys of different slots cannot share a command).
    group: Option<Group>,
    pub s: RestoreSummary,
    digester: Option<ParallelDigest>,
    target: Target,
    /// What the target loads (the types it knows).
    rules: crate::digest::Rules,
    plain_strings: bool,
    replace: bool,
    max_bulk: u64,
    now_ms: i64,
}

impl<'o> Sink<'o> {
    /// `group_strings`: strings may share a command (a single server, not a cluster).
    pub fn new(
        probe: &Probe,
        opts: &'o RestoreOptions,
        tx: SyncSender<Batch>,
        rx: Receiver<Result<Vec<Refused>, ConnError>>,
        now_ms: i64,
        workers: usize,
        group_strings: bool,
    ) -> Self {
        Sink {
            group: (group_strings && probe.plain_strings).then(Group::default),
            p: Pipeline::new(opts, tx, rx),
            s: RestoreSummary {
                target_version: probe.version.clone(),
                ..RestoreSummary::default()
            },
            digester: probe
                .digestible
                .then(|| ParallelDigest::new(probe.rules, now_ms, workers.max(1))),
            target: probe.target,
            rules: probe.rules,
            plain_strings: probe.plain_strings,
            replace: opts.replace || opts.flush,
            max_bulk: probe.max_bulk,
            now_ms,
        }
    }

    /// `FUNCTION LOAD [REPLACE] code`.
    pub fn function(&mut self, code: &[u8]) -> Result<(), RestoreError> {
        let mut args: Vec<&[u8]> = vec![b"FUNCTION", b"LOAD"];
        if self.replace {
            args.push(b"REPLACE");
        }
        args.push(code);
        self.p.push(&mut self.s, &args, None)?;
        self.s.functions += 1;
        Ok(())
    }

    /// Whether `k` is to be sent (its database wanted, `loadable` by a server now); when
    /// it is, its database is selected and it is counted as restored.
    fn admit(&mut self, k: &KeyEntry, loadable: bool) -> Result<bool, RestoreError> {
        let opts = self.p.opts;
        if !opts.dbs.is_empty() && !opts.dbs.contains(&k.db) {
            return Ok(false);
        }
        if !loadable {
            self.s.keys_expired_skipped += 1;
            return Ok(false);
        }
        if self.p.db != Some(k.db) {
            // The strings waiting belong to the database selected before.
            self.flush_group()?;
            self.p.select(&mut self.s, k.db)?;
        }
        self.s.keys_restored += 1;
        Ok(true)
    }

    /// Send a key whose value the reader only framed ([`crate::rdb::Framed::Encoded`]):
    /// a collection the target loads in this encoding goes as it is in the file, in a
    /// `RESTORE` (the target then does what loading the file would: no decoding and
    /// re-encoding here, and a packed blob costs the target a copy where a plain encoding
    /// costs it an allocation per element); anything else is decoded and sent by
    /// [`Self::key`]. Whether a batch went out.
    pub fn key_encoded(
        &mut self,
        mut k: Box<KeyEntry>,
        value_at: u64,
        encoded: Vec<u8>,
    ) -> Result<bool, RestoreError> {
        let ty = k.rdb_type;
        let fits = encoded.len() as u64 + 11 <= self.max_bulk;
        // Not empty either: a target refuses an empty value.
        let Framing::AsIs { elements, encoded } =
            framing(&mut k, value_at, encoded, &self.rules, fits)?
        else {
            return self.key(k);
        };
        let dispatched = self.p.dispatched;
        let expired = matches!(k.expire_ms, Some(t) if t < self.now_ms);
        if !self.admit(&k, elements > 0 && !expired)? {
            return Ok(false);
        }
        let payload = dump_payload(ty, &encoded, self.target.rdb_version);
        self.s.bytes_sent += payload.len() as u64;
        let name = Name {
            db: k.db,
            key: k.key.clone(),
            group: 0,
        };
        let mut failed = None;
        restore_cmd(&k, &payload, self.replace, &mut |args| {
            if failed.is_none() {
                failed = self.p.push(&mut self.s, args, Some(name.clone())).err();
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if let Some(d) = self.digester.as_mut() {
            d.add_framed(k, value_at, encoded)
                .map_err(|e| RestoreError::Source(e.to_string()))?;
        }
        Ok(self.p.dispatched != dispatched)
    }

    /// Send one key (unless filtered out or already expired); whether a batch went out.
    pub fn key(&mut self, k: Box<KeyEntry>) -> Result<bool, RestoreError> {
        let dispatched = self.p.dispatched;
        if !self.admit(&k, k.loadable(self.now_ms))? {
            return Ok(false);
        }
        if self.grouped(&k)? {
            if let Some(d) = self.digester.as_mut() {
                d.add(k).map_err(|e| RestoreError::Source(e.to_string()))?;
            }
            return Ok(self.p.dispatched != dispatched);
        }
        let sent = send_key(
            &mut self.p,
            &mut self.s,
            &k,
            &self.target,
            WriteOptions { compress: false },
            self.plain_strings,
            self.replace,
            self.max_bulk,
        );
        match sent {
            // Refused on this side (it cannot be sent): counted like a target's refusal.
            Err(RestoreError::Key { db, key, what }) if self.p.opts.keep_going => {
                self.s.keys_restored -= 1;
                self.s.keys_failed += 1;
                eprintln!("warning: key {key} (db {db}): {what}");
            }
            other => other?,
        }
        if let Some(d) = self.digester.as_mut() {
            d.add(k).map_err(|e| RestoreError::Source(e.to_string()))?;
        }
        Ok(self.p.dispatched != dispatched)
    }

    /// Add `k` to the group of strings when it is a string that can go there (no expiry,
    /// no LRU/LFU hint, no metadata, not too long); whether it went.
    fn grouped(&mut self, k: &KeyEntry) -> Result<bool, RestoreError> {
        let Some(g) = self.group.as_mut() else {
            return Ok(false);
        };
        let Value::String(v) = &k.value else {
            return Ok(false);
        };
        if k.expire_ms.is_some()
            || k.idle.is_some()
            || k.freq.is_some()
            || !k.meta.is_empty()
            || v.len() as u64 > self.max_bulk
            || v.len() > GROUP_BYTES
        {
            return Ok(false);
        }
        if g.keys == 0 {
            g.first.clone_from(&k.key);
            g.db = k.db;
        }
        encode_bulk(&k.key, &mut g.tail);
        encode_bulk(v, &mut g.tail);
        g.keys += 1;
        self.s.bytes_sent += (k.key.len() + v.len()) as u64;
        if g.keys >= GROUP_KEYS || g.tail.len() >= GROUP_BYTES {
            self.flush_group()?;
        }
        Ok(true)
    }

    /// Send the strings waiting, as one command.
    fn flush_group(&mut self) -> Result<(), RestoreError> {
        let Some(g) = self.group.as_mut().filter(|g| g.keys > 0) else {
            return Ok(());
        };
        let head: &[u8] = if self.replace { b"MSET" } else { b"MSETNX" };
        let name = Name {
            db: g.db,
            key: std::mem::take(&mut g.first),
            group: g.keys,
        };
        let r = self.p.push_group(&mut self.s, head, &g.tail, name);
        g.tail.clear();
        g.keys = 0;
        r
    }

    /// Send what is left, wait for every reply; the summary with the digest of what was sent.
    pub fn finish(mut self) -> Result<RestoreSummary, RestoreError> {
        let flushed = self.flush_group();
        let waited = self.p.wait_all(&mut self.s);
        flushed?;
        waited?;
        if let Some(d) = self.digester {
            let d = d
                .finish()
                .map_err(|e| RestoreError::Source(e.to_string()))?;
            self.s.digest_sent = Some(crate::digest::mix::hex(&d.finish()));
        }
        Ok(self.s)
    }
}

/// The commands for one key: `SET` for a plain string, `RESTORE` of a DUMP payload when it
/// fits the target's limit, else the value rebuilt in chunks.
#[allow(clippy::too_many_arguments)]
fn send_key(
    p: &mut Pipeline<'_>,
    s: &mut RestoreSummary,
    k: &KeyEntry,
    target: &Target,
    wopts: WriteOptions,
    plain_strings: bool,
    replace: bool,
    max_bulk: u64,
) -> Result<(), RestoreError> {
    let key_err = |what: String| RestoreError::Key {
        db: k.db,
        key: crate::rdb::error::escape_key(&k.key),
        what,
    };
    let name = || {
        Some(Name {
            db: k.db,
            key: k.key.clone(),
            group: 0,
        })
    };
    let mut failed = None;
    let mut emit = |args: &[&[u8]]| {
        if failed.is_none() {
            s.bytes_sent += args.iter().map(|a| a.len() as u64).sum::<u64>();
            if let Err(e) = p.push(s, args, name()) {
                failed = Some(e);
            }
        }
    };
    if let Value::String(v) = &k.value {
        let plain = plain_strings && k.idle.is_none() && k.freq.is_none() && k.meta.is_empty();
        if plain && v.len() as u64 <= max_bulk {
            plain::set_string(&k.key, v, k.expire_ms, replace, &mut emit);
            return failed.map_or(Ok(()), Err);
        }
    }
    let rec = KeyRecord::from(k);
    let (ty, value) = encode_value(&rec, target, wopts).map_err(|e| key_err(e.to_string()))?;
    if value.len() as u64 + 11 > max_bulk {
        drop(value);
        plain::rebuild(&k.key, &k.value, k.expire_ms, replace, max_bulk, &mut emit)
            .map_err(|e| key_err(e.to_string()))?;
        return failed.map_or(Ok(()), Err);
    }
    let payload = dump_payload(ty, &value, target.rdb_version);
    drop(value);
    restore_cmd(k, &payload, replace, &mut emit);
    failed.map_or(Ok(()), Err)
}

/// `RESTORE key ttl payload [ABSTTL] [REPLACE] [IDLETIME s | FREQ f]` for `k`.
fn restore_cmd(k: &KeyEntry, payload: &[u8], replace: bool, emit: &mut dyn FnMut(&[&[u8]])) {
    let ttl = k.expire_ms.unwrap_or(0).to_string();
    let mut args: Vec<&[u8]> = vec![b"RESTORE", &k.key, ttl.as_bytes(), payload];
    if k.expire_ms.is_some() {
        args.push(b"ABSTTL");
    }
    if replace {
        args.push(b"REPLACE");
    }
    let idle = k.idle.map(|i| i.to_string());
    let freq = k.freq.map(|f| f.to_string());
    if let Some(i) = &idle {
        args.extend([&b"IDLETIME"[..], i.as_bytes()]);
    } else if let Some(f) = &freq {
        args.extend([&b"FREQ"[..], f.as_bytes()]);
    }
    emit(&args);
}
