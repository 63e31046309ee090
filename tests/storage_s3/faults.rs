//! Faults between replisnap and the S3 server, injected by a proxy: 500, 503 SlowDown, a
//! connection closed mid-part, a stalled answer, a lost answer and a 412. Each snapshot is either retried
//! and stored whole, or fails naming the cause and leaves nothing: no partial or duplicate
//! object, no pending multipart upload.

use std::time::{Duration, Instant};

use replisnap::storage::s3::Settings;

use super::proxy::{Fault, Proxy, Rule};
use super::*;

fn rule(method: &'static str, contains: &[&str], times: usize, fault: Fault) -> Rule {
    Rule {
        method,
        contains: contains.iter().map(|s| s.to_string()).collect(),
        times,
        fault,
    }
}

/// Write `data` and commit it with a manifest; the first error on the way.
fn try_store(s: &dyn Storage, at: &str, data: &[u8]) -> Result<Manifest, String> {
    let mut sink = s.create_rdb(t(at)).map_err(|e| e.to_string())?;
    for chunk in data.chunks(1 << 20) {
        sink.write_all(chunk).map_err(|e| e.to_string())?;
    }
    let stored = sink.commit().map_err(|e| e.to_string())?;
    let m = manifest_for(stored.as_ref(), t(at));
    stored.put_manifest(&m).map_err(|e| e.to_string())?;
    Ok(m)
}

#[test]
fn faults_are_retried_or_fail_cleanly() {
    let Some(sw) = server() else { return };
    let bucket = sw.new_bucket("faults");
    let proxy = Proxy::start(sw.endpoint.trim_start_matches("http://"));
    let mut cfg = seaweed::config_for(&proxy.endpoint, &bucket, "f/");
    cfg.part_size = Some(5 << 20);
    cfg.upload_concurrency = Some(2);
    cfg.max_attempts = Some(4);
    let mut settings = Settings::from_config(&cfg).unwrap();
    settings.read_timeout = Duration::from_secs(2);
    let s = S3Storage::with_settings(settings, Some(Seaweed::credentials())).unwrap();
    // Four parts: 5 + 5 + 5 + 1 MiB.
    let data = rdb_bytes(16 * MIB, 5);

    let retried: [(&str, Rule, &str); 7] = [
        (
            "500 on a part",
            rule(
                "PUT",
                &["partNumber=2"],
                1,
                Fault::Status(500, "InternalError"),
            ),
            "partNumber=2",
        ),
        (
            "503 SlowDown on create",
            rule("POST", &["?uploads"], 2, Fault::Status(503, "SlowDown")),
            "?uploads",
        ),
        (
            "connection closed mid-part",
            rule("PUT", &["partNumber=1"], 1, Fault::CloseMidBody),
            "partNumber=1",
        ),
        (
            "stalled answer to a part",
            rule("PUT", &["partNumber=3"], 1, Fault::Stall),
            "partNumber=3",
        ),
        (
            "500 on the manifest",
            rule(
                "PUT",
                &["manifest.json"],
                1,
                Fault::Status(500, "InternalError"),
            ),
            "manifest.json",
        ),
        // The retry meets the object its first attempt made (412): recognised as ours by
        // size and checksum (the RDB) or by content (the manifest), not duplicated.
        (
            "answer to Complete lost",
            rule("POST", &["uploadId="], 1, Fault::LoseAnswer),
            "uploadId=",
        ),
        (
            "answer to the manifest PUT lost",
            rule("PUT", &["manifest.json"], 1, Fault::LoseAnswer),
            "manifest.json",
        ),
    ];
    for (n, (what, r, marker)) in retried.into_iter().enumerate() {
        let (times, method) = (r.times, r.method);
        proxy.add(r);
        proxy.take_log();
        let started = Instant::now();
        let at = format!("2026-11-25T08:{n:02}:00Z");
        let m = try_store(&s, &at, &data).unwrap_or_else(|e| panic!("{what}: {e}"));
        let took = started.elapsed();
        let injected = proxy.take_injected();
        assert_eq!(injected.len(), times, "{what}: {injected:?}");
        let attempts = proxy
            .take_log()
            .iter()
            .filter(|l| l.starts_with(method) && l.contains(marker))
            .count();
        assert_eq!(attempts, times + 1, "{what}: the request was retried");
        assert_eq!(m.rdb.sha256, sha256_hex(&data), "{what}");
        if what.starts_with("stalled") {
            assert!(took >= Duration::from_secs(2), "{what}: {took:?}");
        }
        let mut back = Vec::new();
        s.open_rdb(&m.id).unwrap().read_to_end(&mut back).unwrap();
        assert!(back == data, "{what}: read back differs");
        assert!(pending_uploads(&s).is_empty(), "{what}");
    }
    assert_eq!(ids(&s).len(), 7);

    // Failures: the cause named, nothing visible, nothing pending.
    let before = keys(&s);
    let failing: [(&str, Rule, &str); 3] = [
        (
            "503 SlowDown on every attempt at a part",
            rule(
                "PUT",
                &["partNumber=2"],
                100,
                Fault::Status(503, "SlowDown"),
            ),
            "SlowDown",
        ),
        (
            "412 on Complete",
            rule(
                "POST",
                &["uploadId="],
                1,
                Fault::Status(412, "PreconditionFailed"),
            ),
            "already exists",
        ),
        (
            "the connection closed on every attempt at the manifest",
            rule("PUT", &["manifest.json"], 100, Fault::CloseMidBody),
            "manifest.json",
        ),
    ];
    for (n, (what, r, cause)) in failing.into_iter().enumerate() {
        proxy.add(r);
        let e = try_store(&s, &format!("2026-11-25T09:0{n}:00Z"), &data)
            .err()
            .unwrap_or_else(|| panic!("{what}: stored"));
        proxy.clear();
        eprintln!("{what}: {e}");
        assert!(e.contains(cause) && e.contains("s3://"), "{what}: {e}");
        assert!(
            pending_uploads(&s).is_empty(),
            "{what}: {:?}",
            pending_uploads(&s)
        );
        assert_eq!(keys(&s), before, "{what}: something stayed");
        assert_eq!(ids(&s).len(), 7, "{what}");
    }
}
