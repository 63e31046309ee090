//! The local storage backend on a real filesystem: what is listed, what cleanup removes and
//! what it must leave, ids, hostile manifests, delete order, and a writer SIGKILLed mid-write.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use chrono::{DateTime, Utc};
use replisnap::rdb::crc::crc64;
use replisnap::storage::{
    resolve, Durations, LocalStorage, Manifest, RdbInfo, ServerKind, SnapshotId, SourceInfo,
    Storage, StorageError, StoredRdb,
};
use replisnap::summary::DbSummary;
use sha2::{Digest, Sha256};

#[path = "storage_local/clock.rs"]
mod clock;
#[path = "storage_local/crash.rs"]
mod crash;
#[path = "storage_local/readonly.rs"]
mod readonly;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// `n` bytes that depend on `seed`, then their CRC-64 as an RDB trailer.
fn rdb_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let c = crc64(&v);
    v.extend_from_slice(&c.to_le_bytes());
    v
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn manifest_for(stored: &dyn StoredRdb, at: DateTime<Utc>) -> Manifest {
    let types: BTreeMap<String, u64> = [("string".to_string(), 3)].into_iter().collect();
    Manifest {
        id: stored.id().clone(),
        created_at: at,
        source: SourceInfo {
            address: "127.0.0.1:6379".into(),
            server: ServerKind::Redis,
            version: "7.2.4".into(),
            replid: "0123456789abcdef0123456789abcdef01234567".into(),
            offset: 42,
            history: None,
        },
        rdb: RdbInfo::new("REDIS", 11, stored.object()),
        digest: "a".repeat(40),
        databases: vec![DbSummary {
            db: 0,
            keys: 3,
            expires: 0,
            types,
        }],
        keys_total: 3,
        durations: Durations {
            pause_seconds: 0.0001,
            write_seconds: 0.5,
            upload_seconds: 0.0,
        },
        replisnap_version: Manifest::this_version().into(),
    }
}

/// Store `data` as a snapshot taken at `at`, the way the snapshot thread will.
fn store(s: &dyn Storage, at: &str, data: &[u8]) -> Manifest {
    store_with(s, at, data, false)
}

/// `taken_earlier`: a snapshot stored late (a staged retry), named for its own time.
fn store_with(s: &dyn Storage, at: &str, data: &[u8], taken_earlier: bool) -> Manifest {
    let mut sink = if taken_earlier {
        s.create_rdb_as_taken(t(at)).unwrap()
    } else {
        s.create_rdb(t(at)).unwrap()
    };
    // In uneven pieces, as a writer's buffer would.
    for chunk in data.chunks(7777) {
        sink.write_all(chunk).unwrap();
    }
    assert_eq!(sink.bytes_written(), data.len() as u64);
    let stored = sink.commit().unwrap();
    let m = manifest_for(stored.as_ref(), t(at));
    stored.put_manifest(&m).unwrap();
    m
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn ids(s: &dyn Storage) -> Vec<String> {
    s.list()
        .unwrap()
        .snapshots
        .iter()
        .map(|m| m.id.to_string())
        .collect()
}

#[test]
fn stored_snapshots_list_newest_first_with_their_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups/redis");
    let s = LocalStorage::new(&root);
    assert!(
        s.list().is_err(),
        "a missing directory is an error, not an empty list"
    );
    let a = rdb_bytes(3 << 20, 1);
    let b = rdb_bytes(10, 2);
    let c = rdb_bytes(100_000, 3);
    store(&s, "2026-11-25T08:30:00Z", &a);
    store(&s, "2026-11-25T10:00:00Z", &c);
    // Stored after a newer one (a staged retry): listed by its own time.
    store_with(&s, "2026-11-25T09:00:00.999Z", &b, true);

    let listing = s.list().unwrap();
    assert!(listing.problems.is_empty(), "{:?}", listing.problems);
    let got: Vec<(String, u64, String)> = listing
        .snapshots
        .iter()
        .map(|m| (m.id.to_string(), m.rdb.bytes, m.rdb.sha256.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("20261125T100000Z".into(), c.len() as u64, sha256_hex(&c)),
            ("20261125T090000Z".into(), b.len() as u64, sha256_hex(&b)),
            ("20261125T083000Z".into(), a.len() as u64, sha256_hex(&a)),
        ]
    );
    let m = &listing.snapshots[2];
    assert_eq!(m.rdb.crc64, format!("{:016x}", crc64(&a[..a.len() - 8])));
    assert_eq!(m.created_at, t("2026-11-25T08:30:00Z"));

    // SPEC §3 layout, nothing else left behind.
    assert_eq!(
        names(&root.join("20261125T083000Z")),
        ["dump.rdb", "manifest.json"]
    );
    assert_eq!(fs::read(root.join("20261125T083000Z/dump.rdb")).unwrap(), a);
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("20261125T083000Z/manifest.json")).unwrap())
            .unwrap();
    for field in [
        "id",
        "created_at",
        "source",
        "rdb",
        "digest",
        "databases",
        "keys_total",
        "durations",
        "replisnap_version",
    ] {
        assert!(json.get(field).is_some(), "manifest lacks {field}");
    }

    let id = SnapshotId::parse("20261125T083000Z").unwrap();
    assert_eq!(&s.get_manifest(&id).unwrap(), m);
    let mut back = Vec::new();
    s.open_rdb(&id).unwrap().read_to_end(&mut back).unwrap();
    assert_eq!(back, a);
    assert_eq!(
        resolve(&s, "latest").unwrap().id.as_str(),
        "20261125T100000Z"
    );
    assert_eq!(
        resolve(&s, "20261125T090000Z").unwrap().rdb.bytes,
        b.len() as u64
    );
}

#[test]
fn id_collisions_get_a_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStorage::new(dir.path());
    store(&s, "2026-11-25T08:30:00.100Z", &rdb_bytes(50, 1));
    // An open sink holds its id too.
    let open = s.create_rdb(t("2026-11-25T08:30:00.500Z")).unwrap();
    assert_eq!(open.id().as_str(), "20261125T083000Z-1");
    store(&s, "2026-11-25T08:30:00.900Z", &rdb_bytes(50, 2));
    drop(open);
    // The dropped sink's -1 is free again, but a fresh snapshot is named after the newest
    // (-2), never into a gap below it; a late one (a staged retry) takes the free -1.
    store(&s, "2026-11-25T08:30:00Z", &rdb_bytes(50, 3));
    store_with(&s, "2026-11-25T08:30:00Z", &rdb_bytes(50, 4), true);
    assert_eq!(
        ids(&s),
        [
            "20261125T083000Z-3",
            "20261125T083000Z-2",
            "20261125T083000Z-1",
            "20261125T083000Z"
        ]
    );
}

#[test]
fn hostile_ids_are_refused_before_any_file_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let s = LocalStorage::new(&root);
    store(&s, "2026-11-25T08:30:00Z", &rdb_bytes(50, 1));
    fs::write(dir.path().join("x"), b"outside").unwrap();
    for bad in [
        "../x",
        "a/b",
        "",
        "/etc/passwd",
        "20261125T083000Z/../../x",
        "..",
        ".",
    ] {
        assert!(SnapshotId::parse(bad).is_err(), "{bad:?}");
        match resolve(&s, bad) {
            Err(StorageError::Id(_)) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert_eq!(fs::read(dir.path().join("x")).unwrap(), b"outside");
    assert_eq!(ids(&s), ["20261125T083000Z"]);
}

#[test]
fn a_sink_dropped_or_refused_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStorage::new(dir.path());
    let lock_only = [".replisnap.lock"];

    // Dropped mid-write.
    let mut sink = s.create_rdb(t("2026-11-25T08:30:00Z")).unwrap();
    sink.write_all(&rdb_bytes(3 << 20, 1)).unwrap();
    drop(sink);
    assert_eq!(names(dir.path()), lock_only);

    // Committed, but its manifest never written.
    let mut sink = s.create_rdb(t("2026-11-25T08:30:00Z")).unwrap();
    sink.write_all(&rdb_bytes(1000, 2)).unwrap();
    let stored = sink.commit().unwrap();
    assert!(dir.path().join("20261125T083000Z/dump.rdb").exists());
    assert!(
        s.list().unwrap().snapshots.is_empty(),
        "no manifest, no snapshot"
    );
    drop(stored);
    assert_eq!(names(dir.path()), lock_only);

    // A manifest that does not describe the stored bytes is refused, and the RDB goes.
    let mut sink = s.create_rdb(t("2026-11-25T08:30:00Z")).unwrap();
    sink.write_all(&rdb_bytes(1000, 3)).unwrap();
    let stored = sink.commit().unwrap();
    let mut m = manifest_for(stored.as_ref(), t("2026-11-25T08:30:00Z"));
    m.rdb.sha256 = "0".repeat(64);
    let err = stored.put_manifest(&m).unwrap_err();
    assert!(matches!(err, StorageError::Mismatch { .. }), "{err}");
    assert_eq!(names(dir.path()), lock_only);

    // An RDB whose trailer is not its CRC (torn or corrupted on the way) gets no manifest.
    let mut data = rdb_bytes(1000, 4);
    data[10] ^= 0x40;
    let mut sink = s.create_rdb(t("2026-11-25T08:30:00Z")).unwrap();
    sink.write_all(&data).unwrap();
    let stored = sink.commit().unwrap();
    assert!(!stored.object().crc64_confirmed());
    let m = manifest_for(stored.as_ref(), t("2026-11-25T08:30:00Z"));
    let err = stored.put_manifest(&m).unwrap_err().to_string();
    assert!(err.contains("trailer"), "{err}");
    assert_eq!(names(dir.path()), lock_only);
    assert!(s.list().unwrap().snapshots.is_empty());
}

#[test]
fn cleanup_removes_manifestless_dirs_and_stale_temporaries_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = LocalStorage::new(root);
    store(&s, "2026-11-25T08:30:00Z", &rdb_bytes(100, 1));

    // Leftovers of crashed writes: an RDB without manifest, a temporary alone, a stale
    // manifest temporary beside a real snapshot.
    fs::create_dir(root.join("20261125T090000Z")).unwrap();
    fs::write(root.join("20261125T090000Z/dump.rdb"), rdb_bytes(10, 2)).unwrap();
    fs::create_dir(root.join("20261125T091500Z-3")).unwrap();
    fs::write(
        root.join("20261125T091500Z-3/.dump.rdb.tmp-12345"),
        b"partial",
    )
    .unwrap();
    fs::write(root.join("20261125T083000Z/.manifest.json.tmp-999"), b"{").unwrap();

    // Not ours: other names, an id-named file, a symlink to a snapshot-like directory, a
    // manifest-less id directory holding someone else's file, a near-miss temp name.
    fs::write(root.join("notes.txt"), b"keep").unwrap();
    fs::create_dir(root.join("old-backups")).unwrap();
    fs::write(root.join("old-backups/dump.rdb"), b"keep").unwrap();
    fs::write(root.join("20261125T100000Z"), b"a file, not a dir").unwrap();
    fs::create_dir(root.join("elsewhere")).unwrap();
    fs::write(root.join("elsewhere/dump.rdb"), b"keep").unwrap();
    std::os::unix::fs::symlink(root.join("elsewhere"), root.join("20261125T110000Z")).unwrap();
    fs::create_dir(root.join("20261125T120000Z")).unwrap();
    fs::write(root.join("20261125T120000Z/dump.rdb"), b"keep").unwrap();
    fs::write(root.join("20261125T120000Z/README"), b"keep").unwrap();
    fs::write(root.join("20261125T083000Z/.dump.rdb.tmp-x1"), b"keep").unwrap();
    fs::create_dir(root.join("20261125T083000Z.bak")).unwrap();

    assert_eq!(ids(&s), ["20261125T083000Z"]);
    let report = s.cleanup().unwrap();
    assert!(!report.busy);
    let mut removed: Vec<String> = report
        .removed
        .iter()
        .map(|p| {
            p.strip_prefix(&format!("{}/", root.display()))
                .unwrap()
                .to_string()
        })
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        [
            "20261125T083000Z/.manifest.json.tmp-999",
            "20261125T090000Z",
            "20261125T090000Z/dump.rdb",
            "20261125T091500Z-3",
            "20261125T091500Z-3/.dump.rdb.tmp-12345",
        ]
    );
    assert_eq!(report.kept.len(), 1, "{:?}", report.kept);
    assert!(report.kept[0].0.ends_with("20261125T120000Z"));
    assert!(report.kept[0].1.contains("README"), "{:?}", report.kept);

    assert_eq!(
        names(root),
        [
            ".replisnap.lock",
            "20261125T083000Z",
            "20261125T083000Z.bak",
            "20261125T100000Z",
            "20261125T110000Z",
            "20261125T120000Z",
            "elsewhere",
            "notes.txt",
            "old-backups",
        ]
    );
    assert_eq!(
        names(&root.join("20261125T083000Z")),
        [".dump.rdb.tmp-x1", "dump.rdb", "manifest.json"]
    );
    assert_eq!(
        names(&root.join("20261125T120000Z")),
        ["README", "dump.rdb"]
    );
    assert_eq!(fs::read(root.join("elsewhere/dump.rdb")).unwrap(), b"keep");
    assert_eq!(ids(&s), ["20261125T083000Z"]);
    // Nothing left to do the second time.
    assert!(s.cleanup().unwrap().removed.is_empty());
}

#[test]
fn cleanup_waits_for_no_writer() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStorage::new(dir.path());
    let mut sink = s.create_rdb(t("2026-11-25T08:30:00Z")).unwrap();
    sink.write_all(&rdb_bytes(100, 1)).unwrap();
    let report = s.cleanup().unwrap();
    assert!(report.busy && report.removed.is_empty(), "{report:?}");
    let stored = sink.commit().unwrap();
    // Between the RDB and its manifest the directory looks like a leftover: still held.
    assert!(s.cleanup().unwrap().busy);
    let m = manifest_for(stored.as_ref(), t("2026-11-25T08:30:00Z"));
    stored.put_manifest(&m).unwrap();
    // Another test of this binary spawning a process at this moment holds a copy of the
    // lock's descriptor until its child execs: a second later, only our lock could count.
    let mut report = s.cleanup().unwrap();
    for _ in 0..20 {
        if !report.busy {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        report = s.cleanup().unwrap();
    }
    assert!(!report.busy && report.removed.is_empty(), "{report:?}");
    assert_eq!(ids(&s), ["20261125T083000Z"]);
}

#[test]
fn bad_manifests_are_reported_not_listed_and_not_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = LocalStorage::new(root);
    let mut victims = Vec::new();
    for (i, at) in [
        "2026-11-25T01:00:00Z",
        "2026-11-25T02:00:00Z",
        "2026-11-25T03:00:00Z",
        "2026-11-25T04:00:00Z",
        "2026-11-25T05:00:00Z",
        "2026-11-25T06:00:00Z",
        "2026-11-25T07:00:00Z",
        "2026-11-25T08:00:00Z",
        "2026-11-25T09:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        victims.push(store(&s, at, &rdb_bytes(100, i as u64)).id.to_string());
    }
    let good = victims.pop().unwrap();
    let m = |id: &str| root.join(id).join("manifest.json");
    let other_manifest = fs::read(m(&good)).unwrap();
    let cases: Vec<(&str, &str)> = vec![
        (&victims[0], "garbage"),
        (&victims[1], "truncated"),
        (&victims[2], "oversized"),
        (&victims[3], "another id"),
        (&victims[4], "symlink"),
        (&victims[5], "rdb missing"),
        (&victims[6], "rdb size"),
        (&victims[7], "fifo"),
    ];
    for (id, how) in &cases {
        let path = m(id);
        match *how {
            "garbage" => fs::write(&path, b"\x00\xffnot json at all").unwrap(),
            "truncated" => {
                let full = fs::read(&path).unwrap();
                fs::write(&path, &full[..full.len() / 2]).unwrap();
            }
            "oversized" => {
                let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.set_len(17 << 20).unwrap();
            }
            "another id" => fs::write(&path, &other_manifest).unwrap(),
            "symlink" => {
                fs::remove_file(&path).unwrap();
                std::os::unix::fs::symlink(m(&good), &path).unwrap();
            }
            "rdb missing" => fs::remove_file(root.join(id).join("dump.rdb")).unwrap(),
            "rdb size" => fs::write(root.join(id).join("dump.rdb"), b"short").unwrap(),
            "fifo" => {
                fs::remove_file(&path).unwrap();
                let ok = Command::new("mkfifo")
                    .arg(&path)
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "mkfifo");
            }
            _ => unreachable!(),
        }
    }
    // Must not hang on the FIFO nor read the 17 MiB.
    let listing = s.list().unwrap();
    let listed: Vec<&str> = listing.snapshots.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(listed, [good.as_str()]);
    let mut reported: Vec<String> = listing.problems.iter().map(|p| p.id.to_string()).collect();
    reported.reverse();
    assert_eq!(reported, victims);
    for p in &listing.problems {
        let msg = p.error.to_string();
        assert!(
            msg.contains(&root.join(p.id.as_str()).display().to_string()),
            "error names the file: {msg}"
        );
        let how = cases.iter().find(|c| c.0 == p.id.as_str()).unwrap().1;
        let expect = match how {
            "garbage" | "truncated" => "invalid manifest",
            "oversized" => "larger than",
            "another id" => "is not its directory's name",
            "symlink" => "manifest.json: open",
            "rdb missing" => "missing",
            "rdb size" => "5 bytes where the manifest says 108",
            "fifo" => "not a regular file",
            _ => unreachable!(),
        };
        assert!(msg.contains(expect), "{how}: {msg}");
    }
    // latest skips them; get_manifest refuses them with the same reason.
    assert_eq!(resolve(&s, "latest").unwrap().id.to_string(), good);
    assert!(matches!(
        s.get_manifest(&SnapshotId::parse(&victims[0]).unwrap()),
        Err(StorageError::Manifest { .. })
    ));
    assert!(s
        .open_rdb(&SnapshotId::parse(&victims[1]).unwrap())
        .is_err());
    // A manifest is present, so cleanup leaves them for a human.
    let report = s.cleanup().unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
    for v in &victims {
        assert!(root.join(v).exists());
    }
}

#[test]
fn delete_removes_the_manifest_before_the_rdb() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = LocalStorage::new(root);
    let keep = store(&s, "2026-11-25T08:00:00Z", &rdb_bytes(100, 1)).id;
    let gone = store(&s, "2026-11-25T09:00:00Z", &rdb_bytes(100, 2)).id;
    let stuck = store(&s, "2026-11-25T10:00:00Z", &rdb_bytes(100, 3)).id;

    s.delete(&gone).unwrap();
    assert!(!root.join(gone.as_str()).exists());
    assert!(matches!(
        s.delete(&gone),
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        s.get_manifest(&gone),
        Err(StorageError::NotFound { .. })
    ));

    // Make removing the RDB fail (root ignores permissions, so: a non-empty directory in
    // its place). The manifest must already be gone when that happens.
    let rdb = root.join(stuck.as_str()).join("dump.rdb");
    fs::remove_file(&rdb).unwrap();
    fs::create_dir(&rdb).unwrap();
    fs::write(rdb.join("x"), b"x").unwrap();
    let err = s.delete(&stuck).unwrap_err().to_string();
    assert!(err.contains("dump.rdb: remove"), "{err}");
    assert!(!root.join(stuck.as_str()).join("manifest.json").exists());
    let listing = s.list().unwrap();
    assert!(listing.problems.is_empty());
    assert_eq!(ids(&s), [keep.to_string()]);
}

#[test]
fn one_writer_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    let a = LocalStorage::new(&root);
    let b = LocalStorage::new(&root);
    a.claim().unwrap();
    a.claim().unwrap();
    let e = b.claim().unwrap_err();
    assert!(matches!(e, StorageError::Held { .. }), "{e}");
    let shown = e.to_string();
    assert!(
        shown.contains(&format!("pid {}", std::process::id())) && shown.contains("backups"),
        "{shown}"
    );
    drop(a);
    b.claim().unwrap();
    // The lock file is not a snapshot and cleanup leaves it.
    store(&b, "2026-11-25T08:00:00Z", &rdb_bytes(100, 1));
    assert!(b.cleanup().unwrap().removed.is_empty());
    assert_eq!(
        names(&root),
        [".replisnap.lock", ".replisnap.writer", "20261125T080000Z"]
    );
}
