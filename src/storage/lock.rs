//! The storage directory's locks: writers share one, cleanup takes it alone; a daemon holds
//! the other alone.
//!
//! Owns `<path>/.replisnap.lock` and the `flock` on it, and `<path>/.replisnap.writer`,
//! whose exclusive `flock` a daemon holds for its lifetime (one writer per directory, as the
//! S3 lease is per prefix) with the holder's name inside for the error a second one gets. A writer holds the shared lock from
//! reserving a snapshot id until its manifest is written, so cleanup, which needs the
//! exclusive one and never waits for it, cannot mistake a write in progress for a leftover,
//! in this process or another; the kernel drops a killed writer's lock with it. It must
//! never remove a lock file: two processes could then lock two different files.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, OFlags};
use rustix::io::Errno;

use super::{Result, StorageError};

/// Created in the storage directory by the first writer or cleanup; never removed.
pub const LOCK_NAME: &str = ".replisnap.lock";

/// A `flock` on `<root>/.replisnap.lock`, released when dropped (or when the process dies).
pub(super) struct LockFile {
    _file: File,
}

impl LockFile {
    fn open(root: &Path) -> Result<(File, PathBuf)> {
        let path = root.join(LOCK_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(StorageError::io("open lock file", &path))?;
        Ok((file, path))
    }

    /// Wait for a shared lock: writers share; only cleanup excludes them, briefly.
    pub(super) fn shared(root: &Path) -> Result<LockFile> {
        let (file, path) = Self::open(root)?;
        loop {
            match rustix::fs::flock(&file, FlockOperation::LockShared) {
                Ok(()) => return Ok(LockFile { _file: file }),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(StorageError::io("lock (shared)", &path)(e.into())),
            }
        }
    }

    /// The exclusive lock if no writer holds the shared one; None if one does.
    pub(super) fn try_exclusive(root: &Path) -> Result<Option<LockFile>> {
        let (file, path) = Self::open(root)?;
        loop {
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Some(LockFile { _file: file })),
                Err(Errno::INTR) => continue,
                Err(Errno::WOULDBLOCK) => return Ok(None),
                Err(e) => return Err(StorageError::io("lock (exclusive)", &path)(e.into())),
            }
        }
    }
}

/// Holds `<root>/.replisnap.writer` exclusively: this process is the directory's writer.
pub const WRITER_NAME: &str = ".replisnap.writer";

pub(super) struct WriterLock {
    _file: File,
}

impl WriterLock {
    /// Take the writer lock and record `holder` in it; Err(holder) names the process that
    /// has it (as it wrote itself in).
    pub(super) fn try_take(root: &Path, holder: &str) -> Result<Result<WriterLock, String>> {
        use std::io::{Read, Seek, Write};
        let path = root.join(WRITER_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(StorageError::io("open writer lock", &path))?;
        loop {
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(Errno::INTR) => continue,
                Err(Errno::WOULDBLOCK) => {
                    let mut who = String::new();
                    let _ = (&file).take(512).read_to_string(&mut who);
                    let who = who.trim();
                    return Ok(Err(if who.is_empty() {
                        "another process".into()
                    } else {
                        who.to_string()
                    }));
                }
                Err(e) => return Err(StorageError::io("lock (writer)", &path)(e.into())),
            }
        }
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            f.write_all(holder.as_bytes())?;
            f.sync_data()
        };
        write(&mut file).map_err(StorageError::io("write writer lock", &path))?;
        Ok(Ok(WriterLock { _file: file }))
    }
}
