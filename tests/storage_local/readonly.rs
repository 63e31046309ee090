//! Storage that turns read-only while a snapshot is being written (found by the soak: the
//! failed snapshot's temporary stayed until the next start). The test bind-mounts the
//! directory read-only over itself (it needs root, as CI has), then takes the mount away.

use std::process::Command;

use super::*;

/// A read-only bind mount of a directory over itself (EROFS for every new write or
/// removal in it, while files already open stay writable), undone when dropped.
struct ReadOnly(std::path::PathBuf);

fn mount(args: &[&str], at: &Path) -> bool {
    Command::new("mount")
        .args(args)
        .arg(at)
        .status()
        .is_ok_and(|s| s.success())
}

impl ReadOnly {
    fn over(at: &Path) -> Option<ReadOnly> {
        if !mount(&["--bind", &at.display().to_string()], at) {
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot bind-mount {} (the test needs root)",
                at.display()
            );
            eprintln!("skipped: cannot bind-mount (the test needs root)");
            return None;
        }
        let ro = ReadOnly(at.to_path_buf());
        assert!(mount(&["-o", "remount,bind,ro"], at), "remount read-only");
        Some(ro)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Every entry under `root` but the lock files: what a failed snapshot could leave.
fn entries(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if e.path().is_dir() {
            for f in std::fs::read_dir(e.path()).unwrap() {
                out.push(format!(
                    "{name}/{}",
                    f.unwrap().file_name().to_string_lossy()
                ));
            }
        } else {
            out.push(name);
        }
    }
    out.sort();
    out
}

#[test]
fn a_snapshot_failed_on_read_only_storage_leaves_nothing_once_it_is_writable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    std::fs::create_dir_all(&root).unwrap();
    let s = LocalStorage::new(&root);
    s.claim().unwrap();
    let mut sink = s.create_rdb(t("2026-12-04T12:00:00Z")).unwrap();
    sink.write_all(&rdb_bytes(1 << 20, 3)).unwrap();
    let Some(ro) = ReadOnly::over(&root) else {
        return;
    };
    // The snapshot fails (a write may still land in the page cache) and is dropped:
    // nothing can be removed now.
    let _ = sink.write_all(&rdb_bytes(1 << 20, 4));
    drop(sink);
    let stuck = entries(&root);
    assert!(
        stuck.iter().any(|e| e.contains(".tmp")),
        "the temporary cannot be removed on read-only storage: {stuck:?}"
    );
    drop(ro);
    // The next snapshot removes the leftover before it starts, and is stored whole.
    let id = store(&s, "2026-12-04T12:01:00Z", &rdb_bytes(1 << 20, 5)).id;
    let left = entries(&root);
    assert_eq!(
        left,
        vec![format!("{id}/dump.rdb"), format!("{id}/manifest.json")],
        "only the new snapshot remains"
    );
}
