//! Files that appear whole or not at all: write to a temporary name beside the target,
//! fsync, rename over the target, fsync the directory.
//!
//! Owns that sequence, which every file replisnap leaves for users goes through. It must
//! never leave a partial file under the final name; a dropped, uncommitted file removes
//! its temporary.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Create `<dir>/.<name>.tmp-<pid>` for `dest`.
    pub fn create(dest: &Path) -> io::Result<AtomicFile> {
        let name = dest.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "destination has no file name")
        })?;
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(temp_name(&name.to_string_lossy(), std::process::id()));
        // Owner-only: what we write is a copy of someone's data.
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        Ok(AtomicFile {
            tmp,
            dest: dest.to_path_buf(),
            file: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Flush, fsync, rename into place, fsync the directory.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("already committed"))?;
        let placed = file
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_all())
            .and_then(|()| fs::rename(&self.tmp, &self.dest));
        if let Err(e) = placed {
            // Not in place: the temporary is ours to remove, as on drop.
            let _ = fs::remove_file(&self.tmp);
            return Err(e);
        }
        let dir = self
            .dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()
    }
}

/// The temporary name of a destination named `dest_name`, written by process `pid`.
fn temp_name(dest_name: &str, pid: u32) -> String {
    format!(".{dest_name}.tmp-{pid}")
}

/// True when `name` is a temporary name [`AtomicFile::create`] gives a destination named
/// `dest_name` (any pid): how cleanup recognises an interrupted write's leftovers as ours.
pub fn is_temp_name(name: &str, dest_name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|r| r.strip_prefix(dest_name))
        .and_then(|r| r.strip_prefix(".tmp-"))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_replaces_and_drop_discards() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.rdb");
        fs::write(&dest, b"old").unwrap();
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary removed"
        );
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temp_names_are_recognised() {
        let t = temp_name("dump.rdb", 4242);
        assert!(is_temp_name(&t, "dump.rdb"));
        for other in [
            "dump.rdb",
            ".dump.rdb.tmp-",
            ".dump.rdb.tmp-12x",
            ".dump.rdb.tmp-../x",
            ".manifest.json.tmp-1",
            "dump.rdb.tmp-1",
        ] {
            assert!(!is_temp_name(other, "dump.rdb"), "{other}");
        }
    }
}
