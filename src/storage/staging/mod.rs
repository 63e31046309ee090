//! Local staging (`[storage] staging = "local"`): a [`Storage`] that wraps the bucket's and
//! also keeps each snapshot file in `<state_dir>/staging/`.
//!
//! Owns three things. Writing: every byte the snapshot writer produces goes to the staged
//! file and to the upload; when the upload fails, the writing continues into the staged
//! file alone, so the snapshot is complete locally. Retrying: when the upload (or its
//! manifest) failed, the staged file is uploaded again with the same manifest, a bounded
//! number of times with exponential backoff, on the snapshot writer's thread (never the
//! apply loop's) and without taking a new snapshot; one that still fails stays staged as
//! pending and is uploaded after the next stored snapshot. Pruning: once a snapshot is
//! stored with its manifest (the upload checked its size and checksum), the staged files
//! of older stored snapshots are removed, so exactly the newest stored one stays for a
//! warm restart ([`Storage::open_staged`]).
//!
//! It must never delete the staged files of a snapshot the bucket does not hold (pending:
//! the only copy), never write a manifest into the bucket for bytes other than the staged
//! ones (the wrapped storage checks the manifest against what it stored), and never make
//! staging a reason for a snapshot to fail: a staged file that cannot be written is
//! logged and the upload goes on alone.

mod dir;

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::atomic_file::AtomicFile;
use crate::heartbeat::Heartbeat;
use crate::storage::{
    CleanupReport, Listing, Manifest, ObjectHasher, RdbSink, Result, SnapshotId, Storage,
    StorageError, StoredObject, StoredRdb,
};

pub use dir::{Entry, StagingDir, State};

/// Uploads from the staged file after the streamed one failed, and the wait before the
/// first; each next wait doubles, up to [`MAX_BACKOFF`] (1 + 2 + 4 + 8 + 16 s).
pub const RETRIES: u32 = 5;
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The wait before retry `n` (0-based).
pub fn backoff(n: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF)
}

/// The wrapped storage and the staging directory.
pub struct StagedStorage {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Box<dyn Storage>,
    dir: StagingDir,
    /// The snapshot writer's: beaten on every write of a retry and through its backoff,
    /// so a retry is progress and only a write that never returns looks wedged.
    heartbeat: OnceLock<Arc<Heartbeat>>,
    /// Uploads tried again from the staged file (`upload_retries_total{op="staged_upload"}`).
    staged_retries: std::sync::atomic::AtomicU64,
}

impl StagedStorage {
    /// Stage into `<state_dir>/staging` what `inner` stores.
    pub fn new(inner: Box<dyn Storage>, state_dir: &Path) -> StagedStorage {
        StagedStorage {
            shared: Arc::new(Shared {
                inner,
                dir: StagingDir::new(state_dir),
                heartbeat: OnceLock::new(),
                staged_retries: Default::default(),
            }),
        }
    }

    pub fn staging(&self) -> &StagingDir {
        &self.shared.dir
    }
}

impl Shared {
    fn beat(&self) {
        if let Some(h) = self.heartbeat.get() {
            h.beat();
        }
    }

    /// Wait `d`, beating every second.
    fn wait(&self, d: Duration) {
        let end = std::time::Instant::now() + d;
        loop {
            self.beat();
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_secs(1)));
        }
    }

    /// Upload the staged RDB of `m.id` with manifest `m` (its id replaced if the bucket
    /// gave another); the id it is stored under.
    fn upload_staged(&self, m: &Manifest) -> Result<SnapshotId> {
        let path = self.dir.rdb(&m.id);
        let mut file = std::fs::File::open(&path).map_err(StorageError::io("open", &path))?;
        let mut sink = self.inner.create_rdb_as_taken(m.created_at)?;
        let mut buf = vec![0u8; 1 << 20];
        let copied: io::Result<()> = loop {
            match file.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    if let Err(e) = sink.write_all(&buf[..n]) {
                        break Err(e);
                    }
                    self.beat();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        copied.map_err(|source| StorageError::Io {
            op: "upload from staging",
            path: path.display().to_string(),
            source,
        })?;
        let stored = sink.commit()?;
        let mut m = m.clone();
        m.id = stored.id().clone();
        // The wrapped storage refuses a manifest that does not describe what it stored.
        stored.put_manifest(&m)?;
        Ok(m.id)
    }

    /// `stored` (staged as `staged`) is in the bucket: record it, upload the pending older
    /// ones once each, then remove every stored staged snapshot but `stored`.
    fn after_stored(&self, staged: &SnapshotId, stored: &Manifest) {
        let marked = if staged == &stored.id {
            self.dir.mark_stored(staged)
        } else {
            self.dir.adopt(staged, stored)
        };
        if let Err(e) = marked {
            warn!(id = %stored.id, error = %e, "staging: cannot record the snapshot as stored");
            return;
        }
        let entries = match self.dir.entries() {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "staging: cannot list the staged snapshots");
                return;
            }
        };
        for e in entries.iter().filter(|e| e.state == State::Pending) {
            let result = self
                .dir
                .manifest(e)
                .and_then(|m| Ok((self.upload_staged(&m)?, m)));
            match result {
                Ok((id, m)) => {
                    info!(id = %id, "staging: a snapshot whose upload had failed is now stored");
                    let m = Manifest { id, ..m };
                    let r = if m.id == e.id {
                        self.dir.mark_stored(&e.id)
                    } else {
                        self.dir.adopt(&e.id, &m)
                    };
                    if let Err(err) = r {
                        warn!(id = %e.id, error = %err, "staging: cannot record it as stored");
                    }
                }
                Err(err) => warn!(
                    id = %e.id, error = %err,
                    "staging: a snapshot not yet stored failed to upload again; kept staged"
                ),
            }
        }
        let entries = self.dir.entries().unwrap_or_default();
        for e in entries
            .iter()
            .filter(|e| e.state == State::Stored && e.id != stored.id)
        {
            match self.dir.remove_stored(&e.id) {
                Ok(true) => info!(id = %e.id, newer = %stored.id, "staging: older copy removed"),
                Ok(false) => {}
                Err(err) => warn!(id = %e.id, error = %err, "staging: cannot remove"),
            }
        }
    }
}

impl Storage for StagedStorage {
    fn describe(&self) -> String {
        self.shared.inner.describe()
    }

    fn create_rdb(&self, at: DateTime<Utc>) -> Result<Box<dyn RdbSink>> {
        let upload = self.shared.inner.create_rdb(at)?;
        let id = upload.id().clone();
        let stage = match self.shared.dir.create_rdb(&id) {
            Ok(f) => Some((f, ObjectHasher::new())),
            Err(e) => {
                warn!(id = %id, error = %e, "staging: cannot stage this snapshot; uploading only");
                None
            }
        };
        Ok(Box::new(StagedSink {
            shared: self.shared.clone(),
            id,
            upload: Some(upload),
            upload_error: None,
            stage,
            written: 0,
        }))
    }

    fn list(&self) -> Result<Listing> {
        self.shared.inner.list()
    }

    fn get_manifest(&self, id: &SnapshotId) -> Result<Manifest> {
        self.shared.inner.get_manifest(id)
    }

    fn open_rdb(&self, id: &SnapshotId) -> Result<Box<dyn Read + Send>> {
        self.shared.inner.open_rdb(id)
    }

    fn open_staged(&self, id: &SnapshotId) -> Option<Box<dyn Read + Send>> {
        let f = self.shared.dir.open_stored(id)?;
        Some(Box::new(io::BufReader::with_capacity(1 << 20, f)))
    }

    fn delete(&self, id: &SnapshotId) -> Result<()> {
        self.shared.inner.delete(id)?;
        if let Err(e) = self.shared.dir.remove_stored(id) {
            warn!(id = %id, error = %e, "staging: cannot remove the deleted snapshot's copy");
        }
        Ok(())
    }

    fn cleanup(&self) -> Result<CleanupReport> {
        let mut report = self.shared.inner.cleanup()?;
        if !report.busy {
            self.shared.dir.cleanup(&mut report)?;
        }
        Ok(report)
    }

    fn put_object(&self, key: &str, data: &[u8]) -> Result<()> {
        self.shared.inner.put_object(key, data)
    }

    fn get_object(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        self.shared.inner.get_object(key, limit)
    }

    fn list_objects(&self, prefix: &str) -> Result<Vec<super::ObjectInfo>> {
        self.shared.inner.list_objects(prefix)
    }

    fn delete_object(&self, key: &str) -> Result<()> {
        self.shared.inner.delete_object(key)
    }

    fn claim(&self) -> Result<()> {
        self.shared.inner.claim()
    }

    fn retries(&self) -> Vec<(&'static str, u64)> {
        let mut r = self.shared.inner.retries();
        let staged = self
            .shared
            .staged_retries
            .load(std::sync::atomic::Ordering::Relaxed);
        r.push(("staged_upload", staged));
        r
    }

    fn set_heartbeat(&self, heartbeat: Arc<Heartbeat>) {
        let _ = self.shared.heartbeat.set(heartbeat.clone());
        self.shared.inner.set_heartbeat(heartbeat);
    }
}

/// The upload and the staged file, written together.
struct StagedSink {
    shared: Arc<Shared>,
    id: SnapshotId,
    /// None once it failed (dropping it aborted the upload).
    upload: Option<Box<dyn RdbSink>>,
    upload_error: Option<StorageError>,
    /// None if staging failed (the upload goes on alone).
    stage: Option<(AtomicFile, ObjectHasher)>,
    written: u64,
}

impl StagedSink {
    fn upload_failed(&mut self, e: StorageError) {
        warn!(
            id = %self.id, error = %e,
            "upload failed; the snapshot goes on into the staged file and is uploaded from it"
        );
        self.upload = None;
        self.upload_error = Some(e);
    }
}

impl Write for StagedSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some((f, h)) = &mut self.stage {
            match f.write_all(buf) {
                Ok(()) => h.update(buf),
                Err(e) if self.upload.is_some() => {
                    warn!(id = %self.id, error = %e, "staging: write failed; uploading only");
                    self.stage = None;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(up) = &mut self.upload {
            if let Err(e) = up.write_all(buf) {
                if self.stage.is_none() {
                    return Err(e);
                }
                self.upload_failed(StorageError::Io {
                    op: "upload",
                    path: self.shared.inner.describe(),
                    source: e,
                });
            }
        }
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl RdbSink for StagedSink {
    fn id(&self) -> &SnapshotId {
        &self.id
    }

    fn bytes_written(&self) -> u64 {
        self.written
    }

    fn commit(mut self: Box<Self>) -> Result<Box<dyn StoredRdb>> {
        let staged = match self.stage.take() {
            Some((f, h)) => {
                let path = self.shared.dir.rdb(&self.id);
                match f.commit() {
                    Ok(()) => Some(h.finish()),
                    Err(e) if self.upload.is_some() => {
                        warn!(path = %path.display(), error = %e, "staging: commit failed; uploading only");
                        None
                    }
                    Err(e) => return Err(StorageError::io("commit", &path)(e)),
                }
            }
            None => None,
        };
        let upload = match self.upload.take() {
            Some(up) => match up.commit() {
                Ok(stored) => Some(stored),
                Err(e) if staged.is_some() => {
                    self.upload_failed(e);
                    None
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        let Some(object) = staged else {
            // Not staged: the upload alone, as without staging.
            return match (upload, self.upload_error.take()) {
                (Some(stored), _) => Ok(stored),
                (None, Some(e)) => Err(e),
                (None, None) => Err(StorageError::Broken {
                    path: self.shared.dir.path().display().to_string(),
                    reason: "neither staged nor uploaded".into(),
                }),
            };
        };
        if let Some(stored) = &upload {
            if stored.object() != &object {
                let _ = std::fs::remove_file(self.shared.dir.rdb(&self.id));
                return Err(StorageError::Mismatch {
                    id: self.id.to_string(),
                    what: "the upload and the staged file differ".into(),
                });
            }
        }
        Ok(Box::new(StagedRdb {
            shared: self.shared.clone(),
            id: self.id.clone(),
            upload,
            upload_error: self.upload_error.take(),
            object,
            manifest_given: false,
        }))
    }
}

/// A snapshot staged whole, and stored in the bucket unless its upload failed.
struct StagedRdb {
    shared: Arc<Shared>,
    id: SnapshotId,
    upload: Option<Box<dyn StoredRdb>>,
    upload_error: Option<StorageError>,
    object: StoredObject,
    /// Set once a manifest was accepted; dropped before, the staged RDB is removed.
    manifest_given: bool,
}

impl Drop for StagedRdb {
    fn drop(&mut self) {
        if !self.manifest_given {
            let path = self.shared.dir.rdb(&self.id);
            if std::fs::remove_file(&path).is_ok() {
                info!(path = %path.display(), "staging: removed the copy of a snapshot that failed");
            }
        }
    }
}

impl StoredRdb for StagedRdb {
    fn id(&self) -> &SnapshotId {
        &self.id
    }

    fn object(&self) -> &StoredObject {
        &self.object
    }

    fn put_manifest(mut self: Box<Self>, manifest: &Manifest) -> Result<()> {
        // From here the staged file is this snapshot's (pending, then stored): kept.
        self.manifest_given = true;
        let (shared, id, object) = (self.shared.clone(), self.id.clone(), &self.object);
        let (upload, upload_error) = (self.upload.take(), self.upload_error.take());
        // The staged copy is checked like the bucket's: same id, bytes, sums, trailer.
        if let Err(e) = manifest.check_describes(&id, object) {
            self.manifest_given = false;
            return Err(e);
        }
        if let Err(e) = shared.dir.write_pending(manifest) {
            warn!(id = %id, error = %e, "staging: cannot record the manifest beside the staged file");
        }
        let mut last = upload_error;
        if let Some(up) = upload {
            match up.put_manifest(manifest) {
                Ok(()) => {
                    shared.after_stored(&id, manifest);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        for n in 0..RETRIES {
            let wait = backoff(n);
            warn!(
                id = %id, attempt = n + 1, of = RETRIES, wait_seconds = wait.as_secs(),
                error = %last.as_ref().map(|e| e.to_string()).unwrap_or_default(),
                "upload failed; retrying from the staged file"
            );
            shared.wait(wait);
            shared
                .staged_retries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match shared.upload_staged(manifest) {
                Ok(stored_id) => {
                    info!(id = %stored_id, attempt = n + 1, "uploaded from the staged file");
                    let stored = Manifest {
                        id: stored_id,
                        ..manifest.clone()
                    };
                    shared.after_stored(&id, &stored);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(StorageError::Staged {
            id: id.to_string(),
            attempts: RETRIES + 1,
            path: shared.dir.rdb(&id).display().to_string(),
            last: last.map(|e| e.to_string()).unwrap_or_default(),
        })
    }
}
