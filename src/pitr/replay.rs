//! The replay: a stored snapshot loaded into our own keyspace, the archived stream applied
//! on top up to the point, the result written as an RDB file for the master's version.
//!
//! Owns the command boundaries of a replay: a command or a transaction (`MULTI` … `EXEC`,
//! applied whole, as the replica applied it) is applied only when it ends at or before the
//! point, so a point inside one rounds down to its start. It must never apply a byte past
//! the point, never skip a byte before it, and never write a file from a snapshot whose
//! bytes disagree with its manifest.

use std::io::Write;

use super::plan::{fetch_segment, Plan};
use super::PitrError;
use crate::commands::{self, StreamState};
use crate::digest::Rules;
use crate::keyspace::{export_snapshot, Keyspace};
use crate::rdb::writer::{Target, WriteOptions};
use crate::replication::is_version_aux;
use crate::resp::{CommandParser, Limits, Parsed};
use crate::snapshot::warm::{load_checked, Expected};
use crate::storage::{ServerKind, Storage};
use crate::summary::DbSummary;

/// What a replay produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// The offset the file is the state at (the plan's, or the command boundary before it).
    pub offset: i64,
    /// Commands applied on top of the snapshot (transactions count each command).
    pub commands: u64,
    pub bytes: u64,
    pub digest: String,
    pub keys_total: u64,
    pub databases: Vec<DbSummary>,
    /// The time the file is the state at, unix ms: the time asked for, or when the last
    /// command replayed was applied (to the archive's sampling; the base snapshot's
    /// creation when none was). The digest is the one a server loading the file then
    /// answers, as a manifest's digest is at its capture.
    pub time_ms: i64,
}

/// The length of the command (or whole transaction) at the start of `bytes`, if complete.
pub(super) fn unit_end(bytes: &[u8]) -> Option<usize> {
    let limits = Limits::default();
    let mut pos = 0usize;
    let mut in_multi = false;
    loop {
        match CommandParser::default().parse(&bytes[pos..], &limits) {
            Ok(Parsed::Done(argv, used)) => {
                pos += used;
                let name = argv.first().map(|a| a.to_ascii_uppercase());
                match name.as_deref() {
                    Some(b"MULTI") => in_multi = true,
                    Some(b"EXEC") => in_multi = false,
                    _ => {}
                }
                if !in_multi {
                    return Some(pos);
                }
            }
            _ => return None,
        }
    }
}

/// Applies the stream to a keyspace, unit by unit, never past `stop`.
struct Applier {
    ks: Keyspace,
    st: StreamState,
    /// The offset of `buf[pos]`.
    offset: i64,
    buf: Vec<u8>,
    pos: usize,
    parser: CommandParser,
    /// A transaction being read: its commands and where it started.
    queued: Option<(i64, Vec<Vec<Vec<u8>>>)>,
    /// The offset after the last unit applied.
    applied_end: i64,
    commands: u64,
    limits: Limits,
}

impl Applier {
    /// Feed bytes that continue the stream; apply every unit that ends at or before `stop`.
    /// Returns true once the next unit would cross `stop` (nothing more is needed).
    fn feed(&mut self, data: &[u8], stop: i64) -> Result<bool, PitrError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
        loop {
            let at = self.offset;
            let parsed = self
                .parser
                .parse(&self.buf[self.pos..], &self.limits)
                .map_err(|e| PitrError::Stream {
                    offset: at,
                    error: e.to_string(),
                })?;
            let Parsed::Done(argv, used) = parsed else {
                return Ok(false);
            };
            let end = at + used as i64;
            if end > stop && self.queued.is_none() {
                return Ok(true);
            }
            self.pos += used;
            self.offset = end;
            let name = argv.first().map(|a| a.to_ascii_uppercase());
            if let Some((_, q)) = self.queued.as_mut() {
                let exec = name.as_deref() == Some(b"EXEC");
                q.push(argv);
                if exec {
                    let (start, cmds) = self.queued.take().unwrap_or_default();
                    if end > stop {
                        // The point is inside this transaction: it rounds down to MULTI.
                        return Ok(true);
                    }
                    for argv in &cmds {
                        self.apply(start, argv)?;
                    }
                    self.applied_end = end;
                }
                continue;
            }
            if name.as_deref() == Some(b"MULTI") {
                self.queued = Some((at, vec![argv]));
                continue;
            }
            self.apply(at, &argv)?;
            self.applied_end = end;
        }
    }

    fn apply(&mut self, offset: i64, argv: &[Vec<u8>]) -> Result<(), PitrError> {
        commands::apply(&mut self.ks, &mut self.st, argv).map_err(|e| PitrError::Apply {
            offset,
            command: String::from_utf8_lossy(argv.first().map_or(&b""[..], |a| a)).into_owned(),
            error: e.to_string(),
        })?;
        self.commands += 1;
        Ok(())
    }
}

/// Replay `plan` and write the file to `out`.
pub(super) fn build<W: Write>(
    storage: &dyn Storage,
    plan: &Plan,
    out: W,
) -> Result<(W, Built), PitrError> {
    let m = &plan.base;
    let expected = Expected {
        bytes: m.rdb.bytes,
        sha256: m.rdb.sha256.clone(),
        crc64: m.rdb.crc64.clone(),
        replid: m.source.replid.clone(),
        offset: m.source.offset,
    };
    let (preload, _keys) = load_checked(storage.open_rdb(&m.id)?, &expected)
        .map_err(|e| PitrError::Base(m.id.to_string(), e))?;
    let version = preload
        .master_version
        .ok_or_else(|| PitrError::Version(format!("snapshot {} names no server version", m.id)))?;
    let mut st = StreamState::for_master(Some(version));
    st.db = preload.stream_db;
    let mut a = Applier {
        ks: preload.keyspace,
        st,
        offset: preload.offset,
        buf: Vec::new(),
        pos: 0,
        parser: CommandParser::default(),
        queued: None,
        applied_end: preload.offset,
        commands: 0,
        limits: Limits::default(),
    };
    // (time, offset) samples of the segments replayed: when the last command was applied.
    let mut samples: Vec<(i64, i64)> = Vec::new();
    for key in &plan.segments {
        let seg = fetch_segment(storage, key)?;
        samples.extend_from_slice(&seg.header.samples);
        let (first, end) = (seg.header.first_offset, seg.header.end_offset);
        // Where the stream stands: the offset after the bytes handed over so far.
        let have = a.offset + (a.buf.len() - a.pos) as i64;
        if first > have || end <= have {
            if end <= have {
                continue; // entirely before the snapshot (or a repeat)
            }
            return Err(PitrError::Missing(format!(
                "offsets {have}..{first} of history {} (before {key})",
                plan.history
            )));
        }
        let skip = (have - first) as usize;
        if a.feed(&seg.bytes[skip..], plan.offset)? {
            break;
        }
    }
    if a.applied_end < plan.offset && a.offset + ((a.buf.len() - a.pos) as i64) < plan.offset {
        return Err(PitrError::Missing(format!(
            "offsets up to {} of history {}: the archive ends at {}",
            plan.offset,
            plan.history,
            a.offset + (a.buf.len() - a.pos) as i64
        )));
    }
    let time_ms = plan.at_ms.unwrap_or_else(|| {
        samples
            .iter()
            .filter(|(_, o)| *o < a.applied_end && *o >= preload.offset)
            .map(|(t, _)| *t)
            .max()
            .unwrap_or_else(|| m.created_at.timestamp_millis())
    });
    let now_ms = time_ms;
    let target = Target::for_server(version).map_err(PitrError::Version)?;
    let rules = Rules::for_target(version).map_err(PitrError::Version)?;
    // The file is the master's at no replication position we can vouch for (a failover
    // may have changed the id since the snapshot): no repl-id, so nothing resumes from it.
    let mut aux: Vec<(Vec<u8>, Vec<u8>)> = preload
        .master_aux
        .iter()
        .filter(|(k, _)| is_version_aux(k))
        .cloned()
        .collect();
    if aux.is_empty() {
        let name = match m.source.server {
            ServerKind::Valkey => "valkey-ver",
            ServerKind::Redis => "redis-ver",
        };
        aux.push((
            name.as_bytes().to_vec(),
            m.source.version.clone().into_bytes(),
        ));
    }
    aux.push((b"redis-bits".to_vec(), b"64".to_vec()));
    aux.push((b"ctime".to_vec(), (now_ms / 1000).to_string().into_bytes()));
    aux.push((b"aof-base".to_vec(), b"0".to_vec()));
    let functions = a.ks.functions.clone();
    let snap = a.ks.snapshot().ok_or_else(|| {
        PitrError::Version("the keyspace is being walked (cannot happen here)".into())
    })?;
    let exported = export_snapshot(
        snap,
        &functions,
        out,
        target,
        &aux,
        WriteOptions::default(),
        rules,
        now_ms,
    )
    .map_err(PitrError::Write)?;
    Ok((
        exported.out,
        Built {
            offset: a.applied_end,
            commands: a.commands,
            bytes: exported.bytes,
            digest: exported.digest,
            keys_total: exported.keys_total,
            databases: exported.databases,
            time_ms,
        },
    ))
}
