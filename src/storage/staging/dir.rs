//! The staging directory, `<state_dir>/staging/`: one snapshot's files per id.
//!
//! Owns the names and states of staged files: `<id>.rdb` (the RDB, written through
//! [`AtomicFile`]: temporary name, 0600, fsync, rename, directory fsync), then
//! `<id>.pending.json` (its manifest, once the snapshot is complete but not yet stored in
//! the bucket), renamed to `<id>.json` once the bucket holds it with its manifest. It must
//! never remove a pending snapshot's files (they are the only copy of a snapshot that is
//! not stored), never write a file that is not 0600 in a 0700 directory, and never touch a
//! name it does not create.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::atomic_file::{is_temp_name, AtomicFile};
use crate::storage::{CleanupReport, Manifest, Result, SnapshotId, StorageError};

const RDB_EXT: &str = ".rdb";
const PENDING_EXT: &str = ".pending.json";
const STORED_EXT: &str = ".json";

/// Where a staged snapshot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Complete, with its manifest, not (yet) stored in the bucket.
    Pending,
    /// Stored in the bucket with its manifest.
    Stored,
}

/// One staged snapshot whose RDB and manifest are both present.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: SnapshotId,
    pub state: State,
}

#[derive(Debug, Default)]
struct Names {
    rdb: bool,
    pending: bool,
    stored: bool,
}

pub struct StagingDir {
    dir: PathBuf,
}

impl StagingDir {
    /// `<state_dir>/staging`; nothing is created until a snapshot is staged.
    pub fn new(state_dir: &Path) -> StagingDir {
        StagingDir {
            dir: state_dir.join("staging"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn rdb(&self, id: &SnapshotId) -> PathBuf {
        self.dir.join(format!("{id}{RDB_EXT}"))
    }

    fn pending(&self, id: &SnapshotId) -> PathBuf {
        self.dir.join(format!("{id}{PENDING_EXT}"))
    }

    fn stored(&self, id: &SnapshotId) -> PathBuf {
        self.dir.join(format!("{id}{STORED_EXT}"))
    }

    /// A temporary file that becomes `<id>.rdb` on commit (the directory created 0700).
    pub fn create_rdb(&self, id: &SnapshotId) -> Result<AtomicFile> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(StorageError::io("create directory", &self.dir))?;
        let path = self.rdb(id);
        AtomicFile::create(&path).map_err(StorageError::io("create", &path))
    }

    /// Record `m` as the manifest of the staged, not yet stored, `<m.id>.rdb`.
    pub fn write_pending(&self, m: &Manifest) -> Result<()> {
        self.write_manifest(&self.pending(&m.id), m)
    }

    fn write_manifest(&self, path: &Path, m: &Manifest) -> Result<()> {
        let json = m.to_json().map_err(|reason| StorageError::Manifest {
            path: path.display().to_string(),
            reason,
        })?;
        let mut f = AtomicFile::create(path).map_err(StorageError::io("create", path))?;
        io::Write::write_all(&mut f, &json).map_err(StorageError::io("write", path))?;
        f.commit().map_err(StorageError::io("commit", path))
    }

    /// The manifest a staged snapshot was recorded with.
    pub fn manifest(&self, e: &Entry) -> Result<Manifest> {
        let path = match e.state {
            State::Pending => self.pending(&e.id),
            State::Stored => self.stored(&e.id),
        };
        let data = fs::read(&path).map_err(StorageError::io("read", &path))?;
        Manifest::from_json(&data, &path.display().to_string())
    }

    /// The bucket holds `id`: its pending manifest becomes the stored one.
    pub fn mark_stored(&self, id: &SnapshotId) -> Result<()> {
        let (from, to) = (self.pending(id), self.stored(id));
        fs::rename(&from, &to).map_err(StorageError::io("rename", &from))?;
        self.sync()
    }

    /// The bucket stored the staged `old` under `stored.id` (its id was taken): rename the
    /// RDB and record `stored` as its manifest.
    pub fn adopt(&self, old: &SnapshotId, stored: &Manifest) -> Result<()> {
        let (from, to) = (self.rdb(old), self.rdb(&stored.id));
        fs::rename(&from, &to).map_err(StorageError::io("rename", &from))?;
        self.write_manifest(&self.stored(&stored.id), stored)?;
        remove_if_present(&self.pending(old))?;
        self.sync()
    }

    /// Open the RDB of a snapshot the bucket holds (state stored), if staged.
    pub fn open_stored(&self, id: &SnapshotId) -> Option<File> {
        if !self.stored(id).is_file() {
            return None;
        }
        File::open(self.rdb(id)).ok()
    }

    /// Remove a stored snapshot's staged files (the manifest first). A pending one stays:
    /// it is the only copy. Ok(true) when something was removed.
    pub fn remove_stored(&self, id: &SnapshotId) -> Result<bool> {
        if !remove_if_present(&self.stored(id))? {
            return Ok(false);
        }
        remove_if_present(&self.rdb(id))?;
        self.sync()?;
        Ok(true)
    }

    /// Staged snapshots with both files, oldest first.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        Ok(self
            .names()?
            .into_iter()
            .filter_map(|(id, n)| {
                let state = match (n.rdb, n.pending, n.stored) {
                    (true, _, true) => State::Stored,
                    (true, true, false) => State::Pending,
                    _ => return None,
                };
                Some(Entry { id, state })
            })
            .collect())
    }

    fn names(&self) -> Result<BTreeMap<SnapshotId, Names>> {
        let mut out: BTreeMap<SnapshotId, Names> = BTreeMap::new();
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StorageError::io("read directory", &self.dir)(e)),
        };
        for entry in rd {
            let entry = entry.map_err(StorageError::io("read directory", &self.dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let parsed = [PENDING_EXT, STORED_EXT, RDB_EXT]
                .into_iter()
                .find_map(|ext| Some((name.strip_suffix(ext)?, ext)));
            let Some((id, ext)) = parsed else { continue };
            let Ok(id) = SnapshotId::parse(id) else {
                continue;
            };
            let n = out.entry(id).or_default();
            match ext {
                RDB_EXT => n.rdb = true,
                PENDING_EXT => n.pending = true,
                _ => n.stored = true,
            }
        }
        Ok(out)
    }

    /// Remove what an interrupted staging left: our temporaries, an RDB without either
    /// manifest (its manifest was never known, so it cannot be uploaded), a manifest
    /// without its RDB. Appends what it removed to `report`.
    pub fn cleanup(&self, report: &mut CleanupReport) -> Result<()> {
        let mut doomed: Vec<PathBuf> = Vec::new();
        for (id, n) in self.names()? {
            match (n.rdb, n.pending || n.stored) {
                (true, false) => doomed.push(self.rdb(&id)),
                (false, true) => {
                    doomed.push(self.pending(&id));
                    doomed.push(self.stored(&id));
                }
                _ => {}
            }
        }
        if let Ok(rd) = fs::read_dir(&self.dir) {
            for entry in rd.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours = [RDB_EXT, PENDING_EXT, STORED_EXT].iter().any(|ext| {
                    name.strip_prefix('.')
                        .and_then(|r| r.split_once(".tmp-"))
                        .is_some_and(|(dest, _)| {
                            dest.strip_suffix(ext)
                                .is_some_and(|id| SnapshotId::parse(id).is_ok())
                                && is_temp_name(&name, dest)
                        })
                });
                if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
                    doomed.push(entry.path());
                }
            }
        }
        for path in doomed {
            if remove_if_present(&path)? {
                report.removed.push(path.display().to_string());
            }
        }
        if !report.removed.is_empty() {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(StorageError::io("fsync directory", &self.dir))
    }
}

fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io("remove", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::manifest::tests::sample;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn id(s: &str) -> SnapshotId {
        SnapshotId::parse(s).unwrap()
    }

    fn stage(d: &StagingDir, s: &str) {
        let mut f = d.create_rdb(&id(s)).unwrap();
        f.write_all(b"REDIS0011 bytes").unwrap();
        f.commit().unwrap();
        let mut m = sample();
        m.id = id(s);
        d.write_pending(&m).unwrap();
    }

    fn names(d: &StagingDir) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn states_pruning_and_cleanup() {
        let tmp = tempfile::tempdir().unwrap();
        let d = StagingDir::new(tmp.path());
        assert!(
            d.entries().unwrap().is_empty(),
            "absent directory: nothing staged"
        );
        stage(&d, "20260101T000000Z");
        stage(&d, "20260102T000000Z");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(d.path()), 0o700);
        assert_eq!(mode(&d.rdb(&id("20260101T000000Z"))), 0o600);
        d.mark_stored(&id("20260101T000000Z")).unwrap();
        let states: Vec<(String, State)> = d
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| (e.id.to_string(), e.state))
            .collect();
        assert_eq!(
            states,
            [
                ("20260101T000000Z".to_string(), State::Stored),
                ("20260102T000000Z".to_string(), State::Pending),
            ]
        );
        // A pending snapshot is the only copy: never removed as "stored".
        assert!(!d.remove_stored(&id("20260102T000000Z")).unwrap());
        assert!(d.open_stored(&id("20260102T000000Z")).is_none());
        assert!(d.open_stored(&id("20260101T000000Z")).is_some());
        // Taken under another id by the bucket: renamed, recorded as stored.
        let mut m = d
            .manifest(&Entry {
                id: id("20260102T000000Z"),
                state: State::Pending,
            })
            .unwrap();
        m.id = id("20260102T000000Z-1");
        d.adopt(&id("20260102T000000Z"), &m).unwrap();
        assert!(d.remove_stored(&id("20260101T000000Z")).unwrap());
        assert_eq!(
            names(&d),
            ["20260102T000000Z-1.json", "20260102T000000Z-1.rdb"]
        );
        // Leftovers of interrupted writes go; what we did not create stays.
        let f = d.create_rdb(&id("20260103T000000Z")).unwrap();
        std::mem::forget(f);
        fs::write(d.path().join("20260104T000000Z.rdb"), b"no manifest").unwrap();
        fs::write(d.path().join("20260105T000000Z.pending.json"), b"{}").unwrap();
        fs::write(d.path().join("notes.txt"), b"an operator's").unwrap();
        let mut report = CleanupReport::default();
        d.cleanup(&mut report).unwrap();
        assert_eq!(report.removed.len(), 3, "{:?}", report.removed);
        assert_eq!(
            names(&d),
            [
                "20260102T000000Z-1.json",
                "20260102T000000Z-1.rdb",
                "notes.txt"
            ]
        );
    }
}
