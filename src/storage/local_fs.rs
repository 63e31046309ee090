//! The local backend's file-system steps: cleaning a snapshot directory, listing snapshot
//! directories, opening only regular files, removing in the safe order, and the 0700
//! directories and directory fsyncs every local write relies on.
//!
//! A leaf under [`super::local`] (which imports it, never the reverse). Like it, it must
//! never touch what replisnap did not create: only `dump.rdb`, `manifest.json` and their
//! temporary names inside directories named by a snapshot id, never through a symlink.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use super::{CleanupReport, Result, SnapshotId, StorageError};
use crate::atomic_file::is_temp_name;

pub const RDB_NAME: &str = "dump.rdb";
pub const MANIFEST_NAME: &str = "manifest.json";

/// Cleanup of one snapshot directory, under the exclusive lock (so no writer is in it).
pub(super) fn clean_dir(dir: &Path, root: &Path, report: &mut CleanupReport) -> Result<()> {
    let manifest = dir.join(MANIFEST_NAME);
    match fs::symlink_metadata(&manifest) {
        Ok(_) => {
            // A snapshot, or a broken one a human must see: only our temporaries go.
            for tmp in temp_files(dir)? {
                if remove_if_present(&tmp)? {
                    report.removed.push(tmp.display().to_string());
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // No manifest: not a snapshot. Ours to remove only if it holds nothing but
            // what we write there; otherwise someone else uses the name and it stays whole.
            let foreign = foreign_entries(dir)?;
            if !foreign.is_empty() {
                report.kept.push((
                    dir.display().to_string(),
                    format!(
                        "holds files replisnap did not create: {}",
                        foreign.join(", ")
                    ),
                ));
                return Ok(());
            }
            if !remove_snapshot_dir(dir, root, &mut report.removed)? {
                // Something appeared meanwhile; it is not ours.
                report.kept.push((
                    dir.display().to_string(),
                    "holds files replisnap did not create".into(),
                ));
            }
            Ok(())
        }
        Err(e) => Err(StorageError::io("stat", &manifest)(e)),
    }
}

/// Names in a snapshot directory that replisnap does not write there (at most a few, for
/// the report): anything but `dump.rdb`, `manifest.json` and their temporaries as regular
/// files.
fn foreign_entries(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(StorageError::io("read directory", dir))? {
        let entry = entry.map_err(StorageError::io("read directory", dir))?;
        let name = entry.file_name();
        let ours = name.to_str().is_some_and(|n| {
            n == RDB_NAME
                || n == MANIFEST_NAME
                || is_temp_name(n, RDB_NAME)
                || is_temp_name(n, MANIFEST_NAME)
        }) && entry.file_type().is_ok_and(|t| t.is_file());
        if !ours {
            out.push(format!("{:?}", name));
            if out.len() == 5 {
                out.push("…".into());
                break;
            }
        }
    }
    Ok(out)
}

/// Ids of the real directories (not symlinks) in `root` named by a snapshot id.
pub(super) fn snapshot_dirs(root: &Path) -> Result<Vec<SnapshotId>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(root).map_err(StorageError::io("read directory", root))? {
        let entry = entry.map_err(StorageError::io("read directory", root))?;
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| SnapshotId::parse(n).ok())
        else {
            continue;
        };
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Open a regular file for reading without following a symlink or blocking on a FIFO.
pub(super) fn open_regular(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(StorageError::io("open", path))?;
    let md = file.metadata().map_err(StorageError::io("stat", path))?;
    if !md.is_file() {
        return Err(StorageError::Broken {
            path: path.display().to_string(),
            reason: "not a regular file".into(),
        });
    }
    Ok(file)
}

/// Our temporary files in a snapshot directory (regular files with AtomicFile's names).
fn temp_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StorageError::io("read directory", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(StorageError::io("read directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = is_temp_name(name, RDB_NAME) || is_temp_name(name, MANIFEST_NAME);
        if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io("remove", path)(e)),
    }
}

/// Take a snapshot directory apart in the order that keeps "no manifest, no snapshot":
/// the manifest (made durable before anything else goes), the RDB, our temporaries, the
/// directory. Removed paths are appended to `removed`. Ok(false) when the directory holds
/// files we did not create and so stays.
pub(super) fn remove_snapshot_dir(
    dir: &Path,
    root: &Path,
    removed: &mut Vec<String>,
) -> Result<bool> {
    let manifest = dir.join(MANIFEST_NAME);
    if remove_if_present(&manifest)? {
        removed.push(manifest.display().to_string());
        sync_dir(dir)?;
    }
    let rdb = dir.join(RDB_NAME);
    if remove_if_present(&rdb)? {
        removed.push(rdb.display().to_string());
    }
    for tmp in temp_files(dir)? {
        if remove_if_present(&tmp)? {
            removed.push(tmp.display().to_string());
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => {
            removed.push(dir.display().to_string());
            sync_dir(root)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(false),
        Err(e) => Err(StorageError::io("remove directory", dir)(e)),
    }
}

/// Directories we create are 0700 whatever the umask (a mode is only ever narrowed by it):
/// what they hold is a copy of someone's data. An existing storage root is left as the
/// operator made it.
pub(super) fn private_dirs() -> fs::DirBuilder {
    use std::os::unix::fs::DirBuilderExt;
    let mut b = fs::DirBuilder::new();
    b.mode(0o700);
    b
}

pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io("fsync directory", dir))
}
