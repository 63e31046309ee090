//! Warm restart: start the replica from the newest stored snapshot instead of a full sync.
//!
//! Owns choosing and checking that snapshot: storage is cleaned of what interrupted writes
//! left, then the newest snapshot whose RDB matches its manifest byte for byte (length,
//! SHA-256, CRC-64 trailer) and whose aux fields agree with it is loaded into a keyspace,
//! and the replica resumes with `PSYNC <replid> <offset+1>` from it. A snapshot that fails
//! any check is skipped with a warning and the next older one is tried. Nothing else is
//! persisted: the snapshot is the state.
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
    let listing = match storage.list() {
        Ok(l) => l,
        // A first start: the directory appears with the first snapshot.
        Err(StorageError::Io { source, path, .. }) if source.kind() == io::ErrorKind::NotFound => {
            info!(path = %path, "warm restart: storage does not exist yet; starting with a full sync");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    for p in &listing.problems {
        warn!(id = %p.id, error = %p.error, "stored snapshot with an unusable manifest skipped");
    }
    for m in &listing.snapshots {
        let started = std::time::Instant::now();
        match load(storage, m) {
            Ok(restored) => {
                info!(
                    id = %m.id, replid = %m.source.replid, offset = m.source.offset,
                    keys = restored.keys, seconds = started.elapsed().as_secs_f64(),
                    "warm restart: loaded the newest stored snapshot"
                );
                return Ok(Some(restored));
            }
            Err(e) => {
                warn!(id = %m.id, error = %e, "warm restart: snapshot unusable; trying an older one")
            }
        }
    }
    info!("warm restart: no usable stored snapshot; starting with a full sync");
    Ok(None)
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
    if m.source.replid.is_empty() {
        return Err(WarmError::NoReplid);
    }
    let reader = Hashing {
        inner: storage.open_rdb(&m.id)?,
        hasher: ObjectHasher::new(),
    };
    let mut rdb =
        RdbReader::new(reader, Some(m.rdb.bytes), Options::default()).map_err(RdbIoError::from)?;
    let mut ks = Keyspace::new();
    // Expired keys stay, as in a replica: the master's DELs for them are in the stream.
    let report = load_rdb(&mut ks, &mut rdb, None)?;
    let (mut reader, _read_ahead) = rdb.into_parts();
    // Whatever the parser did not pull (nothing, for a well-formed file) still counts.
    io::copy(&mut reader, &mut io::sink())?;
    let object = reader.hasher.finish();
    let mismatch = |what: String| Err(WarmError::Mismatch(what));
    if object.bytes != m.rdb.bytes {
        return mismatch(format!(
            "{} bytes, manifest says {}",
            object.bytes, m.rdb.bytes
        ));
    }
    if object.sha256 != m.rdb.sha256 {
        return mismatch(format!(
            "sha256 {}, manifest says {}",
            object.sha256, m.rdb.sha256
        ));
    }
    if !object.crc64_confirmed() || object.crc64_hex() != m.rdb.crc64 {
        return mismatch(format!(
            "crc64 {}, manifest says {}",
            object.crc64_hex(),
            m.rdb.crc64
        ));
    }
    let aux = |name: &[u8]| {
        report
            .aux
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    if aux(b"repl-id").as_deref() != Some(m.source.replid.as_str())
        || aux(b"repl-offset").as_deref() != Some(m.source.offset.to_string().as_str())
    {
        return mismatch(format!(
            "file says repl-id {:?} repl-offset {:?}, manifest {} {}",
            aux(b"repl-id"),
            aux(b"repl-offset"),
            m.source.replid,
            m.source.offset
        ));
    }
    let stream_db = aux(b"repl-stream-db")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let offset = i64::try_from(m.source.offset)
        .map_err(|_| WarmError::Mismatch(format!("offset {} out of range", m.source.offset)))?;
    Ok(Restored {
        id: m.id.clone(),
        source_address: m.source.address.clone(),
        keys: report.keys,
        preload: Preload {
            keyspace: ks,
            replid: m.source.replid.clone(),
            offset,
            stream_db,
            master_version: report.writer,
            master_aux: report
                .aux
                .into_iter()
                .filter(|(k, _)| is_version_aux(k))
                .collect(),
        },
    })
}
