//! A writer SIGKILLed mid-upload: nothing becomes visible, its lease expires by itself, and
//! the next writer's cleanup aborts the orphan multipart upload (or removes the RDB that
//! never got its manifest). The test binary re-runs itself as the child that writes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

const LEASE_SECONDS: u64 = 10;

fn storage_at(endpoint: &str, bucket: &str) -> S3Storage {
    let mut cfg = seaweed::config_for(endpoint, bucket, "c/");
    cfg.part_size = Some(5 << 20);
    cfg.lease_seconds = Some(LEASE_SECONDS);
    S3Storage::open(&cfg, Some(Seaweed::credentials())).expect("open S3 storage")
}

/// Not a test on its own: the child of `a_writer_killed_mid_upload_leaves_nothing`. It
/// uploads into the bucket it is given, says READY, and waits to be killed.
#[test]
fn s3_crash_child() {
    let Ok(endpoint) = std::env::var("REPLISNAP_S3_CRASH_ENDPOINT") else {
        return;
    };
    let bucket = std::env::var("REPLISNAP_S3_CRASH_BUCKET").unwrap();
    let phase = std::env::var("REPLISNAP_S3_CRASH_PHASE").unwrap();
    let s = storage_at(&endpoint, &bucket);
    let mut sink = s.create_rdb(t("2026-11-25T12:00:00Z")).unwrap();
    // Two parts uploaded, 2 MiB still in the buffer.
    sink.write_all(&rdb_bytes(12 * MIB, 7)).unwrap();
    let _held = match phase.as_str() {
        "writing" => Box::new(sink) as Box<dyn std::any::Any>,
        "committed" => Box::new(sink.commit().unwrap()),
        _ => panic!("phase {phase}"),
    };
    println!("\nREADY");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(120));
    std::process::exit(3);
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_writer_killed_mid_upload_leaves_nothing() {
    let Some(sw) = server() else { return };
    for phase in ["writing", "committed"] {
        let bucket = sw.new_bucket(&format!("crash-{phase}"));
        let s = storage_at(&sw.endpoint, &bucket);
        store(&s, "2026-11-25T08:00:00Z", &rdb_bytes(100, 1));
        s.release();

        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::s3_crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("REPLISNAP_S3_CRASH_ENDPOINT", &sw.endpoint)
            .env("REPLISNAP_S3_CRASH_BUCKET", &bucket)
            .env("REPLISNAP_S3_CRASH_PHASE", phase)
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
        // The live writer holds the lease: no cleanup, no second writer.
        assert!(s.cleanup().unwrap().busy, "{phase}");
        child.0.kill().unwrap(); // SIGKILL: no destructor runs
        child.0.wait().unwrap();
        let killed = Instant::now();

        let pending = pending_uploads(&s);
        match phase {
            "writing" => assert_eq!(pending, ["c/20261125T120000Z/dump.rdb"]),
            _ => {
                assert!(pending.is_empty(), "{pending:?}");
                assert!(keys(&s).contains(&"c/20261125T120000Z/dump.rdb".to_string()));
            }
        }
        assert_eq!(ids(&s), ["20261125T080000Z"], "{phase}: nothing visible");

        // The dead writer's lease runs out; then cleanup removes what it left.
        let report = loop {
            let r = s.cleanup().unwrap();
            if !r.busy {
                break r;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(LEASE_SECONDS + 15),
                "{phase}: the dead writer's lease never expired"
            );
            std::thread::sleep(Duration::from_millis(500));
        };
        assert_eq!(report.removed.len(), 1, "{phase}: {:?}", report.removed);
        assert!(
            report.removed[0].contains("c/20261125T120000Z/dump.rdb"),
            "{phase}: {:?}",
            report.removed
        );
        assert!(pending_uploads(&s).is_empty(), "{phase}");
        assert_eq!(
            keys(&s),
            [
                "c/20261125T080000Z/dump.rdb",
                "c/20261125T080000Z/manifest.json",
                "c/lock"
            ],
            "{phase}"
        );
        assert_eq!(ids(&s), ["20261125T080000Z"]);
    }
}
