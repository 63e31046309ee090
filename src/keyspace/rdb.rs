//! Between the keyspace and RDB files: loading a file into it, writing a snapshot out,
//! and the digest of a snapshot.
//!
//! Owns the choice between copying a stored value's bytes as they are (when the target
//! reads the canonical encoding and no compression is asked) and re-encoding it for an
//! older target. It must never write a key the snapshot did not hold, nor skip one.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use super::{native, Entry, Hints, Keyspace, KeyspaceError, Packed, Snapshot};
use crate::digest::parallel::default_workers;
use crate::digest::parallel::Held;
use crate::digest::{Acc, DatasetDigest, DigestError, ParallelDigest, Rules};
use crate::rdb::types::*;
use crate::rdb::writer::{KeyRecord, RdbWriter, Target, WriteError, WriteOptions};
use crate::rdb::{Dialect, Item, KeyEntry, RdbError, RdbReader, Value};
use crate::server_version::ServerVersion;
use crate::summary::{DbSummary, TYPE_NAMES};

#[derive(Debug, thiserror::Error)]
pub enum RdbIoError {
    #[error("{0}")]
    Read(#[from] RdbError),
    #[error("{0}")]
    Write(#[from] WriteError),
    #[error("{0}")]
    Keyspace(#[from] KeyspaceError),
    #[error("{0}")]
    Digest(#[from] DigestError),
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    pub keys: u64,
    /// Keys whose expiry had passed (dropped only when asked to, as a master would).
    pub expired_dropped: u64,
    /// Empty collections, which no server keeps.
    pub empty_dropped: u64,
    pub functions: u64,
    /// The server that wrote the file, from its magic and `redis-ver`/`valkey-ver`.
    pub writer: Option<ServerVersion>,
    /// Every aux field, in file order (a few dozen bytes each: versions, `repl-id`, …).
    pub aux: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Aux fields kept in a [`LoadReport`]; servers write about ten.
const MAX_AUX_KEPT: usize = 256;

/// Load a whole file. With `drop_expired_at = Some(now)`, keys whose expiry is before
/// `now` are left out, as a master loading the file does; a replica (`None`) keeps them
/// and waits for the master's DEL.
pub fn load_rdb<R: Read>(
    ks: &mut Keyspace,
    reader: &mut RdbReader<R>,
    drop_expired_at: Option<i64>,
) -> Result<LoadReport, RdbIoError> {
    let mut report = LoadReport::default();
    let mut current_db = 0;
    let (mut redis_ver, mut valkey_ver) = (None, None);
    // Big collections are built natively as their elements are read (never held twice).
    let mut collector = native::collect::NativeCollector::default();
    while let Some(item) = reader.next_item_with(Some(&mut collector))? {
        match item {
            Item::Key(k) => {
                let collected = collector.take();
                if matches!((drop_expired_at, k.expire_ms), (Some(now), Some(t)) if t < now) {
                    report.expired_dropped += 1;
                    continue;
                }
                let empty = collected
                    .as_ref()
                    .map_or(k.value.is_empty_collection(), |n| n.is_empty());
                if empty {
                    report.empty_dropped += 1;
                    continue;
                }
                let hints = Hints {
                    expire_ms: k.expire_ms,
                    idle: k.idle,
                    freq: k.freq,
                    meta: k.meta,
                };
                match collected {
                    Some(n) => ks.put(k.db, Entry::native(&k.key, hints, n)),
                    None => ks.set_owned(k.db, &k.key, hints, k.value, Some(k.rdb_type))?,
                }
                report.keys += 1;
            }
            Item::SelectDb(db) => current_db = db,
            Item::Aux { key, value } => {
                match key.as_slice() {
                    b"redis-ver" => redis_ver = Some(String::from_utf8_lossy(&value).into_owned()),
                    b"valkey-ver" => {
                        valkey_ver = Some(String::from_utf8_lossy(&value).into_owned())
                    }
                    _ => {}
                }
                // Bounded: a hostile file could repeat aux fields without end.
                if report.aux.len() < MAX_AUX_KEPT {
                    report.aux.push((key, value));
                }
            }
            Item::ResizeDb { db_size, .. } => ks.reserve(current_db, db_size),
            Item::Function { code } => {
                ks.functions.push(code);
                report.functions += 1;
            }
            Item::End { checksum, .. } => {
                if !checksum.ok() {
                    return Err(RdbIoError::Other(format!(
                        "checksum mismatch: stored {:016x}, computed {:016x}",
                        checksum.stored.unwrap_or(0),
                        checksum.computed
                    )));
                }
                let h = reader.header();
                report.writer = Some(ServerVersion::infer(
                    h.dialect == Dialect::Valkey,
                    h.version,
                    redis_ver.as_deref(),
                    valkey_ver.as_deref(),
                ));
                return Ok(report);
            }
            _ => {}
        }
    }
    Ok(report)
}

/// Whether bytes stored in the canonical (newest Redis) encoding are also what `target`
/// reads for this type, so they can be copied unchanged.
fn payload_fits(ty: u8, target: &Target) -> bool {
    match ty {
        STRING | LIST | SET | ZSET_2 | HASH | SET_INTSET | MODULE_2 => true,
        HASH_LISTPACK | LIST_QUICKLIST_2 => target.listpacks(),
        // Scores are text in a listpack, printed as each server's `d2string` does: the
        // held bytes may carry another server's text ("0.1" where Redis 7.0 writes
        // "0.10000000000000001"), so they are copied only where that text is the target's.
        ZSET_LISTPACK => {
            target.listpacks() && target.server.score_text() == crate::dtoa::ScoreText::Fpconv
        }
        SET_LISTPACK => target.set_listpack(),
        STREAM_LISTPACKS_3 => target.valkey_magic || target.rdb_version >= 11,
        _ => false,
    }
}

/// `TYPE`'s name for the types [`RdbWriter::key_encoded_compressed`] takes, and for every
/// type [`payload_fits`] lets through as held (a remembered digest spares the decode).
fn encoded_type_name(ty: u8) -> &'static str {
    match ty {
        STRING => "string",
        LIST | LIST_ZIPLIST | LIST_QUICKLIST | LIST_QUICKLIST_2 => "list",
        SET | SET_INTSET | SET_LISTPACK => "set",
        ZSET_2 | ZSET_ZIPLIST | ZSET_LISTPACK => "zset",
        STREAM_LISTPACKS | STREAM_LISTPACKS_2 | STREAM_LISTPACKS_3 => "stream",
        MODULE_2 => "module",
        _ => "hash",
    }
}

/// What the digest takes of a key of ours: `value` is its decoded value (or a placeholder
/// when a worker decodes it), `offset` roughly where it starts in the file.
fn digest_entry(db: u64, e: &Entry, value: Value, offset: u64) -> KeyEntry {
    KeyEntry {
        db,
        key: e.key().to_vec(),
        expire_ms: e.expire_ms(),
        idle: None,
        freq: None,
        meta: Vec::new(),
        rdb_type: e.rdb_type(),
        value,
        offset,
    }
}

/// A packed value goes to a digest worker as it is held, and its slot remembers the
/// key's digest for the next snapshot.
impl Held for Packed {
    fn encoded(&self) -> &[u8] {
        self.payload()
    }
    fn remember(&self, tag: u32, hashed: &Acc) {
        Packed::remember(self, tag, hashed)
    }
}

fn decode(e: &Entry) -> Result<Value, KeyspaceError> {
    e.decode().map_err(|err| KeyspaceError::Corrupt {
        key: crate::rdb::error::escape_key(e.key()),
        err: err.to_string(),
    })
}

/// Write the snapshot as an RDB file for `target`, with `aux` fields first, then the
/// function libraries, then every database. Returns the writer and the bytes written.
pub fn write_snapshot<W: Write>(
    mut snap: Snapshot,
    functions: &[Vec<u8>],
    out: W,
    target: Target,
    aux: &[(Vec<u8>, Vec<u8>)],
    opts: WriteOptions,
) -> Result<(W, u64), RdbIoError> {
    let mut w = RdbWriter::new(out, target, opts)?;
    for (k, v) in aux {
        w.aux(k, v)?;
    }
    for f in functions {
        w.function(f)?;
    }
    let mut current_db = None;
    while let Some((db, entries)) = snap.next_shard() {
        if current_db != Some(db) {
            w.select_db(db)?;
            current_db = Some(db);
        }
        // Each entry is let go once written, a big set, hash or sorted set chunk by chunk
        // as it is written: the live keyspace then changes what the walk has passed
        // without copying it (docs/decisions.md).
        for e in entries {
            let ty = e.rdb_type();
            let h = e.hints();
            let placeholder = Value::String(Vec::new());
            let e = match e {
                Entry::Native(n) if native::export::releases(&n.value) => {
                    let n = native::export::own(n);
                    let mut rec = record(&n.key, &h, ty, &placeholder);
                    if let Err(v) = native::export::write_owned(&mut w, &rec, n.value)? {
                        let value = v.to_value();
                        rec.value = &value;
                        w.key(&rec)?;
                    }
                    continue;
                }
                e => e,
            };
            let mut rec = record(e.key(), &h, ty, &placeholder);
            if let Entry::Packed(p) = &e {
                if opts.compress
                    && payload_fits(ty, &target)
                    && w.key_encoded_compressed(&rec, ty, p.payload())?
                {
                    continue;
                }
            }
            let raw = e
                .payload()
                .filter(|_| !opts.compress && payload_fits(ty, &target));
            let native_written = match (raw, &e) {
                (None, Entry::Native(n)) => native::export::write(&mut w, &rec, &n.value)?,
                _ => false,
            };
            if let Some(raw) = raw {
                w.key_encoded(&rec, ty, raw)?;
            } else if !native_written {
                let value = decode(&e)?;
                rec.value = &value;
                w.key(&rec)?;
            }
        }
    }
    Ok(w.finish()?)
}

/// One more key of type `name` in a database's counts.
fn count_key(summary: &mut DbSummary, name: &str, expires: bool) {
    summary.keys += 1;
    if expires {
        summary.expires += 1;
    }
    *summary.types.entry(name.to_string()).or_insert(0) += 1;
}

/// What [`export_snapshot`] wrote.
pub struct Exported<W> {
    pub out: W,
    pub bytes: u64,
    /// The `DEBUG DIGEST` a server following the digest rules answers after loading it.
    pub digest: String,
    /// Per database, as `inspect` counts them.
    pub databases: Vec<DbSummary>,
    pub keys_total: u64,
}

/// Write the snapshot as an RDB file for `target` (like [`write_snapshot`]) and, in the
/// same walk, compute the digest a server under `rules` answers after loading it at
/// `now_ms`, and the per-database counts a manifest records. One walk, because a
/// snapshot can be walked once and a second one would be at another offset. The digest of
/// packed values is computed by worker threads ([`ParallelDigest`]) while this one writes:
/// hashing is SHA-1 per element, more work than writing (`cargo bench --bench rdb_write`).
#[allow(clippy::too_many_arguments)]
pub fn export_snapshot<W: Write>(
    mut snap: Snapshot,
    functions: &[Vec<u8>],
    out: W,
    target: Target,
    aux: &[(Vec<u8>, Vec<u8>)],
    opts: WriteOptions,
    rules: Rules,
    now_ms: i64,
) -> Result<Exported<W>, RdbIoError> {
    let mut w = RdbWriter::new(out, target, opts)?;
    for (k, v) in aux {
        w.aux(k, v)?;
    }
    for f in functions {
        w.function(f)?;
    }
    let mut d = ParallelDigest::new(rules, now_ms, default_workers());
    let tag = rules.tag();
    let mut dbs: BTreeMap<u64, DbSummary> = BTreeMap::new();
    let mut keys_total = 0;
    let mut current_db = None;
    // Where each key starts in the output, roughly: the workers' batches are cut by it.
    let mut approx_offset = 0u64;
    while let Some((db, entries)) = snap.next_shard() {
        if current_db != Some(db) {
            w.select_db(db)?;
            current_db = Some(db);
        }
        let summary = dbs.entry(db).or_insert_with(|| DbSummary {
            db,
            keys: 0,
            expires: 0,
            types: TYPE_NAMES.iter().map(|t| (t.to_string(), 0)).collect(),
        });
        for e in entries {
            let ty = e.rdb_type();
            let h = e.hints();
            let placeholder = Value::String(Vec::new());
            let value;
            // A big set, hash or sorted set: its digest from the shared handle, then written
            // chunk by chunk, each let go once written (as in `write_snapshot`).
            let e = match e {
                Entry::Native(n)
                    if native::export::releases(&n.value)
                        && native::export::writes_natively(&n.value, &target) =>
                {
                    d.add_digest(db, &n.key, native::export::digest(&n, &rules, now_ms))?;
                    let name = native::export::type_name(&n.value);
                    let n = native::export::own(n);
                    let rec = record(&n.key, &h, ty, &placeholder);
                    // `writes_natively` said it takes this value; were it to give it back,
                    // it is written decoded.
                    if let Err(v) = native::export::write_owned(&mut w, &rec, n.value)? {
                        let value = v.to_value();
                        w.key(&KeyRecord {
                            value: &value,
                            ..rec
                        })?;
                    }
                    count_key(summary, name, h.expire_ms.is_some());
                    keys_total += 1;
                    continue;
                }
                e => e,
            };
            let e = &e;
            let mut rec = record(e.key(), &h, ty, &placeholder);
            // A native value is written from its chunks where it can be: no decoded copy.
            let native_written = match e {
                Entry::Native(n) => native::export::write(&mut w, &rec, &n.value)?,
                Entry::Packed(_) => false,
            };
            // The key's digest as an earlier snapshot computed it, if one did and the
            // value has not changed since (a change builds a new entry).
            let remembered = match e {
                Entry::Packed(p) => p.remembered(tag),
                Entry::Native(_) => None,
            };
            let name = match e {
                Entry::Native(n) if native_written => {
                    d.add_digest(db, e.key(), native::export::digest(n, &rules, now_ms))?;
                    native::export::type_name(&n.value)
                }
                Entry::Packed(p)
                    if opts.compress
                        && payload_fits(ty, &target)
                        && w.key_encoded_compressed(&rec, ty, p.payload())? =>
                {
                    // Written compressed as it is held; decoded by a digest worker, not
                    // on this thread (the file's writing is what a snapshot waits for).
                    approx_offset += (e.key().len() + p.payload().len()) as u64;
                    if let Some(hashed) = &remembered {
                        d.add_hashed(db, e.key(), h.expire_ms, hashed)?;
                    } else {
                        d.add_encoded(
                            Box::new(digest_entry(
                                db,
                                e,
                                Value::String(Vec::new()),
                                approx_offset,
                            )),
                            (ty, Box::new(p.clone())),
                        )?;
                    }
                    encoded_type_name(ty)
                }
                Entry::Packed(p)
                    if remembered.is_some() && !opts.compress && payload_fits(ty, &target) =>
                {
                    w.key_encoded(&rec, ty, p.payload())?;
                    if let Some(hashed) = &remembered {
                        d.add_hashed(db, e.key(), h.expire_ms, hashed)?;
                    }
                    encoded_type_name(ty)
                }
                _ => {
                    value = decode(e)?;
                    rec.value = &value;
                    let raw = e
                        .payload()
                        .filter(|_| !opts.compress && payload_fits(ty, &target));
                    if let Some(raw) = raw {
                        w.key_encoded(&rec, ty, raw)?;
                    } else if !w.key(&rec)? {
                        // An empty collection is not written, so it is not counted either.
                        continue;
                    }
                    let name = value.type_name();
                    approx_offset += (e.key().len() + e.payload().map_or(64, <[u8]>::len)) as u64;
                    match (e, &remembered) {
                        (Entry::Packed(_), Some(hashed)) => {
                            d.add_hashed(db, e.key(), h.expire_ms, hashed)?;
                        }
                        (Entry::Packed(p), None) => d.add_remembered(
                            Box::new(digest_entry(db, e, value, approx_offset)),
                            Box::new(p.clone()),
                        )?,
                        (Entry::Native(_), _) => {
                            d.add(Box::new(digest_entry(db, e, value, approx_offset)))?
                        }
                    }
                    name
                }
            };
            count_key(summary, name, h.expire_ms.is_some());
            keys_total += 1;
        }
    }
    let (out, bytes) = w.finish()?;
    let d = d.finish()?;
    Ok(Exported {
        out,
        bytes,
        digest: crate::digest::mix::hex(&d.finish()),
        databases: dbs.into_values().filter(|s| s.keys > 0).collect(),
        keys_total,
    })
}

/// The `DEBUG DIGEST` a server of version `target` would answer holding this snapshot.
pub fn digest_snapshot(
    snap: Snapshot,
    target: ServerVersion,
    now_ms: i64,
) -> Result<String, RdbIoError> {
    let rules = Rules::for_target(target).map_err(RdbIoError::Other)?;
    digest_snapshot_with(snap, rules, now_ms)
}

/// The `DEBUG DIGEST` the master itself answers for the data it holds now (a replica's
/// live keyspace follows the master's encodings; see [`Rules::as_held`]).
pub fn digest_snapshot_as_held(
    snap: Snapshot,
    target: ServerVersion,
    now_ms: i64,
) -> Result<String, RdbIoError> {
    let rules = Rules::for_target(target).map_err(RdbIoError::Other)?;
    digest_snapshot_with(
        snap,
        Rules {
            as_held: true,
            ..rules
        },
        now_ms,
    )
}

/// The digest of a snapshot under `rules`.
pub fn digest_snapshot_with(
    mut snap: Snapshot,
    rules: Rules,
    now_ms: i64,
) -> Result<String, RdbIoError> {
    let mut d = DatasetDigest::new(rules, now_ms);
    while let Some((db, entries)) = snap.next_shard() {
        for e in &entries {
            if let Entry::Native(n) = e {
                d.add_digest(db, e.key(), native::export::digest(n, &rules, now_ms))?;
                continue;
            }
            let value = decode(e)?;
            d.add(&digest_entry(db, e, value, 0))?;
        }
    }
    Ok(crate::digest::mix::hex(&d.finish()))
}

/// A key's record for the writer, its value still to be set (`placeholder`).
fn record<'a>(key: &'a [u8], h: &'a Hints, ty: u8, placeholder: &'a Value) -> KeyRecord<'a> {
    KeyRecord {
        key,
        value: placeholder,
        expire_ms: h.expire_ms,
        idle: h.idle,
        freq: h.freq,
        meta: &h.meta,
        source_type: Some(ty),
    }
}
