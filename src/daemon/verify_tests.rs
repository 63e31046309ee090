use std::io::Cursor;
use std::sync::Condvar;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::storage::{
    CleanupReport, Durations, ListProblem, Listing, RdbInfo, RdbSink, ServerKind, SnapshotId,
    SourceInfo,
};

enum Body {
    Bytes(Vec<u8>),
    Endless,
}

/// A storage double: a fixed listing, `list` held until `gate` opens, reads as configured.
struct Fake {
    gate: Arc<(Mutex<bool>, Condvar)>,
    lists: Mutex<u32>,
    fail_list: bool,
    snapshots: Vec<Manifest>,
    problems: Vec<&'static str>,
    body: Body,
}

impl Fake {
    fn new(snapshots: Vec<Manifest>, body: Body) -> Fake {
        Fake {
            gate: Arc::new((Mutex::new(true), Condvar::new())),
            lists: Mutex::new(0),
            fail_list: false,
            snapshots,
            problems: Vec::new(),
            body,
        }
    }

    fn set_gate(&self, open: bool) {
        *lock(&self.gate.0) = open;
        self.gate.1.notify_all();
    }
}

fn not_here() -> StorageError {
    StorageError::Broken {
        path: "fake".into(),
        reason: "not in this double".into(),
    }
}

impl Storage for Fake {
    fn describe(&self) -> String {
        "fake storage".into()
    }
    fn create_rdb(&self, _at: DateTime<Utc>) -> crate::storage::Result<Box<dyn RdbSink>> {
        Err(not_here())
    }
    fn list(&self) -> crate::storage::Result<Listing> {
        *lock(&self.lists) += 1;
        let mut open = lock(&self.gate.0);
        while !*open {
            open = self.gate.1.wait(open).unwrap_or_else(|p| p.into_inner());
        }
        if self.fail_list {
            return Err(StorageError::Io {
                op: "list",
                path: "/fake".into(),
                source: io::Error::other("disk on fire"),
            });
        }
        Ok(Listing {
            snapshots: self.snapshots.clone(),
            problems: self
                .problems
                .iter()
                .map(|id| ListProblem {
                    id: SnapshotId::parse(id).unwrap(),
                    error: StorageError::Broken {
                        path: format!("/fake/{id}/dump.rdb"),
                        reason: "3 bytes, manifest says 9".into(),
                    },
                })
                .collect(),
        })
    }
    fn get_manifest(&self, _id: &SnapshotId) -> crate::storage::Result<Manifest> {
        Err(not_here())
    }
    fn open_rdb(&self, _id: &SnapshotId) -> crate::storage::Result<Box<dyn Read + Send>> {
        Ok(match &self.body {
            Body::Bytes(b) => Box::new(Cursor::new(b.clone())),
            Body::Endless => Box::new(io::repeat(0)),
        })
    }
    fn delete(&self, _id: &SnapshotId) -> crate::storage::Result<()> {
        Err(not_here())
    }
    fn cleanup(&self) -> crate::storage::Result<CleanupReport> {
        Err(not_here())
    }
    fn claim(&self) -> crate::storage::Result<()> {
        Err(not_here())
    }
}

fn manifest(id: &str, bytes: u64) -> Manifest {
    Manifest {
        id: SnapshotId::parse(id).unwrap(),
        created_at: Utc::now(),
        source: SourceInfo {
            address: "127.0.0.1:6379".into(),
            server: ServerKind::Redis,
            version: "7.0.15".into(),
            replid: "a".repeat(40),
            offset: 1,
            history: None,
        },
        rdb: RdbInfo {
            magic: "REDIS".into(),
            version: 10,
            bytes,
            sha256: "0".repeat(64),
            crc64: "0".repeat(16),
        },
        digest: "0".repeat(40),
        databases: Vec::new(),
        keys_total: 0,
        durations: Durations {
            pause_seconds: 0.0,
            write_seconds: 0.0,
            upload_seconds: 0.0,
        },
        replisnap_version: "test".into(),
    }
}

/// `replisnap_verify_total{result=R}` for ok, bad, error.
fn counts(m: &Metrics) -> [f64; 3] {
    let text = m.render();
    ["ok", "bad", "error"].map(|r| {
        let name = format!("replisnap_verify_total{{result=\"{r}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&name)?.trim().parse().ok())
            .unwrap_or(-1.0)
    })
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_unreadable_listing_is_an_error_and_an_empty_one_counts_nothing() {
    let metrics = Metrics::new().unwrap();
    let (stop, running) = (AtomicBool::new(false), Mutex::new(None));
    let mut failing = Fake::new(Vec::new(), Body::Endless);
    failing.fail_list = true;
    let o = verify_newest(&failing, &stop, &running);
    match &o {
        Outcome::Error { id: None, error } => {
            assert!(
                error.contains("fake storage") && error.contains("disk on fire"),
                "{error}"
            )
        }
        other => panic!("{other:?}"),
    }
    record(&metrics, &o, 0.1);
    assert_eq!(counts(&metrics), [0.0, 0.0, 1.0]);

    let empty = Fake::new(Vec::new(), Body::Endless);
    let o = verify_newest(&empty, &stop, &running);
    assert!(matches!(o, Outcome::Empty), "{o:?}");
    record(&metrics, &o, 0.1);
    assert_eq!(counts(&metrics), [0.0, 0.0, 1.0]);
}

#[test]
fn a_damaged_newest_snapshot_is_bad_and_named() {
    let (stop, running) = (AtomicBool::new(false), Mutex::new(None));
    // The newest has a manifest storage refuses: bad, named, though an older one is fine.
    let mut fake = Fake::new(
        vec![manifest("20260101T000000Z", 9)],
        Body::Bytes(b"not an rdb".to_vec()),
    );
    fake.problems = vec!["20260102T000000Z"];
    match verify_newest(&fake, &stop, &running) {
        Outcome::Bad { id, problems } => {
            assert_eq!(id, "20260102T000000Z");
            assert_eq!(problems.len(), 1);
            assert!(problems[0].contains("manifest says 9"), "{problems:?}");
        }
        other => panic!("{other:?}"),
    }
    // An older problem does not hide the newest good one, which is read and checked: its
    // bytes are not what the manifest describes.
    fake.problems = vec!["20251231T000000Z"];
    let metrics = Metrics::new().unwrap();
    let o = verify_newest(&fake, &stop, &running);
    match &o {
        Outcome::Bad { id, problems } => {
            assert_eq!(id, "20260101T000000Z");
            let all = problems.join("; ");
            for what in ["does not parse", "10 bytes, manifest says 9", "sha256"] {
                assert!(all.contains(what), "{what}: {all}");
            }
        }
        other => panic!("{other:?}"),
    }
    record(&metrics, &o, 0.1);
    assert_eq!(counts(&metrics), [0.0, 1.0, 0.0]);
    assert!(metrics
        .render()
        .contains("replisnap_last_verify_success_timestamp_seconds 0\n"));
}

#[test]
fn ticks_while_one_runs_are_skipped_never_queued() {
    let fake = Arc::new(Fake::new(Vec::new(), Body::Endless));
    fake.set_gate(false);
    let metrics = Arc::new(Metrics::new().unwrap());
    let v = Verifier::start(fake.clone(), metrics.clone()).unwrap();
    // The thread may not wait at its door yet right after the start.
    wait_for("the first tick taken", || v.tick() == Tick::Started);
    wait_for("the listing started", || *lock(&fake.lists) == 1);
    for _ in 0..5 {
        assert_eq!(v.tick(), Tick::Skipped);
    }
    fake.set_gate(true);
    wait_for("a tick taken after the first ended", || {
        v.tick() == Tick::Started
    });
    v.shutdown();
    assert_eq!(v.tick(), Tick::Stopped);
    // Two checks ran: the skipped ticks were dropped, not queued.
    assert_eq!(*lock(&fake.lists), 2);
    assert_eq!(counts(&metrics), [0.0, 0.0, 0.0]);
}

#[test]
fn stopping_abandons_a_running_check_without_counting_it() {
    let fake = Arc::new(Fake::new(
        vec![manifest("20260101T000000Z", 1 << 40)],
        Body::Endless,
    ));
    let metrics = Arc::new(Metrics::new().unwrap());
    let v = Verifier::start(fake, metrics.clone()).unwrap();
    wait_for("the tick taken", || v.tick() == Tick::Started);
    wait_for("the check running", || lock(&v.shared.running).is_some());
    let start = Instant::now();
    v.shutdown();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(counts(&metrics), [0.0, 0.0, 0.0]);
}
