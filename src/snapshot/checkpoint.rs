//! The shutdown checkpoint: the dataset as the stopped replica holds it, written into
//! `<[replica] state_dir>/checkpoint/` on SIGTERM, so the next start resumes with
//! `PSYNC <replid> <offset+1>` instead of from an older stored snapshot (or a full sync).
//!
//! Owns that directory: `dump.rdb` (written by the same RDB writer as snapshots, for the
//! master's server version, uncompressed) and `checkpoint.json` (its small manifest:
//! replication ID and offset, stream db, master version, length, SHA-256, CRC-64,
//! digest), each appearing whole through [`AtomicFile`], 0600 in a 0700 directory, and
//! an exclusive `flock` on `.lock` for the daemon's lifetime (one daemon per state dir).
//! Loading goes through the warm restart's [`load_checked`], so a checkpoint is verified
//! exactly as a stored snapshot is. [`prefer`] decides whether it beats the newest stored
//! snapshot.
//!
//! It must never be a user-visible snapshot (nothing here touches storage: no manifest
//! there, not listed, not retained), never be used unverified, and never be used twice: the
//! caller removes it once loaded, once a newer stored snapshot exists, or when it fails
//! to verify.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rustix::fs::FlockOperation;
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::job::{aux_fields, version_text};
use super::warm::{load_checked, Expected, WarmError};
use crate::atomic_file::{is_temp_name, AtomicFile};
use crate::digest::Rules;
use crate::keyspace::{export_snapshot, RdbIoError};
use crate::rdb::writer::{Target, WriteOptions};
use crate::replication::{Capture, Preload};
use crate::storage::{Manifest, ObjectHasher, RdbInfo, SourceInfo};

const SUBDIR: &str = "checkpoint";
const RDB: &str = "dump.rdb";
const META: &str = "checkpoint.json";
const LOCK: &str = ".lock";
/// A real `checkpoint.json` is a few hundred bytes.
const META_LIMIT: u64 = 64 << 10;
/// The format of `checkpoint.json`; another value is refused (and the checkpoint removed).
const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {op}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{0} is used by another replisnap (one daemon per [replica] state_dir)")]
    Locked(PathBuf),
    #[error("nothing to resume from: {0}")]
    NoData(String),
    #[error("{0}")]
    Target(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: Box<RdbIoError>,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CheckpointError {
    let path = path.to_path_buf();
    move |source| CheckpointError::Io { op, path, source }
}

/// `checkpoint.json`: what the RDB beside it must be, and where it resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub format: u32,
    pub created_at: DateTime<Utc>,
    /// Address (as configured), server, version, replication ID and offset.
    pub source: SourceInfo,
    /// `repl-stream-db`: the database the stream had selected (also in the file's aux).
    pub stream_db: u64,
    pub rdb: RdbInfo,
    /// What `DEBUG DIGEST` answers after a server of the master's version loads the file.
    pub digest: String,
    pub keys_total: u64,
    pub write_seconds: f64,
    pub replisnap_version: String,
}

/// Whether the checkpoint `cp` is newer than `newest`, the newest stored snapshot: in the
/// same replication history by offset (equal: the checkpoint, local and already here),
/// across histories (a failover, a full sync since) by creation time.
pub fn prefer(cp: &Meta, newest: Option<&Manifest>) -> bool {
    match newest {
        None => true,
        Some(m) if m.source.replid == cp.source.replid => cp.source.offset >= m.source.offset,
        Some(m) => cp.created_at > m.created_at,
    }
}

/// `<state_dir>/checkpoint/`, locked for this process.
pub struct CheckpointDir {
    dir: PathBuf,
    _lock: File,
}

impl CheckpointDir {
    /// Create (0700) and lock the directory, and remove what an interrupted write left
    /// (temporaries; an RDB without its manifest).
    pub fn open(state_dir: &Path) -> Result<CheckpointDir, CheckpointError> {
        let dir = state_dir.join(SUBDIR);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("create directory", &dir))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("open lock file", &lock_path))?;
        loop {
            match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(Errno::INTR) => continue,
                Err(Errno::WOULDBLOCK) => return Err(CheckpointError::Locked(dir)),
                Err(e) => return Err(io_err("lock", &lock_path)(e.into())),
            }
        }
        let cp = CheckpointDir { dir, _lock: lock };
        for entry in fs::read_dir(&cp.dir).map_err(io_err("read directory", &cp.dir))? {
            let name = entry
                .map_err(io_err("read directory", &cp.dir))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if is_temp_name(&name, RDB) || is_temp_name(&name, META) {
                cp.remove_file(&name, "an interrupted checkpoint write");
            }
        }
        if !cp.dir.join(META).exists() && cp.dir.join(RDB).exists() {
            cp.remove_file(RDB, "a checkpoint without its manifest");
        }
        Ok(cp)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn remove_file(&self, name: &str, what: &str) {
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => info!(path = %path.display(), "checkpoint: removed {what}"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!(path = %path.display(), error = %e, "checkpoint: cannot remove {what}"),
        }
    }

    /// Remove the checkpoint (manifest first: an RDB alone is never believed).
    pub fn remove(&self, why: &str) {
        self.remove_file(META, why);
        self.remove_file(RDB, why);
    }

    /// The checkpoint's manifest, if there is one; an unreadable one is logged and the
    /// checkpoint removed.
    pub fn find(&self) -> Option<Meta> {
        let path = self.dir.join(META);
        let text = match File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => Err(e.to_string()),
            Ok(f) => {
                let mut text = String::new();
                match f.take(META_LIMIT).read_to_string(&mut text) {
                    Ok(_) => Ok(text),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let meta = text.and_then(|t| {
            let m: Meta = serde_json::from_str(&t).map_err(|e| e.to_string())?;
            if m.format != FORMAT {
                return Err(format!(
                    "format {}, this replisnap reads {FORMAT}",
                    m.format
                ));
            }
            Ok(m)
        });
        match meta {
            Ok(m) => Some(m),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "checkpoint unusable: ignored and removed");
                self.remove("an unusable checkpoint");
                None
            }
        }
    }

    /// Load the checkpoint `meta` describes, verified against it while it loads
    /// (length, SHA-256, CRC-64 trailer, `repl-id`/`repl-offset` aux); the key count too.
    pub fn load(&self, meta: &Meta) -> Result<(Preload, u64), WarmError> {
        let path = self.dir.join(RDB);
        let file = File::open(&path)?;
        let expected = Expected {
            bytes: meta.rdb.bytes,
            sha256: meta.rdb.sha256.clone(),
            crc64: meta.rdb.crc64.clone(),
            replid: meta.source.replid.clone(),
            offset: meta.source.offset,
        };
        load_checked(io::BufReader::with_capacity(1 << 20, file), &expected)
    }

    /// Write `capture` as the checkpoint (replacing any), `address` being the configured
    /// master's. The old manifest goes first, the new one last.
    pub fn write(&self, capture: Capture, address: &str) -> Result<Meta, CheckpointError> {
        if capture.replid.is_empty() || capture.replid == "?" {
            return Err(CheckpointError::NoData(
                "no replication ID (SYNC fallback)".into(),
            ));
        }
        let version = capture
            .master_version
            .ok_or_else(|| CheckpointError::NoData("the master's version is unknown".into()))?;
        let target = Target::for_server(version).map_err(CheckpointError::Target)?;
        let rules = Rules::for_target(version).map_err(CheckpointError::Target)?;
        let at = Utc::now();
        let aux = aux_fields(&capture, version, at);
        self.remove_file(META, "the previous checkpoint");
        let rdb_path = self.dir.join(RDB);
        let file = AtomicFile::create(&rdb_path).map_err(io_err("create", &rdb_path))?;
        let started = Instant::now();
        // Uncompressed: local disk, and LZF would only lengthen the stop.
        let exported = export_snapshot(
            capture.snapshot,
            &capture.functions,
            HashingWriter {
                inner: file,
                hasher: ObjectHasher::new(),
            },
            target,
            &aux,
            WriteOptions { compress: false },
            rules,
            at.timestamp_millis(),
        )
        .map_err(|source| CheckpointError::Write {
            path: rdb_path.clone(),
            source: Box::new(source),
        })?;
        let HashingWriter { inner, hasher } = exported.out;
        inner.commit().map_err(io_err("commit", &rdb_path))?;
        let write_seconds = started.elapsed();
        let object = hasher.finish();
        let meta = Meta {
            format: FORMAT,
            created_at: at,
            source: SourceInfo {
                address: address.to_string(),
                server: version.family.into(),
                version: version_text(&aux, version),
                replid: capture.replid,
                offset: u64::try_from(capture.offset).unwrap_or(0),
                history: capture.history,
            },
            stream_db: capture.stream_db,
            rdb: RdbInfo::new(
                if target.valkey_magic {
                    "VALKEY"
                } else {
                    "REDIS"
                },
                target.rdb_version,
                &object,
            ),
            digest: exported.digest,
            keys_total: exported.keys_total,
            write_seconds: secs(write_seconds),
            replisnap_version: Manifest::this_version().into(),
        };
        let meta_path = self.dir.join(META);
        let mut f = AtomicFile::create(&meta_path).map_err(io_err("create", &meta_path))?;
        let text = serde_json::to_vec_pretty(&meta).map_err(io::Error::other);
        text.and_then(|t| f.write_all(&t))
            .and_then(|()| f.commit())
            .map_err(io_err("write", &meta_path))?;
        Ok(meta)
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Hashes what passes through on its way to the file (the manifest's length and sums).
struct HashingWriter<W> {
    inner: W,
    hasher: ObjectHasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
#[path = "checkpoint_tests.rs"]
mod tests;
