//! Putting a snapshot into a live server: every key of an RDB stream sent pipelined, as
//! `RESTORE key ttl payload ABSTTL [REPLACE] [IDLETIME s | FREQ f]` with the payload in the
//! DUMP format of the target's own version (its encodings, its RDB version, CRC-64), or as
//! plain commands where those cost the target less or a payload is too long for it
//! ([`plain`]); each database selected in turn and function libraries loaded first.
//!
//! Owns the restore protocol and its safety rules: a target that holds keys is refused
//! unless the caller asked to replace or flush; keys already expired are not sent; an error
//! reply names the key and stops the restore (or is counted, with `keep_going`). Where the
//! target answers `DEBUG DIGEST`, it computes the digest of exactly what it sent (for the
//! target's version, at the start) so the caller can compare the server's answer.
//!
//! Three threads share the work: this one reads the RDB and encodes commands, one writes
//! batches and reads their replies ([`conn`]), one computes the digest, so reading, the
//! network and the target's work overlap. It must never send a write before the emptiness
//! check, and never hold more than a few batches of commands (bounded channels).

pub mod conn;
pub mod plain;

use std::collections::VecDeque;
use std::io::Read;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

pub use conn::{Batch, Conn, ConnError, Name, Refused, TargetUrl};

use crate::digest::parallel::default_workers;
use crate::digest::{ParallelDigest, Rules};
use crate::rdb::value::Value;
use crate::rdb::writer::{encode_value, KeyRecord, Target, WriteOptions};
use crate::rdb::{Item, KeyEntry, RdbReader};
use crate::replication::tls::TlsSettings;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("{addr} holds {keys} keys; restore into an empty server, or pass --replace (overwrite keys of the same name) or --flush (FLUSHALL first)")]
    NotEmpty { addr: String, keys: u64 },
    #[error("key {key} (db {db}): {what}")]
    Key { db: u64, key: String, what: String },
    #[error("source: {0}")]
    Source(String),
}

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Overwrite keys of the same name (RESTORE … REPLACE); the target may hold keys.
    pub replace: bool,
    /// FLUSHALL the target first.
    pub flush: bool,
    /// Count a refused key and go on instead of stopping.
    pub keep_going: bool,
    /// Commands per pipelined batch.
    pub batch: usize,
    /// Only these databases (empty: all).
    pub dbs: Vec<u64>,
    pub tls: Option<TlsSettings>,
    pub timeout: Duration,
    /// At most this many keys per second (0: as fast as the target takes them).
    pub rate: u64,
    /// Do not compare the target's `DEBUG DIGEST` afterwards (it blocks the target for
    /// as long as hashing its whole dataset takes: minutes for tens of millions of keys).
    pub no_digest: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreSummary {
    pub target_version: String,
    pub keys_restored: u64,
    pub keys_expired_skipped: u64,
    pub keys_failed: u64,
    pub functions: u64,
    pub bytes_sent: u64,
    /// The digest of what was sent, for the target's version; computed only when the
    /// target answers `DEBUG DIGEST`.
    pub digest_sent: Option<String>,
    /// Keys in the target afterwards (all databases).
    pub target_keys: u64,
    /// The target's DEBUG DIGEST afterwards, where it answers it.
    pub target_digest: Option<String>,
    /// Seconds from the first command sent to the last reply read.
    pub send_seconds: f64,
    /// Seconds the checks afterwards took (key count, and the target's DEBUG DIGEST).
    pub check_seconds: f64,
}

/// A DUMP payload: type byte and value, the RDB version (LE u16), CRC-64 of all that.
pub fn dump_payload(ty: u8, value: &[u8], rdb_version: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(value.len() + 11);
    p.push(ty);
    p.extend_from_slice(value);
    p.extend_from_slice(&(rdb_version as u16).to_le_bytes());
    let crc = crate::rdb::crc::crc64(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

/// Commands per batch at most, whatever `batch` says, and bytes per batch.
const BATCH_BYTES: usize = 8 << 20;
/// Batches written before their replies are read.
const IN_FLIGHT: usize = 2;

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
fn io_loop(conn: &mut Conn, rx: Receiver<Batch>, tx: Sender<Result<Vec<Refused>, ConnError>>) {
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

/// Restore every key `reader` yields into the server behind `conn`; `progress` gets the
/// reader's offset and the keys sent so far.
pub fn restore<R: Read>(
    mut reader: RdbReader<R>,
    conn: &mut Conn,
    opts: &RestoreOptions,
    now_ms: i64,
    mut progress: impl FnMut(u64, u64),
) -> Result<RestoreSummary, RestoreError> {
    let version = conn.version()?;
    let target = Target::for_server(version).map_err(|e| conn.fail(e))?;
    let rules = Rules::for_target(version).map_err(|e| conn.fail(e.to_string()))?;
    let before = conn.keys()?;
    if opts.flush {
        conn.text(&[b"FLUSHALL"])?;
    } else if before > 0 && !opts.replace {
        return Err(RestoreError::NotEmpty {
            addr: conn.addr().to_string(),
            keys: before,
        });
    }
    // Probes that cost the target nothing: whether it answers DEBUG (no digest is worth
    // computing otherwise), and the longest argument it takes.
    let digestible = !opts.no_digest && conn.call(&[b"DEBUG", b"DIGEST-VALUE"]).is_ok();
    let max_bulk = conn.max_bulk();
    // SET … PXAT needs 6.2.
    let plain_strings = version.at_least(6, 2);
    let replace = opts.replace || opts.flush;
    let mut s = RestoreSummary {
        target_version: version.to_string(),
        ..RestoreSummary::default()
    };
    let wopts = WriteOptions { compress: false };
    let started = Instant::now();
    let digest = std::thread::scope(|sc| -> Result<Option<String>, RestoreError> {
        let (btx, brx) = sync_channel::<Batch>(IN_FLIGHT);
        let (rtx, rrx) = channel();
        let io_conn = &mut *conn;
        sc.spawn(move || io_loop(io_conn, brx, rtx));
        // Hashed on other threads (at least one) while this one reads and encodes.
        let mut digester =
            digestible.then(|| ParallelDigest::new(rules, now_ms, default_workers().max(1)));
        let mut p = Pipeline {
            opts,
            batch: Batch::default(),
            max_cmds: opts.batch.max(1),
            tx: Some(btx),
            rx: rrx,
            last_failed: None,
            dispatched: 0,
            answered: 0,
        };
        let mut db_selected: Option<u64> = None;
        let r = (|| -> Result<(), RestoreError> {
            loop {
                let item = reader
                    .next_item()
                    .map_err(|e| RestoreError::Source(e.to_string()))?;
                let Some(item) = item else { break };
                let k = match item {
                    Item::Function { code } => {
                        let mut args: Vec<&[u8]> = vec![b"FUNCTION", b"LOAD"];
                        if replace {
                            args.push(b"REPLACE");
                        }
                        args.push(&code);
                        p.push(&mut s, &args, None)?;
                        s.functions += 1;
                        continue;
                    }
                    Item::Key(k) => k,
                    _ => continue,
                };
                if !opts.dbs.is_empty() && !opts.dbs.contains(&k.db) {
                    continue;
                }
                if !k.loadable(now_ms) {
                    s.keys_expired_skipped += 1;
                    continue;
                }
                if db_selected != Some(k.db) {
                    let db = k.db.to_string();
                    p.push(&mut s, &[b"SELECT", db.as_bytes()], None)?;
                    db_selected = Some(k.db);
                }
                s.keys_restored += 1;
                let dispatched = p.dispatched;
                let sent = send_key(
                    &mut p,
                    &mut s,
                    &k,
                    &target,
                    wopts,
                    plain_strings,
                    replace,
                    max_bulk,
                );
                match sent {
                    // Refused on this side (it cannot be sent): counted like a target's refusal.
                    Err(RestoreError::Key { db, key, what }) if opts.keep_going => {
                        s.keys_restored -= 1;
                        s.keys_failed += 1;
                        eprintln!("warning: key {key} (db {db}): {what}");
                    }
                    other => other?,
                }
                if let Some(d) = digester.as_mut() {
                    d.add(k).map_err(|e| RestoreError::Source(e.to_string()))?;
                }
                if p.dispatched != dispatched {
                    progress(reader.offset(), s.keys_restored);
                    if opts.rate > 0 {
                        let due =
                            Duration::from_secs_f64(s.keys_restored as f64 / opts.rate as f64);
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                }
            }
            Ok(())
        })();
        let waited = p.wait_all(&mut s);
        r?;
        waited?;
        Ok(match digester {
            Some(d) => {
                let d = d
                    .finish()
                    .map_err(|e| RestoreError::Source(e.to_string()))?;
                Some(crate::digest::mix::hex(&d.finish()))
            }
            None => None,
        })
    })?;
    progress(reader.offset(), s.keys_restored);
    s.send_seconds = started.elapsed().as_secs_f64();
    let checking = Instant::now();
    s.digest_sent = digest;
    s.target_keys = conn.keys()?;
    if s.digest_sent.is_some() {
        // A big dataset's digest takes the server a while.
        conn.set_read_timeout(Duration::from_secs(3600));
        s.target_digest = conn.text(&[b"DEBUG", b"DIGEST"]).ok();
    }
    s.check_seconds = checking.elapsed().as_secs_f64();
    Ok(s)
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
