//! The S3 backend against a real S3-protocol server (SeaweedFS, started by the tests): a
//! multipart snapshot round trip with its checksums, SSE-S3 and SSE-KMS on HeadObject,
//! `If-None-Match` refusing an overwrite, nothing left by an aborted write, cleanup of an
//! orphan multipart upload, list / delete / retention, and one writer per prefix; and
//! the daemon end to end (`daemon.rs`), a writer killed mid-upload (`crash.rs`), and
//! faults injected by a proxy (`faults.rs`), a 1 GiB snapshot in bounded memory
//! (`big.rs`), and local staging: uploads retried from the staged file, a warm restart
//! without download (`staging.rs`).

use std::collections::BTreeMap;
use std::io::{Read, Write};

use aws_sdk_s3::types::{ChecksumMode, ServerSideEncryption};
use chrono::{DateTime, Utc};
use replisnap::rdb::crc::crc64;
use replisnap::retention::Policy;
use replisnap::storage::s3::S3Storage;
use replisnap::storage::{
    Durations, Manifest, RdbInfo, ServerKind, SnapshotId, SourceInfo, Storage, StorageError,
    StoredRdb,
};
use replisnap::summary::DbSummary;
use sha2::{Digest, Sha256};

mod support;

#[path = "storage_s3/access.rs"]
mod access;
#[path = "storage_s3/big.rs"]
mod big;
#[path = "storage_s3/crash.rs"]
mod crash;
#[path = "storage_s3/daemon.rs"]
mod daemon;
#[path = "storage_s3/daemon_faults.rs"]
mod daemon_faults;
#[path = "storage_s3/faults.rs"]
mod faults;
#[path = "storage_s3/lease_wait.rs"]
mod lease_wait;
#[path = "storage_s3/proxy.rs"]
mod proxy;
#[path = "storage_s3/seaweed.rs"]
mod seaweed;
#[path = "storage_s3/staging.rs"]
mod staging;

use seaweed::{server, Seaweed, KMS_KEY};

const MIB: usize = 1 << 20;

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

/// Store `data` as a snapshot taken at `at`, the way the snapshot thread does.
fn store(s: &dyn Storage, at: &str, data: &[u8]) -> Manifest {
    let mut sink = s.create_rdb(t(at)).unwrap();
    for chunk in data.chunks(77_777) {
        sink.write_all(chunk).unwrap();
    }
    assert_eq!(sink.bytes_written(), data.len() as u64);
    let stored = sink.commit().unwrap();
    let m = manifest_for(stored.as_ref(), t(at));
    stored.put_manifest(&m).unwrap();
    m
}

/// Every key in the bucket, sorted.
fn keys(s: &S3Storage) -> Vec<String> {
    let c = s.client().clone();
    let bucket = s.settings().bucket.clone();
    let out = s
        .block_on(async move { c.list_objects_v2().bucket(bucket).send().await })
        .expect("list objects");
    let mut v: Vec<String> = out
        .contents
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| o.key)
        .collect();
    v.sort();
    v
}

/// Keys with a multipart upload in progress.
fn pending_uploads(s: &S3Storage) -> Vec<String> {
    let c = s.client().clone();
    let bucket = s.settings().bucket.clone();
    let out = s
        .block_on(async move { c.list_multipart_uploads().bucket(bucket).send().await })
        .expect("list multipart uploads");
    out.uploads
        .unwrap_or_default()
        .into_iter()
        .filter_map(|u| u.key)
        .collect()
}

fn ids(s: &dyn Storage) -> Vec<String> {
    let l = s.list().unwrap();
    assert!(l.problems.is_empty(), "{:?}", l.problems);
    l.snapshots.iter().map(|m| m.id.to_string()).collect()
}

fn get(s: &S3Storage, key: &str) -> Vec<u8> {
    let c = s.client().clone();
    let (bucket, key) = (s.settings().bucket.clone(), key.to_string());
    s.block_on(async move {
        let o = c.get_object().bucket(bucket).key(key).send().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(o.body.collect().await?.to_vec())
    })
    .expect("get object")
}

fn head(s: &S3Storage, key: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
    let c = s.client().clone();
    let (bucket, key) = (s.settings().bucket.clone(), key.to_string());
    s.block_on(async move {
        c.head_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
    })
    .expect("head object")
}

fn put(s: &S3Storage, key: &str, data: &[u8]) {
    let c = s.client().clone();
    let (bucket, key, data) = (s.settings().bucket.clone(), key.to_string(), data.to_vec());
    s.block_on(async move {
        c.put_object()
            .bucket(bucket)
            .key(key)
            .body(data.into())
            .send()
            .await
    })
    .expect("put object");
}

#[test]
fn multipart_snapshot_round_trips_with_its_checksums() {
    let Some(sw) = server() else { return };
    let bucket = sw.new_bucket("multipart");
    let s = sw.storage_in(&bucket, "prod/", |c| {
        c.part_size = Some(5 << 20);
        c.upload_concurrency = Some(3);
    });
    // 23 MiB + 8: five parts, the last one short.
    let data = rdb_bytes(23 * MIB, 7);
    let started = std::time::Instant::now();
    let m = store(&s, "2026-11-25T08:30:00Z", &data);
    eprintln!(
        "stored {} bytes in {:.2} s",
        data.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(m.rdb.bytes, data.len() as u64);
    assert_eq!(m.rdb.sha256, sha256_hex(&data));
    assert_eq!(
        m.rdb.crc64,
        format!("{:016x}", crc64(&data[..data.len() - 8]))
    );

    // SPEC §3 layout, the lease beside it, nothing pending.
    assert_eq!(
        keys(&s),
        [
            "prod/20261125T083000Z/dump.rdb",
            "prod/20261125T083000Z/manifest.json",
            "prod/lock"
        ]
    );
    assert!(pending_uploads(&s).is_empty(), "{:?}", pending_uploads(&s));

    // The whole-object CRC64NVME is stored and is the one of the bytes.
    let h = head(&s, "prod/20261125T083000Z/dump.rdb");
    assert_eq!(h.content_length, Some(data.len() as i64));
    let want = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, &data);
    let b64 = aws_smithy_types::base64::encode(want.to_be_bytes());
    assert_eq!(h.checksum_crc64_nvme.as_deref(), Some(b64.as_str()));

    // Read back through the trait, and the manifest as JSON.
    let id = SnapshotId::parse("20261125T083000Z").unwrap();
    assert_eq!(s.get_manifest(&id).unwrap(), m);
    let mut back = Vec::new();
    s.open_rdb(&id).unwrap().read_to_end(&mut back).unwrap();
    assert!(back == data, "the RDB read back differs");
    let json: serde_json::Value =
        serde_json::from_slice(&get(&s, "prod/20261125T083000Z/manifest.json")).unwrap();
    assert_eq!(json["rdb"]["sha256"], sha256_hex(&data));
    assert_eq!(ids(&s), ["20261125T083000Z"]);
}

#[test]
fn small_and_crc32c_snapshots_round_trip() {
    let Some(sw) = server() else { return };
    let bucket = sw.new_bucket("small");
    let s = sw.storage_in(&bucket, "", |c| {
        c.part_size = Some(5 << 20);
        c.checksum = Some("crc32c".into());
    });
    let small = rdb_bytes(1000, 1);
    let big = rdb_bytes(11 * MIB, 2);
    store(&s, "2026-11-25T08:30:00Z", &small);
    store(&s, "2026-11-25T09:30:00Z", &big);
    let h = head(&s, "20261125T093000Z/dump.rdb");
    let want = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &big) as u32;
    assert_eq!(
        h.checksum_crc32_c.as_deref(),
        Some(aws_smithy_types::base64::encode(want.to_be_bytes()).as_str())
    );
    for (id, data) in [("20261125T083000Z", &small), ("20261125T093000Z", &big)] {
        let mut back = Vec::new();
        s.open_rdb(&SnapshotId::parse(id).unwrap())
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(&back == data, "{id} read back differs");
    }
    assert_eq!(ids(&s), ["20261125T093000Z", "20261125T083000Z"]);
}

#[test]
fn sse_s3_and_sse_kms_are_on_the_stored_objects() {
    let Some(sw) = server() else { return };
    let bucket = sw.new_bucket("sse");
    let aes = sw.storage_in(&bucket, "aes/", |c| {
        c.part_size = Some(5 << 20);
        c.sse = Some("AES256".into());
    });
    store(&aes, "2026-11-25T08:30:00Z", &rdb_bytes(6 * MIB, 1));
    for key in [
        "aes/20261125T083000Z/dump.rdb",
        "aes/20261125T083000Z/manifest.json",
    ] {
        let h = head(&aes, key);
        assert_eq!(
            h.server_side_encryption,
            Some(ServerSideEncryption::Aes256),
            "{key}"
        );
    }
    drop(aes);
    let kms = sw.storage_in(&bucket, "kms/", |c| {
        c.part_size = Some(5 << 20);
        c.sse = Some("aws:kms".into());
        c.kms_key_id = Some(KMS_KEY.into());
    });
    store(&kms, "2026-11-25T08:30:00Z", &rdb_bytes(6 * MIB, 2));
    store(&kms, "2026-11-25T09:30:00Z", &rdb_bytes(1000, 3));
    for key in [
        "kms/20261125T083000Z/dump.rdb",
        "kms/20261125T083000Z/manifest.json",
        "kms/20261125T093000Z/dump.rdb",
    ] {
        let h = head(&kms, key);
        assert_eq!(
            h.server_side_encryption,
            Some(ServerSideEncryption::AwsKms),
            "{key}"
        );
        assert!(h.ssekms_key_id.is_some_and(|k| !k.is_empty()), "{key}");
    }
    assert_eq!(ids(&kms), ["20261125T093000Z", "20261125T083000Z"]);
}

#[test]
fn an_existing_object_is_never_overwritten() {
    let Some(sw) = server() else { return };
    let bucket = sw.new_bucket("overwrite");
    let s = sw.storage_in(&bucket, "", |c| c.part_size = Some(5 << 20));
    // Another writer stores at the id our sink reserved, before we complete: multipart
    // and single PUT are both refused, and theirs stays as it was.
    for (n, size) in [(0, 7 * MIB), (1, 1000)] {
        let at = format!("2026-11-25T08:3{n}:00Z");
        let mut sink = s.create_rdb(t(&at)).unwrap();
        let id = sink.id().clone();
        sink.write_all(&rdb_bytes(size, 1)).unwrap();
        let key = format!("{id}/dump.rdb");
        put(&s, &key, b"theirs");
        let e = sink.commit().err().expect("commit over an existing object");
        assert!(matches!(e, StorageError::Exists { .. }), "{e}");
        assert!(e.to_string().contains(&key), "{e}");
        assert_eq!(get(&s, &key), b"theirs");
        assert!(pending_uploads(&s).is_empty(), "{:?}", pending_uploads(&s));
    }
    // And a manifest already there is not replaced.
    let mut sink = s.create_rdb(t("2026-11-25T09:00:00Z")).unwrap();
    sink.write_all(&rdb_bytes(100, 2)).unwrap();
    let stored = sink.commit().unwrap();
    let m = manifest_for(stored.as_ref(), t("2026-11-25T09:00:00Z"));
    put(&s, "20261125T090000Z/manifest.json", b"{}");
    let e = stored.put_manifest(&m).unwrap_err();
    assert!(matches!(e, StorageError::Exists { .. }), "{e}");
    assert_eq!(get(&s, "20261125T090000Z/manifest.json"), b"{}");
}

#[test]
fn an_unfinished_write_leaves_nothing() {
    let Some(sw) = server() else { return };
    let bucket = sw.new_bucket("abort");
    let s = sw.storage_in(&bucket, "p/", |c| c.part_size = Some(5 << 20));
    // Two parts uploaded, then dropped: the upload is aborted.
    let mut sink = s.create_rdb(t("2026-11-25T08:30:00Z")).unwrap();
    sink.write_all(&rdb_bytes(12 * MIB, 1)).unwrap();
    assert_eq!(pending_uploads(&s), ["p/20261125T083000Z/dump.rdb"]);
    drop(sink);
    assert!(pending_uploads(&s).is_empty(), "{:?}", pending_uploads(&s));
    // Stored but dropped before its manifest: the RDB goes.
    let mut sink = s.create_rdb(t("2026-11-25T08:31:00Z")).unwrap();
    sink.write_all(&rdb_bytes(6 * MIB, 2)).unwrap();
    let stored = sink.commit().unwrap();
    assert!(keys(&s).contains(&"p/20261125T083100Z/dump.rdb".to_string()));
    assert!(ids(&s).is_empty(), "no manifest, no snapshot");
    drop(stored);
    assert_eq!(keys(&s), ["p/lock"]);
    // A manifest describing other bytes is refused, and nothing stays.
    let mut sink = s.create_rdb(t("2026-11-25T08:32:00Z")).unwrap();
    sink.write_all(&rdb_bytes(100, 3)).unwrap();
    let stored = sink.commit().unwrap();
    let mut m = manifest_for(stored.as_ref(), t("2026-11-25T08:32:00Z"));
    m.rdb.sha256 = "0".repeat(64);
    let e = stored.put_manifest(&m).unwrap_err();
    assert!(matches!(e, StorageError::Mismatch { .. }), "{e}");
    assert_eq!(keys(&s), ["p/lock"]);
}

#[test]
fn cleanup_aborts_orphan_uploads_and_removes_rdbs_without_manifest() {
    let Some(sw) = server() else { return };
    let bucket = sw.new_bucket("cleanup");
    let s = sw.storage_in(&bucket, "p/", |c| c.part_size = Some(5 << 20));
    let kept = store(&s, "2026-11-25T08:00:00Z", &rdb_bytes(100, 1));
    // What a crashed writer leaves: a multipart upload with a part, and an RDB without
    // manifest; plus keys of someone else under the prefix.
    let c = s.client().clone();
    let b = bucket.clone();
    s.block_on(async move {
        let up = c
            .create_multipart_upload()
            .bucket(&b)
            .key("p/20261125T083000Z/dump.rdb")
            .send()
            .await?;
        c.upload_part()
            .bucket(&b)
            .key("p/20261125T083000Z/dump.rdb")
            .upload_id(up.upload_id.unwrap_or_default())
            .part_number(1)
            .body(vec![7u8; 5 << 20].into())
            .send()
            .await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })
    .expect("orphan upload");
    put(&s, "p/20261125T090000Z/dump.rdb", &rdb_bytes(100, 2));
    put(&s, "p/20261125T091000Z/notes.txt", b"not ours");
    put(&s, "p/archive/x", b"not ours either");
    put(
        &s,
        "elsewhere/20261125T090000Z/dump.rdb",
        b"outside the prefix",
    );
    // A write in progress in this process is left alone.
    let mut open = s.create_rdb(t("2026-11-25T10:00:00Z")).unwrap();
    open.write_all(&rdb_bytes(6 * MIB, 3)).unwrap();

    let report = s.cleanup().unwrap();
    assert!(!report.busy);
    let removed = report.removed.join("\n");
    assert!(
        removed.contains("p/20261125T083000Z/dump.rdb (multipart upload"),
        "{removed}"
    );
    assert!(removed.contains("p/20261125T090000Z/dump.rdb"), "{removed}");
    assert_eq!(report.removed.len(), 2, "{removed}");
    assert_eq!(pending_uploads(&s), ["p/20261125T100000Z/dump.rdb"]);
    assert_eq!(
        keys(&s),
        [
            "elsewhere/20261125T090000Z/dump.rdb",
            "p/20261125T080000Z/dump.rdb",
            "p/20261125T080000Z/manifest.json",
            "p/20261125T091000Z/notes.txt",
            "p/archive/x",
            "p/lock"
        ]
    );
    assert!(report
        .kept
        .iter()
        .any(|(k, _)| k.contains("20261125T091000Z")));
    let stored = open.commit().unwrap();
    let m = manifest_for(stored.as_ref(), t("2026-11-25T10:00:00Z"));
    stored.put_manifest(&m).unwrap();
    assert_eq!(ids(&s), ["20261125T100000Z", kept.id.as_str()]);
}

#[test]
fn list_delete_and_retention() {
    let Some(sw) = server() else { return };
    let bucket = sw.new_bucket("retention");
    let s = sw.storage_in(&bucket, "r/", |_| {});
    for h in 0..5 {
        store(
            &s,
            &format!("2026-11-25T0{h}:00:00Z"),
            &rdb_bytes(100 + h, h as u64),
        );
    }
    // Two ids in one second get a suffix.
    store(&s, "2026-11-25T04:00:00.5Z", &rdb_bytes(10, 9));
    assert_eq!(
        ids(&s),
        [
            "20261125T040000Z-1",
            "20261125T040000Z",
            "20261125T030000Z",
            "20261125T020000Z",
            "20261125T010000Z",
            "20261125T000000Z"
        ]
    );
    // A broken manifest is reported, not listed; a manifest whose RDB is gone too.
    put(&s, "r/20261125T050000Z/dump.rdb", &rdb_bytes(10, 1));
    put(&s, "r/20261125T050000Z/manifest.json", b"{not json");
    let l = s.list().unwrap();
    assert_eq!(l.snapshots.len(), 6);
    assert_eq!(l.problems.len(), 1);
    assert_eq!(l.problems[0].id.as_str(), "20261125T050000Z");
    let e = s
        .get_manifest(&SnapshotId::parse("20261125T050000Z").unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("manifest"), "{e}");
    s.delete(&SnapshotId::parse("20261125T050000Z").unwrap())
        .unwrap();

    let id = SnapshotId::parse("20261125T020000Z").unwrap();
    s.delete(&id).unwrap();
    assert!(matches!(s.delete(&id), Err(StorageError::NotFound { .. })));
    assert!(matches!(
        s.get_manifest(&id),
        Err(StorageError::NotFound { .. })
    ));
    assert!(s.open_rdb(&id).is_err());

    // keep_last = 2: the two newest stay, the rest go.
    let policy = Policy::from_config(&replisnap::config::Retention {
        keep_last: Some(2),
        ..Default::default()
    })
    .unwrap();
    let out = replisnap::snapshot::retain::apply(&s, &policy, false).unwrap();
    assert_eq!(out.deleted.len(), 3, "{:?}", out.verdicts);
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    assert_eq!(ids(&s), ["20261125T040000Z-1", "20261125T040000Z"]);
    assert_eq!(
        keys(&s),
        [
            "r/20261125T040000Z-1/dump.rdb",
            "r/20261125T040000Z-1/manifest.json",
            "r/20261125T040000Z/dump.rdb",
            "r/20261125T040000Z/manifest.json",
            "r/lock"
        ]
    );
}
