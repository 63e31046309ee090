use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::keyspace::Keyspace;
use crate::rdb::value::Value;
use crate::server_version::{Family, ServerVersion};
use crate::storage::{Durations, SnapshotId};

fn capture(ks: &mut Keyspace, offset: i64) -> Capture {
    Capture {
        snapshot: ks.snapshot().expect("no walk running"),
        replid: "a".repeat(40),
        offset,
        functions: Vec::new(),
        stream_db: 3,
        master_version: Some(ServerVersion::new(Family::Redis, 7, 0, 15)),
        master_aux: vec![(b"redis-ver".to_vec(), b"7.0.15".to_vec())],
        pause: Duration::ZERO,
        history: None,
    }
}

fn dataset() -> Keyspace {
    let mut ks = Keyspace::new();
    for i in 0..100 {
        let v = Value::String(format!("v{i}").into_bytes());
        ks.set(i % 2, format!("k{i}").as_bytes(), None, &v, None)
            .expect("set");
    }
    ks
}

#[test]
fn written_then_loaded_private_and_verified() {
    let state = tempfile::tempdir().unwrap();
    let cp = CheckpointDir::open(state.path()).unwrap();
    assert!(cp.find().is_none());
    let mut ks = dataset();
    let meta = cp.write(capture(&mut ks, 4242), "127.0.0.1:6379").unwrap();
    assert_eq!(meta.source.offset, 4242);
    assert_eq!(meta.keys_total, 100);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(cp.path()), 0o700);
    assert_eq!(mode(&cp.path().join(RDB)), 0o600);
    assert_eq!(mode(&cp.path().join(META)), 0o600);
    let found = cp.find().expect("found");
    assert_eq!(found, meta);
    let (preload, keys) = cp.load(&found).unwrap();
    assert_eq!(keys, 100);
    assert_eq!(preload.offset, 4242);
    assert_eq!(preload.stream_db, 3);
    assert_eq!(preload.replid, "a".repeat(40));
    assert_eq!(preload.keyspace.len(), 100);
    cp.remove("test");
    assert!(cp.find().is_none());
    assert!(!cp.path().join(RDB).exists());
}

#[test]
fn a_flipped_byte_fails_and_leftovers_are_cleaned() {
    let state = tempfile::tempdir().unwrap();
    let cp = CheckpointDir::open(state.path()).unwrap();
    let mut ks = dataset();
    let meta = cp.write(capture(&mut ks, 7), "m:1").unwrap();
    let rdb = cp.path().join(RDB);
    let mut bytes = fs::read(&rdb).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    fs::write(&rdb, &bytes).unwrap();
    assert!(cp.load(&meta).is_err());
    // A second daemon on the same state dir is refused.
    assert!(matches!(
        CheckpointDir::open(state.path()),
        Err(CheckpointError::Locked(_))
    ));
    drop(cp);
    // An RDB without its manifest, a temporary: removed at open.
    fs::remove_file(state.path().join(SUBDIR).join(META)).unwrap();
    fs::write(state.path().join(SUBDIR).join(".dump.rdb.tmp-12"), b"x").unwrap();
    let cp = CheckpointDir::open(state.path()).unwrap();
    let left: Vec<_> = fs::read_dir(cp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [LOCK]);
    // A manifest that does not parse: ignored and removed.
    fs::write(cp.path().join(META), b"{not json").unwrap();
    assert!(cp.find().is_none());
    assert!(!cp.path().join(META).exists());
}

#[test]
fn no_replication_id_no_checkpoint() {
    let state = tempfile::tempdir().unwrap();
    let cp = CheckpointDir::open(state.path()).unwrap();
    let mut ks = dataset();
    let mut c = capture(&mut ks, 1);
    c.replid = "?".into();
    assert!(matches!(
        cp.write(c, "m:1"),
        Err(CheckpointError::NoData(_))
    ));
    assert!(cp.find().is_none());
}

fn manifest(replid: &str, offset: u64, at: DateTime<Utc>) -> Manifest {
    Manifest {
        id: SnapshotId::parse("20260101T000000Z").unwrap(),
        created_at: at,
        source: SourceInfo {
            address: "m:1".into(),
            server: Family::Redis.into(),
            version: "7.0.15".into(),
            replid: replid.into(),
            offset,
            history: None,
        },
        rdb: RdbInfo {
            magic: "REDIS".into(),
            version: 10,
            bytes: 0,
            sha256: String::new(),
            crc64: String::new(),
        },
        digest: String::new(),
        databases: Vec::new(),
        keys_total: 0,
        durations: Durations {
            pause_seconds: 0.0,
            write_seconds: 0.0,
            upload_seconds: 0.0,
        },
        replisnap_version: String::new(),
    }
}

#[test]
fn preferred_when_newer() {
    let state = tempfile::tempdir().unwrap();
    let cp = CheckpointDir::open(state.path()).unwrap();
    let mut ks = dataset();
    let meta = cp.write(capture(&mut ks, 1000), "m:1").unwrap();
    let (a, b) = ("a".repeat(40), "b".repeat(40));
    let earlier = meta.created_at - chrono::Duration::hours(1);
    let later = meta.created_at + chrono::Duration::seconds(1);
    assert!(prefer(&meta, None));
    // Same history: the offset decides, whatever the clocks say.
    assert!(prefer(&meta, Some(&manifest(&a, 999, later))));
    assert!(prefer(&meta, Some(&manifest(&a, 1000, later))));
    assert!(!prefer(&meta, Some(&manifest(&a, 1001, earlier))));
    // Another history: the time.
    assert!(prefer(&meta, Some(&manifest(&b, 5_000_000, earlier))));
    assert!(!prefer(&meta, Some(&manifest(&b, 1, later))));
}
