//! One restore target's side of a restore: its pipeline of batches (written by an I/O
//! thread, [`io_loop`], up to [`IN_FLIGHT`] ahead of their replies), the commands each key
//! becomes for that target's version ([`send_key`]), its counts and the digest of what was
//! sent to it. A single-server restore has one [`Sink`]; a cluster restore one per target
//! primary, keys routed to them by slot (`super::cluster`).
//!
//! Owns the per-target work, not which target a key goes to. It must never hold more than
//! a few batches of commands per target (bounded channels), never count a refusal twice,
//! and never let `keep_going` pass over a key the target redirected (MOVED/ASK: the slot
//! is served elsewhere, the key would be lost silently).

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError};

use super::conn::{Batch, Conn, ConnError, Name, Refused};
use super::plain;
use super::{dump_payload, RestoreError, RestoreOptions, RestoreSummary};
use crate::digest::ParallelDigest;
use crate::rdb::value::Value;
use crate::rdb::writer::{encode_value, KeyRecord, Target, WriteOptions};
use crate::rdb::KeyEntry;

/// Commands per batch at most, whatever `batch` says, and bytes per batch.
const BATCH_BYTES: usize = 8 << 20;
/// Batches written before their replies are read.
pub(crate) const IN_FLIGHT: usize = 2;

/// The writer side: batches out to the I/O thread, refusals back, counted once per key.
struct Pipeline<'o> {
    opts: &'o RestoreOptions,
    batch: Batch,
    max_cmds: usize,
    tx: Option<SyncSender<Batch>>,
    rx: Receiver<Result<Vec<Refused>, ConnError>>,
    last_failed: Option<Name>,
    dispatched: usize,
    answered: usize,
}

impl Pipeline<'_> {
    fn push(
        &mut self,
        s: &mut RestoreSummary,
        args: &[&[u8]],
        name: Option<Name>,
    ) -> Result<(), RestoreError> {
        self.batch.push(args, name);
        if self.batch.names.len() >= self.max_cmds || self.batch.bytes.len() >= BATCH_BYTES {
            self.dispatch(s)?;
        }
        Ok(())
    }

    fn dispatch(&mut self, s: &mut RestoreSummary) -> Result<(), RestoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let b = std::mem::take(&mut self.batch);
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(b).is_ok());
        if !sent {
            // The I/O thread stopped: its error is waiting.
            return self.wait_all(s);
        }
        self.dispatched += 1;
        while let Ok(r) = self.rx.try_recv() {
            self.answered += 1;
            self.count(s, r)?;
        }
        Ok(())
    }

    fn count(
        &mut self,
        s: &mut RestoreSummary,
        r: Result<Vec<Refused>, ConnError>,
    ) -> Result<(), RestoreError> {
        for Refused { name, error } in r? {
            if self.last_failed.as_ref() != Some(&name) {
                s.keys_failed += 1;
                s.keys_restored -= 1;
            }
            let key = crate::rdb::error::escape_key(&name.key);
            if error.starts_with("MOVED ") || error.starts_with("ASK ") {
                // The slot is served elsewhere now: never counted away by keep_going.
                return Err(RestoreError::Moved {
                    db: name.db,
                    key,
                    what: error,
                });
            }
            if !self.opts.keep_going {
                return Err(RestoreError::Key {
                    db: name.db,
                    key,
                    what: error,
                });
            }
            eprintln!("warning: key {key} (db {}): {error}", name.db);
            self.last_failed = Some(name);
        }
        Ok(())
    }

    /// Send what is left and wait for every reply.
    fn wait_all(&mut self, s: &mut RestoreSummary) -> Result<(), RestoreError> {
        if !self.batch.is_empty() {
            let b = std::mem::take(&mut self.batch);
            if self.tx.as_ref().is_some_and(|tx| tx.send(b).is_ok()) {
                self.dispatched += 1;
            }
        }
        self.tx = None;
        while self.answered < self.dispatched {
            let Ok(r) = self.rx.recv() else { break };
            self.answered += 1;
            self.count(s, r)?;
        }
        // An I/O error after the last batch it took.
        if let Ok(r) = self.rx.try_recv() {
            self.count(s, r)?;
        }
        Ok(())
    }
}

/// The I/O thread: writes up to [`IN_FLIGHT`] batches ahead of their replies, so the
/// target never waits for the next batch while this side reads the last one's replies.
pub(crate) fn io_loop(
    conn: &mut Conn,
    rx: Receiver<Batch>,
    tx: Sender<Result<Vec<Refused>, ConnError>>,
) {
    let mut inflight: VecDeque<Vec<Option<Name>>> = VecDeque::new();
    let mut open = true;
    loop {
        while open && inflight.len() < IN_FLIGHT {
            let b = if inflight.is_empty() {
                match rx.recv() {
                    Ok(b) => b,
                    Err(_) => {
                        open = false;
                        break;
                    }
                }
            } else {
                match rx.try_recv() {
                    Ok(b) => b,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            };
            if let Err(e) = conn.write_batch(&b) {
                let _ = tx.send(Err(e));
                return;
            }
            inflight.push_back(b.names);
        }
        let Some(names) = inflight.pop_front() else {
            return;
        };
        let r = conn.read_replies(names);
        let failed = r.is_err();
        if tx.send(r).is_err() || failed {
            return;
        }
    }
}

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

/// One target: its pipeline, its counts, the digest of what it was sent.
pub(crate) struct Sink<'o> {
    p: Pipeline<'o>,
    pub s: RestoreSummary,
    digester: Option<ParallelDigest>,
    target: Target,
    plain_strings: bool,
    replace: bool,
    max_bulk: u64,
    now_ms: i64,
    db_selected: Option<u64>,
}

impl<'o> Sink<'o> {
    pub fn new(
        probe: &Probe,
        opts: &'o RestoreOptions,
        tx: SyncSender<Batch>,
        rx: Receiver<Result<Vec<Refused>, ConnError>>,
        now_ms: i64,
        workers: usize,
    ) -> Self {
        Sink {
            p: Pipeline {
                opts,
                batch: Batch::default(),
                max_cmds: opts.batch.max(1),
                tx: Some(tx),
                rx,
                last_failed: None,
                dispatched: 0,
                answered: 0,
            },
            s: RestoreSummary {
                target_version: probe.version.clone(),
                ..RestoreSummary::default()
            },
            digester: probe
                .digestible
                .then(|| ParallelDigest::new(probe.rules, now_ms, workers.max(1))),
            target: probe.target,
            plain_strings: probe.plain_strings,
            replace: opts.replace || opts.flush,
            max_bulk: probe.max_bulk,
            now_ms,
            db_selected: None,
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

    /// Send one key (unless filtered out or already expired); whether a batch went out.
    pub fn key(&mut self, k: Box<KeyEntry>) -> Result<bool, RestoreError> {
        let opts = self.p.opts;
        if !opts.dbs.is_empty() && !opts.dbs.contains(&k.db) {
            return Ok(false);
        }
        if !k.loadable(self.now_ms) {
            self.s.keys_expired_skipped += 1;
            return Ok(false);
        }
        let dispatched = self.p.dispatched;
        if self.db_selected != Some(k.db) {
            let db = k.db.to_string();
            self.p
                .push(&mut self.s, &[b"SELECT", db.as_bytes()], None)?;
            self.db_selected = Some(k.db);
        }
        self.s.keys_restored += 1;
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
            Err(RestoreError::Key { db, key, what }) if opts.keep_going => {
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

    /// Send what is left, wait for every reply; the summary with the digest of what was sent.
    pub fn finish(mut self) -> Result<RestoreSummary, RestoreError> {
        self.p.wait_all(&mut self.s)?;
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
    let ttl = k.expire_ms.unwrap_or(0).to_string();
    let mut args: Vec<&[u8]> = vec![b"RESTORE", &k.key, ttl.as_bytes(), &payload];
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
    failed.map_or(Ok(()), Err)
}
