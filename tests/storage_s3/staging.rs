//! `[storage] staging = "local"` in the real binary, against a real redis master and
//! SeaweedFS behind the fault-injecting proxy: an upload refused with 500s is retried from
//! the staged file and stored with the master's digest (no new snapshot); one refused
//! past every retry stays staged as pending and is stored after the next snapshot; only
//! the newest stored snapshot stays staged (0600 files in a 0700 directory); and a restart
//! reads the staged copy instead of downloading it (no GET of a `dump.rdb` through the
//! proxy), then resumes with a partial resync. The retries beat the writer's heartbeat:
//! `/readyz` stays 200 through 31 s of them under `[snapshot] timeout = 10`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use replisnap::storage::{SnapshotId, Storage};

use super::daemon::{master_offset, metrics, replisnap, sample, start};
use super::proxy::{Fault, Proxy, Rule};
use super::support::{self, TestServer};

/// A config for `master` and `bucket` through `endpoint`: one attempt per request, 5 MiB
/// parts, snapshots on request only; `staging` is that key's value.
pub(super) fn write_config(
    dir: &Path,
    endpoint: &str,
    bucket: &str,
    master: &str,
    staging: &str,
) -> (String, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let text = format!(
        "[source]\naddress = \"{master}\"\n\n[replica]\nannounce_port = 6397\n\
         state_dir = \"{}\"\ncheckpoint_on_shutdown = false\n\n\
         [snapshot]\nschedule = \"0 0 0 1 1 *\"\ntimeout = 10\n\n\
         [storage]\nkind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"st/\"\n\
         region = \"us-east-1\"\nendpoint = \"{endpoint}\"\nforce_path_style = true\n\
         part_size = 5242880\nupload_concurrency = 2\nmax_attempts = 1\n\
         lease_seconds = 15\nstaging = \"{staging}\"\n\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\n",
        dir.join("state").display(),
    );
    let path = dir.join("staging.toml");
    fs::write(&path, text).expect("write config");
    (path.display().to_string(), port)
}

/// The status line's code of `GET path`, 0 if the daemon does not answer.
pub(super) fn get_status(port: u16, path: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    if c.write_all(req.as_bytes()).is_err() || c.read_to_string(&mut out).is_err() {
        return 0;
    }
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

pub(super) fn snapshot_wait(config: &str) -> Output {
    replisnap(
        Path::new(config),
        &["snapshot", "--wait", "--timeout", "180s"],
    )
    .output()
    .expect("replisnap snapshot")
}

/// The staging directory's file names, sorted; every one is 0600, the directory 0700.
fn staged(dir: &Path) -> Vec<String> {
    let staging = dir.join("state/staging");
    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&staging), 0o700, "{}", staging.display());
    let mut names: Vec<String> = fs::read_dir(&staging)
        .expect("staging dir")
        .map(|e| {
            let e = e.unwrap();
            assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
            e.file_name().to_string_lossy().into_owned()
        })
        .collect();
    names.sort();
    names
}

fn rule(times: usize) -> Rule {
    Rule {
        method: "PUT",
        contains: vec!["dump.rdb".into()],
        times,
        fault: Fault::Status(500, "InternalError"),
    }
}

#[test]
fn staged_snapshots_are_retried_pruned_and_restart_without_download() {
    let Some(sw) = super::seaweed::server() else {
        return;
    };
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let bucket = sw.new_bucket("staging");
    let proxy = Proxy::start(sw.endpoint.trim_start_matches("http://"));
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    // About 11 MB of RDB: a multipart upload of three 5 MiB parts.
    m.must(&["DEBUG", "POPULATE", "350000", "key", "64"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, port) = write_config(dir.path(), &proxy.endpoint, &bucket, &m.addr(), "local");
    let reader = sw.storage_in(&bucket, "st/", |_| {});
    // By id: the master's offset also moves with its replication PINGs, its data not.
    let stored = |id: &str, offset: u64| {
        let m = reader
            .get_manifest(&SnapshotId::parse(id).expect("an id"))
            .ok()?;
        assert!(
            m.source.offset >= offset,
            "{id}: offset {}",
            m.source.offset
        );
        Some(m)
    };

    let mut d = start(Path::new(&config), &dir.path().join("1.log"));
    let ready = support::wait_until(Duration::from_secs(60), || {
        assert!(d.exited().is_none(), "daemon exited:\n{}", d.log_text());
        get_status(port, "/readyz") == 200
    });
    assert!(ready, "never ready:\n{}", d.log_text());

    // 1. Three 500s on the RDB's PUTs (one attempt per request): the streamed upload and
    // the first retries fail; a retry from the staged file stores it, same snapshot.
    m.must(&["SET", "phase", "1"]);
    let (offset1, digest1) = (master_offset(&m), m.digest());
    proxy.add(rule(3));
    let out = snapshot_wait(&config);
    assert!(
        out.status.success(),
        "snapshot: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log_text()
    );
    let id1 = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(proxy.take_injected().len(), 3, "{}", d.log_text());
    let s1 = stored(&id1, offset1).unwrap_or_else(|| panic!("not stored:\n{}", d.log_text()));
    assert_eq!(s1.id.as_str(), id1);
    assert_eq!(
        s1.digest, digest1,
        "digest of the snapshot stored by a retry"
    );
    let log = d.log_text();
    assert!(log.contains("retrying from the staged file"), "{log}");
    assert!(log.contains("uploaded from the staged file"), "{log}");
    assert_eq!(
        staged(dir.path()),
        [format!("{id1}.json"), format!("{id1}.rdb")]
    );
    let text = metrics(port);
    assert_eq!(
        sample(&text, "replisnap_snapshots_total{result=\"ok\"}"),
        1.0
    );

    // 2. The store refuses for longer than every retry: the snapshot fails, counted, and
    // stays staged (pending) beside the stored one.
    m.must(&["SET", "phase", "2"]);
    let (offset2, digest2) = (master_offset(&m), m.digest());
    proxy.add(rule(100_000));
    // The retries (31 s of backoff, 16 s in one go) are progress, not a wedged writer:
    // `/readyz` stays 200 under `[snapshot] timeout = 10`.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let watching = watching.clone();
        std::thread::spawn(move || {
            let mut bad = Vec::new();
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let code = get_status(port, "/readyz");
                if code != 200 {
                    bad.push(code);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            bad
        })
    };
    let out = snapshot_wait(&config);
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let bad = watcher.join().unwrap();
    assert!(
        bad.is_empty(),
        "/readyz {bad:?} during the retries:\n{}",
        d.log_text()
    );
    assert!(!out.status.success(), "stored through a dead store?");
    proxy.clear();
    let id2 = staged(dir.path())
        .iter()
        .find_map(|n| n.strip_suffix(".pending.json").map(String::from))
        .unwrap_or_else(|| panic!("nothing pending:\n{}", d.log_text()));
    assert!(d.log_text().contains("kept staged in"), "{}", d.log_text());
    assert!(stored(&id2, offset2).is_none());
    assert_eq!(
        staged(dir.path()),
        [
            format!("{id1}.json"),
            format!("{id1}.rdb"),
            format!("{id2}.pending.json"),
            format!("{id2}.rdb"),
        ]
    );
    let text = metrics(port);
    assert_eq!(
        sample(&text, "replisnap_snapshots_total{result=\"error\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "replisnap_uploads_total{result=\"error\"}"),
        1.0
    );

    // 3. The next snapshot is stored, then the pending one from its staged file (with the
    // master's digest of then); only the newest stays staged.
    m.must(&["SET", "phase", "3"]);
    let (offset3, digest3) = (master_offset(&m), m.digest());
    let out = snapshot_wait(&config);
    assert!(out.status.success(), "{}", d.log_text());
    let id3 = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(stored(&id3, offset3).expect("third stored").digest, digest3);
    let s2 =
        stored(&id2, offset2).unwrap_or_else(|| panic!("pending not stored:\n{}", d.log_text()));
    assert_eq!(s2.id.as_str(), id2);
    assert_eq!(s2.digest, digest2, "digest of the snapshot stored late");
    assert_eq!(
        staged(dir.path()),
        [format!("{id3}.json"), format!("{id3}.rdb")]
    );
    d.terminate();

    // 4. A restart reads the newest stored snapshot's staged copy: no download.
    m.must(&["SET", "phase", "4"]);
    proxy.take_log();
    let mut d = start(Path::new(&config), &dir.path().join("2.log"));
    let ready = support::wait_until(Duration::from_secs(60), || {
        assert!(d.exited().is_none(), "daemon exited:\n{}", d.log_text());
        get_status(port, "/readyz") == 200
    });
    assert!(ready, "never ready after restart:\n{}", d.log_text());
    let (offset4, digest4) = (master_offset(&m), m.digest());
    let out = snapshot_wait(&config);
    assert!(out.status.success(), "{}", d.log_text());
    let id4 = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        stored(&id4, offset4).expect("fourth stored").digest,
        digest4
    );
    let log = d.terminate();
    assert!(
        log.contains("warm restart: read the staged copy, no download"),
        "{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("read the staged copy"))
        .unwrap_or_default();
    assert!(line.contains(id3.as_str()), "{line}");
    let gets: Vec<String> = proxy
        .take_log()
        .into_iter()
        .filter(|r| r.starts_with("GET ") && r.contains("dump.rdb"))
        .collect();
    assert!(gets.is_empty(), "downloaded: {gets:?}");
    assert!(
        log.contains("partial resync accepted") && !log.contains("full sync started"),
        "expected a partial resync from the staged copy:\n{log}"
    );
}
