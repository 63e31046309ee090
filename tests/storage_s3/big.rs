//! A 1 GiB snapshot in over 200 parts, uploaded in bounded memory: the writer runs in a
//! child process (this test binary re-run) whose peak RSS is measured alone.

use std::process::Command;

use replisnap::rdb::crc::Crc64;

use super::*;

const BIG: usize = 1 << 30;
const PART: usize = 5 << 20;
const CONCURRENCY: usize = 4;

/// Not a test on its own: the child of `a_1_gib_snapshot_in_bounded_memory`. Streams
/// `BIG` bytes (plus the RDB trailer) generated on the fly into the bucket it is given,
/// then prints its peak RSS.
#[test]
fn big_child() {
    let Ok(endpoint) = std::env::var("REPLISNAP_S3_BIG_ENDPOINT") else {
        return;
    };
    let bucket = std::env::var("REPLISNAP_S3_BIG_BUCKET").unwrap();
    let mut cfg = seaweed::config_for(&endpoint, &bucket, "big/");
    cfg.part_size = Some(PART as u64);
    cfg.upload_concurrency = Some(CONCURRENCY);
    let s = S3Storage::open(&cfg, Some(Seaweed::credentials())).unwrap();
    let started = std::time::Instant::now();
    let mut sink = s.create_rdb(t("2026-11-25T12:00:00Z")).unwrap();
    let mut crc = Crc64::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..BIG / chunk.len() {
        for w in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        crc.update(&chunk);
        sink.write_all(&chunk).unwrap();
    }
    sink.write_all(&crc.value().to_le_bytes()).unwrap();
    let stored = sink.commit().unwrap();
    let m = manifest_for(stored.as_ref(), t("2026-11-25T12:00:00Z"));
    stored.put_manifest(&m).unwrap();
    let secs = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .to_string();
    println!("\nRESULT {} {secs:.2} {hwm}", m.rdb.sha256);
}

#[test]
fn a_1_gib_snapshot_in_bounded_memory() {
    let Some(sw) = server() else { return };
    let bucket = sw.new_bucket("big");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "big::big_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("REPLISNAP_S3_BIG_ENDPOINT", &sw.endpoint)
        .env("REPLISNAP_S3_BIG_BUCKET", &bucket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("RESULT line");
    let f: Vec<&str> = line.split_whitespace().collect();
    let (sha, secs, hwm_kib): (&str, f64, u64) =
        (f[0], f[1].parse().unwrap(), f[2].parse().unwrap());
    eprintln!(
        "1 GiB in {} parts: {secs:.1} s ({:.0} MiB/s), peak RSS {} MiB",
        BIG.div_ceil(PART),
        1024.0 / secs,
        hwm_kib / 1024
    );
    // Parts in flight plus the one filling, with room for the runtime and the SDK.
    let bound = (PART * (CONCURRENCY + 1)) as u64 / 1024 * 2 + 64 * 1024;
    assert!(
        hwm_kib < bound,
        "peak RSS {hwm_kib} KiB above {bound} KiB: memory not bounded by the parts"
    );
    let s = sw.storage_in(&bucket, "big/", |_| {});
    let l = s.list().unwrap();
    assert_eq!(l.snapshots.len(), 1, "{:?}", l.problems);
    let m = &l.snapshots[0];
    assert_eq!(m.rdb.bytes, BIG as u64 + 8);
    assert_eq!(m.rdb.sha256, sha);
    let h = head(&s, "big/20261125T120000Z/dump.rdb");
    assert_eq!(h.content_length, Some(BIG as i64 + 8));
    // The parts as the store counts them (HEAD with partNumber gives the count).
    let c = s.client().clone();
    let parts = s
        .block_on(async move {
            c.head_object()
                .bucket(bucket)
                .key("big/20261125T120000Z/dump.rdb")
                .part_number(1)
                .send()
                .await
        })
        .expect("head part 1")
        .parts_count;
    assert_eq!(parts, Some((BIG + 8).div_ceil(PART) as i32), "parts");
    // Read back through the trait, hashed as fetch does.
    let got = replisnap::storage::hash_reader(&mut s.open_rdb(&m.id).unwrap()).unwrap();
    assert_eq!(got.sha256, sha);
    assert!(got.crc64_confirmed());
    s.delete(&m.id).unwrap();
}
