//! The shutdown checkpoint (`[replica] checkpoint_on_shutdown`), with the real binary and
//! real masters: SIGTERM writes it into `state_dir` (not into storage: no snapshot
//! appears); the next start loads it and the master answers the PSYNC with `+CONTINUE`
//! (`sync_partial_ok` + 1, `sync_full` unchanged), with the master's digest, also when the
//! newest stored snapshot is older than the master's backlog reaches; a corrupted one is
//! ignored with a log line and the stored snapshot used; `false` writes none; a second
//! daemon on the same state dir is refused.

mod daemon;
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use daemon::{poll, Daemon, Setup};
use support::{info_kv, Conn, TestServer};

/// A schedule that does not fire during a test: snapshots only when asked for.
const NEVER: &str = "0 0 0 1 1 *";

fn stat(m: &TestServer, field: &str) -> u64 {
    m.info_field("stats", field)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn master_offset(m: &TestServer) -> u64 {
    m.info_field("replication", "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Wait until the daemon (the master's only replica) acknowledged the master's offset.
fn caught_up(m: &TestServer, d: &mut Daemon) {
    let ok = poll(Duration::from_secs(60), || {
        d.assert_running();
        let acked = m
            .info_field("replication", "slave0")
            .and_then(|v| info_kv(&v, "offset").and_then(|o| o.parse::<u64>().ok()));
        acked == Some(master_offset(m))
    });
    assert!(ok, "replica never caught up:\n{}", d.log_text());
}

fn cmd(c: &mut Conn, args: &[&str]) {
    let v: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let r = c.cmd(&v).expect("command");
    assert!(!r.is_error(), "{args:?}: {r:?}");
}

fn checkpoint_files(setup: &Setup) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(setup.checkpoint_dir())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".lock")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn checkpoint_json(setup: &Setup) -> serde_json::Value {
    let text = fs::read_to_string(setup.checkpoint_dir().join("checkpoint.json"))
        .expect("checkpoint.json");
    serde_json::from_str(&text).expect("checkpoint.json parses")
}

/// SIGTERM: exit 0 and the log line with the time it took.
fn stop(d: Daemon) -> String {
    let (st, log) = d.terminate(Duration::from_secs(120));
    assert!(st.success(), "exit {st}:\n{log}");
    log
}

/// `replisnap snapshot --wait` against the running daemon.
fn snapshot_now(setup: &Setup) {
    let (code, out, err) = setup.verb(&["snapshot", "--wait"]);
    assert_eq!(code, 0, "snapshot --wait: {out}{err}");
}

/// The checkpoint on disk loads in a fresh server with the master's digest.
fn assert_checkpoint_is_master(setup: &Setup, m: &TestServer) {
    let digest = m.digest();
    assert_eq!(checkpoint_json(setup)["digest"], digest.as_str());
    let file = setup.checkpoint_dir().join("dump.rdb");
    let fresh = TestServer::start_with_rdb(m.bin(), &file, &[]).expect("load checkpoint");
    assert_eq!(fresh.digest(), digest, "digest of the loaded checkpoint");
}

fn master(name: &str, backlog: Option<&str>) -> Option<TestServer> {
    let bin = support::require(name)?;
    let mut args = vec!["--repl-diskless-sync-delay", "0"];
    if let Some(b) = backlog {
        args.extend(["--repl-backlog-size", b]);
    }
    Some(TestServer::start(&bin, &args).expect("master"))
}

#[test]
fn sigterm_checkpoint_then_partial_resync() {
    let Some(m) = master("redis-7.0", None) else {
        return;
    };
    for i in 0..300 {
        m.must(&["SET", &format!("k:{i}"), &format!("v{i}")]);
    }
    m.must(&["RPUSH", "l", "a", "b", "c"]);
    // The stream is left in database 2: the checkpoint must bring that back.
    let mut c = m.connect().expect("client");
    cmd(&mut c, &["SELECT", "2"]);
    cmd(&mut c, &["SET", "before", "1"]);

    let setup = Setup::new(&m.addr(), NEVER, "");
    let mut d = setup.start("first.log");
    caught_up(&m, &mut d);
    let log = stop(d);
    assert!(log.contains("checkpoint written"), "{log}");
    assert_eq!(checkpoint_files(&setup), ["checkpoint.json", "dump.rdb"]);
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&setup.checkpoint_dir()), 0o700);
    assert_eq!(mode(&setup.checkpoint_dir().join("dump.rdb")), 0o600);
    assert_eq!(mode(&setup.checkpoint_dir().join("checkpoint.json")), 0o600);
    assert_eq!(
        checkpoint_json(&setup)["source"]["offset"],
        master_offset(&m)
    );
    assert_checkpoint_is_master(&setup, &m);
    assert!(
        setup.snapshots().is_empty(),
        "a checkpoint is not a snapshot"
    );
    let (code, out, err) = setup.verb(&["list", "--json"]);
    assert_eq!((code, out.trim()), (0, "[]"), "{err}");

    let (full, partial) = (stat(&m, "sync_full"), stat(&m, "sync_partial_ok"));
    for i in 0..50 {
        cmd(&mut c, &["SET", &format!("after:{i}"), "x"]);
    }
    cmd(&mut c, &["INCR", "before"]);
    cmd(&mut c, &["DEL", "k:1"]); // in db 2: k:1 in db 0 stays

    let mut d = setup.start("second.log");
    caught_up(&m, &mut d);
    let log = d.log_text();
    assert!(
        log.contains("warm restart: loaded the shutdown checkpoint"),
        "{log}"
    );
    assert!(log.contains("partial resync: continuing"), "{log}");
    assert_eq!(stat(&m, "sync_full"), full, "no full sync:\n{log}");
    assert_eq!(stat(&m, "sync_partial_ok"), partial + 1, "{log}");
    assert!(
        checkpoint_files(&setup).is_empty(),
        "used once, then removed"
    );
    // The data after the partial resync is the master's: the next checkpoint says so.
    let log = stop(d);
    assert!(log.contains("checkpoint written"), "{log}");
    assert_checkpoint_is_master(&setup, &m);
}

/// The newest stored snapshot is further behind than the 16 KiB backlog reaches: without
/// the checkpoint the restart would be a full sync.
#[test]
fn checkpoint_saves_a_restart_the_backlog_cannot() {
    let Some(m) = master("valkey-9.1", Some("16384")) else {
        return;
    };
    m.must(&["SET", "a", "1"]);
    let setup = Setup::new(&m.addr(), NEVER, "");
    let mut d = setup.start("first.log");
    caught_up(&m, &mut d);
    snapshot_now(&setup);
    let stored = setup.snapshots();
    assert_eq!(stored.len(), 1);
    let pad = "p".repeat(200);
    for i in 0..2000 {
        m.must(&["SET", &format!("fill:{i}"), &pad]);
    }
    caught_up(&m, &mut d);
    let log = stop(d);
    assert!(log.contains("checkpoint written"), "{log}");
    let offset = checkpoint_json(&setup)["source"]["offset"]
        .as_u64()
        .expect("offset");
    assert!(
        offset > stored[0].source.offset + 16384 * 4,
        "the stored snapshot ({}) must be out of the backlog's reach ({offset})",
        stored[0].source.offset
    );

    let (full, partial) = (stat(&m, "sync_full"), stat(&m, "sync_partial_ok"));
    m.must(&["SET", "after", "1"]);
    let mut d = setup.start("second.log");
    caught_up(&m, &mut d);
    let log = d.log_text();
    assert!(
        log.contains("warm restart: loaded the shutdown checkpoint"),
        "{log}"
    );
    assert_eq!(stat(&m, "sync_full"), full, "no full sync:\n{log}");
    assert_eq!(stat(&m, "sync_partial_ok"), partial + 1, "{log}");
    snapshot_now(&setup);
    assert_eq!(setup.snapshots()[0].digest, m.digest());
    stop(d);
}

/// One byte of the checkpoint flipped: logged, removed, and the stored snapshot used.
#[test]
fn a_corrupted_checkpoint_is_ignored() {
    let Some(m) = master("redis-7.0", None) else {
        return;
    };
    for i in 0..200 {
        m.must(&["SET", &format!("k:{i}"), &format!("v{i}")]);
    }
    let setup = Setup::new(&m.addr(), NEVER, "");
    let mut d = setup.start("first.log");
    caught_up(&m, &mut d);
    snapshot_now(&setup);
    stop(d);
    let rdb = setup.checkpoint_dir().join("dump.rdb");
    let mut bytes = fs::read(&rdb).expect("checkpoint rdb");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&rdb, &bytes).expect("corrupt it");

    let full = stat(&m, "sync_full");
    let mut d = setup.start("second.log");
    caught_up(&m, &mut d);
    let log = d.log_text();
    assert!(
        log.contains("checkpoint unusable: ignored and removed"),
        "{log}"
    );
    assert!(
        log.contains("warm restart: loaded the newest stored snapshot"),
        "{log}"
    );
    assert!(log.contains("partial resync: continuing"), "{log}");
    assert_eq!(stat(&m, "sync_full"), full, "{log}");
    assert!(checkpoint_files(&setup).is_empty());
    stop(d);
}

#[test]
fn checkpoint_on_shutdown_false_writes_none() {
    let Some(m) = master("redis-7.0", None) else {
        return;
    };
    m.must(&["SET", "a", "1"]);
    let setup = Setup::new(&m.addr(), NEVER, "");
    setup.replica_line("checkpoint_on_shutdown = false");
    let mut d = setup.start("first.log");
    caught_up(&m, &mut d);
    let log = stop(d);
    assert!(!log.contains("checkpoint written"), "{log}");
    assert!(checkpoint_files(&setup).is_empty());
}

/// Two daemons on one state dir would read each other's checkpoint: the second exits 1,
/// naming the key, before the master sees it.
#[test]
fn a_shared_state_dir_is_refused() {
    let Some(m) = master("redis-7.0", None) else {
        return;
    };
    m.must(&["SET", "a", "1"]);
    let first = Setup::new(&m.addr(), NEVER, "");
    let mut d = first.start("first.log");
    caught_up(&m, &mut d);
    let full = stat(&m, "sync_full");
    let second = Setup::new(&m.addr(), NEVER, "");
    let text = fs::read_to_string(second.config())
        .expect("config")
        .replace(
            &second.state_dir().display().to_string(),
            &first.state_dir().display().to_string(),
        );
    fs::write(second.config(), text).expect("config");
    let mut other = second.start("second.log");
    let exited = poll(Duration::from_secs(30), || {
        other.child.try_wait().ok().flatten().is_some()
    });
    assert!(exited, "{}", other.log_text());
    let st = other.child.wait().expect("wait");
    let log = other.log_text();
    assert_eq!(st.code(), Some(1), "{log}");
    assert!(
        log.contains("[replica] state_dir") && log.contains("used by another replisnap"),
        "{log}"
    );
    assert_eq!(stat(&m, "sync_full"), full, "the master never saw it");
    stop(d);
}
