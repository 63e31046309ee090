//! `replisnap run` with `kind = "s3"` against a real redis and SeaweedFS: the snapshot in
//! the bucket, fetched by the CLI and loaded into a fresh server, has the master's `DEBUG
//! DIGEST` and `replisnap list` shows it; a second daemon on the same prefix refuses, naming the first; a restart with
//! nothing local resumes from the bucket's snapshot (warm restart), then PSYNC;
//! `[verify] schedule` reads the newest snapshot back from the bucket and counts it good.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use replisnap::storage::Storage;

use super::seaweed::{Seaweed, ACCESS_KEY, SECRET_KEY};
use super::support::{self, TestServer};

pub(super) struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub(super) fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(super) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGTERM without waiting.
    pub(super) fn signal_term(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    pub(super) fn terminate(mut self) -> String {
        self.signal_term();
        let start = Instant::now();
        while self.exited().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "replisnap did not stop on SIGTERM:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log_text()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn replisnap(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_replisnap"));
    c.args(args)
        .arg("--config")
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("RUST_LOG", "info,tokio_cron_scheduler=warn");
    c
}

pub(super) fn start(config: &Path, log: &Path) -> Daemon {
    let out = fs::File::create(log).expect("log file");
    let child = replisnap(config, &["run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .expect("start replisnap run");
    Daemon {
        child,
        log: log.to_path_buf(),
    }
}

/// `replisnap.toml` for the master and bucket; (its path, the HTTP port).
fn write_config(
    dir: &Path,
    name: &str,
    sw: &Seaweed,
    bucket: &str,
    master: &str,
) -> (PathBuf, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let text = format!(
        "[source]\naddress = \"{master}\"\n\n[replica]\nannounce_port = 6396\n\
         state_dir = \"{}\"\ncheckpoint_on_shutdown = false\n\n\
         [snapshot]\nschedule = \"*/2 * * * * *\"\n\n\
         [storage]\nkind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"e2e/\"\n\
         region = \"us-east-1\"\nendpoint = \"{}\"\nforce_path_style = true\n\
         part_size = 5242880\nupload_concurrency = 2\nlease_seconds = 15\n\n\
         [retention]\nkeep_last = 2\n\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [verify]\nschedule = \"*/3 * * * * *\"\n",
        dir.join(format!("state-{name}")).display(),
        sw.endpoint
    );
    let path = dir.join(name);
    fs::write(&path, text).expect("write config");
    (path, port)
}

/// `GET /metrics` as text.
pub(super) fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect /metrics");
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).expect("read /metrics");
    out
}

/// The value of the sample whose line starts with `name` (labels included).
pub(super) fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in:\n{text}"))
}

pub(super) fn master_offset(m: &TestServer) -> u64 {
    m.info_field("replication", "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn daemon_snapshots_into_s3_with_the_masters_digest() {
    let Some(sw) = super::seaweed::server() else {
        return;
    };
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let bucket = sw.new_bucket("daemon");
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    // About 11 MB of RDB: a multipart upload of three 5 MiB parts.
    m.must(&["DEBUG", "POPULATE", "350000", "key", "64"]);
    m.must(&["SET", "marker", "1"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, port) = write_config(dir.path(), "a.toml", sw, &bucket, &m.addr());
    let reader = sw.storage_in(&bucket, "e2e/", |_| {});

    let mut d = start(&config, &dir.path().join("a.log"));
    let offset = master_offset(&m);
    let digest = m.digest();
    let found = support::wait_until(Duration::from_secs(60), || {
        assert!(d.exited().is_none(), "daemon exited:\n{}", d.log_text());
        reader
            .list()
            .map(|l| l.snapshots.iter().any(|s| s.source.offset >= offset))
            .unwrap_or(false)
    });
    assert!(found, "no snapshot at offset {offset}:\n{}", d.log_text());
    let snap = reader
        .list()
        .unwrap()
        .snapshots
        .into_iter()
        .find(|s| s.source.offset >= offset)
        .unwrap();
    assert_eq!(snap.digest, digest, "manifest digest");
    assert!(
        snap.rdb.bytes > 5 << 20,
        "{} bytes: not multipart",
        snap.rdb.bytes
    );

    // The uploads are counted.
    let text = metrics(port);
    assert!(
        sample(&text, "replisnap_uploads_total{result=\"ok\"}") >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "replisnap_uploads_total{result=\"error\"}"),
        0.0
    );
    assert!(sample(&text, "replisnap_upload_bytes_total") >= snap.rdb.bytes as f64);
    assert!(sample(&text, "replisnap_last_upload_success_timestamp_seconds") > 1.7e9);
    // Set by the retention pass that follows the store.
    let counted = support::wait_until(Duration::from_secs(10), || {
        sample(&metrics(port), "replisnap_stored_snapshots") >= 1.0
    });
    assert!(counted, "{}", metrics(port));
    // `[verify] schedule` reads the newest snapshot back from the bucket and finds it good.
    let verified = support::wait_until(Duration::from_secs(60), || {
        sample(&metrics(port), "replisnap_verify_total{result=\"ok\"}") >= 1.0
    });
    assert!(verified, "no good verification over S3:\n{}", d.log_text());
    assert!(
        sample(
            &metrics(port),
            "replisnap_last_verify_success_timestamp_seconds"
        ) > 1.7e9
    );

    // A second daemon on the same prefix refuses, naming the holder.
    let (config_b, _) = write_config(dir.path(), "b.toml", sw, &bucket, &m.addr());
    let mut b = start(&config_b, &dir.path().join("b.log"));
    let start_b = Instant::now();
    let status = loop {
        if let Some(st) = b.exited() {
            break st;
        }
        assert!(
            start_b.elapsed() < Duration::from_secs(30),
            "a second daemon kept running:\n{}",
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let blog = b.log_text();
    assert_eq!(status.code(), Some(1), "{blog}");
    assert!(blog.contains("held by") && blog.contains("pid"), "{blog}");

    // Read back from the bucket (sha256 and CRC checked); a fresh server loads it.
    let out_file = dir.path().join("fetched.rdb");
    let mut rdb = reader.open_rdb(&snap.id).expect("open the stored RDB");
    let mut f = fs::File::create(&out_file).expect("create");
    std::io::copy(&mut rdb, &mut f).expect("download");
    drop(f);
    let got = replisnap::storage::hash_reader(&mut fs::File::open(&out_file).unwrap()).unwrap();
    assert_eq!(got.sha256, snap.rdb.sha256);
    assert!(got.crc64_confirmed());
    let out = replisnap(&config, &["list", "--json"])
        .output()
        .expect("replisnap list");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listed.contains(snap.id.as_str()),
        "list: {listed} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = TestServer::start_with_rdb(&bin, &out_file, &[]).expect("load fetched RDB");
    assert_eq!(fresh.digest(), digest, "digest of the fetched snapshot");
    drop(fresh);
    let log = d.terminate();
    assert!(log.contains("RDB uploaded and checked"), "{log}");

    // Nothing local survives (no shutdown checkpoint): the next start resumes from S3.
    m.must(&["SET", "after", "restart"]);
    let d = start(&config, &dir.path().join("a2.log"));
    let offset2 = master_offset(&m);
    let digest2 = m.digest();
    // At or past the master's offset: the master's replication PING (every 10 s) moves the
    // offset without changing the data, so the digest is what is compared.
    let found = support::wait_until(Duration::from_secs(60), || {
        reader
            .list()
            .map(|l| l.snapshots.iter().any(|s| s.source.offset >= offset2))
            .unwrap_or(false)
    });
    let log = d.log_text();
    assert!(
        found,
        "no snapshot at offset {offset2} after restart:\n{log}"
    );
    assert!(
        log.contains("resuming from the stored snapshot"),
        "no warm restart:\n{log}"
    );
    let l = reader.list().unwrap();
    let snap2 = l
        .snapshots
        .iter()
        .find(|s| s.source.offset >= offset2)
        .unwrap();
    assert_eq!(snap2.digest, digest2);
    // Retention runs right after a snapshot is stored: between the two, three are listed.
    let kept = support::wait_until(Duration::from_secs(10), || {
        reader.list().is_ok_and(|l| l.snapshots.len() <= 2)
    });
    assert!(
        kept,
        "retention keep_last = 2: {}",
        reader.list().map_or(0, |l| l.snapshots.len())
    );
    let log = d.terminate();
    assert!(
        log.contains("partial resync accepted") && !log.contains("full sync started"),
        "expected a partial resync after the warm restart:\n{log}"
    );
}
