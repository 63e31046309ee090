//! The local-directory backend: `<path>/<id>/dump.rdb`, then `<path>/<id>/manifest.json`.
//!
//! Owns the on-disk layout and its durability: a snapshot directory is created with
//! `mkdir` (which also reserves the id against a concurrent writer) and its parent fsynced;
//! each file is written under a temporary name ([`AtomicFile`]), fsynced, renamed, and its
//! directory fsynced. Writers hold a shared `flock` on `<path>/.replisnap.lock` from
//! reserving the id until the manifest is written; cleanup runs only under the exclusive
//! lock, so it never sees a write in progress as a leftover, in this process or another,
//! and a killed writer's lock vanishes with it.
//!
//! It must never touch what it did not create: only directories named by a snapshot id
//! (never through a symlink), and inside them only `dump.rdb`, `manifest.json` and their
//! temporary names; a directory left holding anything else is kept and reported.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::lock::{LockFile, WriterLock};
use super::{
    CleanupReport, ListProblem, Listing, Manifest, ObjectHasher, ObjectInfo, RdbSink, Result,
    SnapshotId, Storage, StorageError, StoredObject, StoredRdb, MANIFEST_LIMIT,
};
use crate::atomic_file::AtomicFile;

use super::local_fs::{
    clean_dir, open_regular, private_dirs, remove_snapshot_dir, snapshot_dirs, sync_dir,
};
pub use super::local_fs::{MANIFEST_NAME, RDB_NAME};
pub use super::lock::{LOCK_NAME, WRITER_NAME};

pub struct LocalStorage {
    root: PathBuf,
    /// Held from `claim` on: this process is the directory's one writer.
    writer: std::sync::Mutex<Option<WriterLock>>,
    /// Directories of failed snapshots this process could not remove (storage read-only
    /// or gone at that moment): removed again before the next snapshot, not only by the
    /// next start's cleanup.
    leftovers: std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>>,
}

impl LocalStorage {
    /// No I/O: the directory is created by the first write, and read by the others.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStorage {
            root: root.into(),
            writer: std::sync::Mutex::new(None),
            leftovers: Default::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a snapshot. `id` is validated, so this stays inside the root.
    pub fn snapshot_dir(&self, id: &SnapshotId) -> PathBuf {
        self.root.join(id.as_str())
    }

    /// Create the storage directory if missing, fsyncing every parent that gained an entry.
    pub(super) fn ensure_root(&self) -> Result<()> {
        match fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(StorageError::Broken {
                    path: self.root.display().to_string(),
                    reason: "not a directory".into(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("stat", &self.root)(e)),
        }
        let missing: Vec<&Path> = self
            .root
            .ancestors()
            .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
            .collect();
        private_dirs()
            .recursive(true)
            .create(&self.root)
            .map_err(StorageError::io("create directory", &self.root))?;
        for dir in missing {
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
            sync_dir(parent.unwrap_or(Path::new(".")))?;
        }
        Ok(())
    }

    /// Remove what earlier failed snapshots of this process left (see `leftovers`).
    fn retry_leftovers(&self) {
        let mut list = self.leftovers.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|dir| {
            if fs::symlink_metadata(dir).is_err() {
                return false;
            }
            // What the failed snapshot's own drop tried: its files, then the directory.
            match remove_snapshot_dir(dir, &self.root, &mut Vec::new()) {
                Ok(true) => {
                    tracing::info!(dir = %dir.display(), "storage: a failed snapshot's leftovers removed");
                    false
                }
                Ok(false) => {
                    tracing::warn!(dir = %dir.display(), "storage: a failed snapshot's directory holds files replisnap did not create; left alone");
                    false
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "storage: a failed snapshot's leftovers still cannot be removed");
                    true
                }
            }
        });
    }

    fn create(&self, at: DateTime<Utc>, fresh: bool) -> Result<Box<dyn RdbSink>> {
        self.ensure_root()?;
        let lock = LockFile::shared(&self.root)?;
        self.retry_leftovers();
        let (id, dir) = self.reserve(at, fresh)?;
        let path = dir.join(RDB_NAME);
        let file = match AtomicFile::create(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_dir(&dir);
                return Err(StorageError::io("create", &path)(e));
            }
        };
        Ok(Box::new(LocalSink {
            id,
            dir,
            file: Some(file),
            hasher: ObjectHasher::new(),
            lock: Some(lock),
            done: false,
            leftovers: self.leftovers.clone(),
        }))
    }

    /// The greatest id among the root's entries (complete or not).
    fn newest_id(&self) -> Result<Option<SnapshotId>> {
        let rd = fs::read_dir(&self.root).map_err(StorageError::io("list", &self.root))?;
        let mut newest: Option<SnapshotId> = None;
        for e in rd {
            let e = e.map_err(StorageError::io("list", &self.root))?;
            if let Some(id) = e
                .file_name()
                .to_str()
                .and_then(|n| SnapshotId::parse(n).ok())
            {
                if newest.as_ref().is_none_or(|n| id > *n) {
                    newest = Some(id);
                }
            }
        }
        Ok(newest)
    }

    /// Claim the first free id at `at` (`fresh`: and greater than every id here, see
    /// [`SnapshotId::new_after`]) by creating its directory: `mkdir` fails on an existing
    /// name, so two writers can never share an id.
    fn reserve(&self, at: DateTime<Utc>, fresh: bool) -> Result<(SnapshotId, PathBuf)> {
        let newest = if fresh { self.newest_id()? } else { None };
        let mut failure = None;
        let id = SnapshotId::new_after(at, newest.as_ref(), |candidate| {
            let dir = self.root.join(candidate);
            match private_dirs().create(&dir) {
                Ok(()) => false,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => true,
                Err(e) => {
                    failure = Some(StorageError::io("create directory", &dir)(e));
                    false
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let dir = self.snapshot_dir(&id);
        // The new entry must be durable before anything inside it counts.
        if let Err(e) = sync_dir(&self.root) {
            let _ = fs::remove_dir(&dir);
            return Err(e);
        }
        Ok((id, dir))
    }

    /// The manifest of `id` if it has one, checked, with its RDB present at the recorded
    /// size; Ok(None) when there is no manifest (the snapshot does not exist).
    fn load(&self, id: &SnapshotId) -> Result<Option<Manifest>> {
        let dir = self.snapshot_dir(id);
        let path = dir.join(MANIFEST_NAME);
        let shown = path.display().to_string();
        let file = match open_regular(&path) {
            Ok(f) => f,
            Err(StorageError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let len = file
            .metadata()
            .map_err(StorageError::io("stat", &path))?
            .len();
        if len > MANIFEST_LIMIT {
            return Err(StorageError::ManifestTooLarge {
                path: shown,
                limit: MANIFEST_LIMIT,
            });
        }
        // Bounded again while reading: the file may grow after the stat.
        let mut data = Vec::new();
        file.take(MANIFEST_LIMIT + 1)
            .read_to_end(&mut data)
            .map_err(StorageError::io("read", &path))?;
        let m = Manifest::from_json(&data, &shown)?;
        if &m.id != id {
            return Err(StorageError::Manifest {
                path: shown,
                reason: format!("id {} is not its directory's name {id}", m.id),
            });
        }
        let rdb = dir.join(RDB_NAME);
        let broken = |reason: String| StorageError::Broken {
            path: rdb.display().to_string(),
            reason,
        };
        match fs::symlink_metadata(&rdb) {
            Ok(md) if md.is_file() && md.len() == m.rdb.bytes => Ok(Some(m)),
            Ok(md) if md.is_file() => Err(broken(format!(
                "{} bytes where the manifest says {}",
                md.len(),
                m.rdb.bytes
            ))),
            Ok(_) => Err(broken("not a regular file".into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(broken("missing, though the manifest names it".into()))
            }
            Err(e) => Err(StorageError::io("stat", &rdb)(e)),
        }
    }

    fn not_found(&self, id: &SnapshotId) -> StorageError {
        StorageError::NotFound {
            id: id.to_string(),
            location: self.describe(),
        }
    }
}

impl Storage for LocalStorage {
    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }

    fn create_rdb(&self, at: DateTime<Utc>) -> Result<Box<dyn RdbSink>> {
        self.create(at, true)
    }

    fn create_rdb_as_taken(&self, at: DateTime<Utc>) -> Result<Box<dyn RdbSink>> {
        self.create(at, false)
    }

    fn list(&self) -> Result<Listing> {
        let mut listing = Listing::default();
        for id in snapshot_dirs(&self.root)? {
            match self.load(&id) {
                Ok(Some(m)) => listing.snapshots.push(m),
                Ok(None) => {}
                Err(error) => listing.problems.push(ListProblem { id, error }),
            }
        }
        listing.snapshots.sort_by(|a, b| b.id.cmp(&a.id));
        listing.problems.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(listing)
    }

    fn get_manifest(&self, id: &SnapshotId) -> Result<Manifest> {
        self.load(id)?.ok_or_else(|| self.not_found(id))
    }

    fn open_rdb(&self, id: &SnapshotId) -> Result<Box<dyn Read + Send>> {
        // Only a snapshot that list would show can be read.
        self.get_manifest(id)?;
        Ok(Box::new(open_regular(
            &self.snapshot_dir(id).join(RDB_NAME),
        )?))
    }

    fn delete(&self, id: &SnapshotId) -> Result<()> {
        let dir = self.snapshot_dir(id);
        match fs::symlink_metadata(&dir) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => return Err(self.not_found(id)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.not_found(id)),
            Err(e) => return Err(StorageError::io("stat", &dir)(e)),
        }
        if !remove_snapshot_dir(&dir, &self.root, &mut Vec::new())? {
            tracing::warn!(
                dir = %dir.display(),
                "snapshot deleted; its directory holds files replisnap did not create and stays"
            );
        }
        Ok(())
    }

    fn put_object(&self, key: &str, data: &[u8]) -> Result<()> {
        super::objects::local_put(self, key, data)
    }

    fn get_object(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        super::objects::local_get(self, key, limit)
    }

    fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        super::objects::local_list(self, prefix)
    }

    fn delete_object(&self, key: &str) -> Result<()> {
        super::objects::local_delete(self, key)
    }

    fn claim(&self) -> Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if writer.is_some() {
            return Ok(());
        }
        self.ensure_root()?;
        let holder = super::holder_name();
        match WriterLock::try_take(&self.root, &holder)? {
            Ok(lock) => {
                *writer = Some(lock);
                Ok(())
            }
            Err(holder) => Err(StorageError::Held {
                location: self.describe(),
                holder,
                until: "it exits".into(),
            }),
        }
    }

    fn cleanup(&self) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        match fs::metadata(&self.root) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
            Err(e) => return Err(StorageError::io("stat", &self.root)(e)),
        }
        let Some(_lock) = LockFile::try_exclusive(&self.root)? else {
            report.busy = true;
            return Ok(report);
        };
        for id in snapshot_dirs(&self.root)? {
            let dir = self.snapshot_dir(&id);
            if let Err(e) = clean_dir(&dir, &self.root, &mut report) {
                report.kept.push((dir.display().to_string(), e.to_string()));
            }
        }
        Ok(report)
    }
}

/// An RDB being written into `<id>/.dump.rdb.tmp-<pid>`, hashed on the way.
struct LocalSink {
    id: SnapshotId,
    dir: PathBuf,
    file: Option<AtomicFile>,
    hasher: ObjectHasher,
    lock: Option<LockFile>,
    done: bool,
    leftovers: std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>>,
}

impl Write for LocalSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("sink already committed"))?;
        let n = f.write(buf).map_err(|e| self.naming(e))?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.file.as_mut().map_or(Ok(()), |f| f.flush());
        r.map_err(|e| self.naming(e))
    }
}

impl LocalSink {
    /// The error with the file it happened to (a full disk must say where).
    fn naming(&self, e: io::Error) -> io::Error {
        io::Error::new(
            e.kind(),
            format!("{}: {e}", self.dir.join(RDB_NAME).display()),
        )
    }
}

impl RdbSink for LocalSink {
    fn id(&self) -> &SnapshotId {
        &self.id
    }

    fn bytes_written(&self) -> u64 {
        self.hasher.bytes()
    }

    fn commit(mut self: Box<Self>) -> Result<Box<dyn StoredRdb>> {
        let path = self.dir.join(RDB_NAME);
        let file = self.file.take().ok_or_else(|| {
            StorageError::io("commit", &path)(io::Error::other("already committed"))
        })?;
        // On failure, dropping self removes the directory.
        file.commit().map_err(StorageError::io(
            "flush, fsync and rename into place",
            &path,
        ))?;
        self.done = true;
        Ok(Box::new(LocalStored {
            id: self.id.clone(),
            dir: self.dir.clone(),
            object: std::mem::take(&mut self.hasher).finish(),
            root: self.dir.parent().map(Path::to_path_buf).unwrap_or_default(),
            _lock: self.lock.take(),
            done: false,
            leftovers: self.leftovers.clone(),
        }))
    }
}

impl Drop for LocalSink {
    fn drop(&mut self) {
        if !self.done {
            // The temporary goes with the AtomicFile, then the directory, then the lock.
            drop(self.file.take());
            if let Some(root) = self.dir.parent() {
                let _ = remove_snapshot_dir(&self.dir, root, &mut Vec::new());
            }
            if fs::symlink_metadata(&self.dir).is_ok() {
                tracing::warn!(dir = %self.dir.display(), "storage: a failed snapshot's files cannot be removed now; retried before the next snapshot");
                if let Ok(mut l) = self.leftovers.lock() {
                    l.push(self.dir.clone());
                }
            }
        }
    }
}

/// A durable `dump.rdb` whose manifest is not written yet.
struct LocalStored {
    id: SnapshotId,
    dir: PathBuf,
    root: PathBuf,
    object: StoredObject,
    // Held so cleanup cannot take the RDB for a leftover before its manifest lands.
    _lock: Option<LockFile>,
    done: bool,
    leftovers: std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>>,
}

impl StoredRdb for LocalStored {
    fn id(&self) -> &SnapshotId {
        &self.id
    }

    fn object(&self) -> &StoredObject {
        &self.object
    }

    fn put_manifest(mut self: Box<Self>, manifest: &Manifest) -> Result<()> {
        manifest.check_describes(&self.id, &self.object)?;
        let path = self.dir.join(MANIFEST_NAME);
        let json = manifest
            .to_json()
            .map_err(|reason| StorageError::Manifest {
                path: path.display().to_string(),
                reason,
            })?;
        // Never a manifest for an RDB that is not there as stored (e.g. deleted meanwhile).
        let rdb = self.dir.join(RDB_NAME);
        match fs::symlink_metadata(&rdb) {
            Ok(md) if md.is_file() && md.len() == self.object.bytes => {}
            Ok(_) => {
                return Err(StorageError::Broken {
                    path: rdb.display().to_string(),
                    reason: "changed after it was stored".into(),
                })
            }
            Err(e) => return Err(StorageError::io("stat", &rdb)(e)),
        }
        let mut f = AtomicFile::create(&path).map_err(StorageError::io("create", &path))?;
        f.write_all(&json)
            .map_err(StorageError::io("write", &path))?;
        f.commit().map_err(StorageError::io(
            "flush, fsync and rename into place",
            &path,
        ))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for LocalStored {
    fn drop(&mut self) {
        if !self.done {
            // No manifest was promised, so none may remain (a failed put_manifest may
            // have renamed one in place before failing): the usual order removes both.
            let _ = remove_snapshot_dir(&self.dir, &self.root, &mut Vec::new());
            if fs::symlink_metadata(&self.dir).is_ok() {
                tracing::warn!(dir = %self.dir.display(), "storage: a failed snapshot's files cannot be removed now; retried before the next snapshot");
                if let Ok(mut l) = self.leftovers.lock() {
                    l.push(self.dir.clone());
                }
            }
        }
    }
}
