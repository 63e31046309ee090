//! A writer SIGKILLed mid-write: the test binary re-runs itself as the child that writes.

use super::*;

/// Not a test on its own: the child process of `a_writer_killed_mid_write_leaves_nothing`.
/// It writes a snapshot into the directory it is given, says READY, and waits to be killed.
#[test]
fn crash_child() {
    let Ok(root) = std::env::var("REPLISNAP_CRASH_CHILD_DIR") else {
        return;
    };
    let phase = std::env::var("REPLISNAP_CRASH_CHILD_PHASE").unwrap();
    let s = LocalStorage::new(root);
    let mut sink = s.create_rdb(t("2026-11-25T12:00:00Z")).unwrap();
    sink.write_all(&rdb_bytes(4 << 20, 7)).unwrap();
    sink.flush().unwrap();
    let _held = match phase.as_str() {
        "writing" => Box::new(sink) as Box<dyn std::any::Any>,
        "committed" => Box::new(sink.commit().unwrap()),
        _ => panic!("phase {phase}"),
    };
    // On its own line: libtest has already printed "test crash_child ... " without one.
    println!("\nREADY");
    std::io::stdout().flush().unwrap();
    // Killed long before this; the deadline only keeps an orphan from living forever.
    std::thread::sleep(std::time::Duration::from_secs(120));
    std::process::exit(3);
}

/// Kills the child if the test fails before it does (no orphan holding the lock).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_writer_killed_mid_write_leaves_nothing() {
    for (phase, leftover) in [("writing", ".dump.rdb.tmp-"), ("committed", "dump.rdb")] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let s = LocalStorage::new(root);
        store(&s, "2026-11-25T08:00:00Z", &rdb_bytes(100, 1));

        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("REPLISNAP_CRASH_CHILD_DIR", root)
            .env("REPLISNAP_CRASH_CHILD_PHASE", phase)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let mut out = BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        while line.trim_end() != "READY" {
            line.clear();
            let n = out.read_line(&mut line).unwrap();
            assert!(n > 0, "child ({phase}) exited before READY");
        }
        let partial = root.join("20261125T120000Z");
        let files = names(&partial);
        assert!(
            files.iter().any(|f| f.starts_with(leftover)),
            "{phase}: {files:?}"
        );
        // A live writer in another process holds the storage against cleanup.
        assert!(s.cleanup().unwrap().busy, "{phase}");

        child.0.kill().unwrap(); // SIGKILL: no destructor runs
        child.0.wait().unwrap();

        assert!(partial.exists(), "{phase}: the crash left its files");
        let listing = s.list().unwrap();
        assert!(listing.problems.is_empty());
        assert_eq!(ids(&s), ["20261125T080000Z"], "{phase}");
        let report = s.cleanup().unwrap();
        assert!(!report.busy, "the kernel released the dead writer's lock");
        assert!(report
            .removed
            .iter()
            .any(|p| p.ends_with("20261125T120000Z")));
        assert!(!partial.exists(), "{phase}");
        assert_eq!(names(root), [".replisnap.lock", "20261125T080000Z"]);
        assert_eq!(ids(&s), ["20261125T080000Z"]);
    }
}
