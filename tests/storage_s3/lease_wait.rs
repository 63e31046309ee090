//! `[storage] lease_wait_seconds`, local and S3, with real `replisnap run` processes: a
//! second daemon waits while the first holds the lease (its `/readyz` says why), takes
//! over once the first stops (SIGTERM releases the lease) and stores a snapshot with the
//! master's digest; a wait too short refuses, naming the holder; SIGTERM ends a wait at
//! once; no waiting daemon stores or removes anything before its lease is taken.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use replisnap::storage::{LocalStorage, Storage};

use super::daemon::{master_offset, start, Daemon};
use super::support::{self, TestServer};

/// The line a daemon logs once the lease it waited for is its own.
const TAKEN: &str = "the storage's writer lease is ours";
const WAITING: &str = "another writer holds the storage; waiting for it";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A daemon's config: `storage` is the `[storage]` body, `wait` its lease_wait_seconds.
fn config(
    dir: &Path,
    name: &str,
    master: &str,
    storage: &str,
    wait: u64,
) -> (std::path::PathBuf, u16) {
    let port = free_port();
    let text = format!(
        "[source]\naddress = \"{master}\"\n\n[replica]\nannounce_port = 6395\n\
         state_dir = \"{}\"\ncheckpoint_on_shutdown = false\n\n\
         [snapshot]\nschedule = \"*/2 * * * * *\"\n\n\
         [storage]\n{storage}lease_wait_seconds = {wait}\n\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\n",
        dir.join(format!("state-{name}")).display(),
    );
    let path = dir.join(format!("{name}.toml"));
    fs::write(&path, text).expect("write config");
    (path, port)
}

/// `GET path` on the daemon's HTTP port: (status code, body).
fn get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if c.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

fn wait_log(d: &Daemon, what: &str, within: Duration) {
    let ok = support::wait_until(within, || d.log_text().contains(what));
    assert!(ok, "no {what:?} within {within:?}:\n{}", d.log_text());
}

/// Until `d` exits: its status code, within `within`.
fn exit_code(d: &mut Daemon, within: Duration) -> Option<i32> {
    let t = Instant::now();
    loop {
        if let Some(st) = d.exited() {
            return st.code();
        }
        assert!(
            t.elapsed() < within,
            "still running after {within:?}:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Nothing stored or removed before the lease was taken: in `log`, no snapshot line
/// and no cleanup before [`TAKEN`].
fn wrote_nothing_before_taking(log: &str) {
    let taken = log.find(TAKEN).unwrap_or(log.len());
    let before = &log[..taken];
    for what in ["snapshot stored", "removed", "deleted", "aborted"] {
        assert!(
            !before.contains(what),
            "{what:?} before the lease was taken:\n{log}"
        );
    }
}

/// The scenario on one storage (`section`, read back by `reader`).
fn scenario(kind: &str, section: &str, reader: &dyn Storage, lease_s: u64) {
    let Some(bin) = support::require("redis-7.2") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    for i in 0..2000 {
        m.must(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    m.must(&["HSET", "h", "a", "1", "b", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = config(dir.path(), "a", &m.addr(), section, 0);
    let a = start(&ca, &dir.path().join("a.log"));
    let stored = support::wait_until(Duration::from_secs(60), || {
        reader.list().is_ok_and(|l| !l.snapshots.is_empty())
    });
    assert!(stored, "{kind}: A stored nothing:\n{}", a.log_text());

    // B waits for A: says so once, naming A's pid; /readyz fails with the reason.
    let (cb, port_b) = config(dir.path(), "b", &m.addr(), section, 120);
    let mut b = start(&cb, &dir.path().join("b.log"));
    wait_log(&b, WAITING, Duration::from_secs(30));
    let a_pid = a.pid().to_string();
    let blog = b.log_text();
    assert!(
        blog.contains("held by") && blog.contains(&a_pid),
        "{kind}: holder not named:\n{blog}"
    );
    let ready = support::wait_until(Duration::from_secs(10), || {
        let (code, body) = get(port_b, "/readyz");
        code == 503 && body.contains("waiting up to 120 s for the storage's writer lease")
    });
    assert!(
        ready,
        "{kind}: /readyz while waiting: {:?}",
        get(port_b, "/readyz")
    );
    // A keeps writing meanwhile (its lease is untouched); B still waits after 2 retries.
    let (_, newest_before) = newest(reader);
    std::thread::sleep(Duration::from_secs((2 * lease_s / 3).max(3)));
    assert!(
        b.exited().is_none(),
        "{kind}: B gave up early:\n{}",
        b.log_text()
    );
    assert!(
        !b.log_text().contains(TAKEN),
        "{kind}: B took a held lease:\n{}",
        b.log_text()
    );
    assert_eq!(
        b.log_text().matches(WAITING).count(),
        1,
        "{kind}: said more than once"
    );
    let (_, newest_now) = newest(reader);
    assert_ne!(
        newest_now, newest_before,
        "{kind}: A stopped writing while B waited"
    );

    // A stops (SIGTERM releases the lease): B takes it within one retry interval and
    // stores a snapshot with the master's digest.
    let alog = a.terminate();
    assert!(
        !alog.contains("lease lost"),
        "{kind}: A lost its lease:\n{alog}"
    );
    let released = Instant::now();
    wait_log(&b, TAKEN, Duration::from_secs(lease_s / 3 + 10));
    let took = released.elapsed();
    m.must(&["SET", "after", "takeover"]);
    let offset = master_offset(&m);
    let digest = m.digest();
    let found = support::wait_until(Duration::from_secs(60), || {
        reader
            .list()
            .is_ok_and(|l| l.snapshots.iter().any(|s| s.source.offset >= offset))
    });
    assert!(
        found,
        "{kind}: B stored nothing at {offset}:\n{}",
        b.log_text()
    );
    let l = reader.list().unwrap();
    let snap = l
        .snapshots
        .iter()
        .find(|s| s.source.offset >= offset)
        .unwrap();
    assert_eq!(snap.digest, digest, "{kind}: B's snapshot digest");
    wrote_nothing_before_taking(&b.log_text());
    eprintln!(
        "{kind}: B took the lease {:.1} s after A stopped",
        took.as_secs_f64()
    );

    // C's wait is too short: it refuses as without a wait, naming B.
    let (cc, _) = config(dir.path(), "c", &m.addr(), section, 2);
    let mut c = start(&cc, &dir.path().join("c.log"));
    let t = Instant::now();
    let code = exit_code(&mut c, Duration::from_secs(lease_s / 3 + 20));
    let clog = c.log_text();
    assert_eq!(code, Some(1), "{kind}: C:\n{clog}");
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "{kind}: C did not wait"
    );
    assert!(clog.contains(WAITING), "{kind}: {clog}");
    assert!(
        clog.contains("held by") && clog.contains(&b.pid().to_string()),
        "{kind}: C did not name B:\n{clog}"
    );
    assert!(!clog.contains(TAKEN), "{kind}: {clog}");
    wrote_nothing_before_taking(&clog);

    // SIGTERM ends a long wait at once, cleanly.
    let (cd, _) = config(dir.path(), "d", &m.addr(), section, 600);
    let d = start(&cd, &dir.path().join("d.log"));
    wait_log(&d, WAITING, Duration::from_secs(30));
    let t = Instant::now();
    let mut d = d;
    d.signal_term();
    let code = exit_code(&mut d, Duration::from_secs(5));
    let stopped_in = t.elapsed();
    let dlog = d.log_text();
    assert_eq!(code, Some(0), "{kind}: D:\n{dlog}");
    assert!(
        stopped_in < Duration::from_secs(2),
        "{kind}: SIGTERM took {stopped_in:?}"
    );
    assert!(
        dlog.contains("stopped while waiting for the storage"),
        "{dlog}"
    );
    wrote_nothing_before_taking(&dlog);

    // B was never disturbed: still the writer.
    assert!(b.exited().is_none(), "{kind}: {}", b.log_text());
    let blog = b.terminate();
    assert!(!blog.contains("lease lost"), "{kind}: {blog}");
}

/// (count, newest id) of the listed snapshots.
fn newest(reader: &dyn Storage) -> (usize, String) {
    let l = reader.list().unwrap();
    let n = l
        .snapshots
        .first()
        .map(|s| s.id.to_string())
        .unwrap_or_default();
    (l.snapshots.len(), n)
}

#[test]
fn a_second_daemon_waits_for_the_local_writer_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let section = format!("kind = \"local\"\npath = \"{}\"\n", path.display());
    let reader = LocalStorage::new(&path);
    scenario("local", &section, &reader, 3);
}

#[test]
fn a_second_daemon_waits_for_the_s3_lease() {
    let Some(sw) = super::seaweed::server() else {
        return;
    };
    let bucket = sw.new_bucket("wait");
    let section = format!(
        "kind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"w/\"\nregion = \"us-east-1\"\n\
         endpoint = \"{}\"\nforce_path_style = true\npart_size = 5242880\nlease_seconds = 12\n",
        sw.endpoint
    );
    let reader = sw.storage_in(&bucket, "w/", |_| {});
    scenario("s3", &section, &reader, 12);
}
