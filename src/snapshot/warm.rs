//! Warm restart: start the replica from the newest stored snapshot instead of a full sync.
//!
//! Owns choosing and checking that snapshot: storage is cleaned of what interrupted writes
//! left, then the newest snapshot whose RDB matches its manifest byte for byte (length,
//! SHA-256, CRC-64 trailer) and whose aux fields agree with it is loaded into a keyspace,
//! and the replica resumes with `PSYNC <replid> <offset+1>` from it. A snapshot that fails
//! any check is skipped with a warning and the next older one is tried. [`load_checked`]
//! is the loading and checking itself, which the shutdown checkpoint
//! (`snapshot::checkpoint`, a local file with its own small manifest) goes through too.
//!
//! With local staging, the newest stored snapshot's staged copy is read instead of the
//! stored RDB (same checks against the stored manifest).
//!
//! It must never start from data it has not fully verified (a corrupt file would be
//! followed by a stream that assumes it), and never delete a snapshot it could not use.

use std::io::{self, Read};

use tracing::{info, warn};

use crate::keyspace::{load_rdb, Keyspace, RdbIoError};
use crate::rdb::{Options, RdbReader};
use crate::replication::{is_version_aux, Preload};
use crate::storage::{Manifest, ObjectHasher, SnapshotId, Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Load(#[from] RdbIoError),
    #[error("reading: {0}")]
    Io(#[from] io::Error),
    #[error("does not match its manifest: {0}")]
    Mismatch(String),
    #[error("has no replication ID (taken after a SYNC fallback): cannot resume from it")]
    NoReplid,
}

/// A snapshot loaded and checked, ready to start the replica from.
pub struct Restored {
    pub id: SnapshotId,
    /// The master address the snapshot was taken from (`source.address`).
    pub source_address: String,
    pub preload: Preload,
    pub keys: u64,
}

/// Clean storage, then load the newest usable snapshot; `None` when there is none (the
/// replica then starts with a full sync).
pub fn cleanup_and_restore(storage: &dyn Storage) -> Result<Option<Restored>, StorageError> {
    cleanup(storage)?;
    Ok(restore_newest(storage, &list(storage)?))
}

/// Remove what interrupted writes left in storage, each removal logged.
pub fn cleanup(storage: &dyn Storage) -> Result<(), StorageError> {
    let report = storage.cleanup()?;
    if report.busy {
        warn!(storage = %storage.describe(), "cleanup skipped: another writer holds the storage");
    }
    for path in &report.removed {
        info!(path = %path, "cleanup: removed what an interrupted write left");
    }
    for (path, why) in &report.kept {
        warn!(path = %path, reason = %why, "cleanup: left in place");
    }
    Ok(())
}

/// The stored snapshots with a usable manifest, newest first (none when the storage does
/// not exist yet: a first start).
pub fn list(storage: &dyn Storage) -> Result<Vec<Manifest>, StorageError> {
    let listing = match storage.list() {
        Ok(l) => l,
        // A first start: the directory appears with the first snapshot.
        Err(StorageError::Io { source, path, .. }) if source.kind() == io::ErrorKind::NotFound => {
            info!(path = %path, "warm restart: storage does not exist yet");
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    for p in &listing.problems {
        warn!(id = %p.id, error = %p.error, "stored snapshot with an unusable manifest skipped");
    }
    Ok(listing.snapshots)
}

/// Load the newest of `snapshots` (newest first) that passes every check.
pub fn restore_newest(storage: &dyn Storage, snapshots: &[Manifest]) -> Option<Restored> {
    for m in snapshots {
        let started = std::time::Instant::now();
        match load(storage, m) {
            Ok(restored) => {
                info!(
                    id = %m.id, replid = %m.source.replid, offset = m.source.offset,
                    keys = restored.keys, seconds = started.elapsed().as_secs_f64(),
                    "warm restart: loaded the newest stored snapshot"
                );
                return Some(restored);
            }
            Err(e) => {
                warn!(id = %m.id, error = %e, "warm restart: snapshot unusable; trying an older one")
            }
        }
    }
    info!("warm restart: no usable stored snapshot; starting with a full sync");
    None
}

/// Hashes what passes through, so the file is checked as it is loaded (read once).
struct Hashing<R> {
    inner: R,
    hasher: ObjectHasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn load(storage: &dyn Storage, m: &Manifest) -> Result<Restored, WarmError> {
    let expected = Expected {
        bytes: m.rdb.bytes,
        sha256: m.rdb.sha256.clone(),
        crc64: m.rdb.crc64.clone(),
        replid: m.source.replid.clone(),
        offset: m.source.offset,
    };
    // A staged copy (`[storage] staging = "local"`) is checked against the stored
    // manifest like the stored RDB, and read instead of downloading it; unusable, the
    // stored RDB is read after all.
    if let Some(local) = storage.open_staged(&m.id) {
        match load_checked(local, &expected) {
            Ok((preload, keys)) => {
                info!(id = %m.id, "warm restart: read the staged copy, no download");
                return Ok(Restored {
                    id: m.id.clone(),
                    source_address: m.source.address.clone(),
                    keys,
                    preload,
                });
            }
            Err(e) => {
                warn!(id = %m.id, error = %e, "warm restart: staged copy unusable; reading the stored one")
            }
        }
    }
    let (preload, keys) = load_checked(storage.open_rdb(&m.id)?, &expected)?;
    Ok(Restored {
        id: m.id.clone(),
        source_address: m.source.address.clone(),
        keys,
        preload,
    })
}

/// What an RDB file must be for a warm start from it: its length, SHA-256 and CRC-64 (as
/// a manifest records them) and the replication position its aux fields must state.
#[derive(Debug, Clone)]
pub struct Expected {
    pub bytes: u64,
    pub sha256: String,
    pub crc64: String,
    pub replid: String,
    pub offset: u64,
}

/// Load the RDB `reader` yields into a fresh keyspace, checking it against `m` on the way
/// (read once, hashed as it is parsed); the replica's [`Preload`] and the key count.
pub fn load_checked(reader: impl Read, m: &Expected) -> Result<(Preload, u64), WarmError> {
    if m.replid.is_empty() || m.replid == "?" {
        return Err(WarmError::NoReplid);
    }
    let reader = Hashing {
        inner: reader,
        hasher: ObjectHasher::new(),
    };
    let mut rdb =
        RdbReader::new(reader, Some(m.bytes), Options::default()).map_err(RdbIoError::from)?;
    let mut ks = Keyspace::new();
    // Expired keys stay, as in a replica: the master's DELs for them are in the stream.
    let report = load_rdb(&mut ks, &mut rdb, None)?;
    let (mut reader, _read_ahead) = rdb.into_parts();
    // Whatever the parser did not pull (nothing, for a well-formed file) still counts.
    io::copy(&mut reader, &mut io::sink())?;
    let object = reader.hasher.finish();
    let mismatch = |what: String| Err(WarmError::Mismatch(what));
    if object.bytes != m.bytes {
        return mismatch(format!("{} bytes, manifest says {}", object.bytes, m.bytes));
    }
    if object.sha256 != m.sha256 {
        return mismatch(format!(
            "sha256 {}, manifest says {}",
            object.sha256, m.sha256
        ));
    }
    if !object.crc64_confirmed() || object.crc64_hex() != m.crc64 {
        return mismatch(format!(
            "crc64 {}, manifest says {}",
            object.crc64_hex(),
            m.crc64
        ));
    }
    let aux = |name: &[u8]| {
        report
            .aux
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    if aux(b"repl-id").as_deref() != Some(m.replid.as_str())
        || aux(b"repl-offset").as_deref() != Some(m.offset.to_string().as_str())
    {
        return mismatch(format!(
            "file says repl-id {:?} repl-offset {:?}, manifest {} {}",
            aux(b"repl-id"),
            aux(b"repl-offset"),
            m.replid,
            m.offset
        ));
    }
    let stream_db = aux(b"repl-stream-db")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let offset = i64::try_from(m.offset)
        .map_err(|_| WarmError::Mismatch(format!("offset {} out of range", m.offset)))?;
    let preload = Preload {
        keyspace: ks,
        replid: m.replid.clone(),
        offset,
        stream_db,
        master_version: report.writer,
        master_aux: report
            .aux
            .into_iter()
            .filter(|(k, _)| is_version_aux(k))
            .collect(),
    };
    Ok((preload, report.keys))
}
