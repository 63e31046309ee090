//! Key digests on worker threads: the thread that parses hands keys over in batches (a few
//! MiB of file each, through a bounded channel), each worker folds them into its own
//! [`DatasetDigest`], and the results are merged at the end — the dataset digest is an xor
//! per database, so the order keys are hashed in does not matter.
//!
//! Owns the threads and the order of errors: when keys fail, the one earliest in the file
//! is reported, as a single-threaded pass would report it. It must never hold more than a
//! few batches in flight, and never leave a worker running when it returns.

// Keys come boxed from the reader; unboxing them into batches would copy each one.
#![allow(clippy::vec_box)]

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::rdb::{decode_value, Dialect, KeyEntry, RawKey, Value};

use super::dataset::{Body, DatasetDigest};
use super::error::DigestError;
use super::framed::Col;
use super::mix::Acc;
use super::target::Rules;

/// Keys per batch at most, and file bytes per batch.
const BATCH_KEYS: usize = 512;
const BATCH_BYTES: u64 = 4 << 20;

type Outcome = Result<DatasetDigest, (u64, DigestError)>;

/// A key's value as the caller holds it: its RDB encoding, and a place to remember the
/// key's hashed digest for the next digest of the same value.
pub trait Held: Send {
    /// The value's RDB encoding (the bytes that follow the key in a file).
    fn encoded(&self) -> &[u8];
    /// Remember the key's hashed digest, computed under the rules tagged `tag`.
    fn remember(&self, tag: u32, hashed: &Acc);
}

/// A key's value still in its RDB encoding (`ty` and the value held): the worker decodes
/// it, so the thread that writes the file does not.
pub type Encoded = (u8, Box<dyn Held>);

/// A key on its way to a worker: decoded already (`decode` is `None`) or to be decoded as
/// `decode` says from `held`, which remembers the key's digest when it is not `None`.
struct Pending {
    key: Box<KeyEntry>,
    decode: Option<u8>,
    held: Option<Box<dyn Held>>,
    /// The value as framed by the reader: its offset in the file, and its bytes.
    framed: Option<(u64, Vec<u8>)>,
}

/// What a worker takes at a time: keys, and keys framed into `arena`.
#[derive(Default)]
struct Batch {
    items: Vec<Pending>,
    raws: Vec<RawKey>,
    arena: Vec<u8>,
}

impl Batch {
    fn len(&self) -> usize {
        self.items.len() + self.raws.len()
    }
}

/// An arena kept for the next batch when no bigger than this (one big value's arena is
/// dropped rather than held).
const ARENA_KEPT: usize = 2 * BATCH_BYTES as usize;

/// The earlier of two failures.
fn earliest(
    a: Option<(u64, DigestError)>,
    b: Option<(u64, DigestError)>,
) -> Option<(u64, DigestError)> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// A plain byte buffer as a held value: nothing is remembered.
impl Held for Vec<u8> {
    fn encoded(&self) -> &[u8] {
        self
    }
    fn remember(&self, _: u32, _: &Acc) {}
}

/// Decoded keys as [`DatasetDigest::add_batch`] takes them, and where each key's digest
/// is remembered.
type Decoded = (Vec<Box<KeyEntry>>, Vec<Option<Box<dyn Held>>>);

/// Decode what came encoded, folding into `d` the framed collections digested in place:
/// the rest of the batch, and the earliest key that failed (at its offset) if one did.
fn decoded(batch: Vec<Pending>, d: &mut DatasetDigest) -> (Decoded, Option<(u64, DigestError)>) {
    let mut keys = Vec::with_capacity(batch.len());
    let mut held = Vec::with_capacity(batch.len());
    let mut cols = Vec::new();
    let mut failed = None;
    for p in batch {
        let mut k = p.key;
        if let Some((at, bytes)) = p.framed {
            match super::framed::prepare(&mut k, at, bytes) {
                Ok(None) => {}
                Ok(Some(bytes)) => {
                    cols.push(Col { key: k, at, bytes });
                    continue;
                }
                Err(e) => {
                    failed = Some((k.offset, DigestError::Read(e)));
                    break;
                }
            }
        }
        if let (Some(ty), Some(h)) = (p.decode, &p.held) {
            match decode_value(ty, h.encoded(), Dialect::Redis) {
                Ok(v) => k.value = v,
                Err(e) => {
                    let e = DigestError::CannotLoad(format!(
                        "key {}: {e}",
                        crate::rdb::error::escape_key(&k.key)
                    ));
                    failed = Some((k.offset, e));
                    break;
                }
            }
        }
        keys.push(k);
        held.push(p.held);
    }
    let (rules, now_ms) = (*d.rules(), d.now_ms());
    let digested = super::framed::collections(cols, &rules, now_ms);
    failed = earliest(
        failed,
        digested.failed.map(|(at, e)| (at, DigestError::Read(e))),
    );
    failed = earliest(
        failed,
        d.add_bodies(digested.bodies.iter().map(|(k, b)| Body::of(k, *b)))
            .err(),
    );
    for k in digested.decoded {
        keys.push(k);
        held.push(None);
    }
    ((keys, held), failed)
}

/// Digest a batch: the earliest error in it, if any, and the batch's arena (emptied) for
/// another.
fn add_pending(
    d: &mut DatasetDigest,
    tag: u32,
    batch: Batch,
) -> (Vec<u8>, Result<(), (u64, DigestError)>) {
    let Batch {
        items,
        raws,
        mut arena,
    } = batch;
    let ((mut keys, mut held), mut failed) = decoded(items, d);
    let (declined, f) = super::raw::add_raw(&arena, &raws, d);
    failed = earliest(failed, f);
    for k in declined {
        keys.push(k);
        held.push(None);
    }
    failed = earliest(failed, add_decoded(d, tag, &keys, &held).err());
    arena.clear();
    (arena, failed.map_or(Ok(()), Err))
}

/// Whether a key's digest is the same at any time it is kept: not so for a hash whose
/// fields have TTLs (the fields that count depend on the time).
fn timeless(v: &Value) -> bool {
    !matches!(v, Value::Hash(fields) if fields.iter().any(|f| f.expire_ms.is_some()))
}

/// Fold in a decoded batch, remembering the digests of the keys that have a place for it.
fn add_decoded(
    d: &mut DatasetDigest,
    tag: u32,
    keys: &[Box<KeyEntry>],
    held: &[Option<Box<dyn Held>>],
) -> Result<(), (u64, DigestError)> {
    d.add_batch_with(keys, &mut |i, hashed| {
        if let Some(h) = &held[i] {
            if timeless(&keys[i].value) {
                h.remember(tag, hashed);
            }
        }
    })
}

/// A dataset digest computed by `workers` threads (none: on the caller's thread).
pub struct ParallelDigest {
    base: DatasetDigest,
    tx: Option<SyncSender<Batch>>,
    workers: Vec<JoinHandle<Outcome>>,
    batch: Batch,
    batch_start: u64,
    /// Arenas the workers are done with.
    spare: Option<Receiver<Vec<u8>>>,
}

/// Workers worth starting here: one per core, at most 4. The caller's thread only parses
/// (a third of the work on a typical file), so on two cores two workers beside it finish
/// sooner than one: the scheduler fills the parser's idle time.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4)
}

/// A worker runs five nice levels below the thread that feeds it (on Linux a thread's
/// own `setpriority`), so that when the machine has fewer cores than threads the reader is
/// the one that runs and the queue stays full: the workers then wait on the reader less.
/// Measured on two cores (`replisnap verify` of the benchmark's file, ten alternating
/// runs each): wall time / CPU time 0.547 → 0.533. Failing to change it changes nothing.
fn yield_to_the_reader() {
    if let Ok(n) = rustix::process::getpriority_process(None) {
        let _ = rustix::process::setpriority_process(None, (n + 5).min(19));
    }
}

fn work(rx: &Mutex<Receiver<Batch>>, spare: &Sender<Vec<u8>>, mut d: DatasetDigest) -> Outcome {
    yield_to_the_reader();
    let tag = d.rules().tag();
    loop {
        let batch = match rx.lock() {
            Ok(g) => g.recv(),
            Err(p) => p.into_inner().recv(),
        };
        let Ok(batch) = batch else { return Ok(d) };
        let (arena, r) = add_pending(&mut d, tag, batch);
        r?;
        if arena.capacity() <= ARENA_KEPT {
            let _ = spare.send(arena);
        }
    }
}

impl ParallelDigest {
    pub fn new(rules: Rules, now_ms: i64, workers: usize) -> Self {
        let base = DatasetDigest::new(rules, now_ms);
        let mut tx = None;
        let mut spare = None;
        let mut handles = Vec::new();
        if workers > 0 {
            let (t, rx) = sync_channel(workers * 2);
            let rx = Arc::new(Mutex::new(rx));
            let (back, spares) = channel();
            for _ in 0..workers {
                let rx = Arc::clone(&rx);
                let back = back.clone();
                let d = DatasetDigest::new(rules, now_ms);
                handles.push(std::thread::spawn(move || work(&rx, &back, d)));
            }
            tx = Some(t);
            spare = Some(spares);
        }
        ParallelDigest {
            base,
            tx,
            workers: handles,
            batch: Batch::default(),
            batch_start: 0,
            spare,
        }
    }

    pub fn rules(&self) -> &Rules {
        self.base.rules()
    }

    /// Fold in one key. An error may belong to an earlier key: it is the earliest known.
    pub fn add(&mut self, k: Box<KeyEntry>) -> Result<(), DigestError> {
        self.push(Pending {
            key: k,
            decode: None,
            held: None,
            framed: None,
        })
    }

    /// A key whose value the reader only framed ([`crate::rdb::Framed::Encoded`]): decoded
    /// by a worker, an error placed in the file by `value_at`.
    pub fn add_framed(
        &mut self,
        k: Box<KeyEntry>,
        value_at: u64,
        encoded: Vec<u8>,
    ) -> Result<(), DigestError> {
        self.push(Pending {
            key: k,
            decode: None,
            held: None,
            framed: Some((value_at, encoded)),
        })
    }

    /// A decoded key whose digest `held` remembers.
    pub fn add_remembered(
        &mut self,
        k: Box<KeyEntry>,
        held: Box<dyn Held>,
    ) -> Result<(), DigestError> {
        self.push(Pending {
            key: k,
            decode: None,
            held: Some(held),
            framed: None,
        })
    }

    /// A key whose value is still encoded (`k.value` is ignored): decoded by a worker,
    /// its digest remembered by the value held.
    pub fn add_encoded(&mut self, k: Box<KeyEntry>, value: Encoded) -> Result<(), DigestError> {
        let (ty, held) = value;
        self.push(Pending {
            key: k,
            decode: Some(ty),
            held: Some(held),
            framed: None,
        })
    }

    /// Fold in a key's hashed digest remembered from an earlier digest under these rules
    /// (`expire_ms`: the key's expiry, checked against this digest's time).
    pub fn add_hashed(
        &mut self,
        db: u64,
        key: &[u8],
        expire_ms: Option<i64>,
        hashed: &super::Acc,
    ) -> Result<(), DigestError> {
        if matches!(expire_ms, Some(t) if t < self.base.now_ms()) {
            self.base.add_digest(db, key, None)
        } else {
            self.base.add_hashed(db, key, hashed)
        }
    }

    /// Where the reader frames the next raw key ([`crate::rdb::RdbReader::next_framed_in`]).
    pub fn arena(&mut self) -> &mut Vec<u8> {
        &mut self.batch.arena
    }

    /// Take over an arena filled before this digest started (it holds the raw keys the
    /// caller is about to add).
    pub fn adopt_arena(&mut self, arena: Vec<u8>) {
        if self.batch.arena.is_empty() {
            self.batch.arena = arena;
        } else {
            self.batch.arena.extend_from_slice(&arena);
        }
    }

    /// A key the reader framed into [`Self::arena`].
    pub fn add_raw(&mut self, k: RawKey) -> Result<(), DigestError> {
        if self.tx.is_none() {
            let tag = self.base.rules().tag();
            let batch = Batch {
                raws: vec![k],
                arena: std::mem::take(&mut self.batch.arena),
                ..Batch::default()
            };
            let (arena, r) = add_pending(&mut self.base, tag, batch);
            self.batch.arena = arena;
            return r.map_err(|(_, e)| e);
        }
        let at = k.offset;
        if self.batch.len() == 0 {
            self.batch_start = at;
        }
        self.batch.raws.push(k);
        self.send_if_full(at)
    }

    fn push(&mut self, p: Pending) -> Result<(), DigestError> {
        if self.tx.is_none() {
            let tag = self.base.rules().tag();
            let batch = Batch {
                items: vec![p],
                ..Batch::default()
            };
            return add_pending(&mut self.base, tag, batch)
                .1
                .map_err(|(_, e)| e);
        }
        let at = p.key.offset;
        if self.batch.len() == 0 {
            self.batch_start = at;
        }
        self.batch.items.push(p);
        self.send_if_full(at)
    }

    /// Hand the batch to the workers once it holds enough (the key just added is at `at`).
    fn send_if_full(&mut self, at: u64) -> Result<(), DigestError> {
        let full = at.saturating_sub(self.batch_start) >= BATCH_BYTES;
        if !(full || self.batch.len() >= BATCH_KEYS) {
            return Ok(());
        }
        let arena = self
            .spare
            .as_ref()
            .and_then(|s| s.try_recv().ok())
            .unwrap_or_default();
        let b = std::mem::replace(
            &mut self.batch,
            Batch {
                arena,
                ..Batch::default()
            },
        );
        if let Some(tx) = &self.tx {
            if tx.send(b).is_err() {
                // Every worker stopped: each on an error.
                let at = self.batch_start;
                return Err(self.stop(at, None));
            }
        }
        Ok(())
    }

    /// Fold in one key's digest computed by the caller (a big value hashed where it is).
    pub fn add_digest(
        &mut self,
        db: u64,
        key: &[u8],
        d: Option<super::Acc>,
    ) -> Result<(), DigestError> {
        self.base.add_digest(db, key, d)
    }

    /// Wait for the workers; `Ok` with everything merged, or the earliest error among
    /// theirs and `own` (found at file offset `at` by the caller).
    fn join(&mut self) -> Vec<(u64, DigestError)> {
        if let Some(tx) = self.tx.take() {
            if self.batch.len() > 0 {
                let _ = tx.send(std::mem::take(&mut self.batch));
            }
        }
        let mut errors = Vec::new();
        for h in self.workers.drain(..) {
            match h.join() {
                Ok(Ok(d)) => self.base.merge(d),
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push((
                    u64::MAX,
                    DigestError::CannotLoad("a digest worker thread panicked".into()),
                )),
            }
        }
        errors
    }

    /// The caller failed at offset `at` (or a worker did): the earliest error of all.
    pub fn stop(&mut self, at: u64, own: Option<DigestError>) -> DigestError {
        let mut errors = self.join();
        if let Some(e) = own {
            errors.push((at, e));
        }
        errors
            .into_iter()
            .min_by_key(|(at, _)| *at)
            .map(|(_, e)| e)
            .unwrap_or_else(|| DigestError::CannotLoad("the digest workers stopped".into()))
    }

    /// Every key added, merged.
    pub fn finish(mut self) -> Result<DatasetDigest, DigestError> {
        let errors = self.join();
        match errors.into_iter().min_by_key(|(at, _)| *at) {
            Some((_, e)) => Err(e),
            None => {
                let empty = DatasetDigest::new(*self.base.rules(), self.base.now_ms());
                Ok(std::mem::replace(&mut self.base, empty))
            }
        }
    }
}

impl Drop for ParallelDigest {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::Value;

    fn key(i: u64, db: u64) -> Box<KeyEntry> {
        Box::new(KeyEntry {
            db,
            key: format!("k{i}").into_bytes(),
            expire_ms: None,
            idle: None,
            freq: None,
            meta: Vec::new(),
            rdb_type: 0,
            value: Value::String(format!("v{i}").into_bytes()),
            offset: i * 10,
        })
    }

    fn rules() -> Rules {
        Rules::for_target("redis-7.0.0".parse().expect("version")).expect("rules")
    }

    #[test]
    fn any_number_of_workers_gives_the_same_digest() {
        let digest = |workers| {
            let mut p = ParallelDigest::new(rules(), 0, workers);
            for i in 0..20_000 {
                p.add(key(i, i % 3)).expect("add");
            }
            let d = p.finish().expect("finish");
            (d.finish(), d.keys())
        };
        let one = digest(0);
        assert_eq!(one.1, 20_000);
        assert_ne!(one.0, [0u8; 20]);
        assert_eq!(digest(1), one);
        assert_eq!(digest(3), one);
    }

    #[test]
    fn encoded_values_give_the_digest_of_decoded_ones() {
        let digest = |workers, encoded: bool| {
            let mut p = ParallelDigest::new(rules(), 0, workers);
            for i in 0..5_000 {
                let k = key(i, 0);
                if encoded {
                    // The RDB string encoding: a 6-bit length, then the bytes.
                    let Value::String(v) = &k.value else {
                        unreachable!()
                    };
                    let mut enc = vec![v.len() as u8];
                    enc.extend_from_slice(v);
                    p.add_encoded(k, (0, Box::new(enc))).expect("add");
                } else {
                    p.add(k).expect("add");
                }
            }
            p.finish().expect("finish").finish()
        };
        let want = digest(0, false);
        for workers in [0, 2] {
            assert_eq!(digest(workers, true), want, "{workers} workers");
        }
        // A value that does not decode is an error naming its key, whoever decodes it.
        for workers in [0, 2] {
            let mut p = ParallelDigest::new(rules(), 0, workers);
            let bad = p.add_encoded(key(7, 0), (0, Box::new(vec![0x3f, b'x'])));
            let e = match bad {
                Err(e) => e,
                Ok(()) => p.finish().expect_err("a truncated string"),
            };
            assert!(e.to_string().contains("k7"), "{workers} workers: {e}");
        }
    }

    #[test]
    fn the_error_reported_is_the_earliest_in_the_file() {
        for workers in [0, 1, 3] {
            let mut p = ParallelDigest::new(rules(), 0, workers);
            let mut err = None;
            for i in 0..20_000 {
                // db 99 does not exist on a default server: the key cannot load.
                let db = if i == 12_345 || i == 4_000 { 99 } else { 0 };
                if let Err(e) = p.add(key(i, db)) {
                    err = Some(e);
                    break;
                }
            }
            let e = match err {
                Some(e) => e,
                None => p.finish().expect_err("an error"),
            };
            assert!(e.to_string().contains("k4000"), "{workers} workers: {e}");
        }
    }
}
