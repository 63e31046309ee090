//! Where snapshots live: the [`Storage`] trait, its backends, the manifest and snapshot ids.
//!
//! Owns the storage contract of SPEC §3: `<id>/dump.rdb` first, `<id>/manifest.json` last,
//! and "a snapshot without a manifest does not exist". Snapshot code, retention and the CLI
//! talk to [`Storage`] only, so a backend (a local directory or S3) plugs in without
//! touching them. It must never lose a snapshot: nothing is visible before it is durable,
//! a manifest is written only for the RDB this process just stored and whose checksum was
//! confirmed, deletion removes the manifest first, and cleanup touches nothing it did not
//! create or that a writer still holds.
//!
//! The trait is blocking and `Send + Sync`: it is called from the snapshot thread and from
//! the CLI; the S3 backend blocks on its own runtime's futures.
//!
//! Writing is typed in three steps so the order cannot be broken by a caller:
//! [`Storage::create_rdb`] reserves an id and returns an [`RdbSink`] (a `Write` that hashes
//! on the way), [`RdbSink::commit`] makes the RDB durable and returns a [`StoredRdb`], and
//! only [`StoredRdb::put_manifest`] can write a manifest, after checking that it describes
//! exactly the bytes stored. Dropping either step instead of finishing it aborts.

pub mod hash;
pub mod id;
pub mod local;
mod local_fs;
mod lock;
pub mod manifest;
mod objects;
pub mod s3;
pub mod set;
pub mod staging;

use std::io::{self, Read, Write};
use std::path::Path;

use chrono::{DateTime, Utc};

pub use hash::{hash_reader, ObjectHasher, StoredObject};
pub use id::{IdError, SnapshotId};
pub use local::LocalStorage;
pub use manifest::{Durations, Manifest, RdbInfo, ServerKind, SourceInfo, MANIFEST_LIMIT};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operation on a file or directory failed; `op` says which (create, fsync, rename…).
    #[error("{path}: {op}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: invalid manifest: {reason}")]
    Manifest { path: String, reason: String },
    #[error("{path}: manifest larger than {limit} bytes; refused")]
    ManifestTooLarge { path: String, limit: u64 },
    /// The manifest is readable but the snapshot around it is not whole.
    #[error("{path}: {reason}")]
    Broken { path: String, reason: String },
    #[error("snapshot {id}: not found in {location}")]
    NotFound { id: String, location: String },
    #[error("{location}: no snapshots")]
    Empty { location: String },
    #[error("snapshot {id}: manifest does not describe the stored RDB: {what}")]
    Mismatch { id: String, what: String },
    #[error(transparent)]
    Id(#[from] IdError),
    /// An S3 request failed (after the SDK's retries); `message` is the service's code and
    /// message, or the transport's error chain.
    #[error("{key}: {op}: {message}")]
    S3 {
        op: &'static str,
        key: String,
        status: Option<u16>,
        message: String,
    },
    /// An object that replisnap writes once is already there; it is never overwritten.
    #[error("{key}: already exists; replisnap never overwrites an object")]
    Exists { key: String },
    /// An upload failed, and so did every retry from the staged copy, which stays.
    #[error(
        "snapshot {id}: upload failed {attempts} times, the last: {last}; kept staged in \
         {path} and uploaded after the next stored snapshot"
    )]
    Staged {
        id: String,
        attempts: u32,
        path: String,
        last: String,
    },
    /// Another writer holds the storage's lease (S3) or writer lock (local).
    #[error("{location}: held by {holder} (lease until {until}); another replisnap writes here")]
    Held {
        location: String,
        holder: String,
        until: String,
    },
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StorageError {
        let path = path.display().to_string();
        move |source| StorageError::Io { op, path, source }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A storage backend. Every method is blocking.
pub trait Storage: Send + Sync {
    /// Where this is, for logs and errors: "local directory /var/backups/redis".
    fn describe(&self) -> String;

    /// Reserve an id for a snapshot taken now, at `at`, and open a sink for its RDB: the
    /// second of `at` (`-N` appended if taken), or past the newest id here when the clock
    /// is behind it, so ids only grow ([`SnapshotId::new_after`]). Nothing the sink writes
    /// is visible until the manifest is written.
    fn create_rdb(&self, at: DateTime<Utc>) -> Result<Box<dyn RdbSink>>;

    /// As [`Storage::create_rdb`] for a snapshot taken earlier and stored late (a staged
    /// retry): named for its own time even when newer ones exist, so it ranks as old as it is.
    fn create_rdb_as_taken(&self, at: DateTime<Utc>) -> Result<Box<dyn RdbSink>> {
        self.create_rdb(at)
    }

    /// Snapshots with a valid manifest and an RDB of the recorded size, newest first; the
    /// ones whose manifest is present but unusable are reported beside them, not skipped in
    /// silence (they are neither listed, retained nor cleaned: a human must look).
    fn list(&self) -> Result<Listing>;

    /// The manifest of one snapshot, with the same checks as `list`.
    fn get_manifest(&self, id: &SnapshotId) -> Result<Manifest>;

    /// The stored RDB of a snapshot that has a manifest. The caller checks the bytes
    /// against the manifest ([`hash_reader`]).
    fn open_rdb(&self, id: &SnapshotId) -> Result<Box<dyn Read + Send>>;

    /// Delete a snapshot: the manifest first (from then on it does not exist), then the
    /// RDB, then what holds them. A crash in between leaves an RDB without a manifest,
    /// which `cleanup` removes.
    fn delete(&self, id: &SnapshotId) -> Result<()>;

    /// Remove what interrupted writes left: temporary files of ours, and snapshot
    /// directories without a manifest that no writer holds. Touches nothing else.
    fn cleanup(&self) -> Result<CleanupReport>;

    /// Become this storage's only writer, for as long as this value lives; an error names
    /// the holder when another process has it. S3 takes (and keeps renewing) the lease
    /// `<prefix>lock`, and its writes and deletes claim it too; local storage takes the
    /// exclusive `flock` on `<path>/.replisnap.writer`. A daemon calls this first, so a
    /// second one refuses to start rather than write beside the first.
    fn claim(&self) -> Result<()>;

    /// A local copy of a stored snapshot's RDB (`[storage] staging = "local"`), read by a
    /// warm restart instead of the stored one; the caller checks it against the manifest
    /// exactly as it would the stored RDB. None (the default) when there is none.
    fn open_staged(&self, _id: &SnapshotId) -> Option<Box<dyn Read + Send>> {
        None
    }

    /// Store `data` under `key` (`archive/…`, see [`objects::check_key`]) once: an existing
    /// object is never overwritten ([`StorageError::Exists`]). Durable when this returns.
    fn put_object(&self, key: &str, _data: &[u8]) -> Result<()> {
        Err(objects::unsupported(key))
    }

    /// The object under `key` if it exists and has at most `limit` bytes.
    fn get_object(&self, key: &str, _limit: u64) -> Result<Option<Vec<u8>>> {
        Err(objects::unsupported(key))
    }

    /// Every object whose key starts with `prefix` (`archive/…`), sorted by key.
    fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        Err(objects::unsupported(prefix))
    }

    /// Delete one object (absent is fine).
    fn delete_object(&self, key: &str) -> Result<()> {
        Err(objects::unsupported(key))
    }

    /// The snapshot writer's heartbeat, for work a backend does on its own within a write
    /// step (staging's uploads from the staged file beat it on every write they make).
    fn set_heartbeat(&self, _heartbeat: std::sync::Arc<crate::heartbeat::Heartbeat>) {}

    /// Retried attempts so far, by operation (`upload_retries_total{op}`): an attempt
    /// that failed and was tried again, whether or not it then succeeded. Empty for
    /// backends that do not retry.
    fn retries(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// Where an RDB is written. Dropped without [`commit`](RdbSink::commit), it removes what
/// it wrote.
pub trait RdbSink: Write + Send {
    fn id(&self) -> &SnapshotId;

    /// Bytes accepted so far.
    fn bytes_written(&self) -> u64;

    /// Flush and make the RDB durable under its final name. The snapshot does not exist
    /// yet: that takes [`StoredRdb::put_manifest`].
    fn commit(self: Box<Self>) -> Result<Box<dyn StoredRdb>>;
}

/// A durable RDB waiting for its manifest. Dropped without
/// [`put_manifest`](StoredRdb::put_manifest), it removes the RDB (best effort; what
/// remains has no manifest and is removed by `cleanup`).
pub trait StoredRdb: Send {
    fn id(&self) -> &SnapshotId;

    /// Length and checksums of what was stored, computed as it was written.
    fn object(&self) -> &StoredObject;

    /// Write the manifest, last. Refused unless it names this id, the stored length,
    /// SHA-256 and CRC-64, and the RDB's trailer matched its bytes
    /// ([`Manifest::check_describes`]). On failure the snapshot does not exist.
    fn put_manifest(self: Box<Self>, manifest: &Manifest) -> Result<()>;
}

/// One object under `archive/`: its key (relative to the storage's root or prefix) and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// What `list` found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Newest first.
    pub snapshots: Vec<Manifest>,
    /// Snapshots whose manifest exists but was refused, with the reason.
    pub problems: Vec<ListProblem>,
}

#[derive(Debug)]
pub struct ListProblem {
    /// The snapshot's id (a directory or prefix name that parsed as one).
    pub id: SnapshotId,
    pub error: StorageError,
}

/// What `cleanup` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// A writer held the storage, so nothing was examined; try again later.
    pub busy: bool,
    /// Paths (or keys) removed.
    pub removed: Vec<String>,
    /// Leftovers not removed, with the reason (e.g. they hold files we did not create).
    pub kept: Vec<(String, String)>,
}

/// How a writer names itself in locks and leases: host, pid, and an instance number (two
/// storages in one process are two writers).
pub(crate) fn holder_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static INSTANCE: AtomicU64 = AtomicU64::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
    format!("{host} pid {} #{n}", std::process::id())
}

/// The backend the config names.
pub fn open(cfg: &crate::config::Storage) -> Result<Box<dyn Storage>> {
    use crate::config::StorageKind;
    match cfg.kind {
        StorageKind::Local => match &cfg.path {
            Some(p) => Ok(Box::new(LocalStorage::new(p))),
            // Config validation requires it; say so rather than panic if that changes.
            None => Err(StorageError::Broken {
                path: "storage.path".into(),
                reason: "required when kind = \"local\"".into(),
            }),
        },
        StorageKind::S3 => Ok(Box::new(s3::S3Storage::open(cfg, None)?)),
    }
}

/// The backend the config names, as the daemon runs it: with `staging = "local"`, wrapped
/// so each snapshot is also kept in `<state_dir>/staging` ([`staging::StagedStorage`]).
pub fn open_with_staging(
    cfg: &crate::config::Storage,
    state_dir: &Path,
) -> Result<Box<dyn Storage>> {
    let inner = open(cfg)?;
    Ok(match cfg.staging {
        crate::config::Staging::Local => Box::new(staging::StagedStorage::new(inner, state_dir)),
        crate::config::Staging::None => inner,
    })
}

/// The manifest an `ID|latest` argument names (fetch, verify, restore).
pub fn resolve(storage: &dyn Storage, arg: &str) -> Result<Manifest> {
    if arg == "latest" {
        storage
            .list()?
            .snapshots
            .into_iter()
            .next()
            .ok_or_else(|| StorageError::Empty {
                location: storage.describe(),
            })
    } else {
        storage.get_manifest(&SnapshotId::parse(arg)?)
    }
}
