//! Generic write-once objects beside the snapshots (the stream archive of SPEC §6), for
//! local storage; the key rules every backend shares.
//!
//! Owns what a key may be (`archive/` or `sets/` then `[A-Za-z0-9._-]` segments separated by `/`, no
//! `.` or `..` segment, at most 512 bytes), so a key never leaves the storage root, and the
//! local put-once: temporary name, fsync, `link` to the final name (which fails if it
//! exists: never an overwrite), fsync of the directory, 0600. It must never overwrite or
//! half-write an object, nor read more than the caller's limit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::local_fs::{private_dirs, sync_dir};
use super::{LocalStorage, ObjectInfo, Result, StorageError};

/// The top-level folder of the stream archive's objects.
pub const OBJECT_ROOT: &str = "archive/";
/// Every top-level folder generic objects may live in: the stream archive, and a
/// cluster's snapshot set manifests (`storage::set`).
pub const OBJECT_ROOTS: [&str; 2] = [OBJECT_ROOT, "sets/"];
const KEY_LIMIT: usize = 512;

pub(super) fn unsupported(key: &str) -> StorageError {
    StorageError::Broken {
        path: key.into(),
        reason: "this storage backend does not hold archive objects".into(),
    }
}

/// Refuse a key that could name something outside `archive/` or `sets/`.
pub fn check_key(key: &str) -> Result<()> {
    let bad = |reason: &str| StorageError::Broken {
        path: key.chars().take(80).collect(),
        reason: format!("invalid object key: {reason}"),
    };
    if key.len() > KEY_LIMIT {
        return Err(bad("longer than 512 bytes"));
    }
    let Some(rest) = OBJECT_ROOTS.iter().find_map(|r| key.strip_prefix(r)) else {
        return Err(bad("not under archive/ or sets/"));
    };
    for seg in rest.split('/') {
        if seg.is_empty() && !rest.is_empty() && !rest.ends_with('/') {
            return Err(bad("empty path segment"));
        }
        if seg == "." || seg == ".." || seg.starts_with('.') {
            return Err(bad("a segment starts with a dot"));
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad("only A-Z a-z 0-9 . _ - and / are allowed"));
        }
    }
    Ok(())
}

fn path_of(s: &LocalStorage, key: &str) -> Result<PathBuf> {
    check_key(key)?;
    Ok(s.root().join(key))
}

pub(super) fn local_put(s: &LocalStorage, key: &str, data: &[u8]) -> Result<()> {
    let dest = path_of(s, key)?;
    if dest.exists() {
        return Err(StorageError::Exists {
            key: dest.display().to_string(),
        });
    }
    s.ensure_root()?;
    let dir = dest.parent().unwrap_or(s.root()).to_path_buf();
    ensure_dirs(s.root(), &dir)?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(StorageError::io("write", &tmp)(e));
    }
    // `link` fails on an existing name: never an overwrite, even racing another writer.
    let linked = fs::hard_link(&tmp, &dest);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_dir(&dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(StorageError::Exists {
            key: dest.display().to_string(),
        }),
        Err(e) => Err(StorageError::io("link", &dest)(e)),
    }
}

/// Create the folders between the root and `dir` (0700), fsyncing each parent.
fn ensure_dirs(root: &Path, dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| *p != root && p.starts_with(root)) {
        ensure_dirs(root, parent)?;
    }
    match private_dirs().create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(StorageError::io("create directory", dir)(e)),
    }
    sync_dir(dir.parent().unwrap_or(root))
}

pub(super) fn local_get(s: &LocalStorage, key: &str, limit: u64) -> Result<Option<Vec<u8>>> {
    let path = path_of(s, key)?;
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("open", &path)(e)),
    };
    let mut out = Vec::new();
    f.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(StorageError::io("read", &path))?;
    if out.len() as u64 > limit {
        return Err(StorageError::Broken {
            path: path.display().to_string(),
            reason: format!("larger than {limit} bytes; refused"),
        });
    }
    Ok(Some(out))
}

pub(super) fn local_list(s: &LocalStorage, prefix: &str) -> Result<Vec<ObjectInfo>> {
    check_key(prefix)?;
    let folder = OBJECT_ROOTS
        .iter()
        .find(|r| prefix.starts_with(*r))
        .unwrap_or(&OBJECT_ROOT);
    let top = s.root().join(folder);
    let mut out = Vec::new();
    walk(s.root(), &top, &mut out)?;
    out.retain(|o| o.key.starts_with(prefix));
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectInfo>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io("list", dir)(e)),
    };
    for e in entries {
        let e = e.map_err(StorageError::io("list", dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // our temporaries
        }
        let path = e.path();
        let meta = e.metadata().map_err(StorageError::io("stat", &path))?;
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            if let Ok(rel) = path.strip_prefix(root) {
                out.push(ObjectInfo {
                    key: rel.to_string_lossy().into_owned(),
                    size: meta.len(),
                });
            }
        }
    }
    Ok(())
}

pub(super) fn local_delete(s: &LocalStorage, key: &str) -> Result<()> {
    let path = path_of(s, key)?;
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(s.root())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("delete", &path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Storage;

    #[test]
    fn keys_stay_under_archive() {
        assert!(check_key("archive/abc-1/0001-0002.seg").is_ok());
        assert!(check_key("archive/").is_ok());
        assert!(check_key("sets/20261204T181500Z/manifest.json").is_ok());
        for k in [
            "x/y",
            "sets/../x",
            "shards/0-1/x",
            "archive/../etc",
            "archive/a/./b",
            "archive/a b",
            "archive//a",
        ] {
            assert!(check_key(k).is_err(), "{k}");
        }
    }

    #[test]
    fn put_once_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path().join("st"));
        s.put_object("archive/h/1-2.seg", b"abc").unwrap();
        assert!(matches!(
            s.put_object("archive/h/1-2.seg", b"xyz"),
            Err(StorageError::Exists { .. })
        ));
        assert_eq!(
            s.get_object("archive/h/1-2.seg", 3).unwrap().unwrap(),
            b"abc"
        );
        assert!(s.get_object("archive/h/1-2.seg", 2).is_err());
        assert_eq!(s.get_object("archive/h/none", 9).unwrap(), None);
        let l = s.list_objects("archive/").unwrap();
        assert_eq!(
            l,
            vec![ObjectInfo {
                key: "archive/h/1-2.seg".into(),
                size: 3
            }]
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("st/archive/h/1-2.seg"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        s.delete_object("archive/h/1-2.seg").unwrap();
        assert!(s.list_objects("archive/").unwrap().is_empty());
    }
}
