//! The daemon's metrics under injected S3 faults (real binary, real redis, SeaweedFS behind
//! the fault proxy, one attempt per request): a part refused while the RDB streams into
//! the upload, and a CompleteMultipartUpload answered 503 SlowDown, each fail the snapshot
//! and count `uploads_total{result="error"}` and `snapshots_total{result="error"}`, leave
//! no object and no multipart upload; the next snapshot is stored with the master's digest
//! and counted ok.

use std::path::Path;
use std::time::Duration;

use replisnap::storage::Storage;

use super::daemon::{master_offset, metrics, sample, start};
use super::proxy::{Fault, Proxy, Rule};
use super::staging::{get_status, snapshot_wait, write_config};
use super::support::{self, TestServer};
use super::{keys, pending_uploads};

#[test]
fn upload_faults_are_counted_and_leave_nothing() {
    let Some(sw) = super::seaweed::server() else {
        return;
    };
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let bucket = sw.new_bucket("dfaults");
    let proxy = Proxy::start(sw.endpoint.trim_start_matches("http://"));
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    // About 30 MB of RDB: six 5 MiB parts, two in flight.
    m.must(&["DEBUG", "POPULATE", "1000000", "key", "64"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, port) = write_config(dir.path(), &proxy.endpoint, &bucket, &m.addr(), "none");
    let reader = sw.storage_in(&bucket, "st/", |_| {});
    let mut d = start(Path::new(&config), &dir.path().join("d.log"));
    let ready = support::wait_until(Duration::from_secs(60), || {
        assert!(d.exited().is_none(), "daemon exited:\n{}", d.log_text());
        get_status(port, "/readyz") == 200
    });
    assert!(ready, "never ready:\n{}", d.log_text());

    let faults: [(&str, Rule, &str); 2] = [
        (
            "500 on the first part",
            Rule {
                method: "PUT",
                contains: vec!["partNumber=1&".into()],
                times: 1,
                fault: Fault::Status(500, "InternalError"),
            },
            // Refused while the RDB streams: a write into storage failed.
            "writing the RDB into storage",
        ),
        (
            "503 SlowDown on Complete",
            Rule {
                method: "POST",
                contains: vec!["uploadId=".into()],
                times: 1,
                fault: Fault::Status(503, "SlowDown"),
            },
            "SlowDown",
        ),
    ];
    for (n, (what, rule, cause)) in faults.into_iter().enumerate() {
        proxy.add(rule);
        let out = snapshot_wait(&config);
        assert!(!out.status.success(), "{what}: stored anyway");
        assert_eq!(proxy.take_injected().len(), 1, "{what}");
        let log = d.log_text();
        let failed = log
            .lines()
            .filter(|l| l.contains("snapshot failed"))
            .nth(n)
            .unwrap_or_else(|| panic!("{what}: no failure logged:\n{log}"));
        assert!(failed.contains(cause), "{what}: {failed}");
        let text = metrics(port);
        let count = (n + 1) as f64;
        assert_eq!(
            sample(&text, "replisnap_uploads_total{result=\"error\"}"),
            count,
            "{what}"
        );
        assert_eq!(
            sample(&text, "replisnap_snapshots_total{result=\"error\"}"),
            count,
            "{what}"
        );
        assert_eq!(sample(&text, "replisnap_uploads_total{result=\"ok\"}"), 0.0);
        // Nothing visible, nothing pending: only the lease.
        let left = support::wait_until(Duration::from_secs(10), || {
            keys(&reader) == ["st/lock"] && pending_uploads(&reader).is_empty()
        });
        assert!(
            left,
            "{what}: left {:?} {:?}",
            keys(&reader),
            pending_uploads(&reader)
        );
    }

    let (offset, digest) = (master_offset(&m), m.digest());
    let out = snapshot_wait(&config);
    assert!(out.status.success(), "{}", d.log_text());
    let l = reader.list().expect("list");
    assert_eq!(l.snapshots.len(), 1);
    // The offset also moves with the master's replication PINGs, its data not.
    assert!(l.snapshots[0].source.offset >= offset);
    assert_eq!(l.snapshots[0].digest, digest);
    let text = metrics(port);
    assert_eq!(sample(&text, "replisnap_uploads_total{result=\"ok\"}"), 1.0);
    assert_eq!(
        sample(&text, "replisnap_uploads_total{result=\"error\"}"),
        2.0
    );
    d.terminate();
}

/// The sum of `upload_retries_total` over every op, and per op.
fn retries(text: &str) -> (f64, Vec<(String, f64)>) {
    let per: Vec<(String, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("replisnap_upload_retries_total{op=\"")?;
            let (op, v) = rest.split_once("\"} ")?;
            Some((op.to_string(), v.trim().parse().ok()?))
        })
        .collect();
    (per.iter().map(|(_, v)| v).sum(), per)
}

#[test]
fn retried_attempts_are_counted_and_the_snapshot_stored() {
    let Some(sw) = super::seaweed::server() else {
        return;
    };
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let bucket = sw.new_bucket("dretry");
    let proxy = Proxy::start(sw.endpoint.trim_start_matches("http://"));
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    // About 30 MB of RDB: six 5 MiB parts, two in flight.
    m.must(&["DEBUG", "POPULATE", "1000000", "key", "64"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, port) = write_config(dir.path(), &proxy.endpoint, &bucket, &m.addr(), "none");
    // The SDK retries here (5 attempts per request); the faulted test above allows one.
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("max_attempts = 1"));
    std::fs::write(
        &config,
        text.replace("max_attempts = 1", "max_attempts = 5"),
    )
    .unwrap();
    let reader = sw.storage_in(&bucket, "st/", |_| {});
    let mut d = start(Path::new(&config), &dir.path().join("d.log"));
    let ready = support::wait_until(Duration::from_secs(60), || {
        assert!(d.exited().is_none(), "daemon exited:\n{}", d.log_text());
        get_status(port, "/readyz") == 200
    });
    assert!(ready, "never ready:\n{}", d.log_text());
    let (before, _) = retries(&metrics(port));
    assert_eq!(before, 0.0, "{}", metrics(port));

    // N = 4 faults, each answered once, each attempt then retried by the SDK and passed.
    let rule = |method: &'static str, contains: &str, fault| Rule {
        method,
        contains: vec![contains.into()],
        times: 1,
        fault,
    };
    proxy.add(rule(
        "PUT",
        "partNumber=1&",
        Fault::Status(500, "InternalError"),
    ));
    proxy.add(rule(
        "PUT",
        "partNumber=3&",
        Fault::Status(500, "InternalError"),
    ));
    proxy.add(rule("POST", "uploadId=", Fault::Status(503, "SlowDown")));
    proxy.add(rule(
        "PUT",
        "manifest.json",
        Fault::Status(500, "InternalError"),
    ));
    let (offset, digest) = (master_offset(&m), m.digest());
    let out = snapshot_wait(&config);
    assert!(out.status.success(), "not stored:\n{}", d.log_text());
    let injected = proxy.take_injected();
    assert_eq!(injected.len(), 4, "{injected:?}");

    let l = reader.list().expect("list");
    assert_eq!(l.snapshots.len(), 1);
    assert!(l.snapshots[0].source.offset >= offset);
    assert_eq!(l.snapshots[0].digest, digest);
    // The poller copies the storage's counts every second.
    let counted = support::wait_until(Duration::from_secs(5), || retries(&metrics(port)).0 >= 4.0);
    let text = metrics(port);
    let (total, per) = retries(&text);
    assert!(counted, "retries {per:?}");
    assert_eq!(total, 4.0, "exactly one retry per injected fault: {per:?}");
    let op = |name: &str| {
        per.iter()
            .find(|(o, _)| o == name)
            .map_or(-1.0, |(_, v)| *v)
    };
    assert_eq!(op("upload_part"), 2.0, "{per:?}");
    assert_eq!(op("complete_multipart_upload"), 1.0, "{per:?}");
    assert_eq!(op("put_object"), 1.0, "{per:?}");
    assert_eq!(sample(&text, "replisnap_uploads_total{result=\"ok\"}"), 1.0);
    assert_eq!(
        sample(&text, "replisnap_uploads_total{result=\"error\"}"),
        0.0
    );
    assert_eq!(
        sample(&text, "replisnap_snapshots_total{result=\"error\"}"),
        0.0
    );
    let left = support::wait_until(Duration::from_secs(10), || {
        pending_uploads(&reader).is_empty()
    });
    assert!(left, "pending uploads: {:?}", pending_uploads(&reader));
    d.terminate();
}
