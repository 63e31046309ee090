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
//! Threads share the work: this one reads the RDB and encodes commands, one per target
//! writes batches and reads their replies (`sink`, [`conn`]), others compute the digest,
//! so reading, the network and the target's work overlap. A cluster target ([`cluster`])
//! has one pipeline per primary and each key goes to the primary of its slot; several RDBs
//! (a cluster's snapshot set) can be fed through the same pipelines ([`Feeder`]). It must
//! never send a write before every target passed the emptiness check, and never hold more
//! than a few batches of commands per target (bounded channels).

pub mod cluster;
pub mod conn;
mod pipeline;
pub mod plain;
mod sink;
mod sync;

use std::collections::HashSet;
use std::io::Read;
use std::sync::mpsc::{channel, sync_channel};
use std::time::{Duration, Instant};

pub use cluster::{ClusterTarget, Router};
pub use conn::{Batch, Conn, ConnError, Name, Refused, TargetUrl};

use crate::digest::parallel::default_workers;
use crate::digest::Rules;
use crate::rdb::writer::Target;
use crate::rdb::{Framed, Item, RdbReader};
use crate::replication::tls::TlsSettings;
use pipeline::{io_loop, IN_FLIGHT};
use sink::{Probe, Sink};
use sync::SyncSink;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("{addr} holds {keys} keys; restore into an empty server, or pass --replace (overwrite keys of the same name) or --flush (FLUSHALL first)")]
    NotEmpty { addr: String, keys: u64 },
    #[error("key {key} (db {db}): {what}")]
    Key { db: u64, key: String, what: String },
    #[error("key {key} (db {db}): the target answered {what}: its slot is served by another node now (the target cluster is resharding?); nothing was skipped: restore again with --replace once it is stable")]
    Moved { db: u64, key: String, what: String },
    #[error("source: {0}")]
    Source(String),
    #[error("target cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("target cluster {seed}: slots {slots} are served by no primary; a restore needs every slot served")]
    IncompleteSlots { seed: String, slots: String },
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
    /// Restore by one full sync (`restore::sync`, private) instead of commands.
    pub via_sync: bool,
    /// Where the target connects for the sync (`HOST[:PORT]`; default: this side of the
    /// connection to it, any free port).
    pub sync_address: Option<String>,
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
    /// With `--via-sync`: how the target loaded the payload, `diskless` (while it arrived)
    /// or `disk` (written to its disk first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_sync: Option<String>,
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

/// A framed key's value, as a target is to be sent it.
pub(crate) enum Framing {
    /// A collection of a type the target loads as the file holds it, checked as the
    /// decoder would (its element count; 0 for an empty one, which servers drop).
    AsIs { elements: usize, encoded: Vec<u8> },
    /// Anything else: the key's value is decoded now.
    Decoded,
}

/// [`Framing`] of `k`'s `encoded` value (read at `value_at`) for a target that knows
/// `rules`' types; `fits`: the encoded value is short enough to send as it is.
pub(crate) fn framing(
    k: &mut crate::rdb::KeyEntry,
    value_at: u64,
    encoded: Vec<u8>,
    rules: &Rules,
    fits: bool,
) -> Result<Framing, RestoreError> {
    use crate::rdb::{decode_value, view, Dialect};
    let ty = k.rdb_type;
    // The framed types mean the same in both dialects.
    let as_is = ty != crate::rdb::types::STRING
        && k.meta.is_empty()
        && fits
        && rules.knows_type(ty, Dialect::Redis);
    let elements = as_is
        .then(|| view::pieces(ty, &encoded).and_then(|p| p.elements().map(|e| e.len())))
        .flatten();
    if let Some(elements) = elements {
        return Ok(Framing::AsIs { elements, encoded });
    }
    k.value = match view::string_value(ty, encoded) {
        Ok(v) => v,
        Err(encoded) => decode_value(ty, &encoded, Dialect::Redis).map_err(|mut e| {
            e.offset += value_at;
            RestoreError::Source(e.with_key(&k.key).to_string())
        })?,
    };
    Ok(Framing::Decoded)
}

/// What one target is, asked before anything is written to it.
fn probe(conn: &mut Conn, opts: &RestoreOptions) -> Result<Probe, RestoreError> {
    let version = conn.version()?;
    let target = Target::for_server(version).map_err(|e| conn.fail(e))?;
    let rules = Rules::for_target(version).map_err(|e| conn.fail(e.to_string()))?;
    let keys = conn.keys()?;
    // Probes that cost the target nothing: whether it answers DEBUG (no digest is worth
    // computing otherwise), and the longest argument it takes.
    let digestible = !opts.no_digest && conn.call(&[b"DEBUG", b"DIGEST-VALUE"]).is_ok();
    Ok(Probe {
        target,
        rules,
        version: version.to_string(),
        keys,
        digestible,
        max_bulk: conn.max_bulk(),
        // SET … PXAT needs 6.2.
        plain_strings: version.at_least(6, 2),
    })
}

/// Feeds RDBs to the targets' pipelines: each key to the target its [`Router`] names,
/// each distinct function library to every target once.
pub struct Feeder<'o, 'p> {
    sinks: Vec<Out<'o>>,
    /// The database of the items read last (for its size hint).
    db: u64,
    router: &'p Router,
    opts: &'o RestoreOptions,
    started: Instant,
    functions: HashSet<Vec<u8>>,
}

impl Feeder<'_, '_> {
    /// Keys sent so far, every target.
    pub fn keys_restored(&self) -> u64 {
        self.sinks.iter().map(Out::keys_restored).sum()
    }

    /// Restore every key `reader` yields; `progress` gets the reader's offset and the keys
    /// sent so far (every target, every RDB fed before).
    pub fn rdb<R: Read>(
        &mut self,
        mut reader: RdbReader<R>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), RestoreError> {
        loop {
            let item = reader
                .next_framed()
                .map_err(|e| RestoreError::Source(e.to_string()))?;
            let (k, encoded) = match item {
                None => break,
                Some(Framed::Encoded {
                    key,
                    value_at,
                    encoded,
                }) => (key, Some((value_at, encoded))),
                Some(Framed::Item(item)) => (
                    match item {
                        Item::Function { code } => {
                            // A set's shards each hold the libraries: loaded once per target.
                            if !self.functions.contains(&code) {
                                for s in &mut self.sinks {
                                    s.function(&code)?;
                                }
                                self.functions.insert(code);
                            }
                            continue;
                        }
                        Item::Key(k) => k,
                        Item::SelectDb(db) => {
                            self.db = db;
                            continue;
                        }
                        Item::ResizeDb {
                            db_size,
                            expires_size,
                        } => {
                            for s in &mut self.sinks {
                                s.resize_hint(self.db, db_size, expires_size);
                            }
                            continue;
                        }
                        _ => continue,
                    },
                    None,
                ),
            };
            let i = self.router.target_of(&k.key);
            let Some(sink) = self.sinks.get_mut(i) else {
                return Err(RestoreError::Source(format!("no target for route {i}")));
            };
            let dispatched = match encoded {
                Some((value_at, encoded)) => sink.key_encoded(k, value_at, encoded)?,
                None => sink.key(k)?,
            };
            if dispatched {
                let keys = self.keys_restored();
                progress(reader.offset(), keys);
                if self.opts.rate > 0 {
                    let due = Duration::from_secs_f64(keys as f64 / self.opts.rate as f64);
                    if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
        progress(reader.offset(), self.keys_restored());
        Ok(())
    }
}

/// Where a feeder's keys go: commands through a target's pipeline, or the payload of a
/// full sync.
enum Out<'o> {
    Commands(Sink<'o>),
    Sync(SyncSink),
}

impl Out<'_> {
    fn keys_restored(&self) -> u64 {
        match self {
            Out::Commands(s) => s.s.keys_restored,
            Out::Sync(s) => s.s.keys_restored,
        }
    }

    fn function(&mut self, code: &[u8]) -> Result<(), RestoreError> {
        match self {
            Out::Commands(s) => s.function(code),
            Out::Sync(s) => s.function(code),
        }
    }

    fn resize_hint(&mut self, db: u64, keys: u64, expires: u64) {
        if let Out::Sync(s) = self {
            s.resize_hint(db, keys, expires);
        }
    }

    /// Whether a batch went out (the sync's payload is written as it goes).
    fn key_encoded(
        &mut self,
        k: Box<crate::rdb::KeyEntry>,
        value_at: u64,
        encoded: Vec<u8>,
    ) -> Result<bool, RestoreError> {
        match self {
            Out::Commands(s) => s.key_encoded(k, value_at, encoded),
            Out::Sync(s) => s
                .key_encoded(k, value_at, encoded)
                .map(|()| s.s.keys_restored % 1024 == 0),
        }
    }

    fn key(&mut self, k: Box<crate::rdb::KeyEntry>) -> Result<bool, RestoreError> {
        match self {
            Out::Commands(s) => s.key(k),
            Out::Sync(s) => s.key(k).map(|()| s.s.keys_restored % 1024 == 0),
        }
    }
}

/// Restore into `conns` (one server, or a cluster's primaries routed by slot) what `feed`
/// gives the [`Feeder`]; one summary per target, in the order of `conns`. Every target is
/// probed and checked empty (or flushed) before anything is written to any of them.
pub fn restore_routed(
    conns: &mut [Conn],
    router: &Router,
    opts: &RestoreOptions,
    now_ms: i64,
    feed: impl FnOnce(&mut Feeder<'_, '_>) -> Result<(), RestoreError>,
) -> Result<Vec<RestoreSummary>, RestoreError> {
    router.check(conns.len())?;
    let mut probes = Vec::with_capacity(conns.len());
    for c in conns.iter_mut() {
        probes.push(probe(c, opts)?);
    }
    if !opts.flush && !opts.replace {
        if let Some((c, p)) = conns.iter().zip(&probes).find(|(_, p)| p.keys > 0) {
            return Err(RestoreError::NotEmpty {
                addr: c.addr().to_string(),
                keys: p.keys,
            });
        }
    }
    if opts.via_sync {
        let [conn] = conns else {
            return Err(RestoreError::Source(
                "--via-sync restores into one server, not a cluster".into(),
            ));
        };
        sync::check_target(conn, opts)?;
    }
    if opts.flush {
        for c in conns.iter_mut() {
            c.text(&[b"FLUSHALL"])?;
        }
    }
    // The digest threads are shared out between the targets.
    let workers = (default_workers() / conns.len().max(1)).max(1);
    let started = Instant::now();
    let mut summaries = if let ([conn], [p], true) = (&mut *conns, &probes[..], opts.via_sync) {
        vec![by_sync(conn, p, router, opts, now_ms, workers, feed)?]
    } else {
        by_commands(conns, &probes, router, opts, now_ms, workers, feed)?
    };
    let send_seconds = started.elapsed().as_secs_f64();
    for (c, s) in conns.iter_mut().zip(&mut summaries) {
        s.send_seconds = send_seconds;
        let checking = Instant::now();
        s.target_keys = c.keys()?;
        if s.digest_sent.is_some() {
            // A big dataset's digest takes the server a while.
            c.set_read_timeout(Duration::from_secs(3600));
            s.target_digest = c.text(&[b"DEBUG", b"DIGEST"]).ok();
        }
        s.check_seconds = checking.elapsed().as_secs_f64();
    }
    Ok(summaries)
}

/// The target made a replica of this process for one full sync whose payload is what
/// `feed` gives.
fn by_sync(
    conn: &mut Conn,
    p: &Probe,
    router: &Router,
    opts: &RestoreOptions,
    now_ms: i64,
    workers: usize,
    feed: impl FnOnce(&mut Feeder<'_, '_>) -> Result<(), RestoreError>,
) -> Result<RestoreSummary, RestoreError> {
    let summary = RestoreSummary {
        target_version: p.version.clone(),
        ..RestoreSummary::default()
    };
    let digester = p
        .digestible
        .then(|| crate::digest::ParallelDigest::new(p.rules, now_ms, workers.max(1)));
    let mut st = sync::start(conn, p.target, p.rules, summary, digester, opts, now_ms)?;
    let diskless = st.diskless;
    let mut f = Feeder {
        sinks: vec![Out::Sync(st.sink)],
        db: 0,
        router,
        opts,
        started: Instant::now(),
        functions: HashSet::new(),
    };
    let fed = feed(&mut f);
    let Some(Out::Sync(sink)) = f.sinks.pop() else {
        return Err(RestoreError::Source(
            "the sync's payload went missing".into(),
        ));
    };
    st.sink = sink;
    let mut s = sync::finish(conn, st, fed)?;
    s.via_sync = Some(if diskless { "diskless" } else { "disk" }.into());
    Ok(s)
}

/// Each target sent commands through a pipeline of its own.
fn by_commands(
    conns: &mut [Conn],
    probes: &[Probe],
    router: &Router,
    opts: &RestoreOptions,
    now_ms: i64,
    workers: usize,
    feed: impl FnOnce(&mut Feeder<'_, '_>) -> Result<(), RestoreError>,
) -> Result<Vec<RestoreSummary>, RestoreError> {
    let started = Instant::now();
    std::thread::scope(|sc| -> Result<Vec<RestoreSummary>, RestoreError> {
        let mut sinks = Vec::with_capacity(conns.len());
        for (conn, p) in conns.iter_mut().zip(probes) {
            let (btx, brx) = sync_channel(IN_FLIGHT);
            let (rtx, rrx) = channel();
            sc.spawn(move || io_loop(conn, brx, rtx));
            sinks.push(Out::Commands(Sink::new(
                p,
                opts,
                btx,
                rrx,
                now_ms,
                workers,
                matches!(router, Router::One),
            )));
        }
        let mut f = Feeder {
            sinks,
            db: 0,
            router,
            opts,
            started,
            functions: HashSet::new(),
        };
        let fed = feed(&mut f);
        // Every pipeline drained (its replies read, its thread ended), even after an error.
        let finished: Vec<_> = f
            .sinks
            .into_iter()
            .filter_map(|o| match o {
                Out::Commands(s) => Some(s.finish()),
                Out::Sync(_) => None,
            })
            .collect();
        fed?;
        finished.into_iter().collect()
    })
}

/// Restore every key `reader` yields into the server behind `conn`; `progress` gets the
/// reader's offset and the keys sent so far.
pub fn restore<R: Read>(
    reader: RdbReader<R>,
    conn: &mut Conn,
    opts: &RestoreOptions,
    now_ms: i64,
    mut progress: impl FnMut(u64, u64),
) -> Result<RestoreSummary, RestoreError> {
    let mut v = restore_routed(
        std::slice::from_mut(conn),
        &Router::One,
        opts,
        now_ms,
        |f| f.rdb(reader, &mut progress),
    )?;
    v.pop()
        .ok_or_else(|| RestoreError::Source("no summary".into()))
}
