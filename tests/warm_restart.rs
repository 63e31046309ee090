//! The real daemon (`replisnap run`) stopped and started again against a real master:
//! after SIGTERM or kill -9 it resumes from its newest stored snapshot with a partial
//! resync (the master's `sync_partial_ok` grows, `sync_full` does not), continuing in the
//! database the stream had selected; when the master's backlog no longer covers the gap,
//! a full sync happens and is logged; a kill during a snapshot write leaves no visible
//! snapshot and the next start removes what it left. The shutdown checkpoint is off here
//! (tests/checkpoint.rs covers it), so a SIGTERM restart uses the stored snapshot.

mod daemon;
mod support;

use std::time::Duration;

use daemon::{files_named, poll, Daemon, Setup};
use replisnap::storage::Manifest;
use support::{Conn, TestServer};

fn master_offset(m: &TestServer) -> u64 {
    m.info_field("replication", "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn stat(m: &TestServer, field: &str) -> u64 {
    m.info_field("stats", field)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cmd(c: &mut Conn, args: &[&str]) {
    let v: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let r = c.cmd(&v).expect("command");
    assert!(!r.is_error(), "{args:?}: {r:?}");
}

/// Wait for a stored snapshot at the master's current offset (the schedule takes one a
/// second); the master must not be written meanwhile.
fn snapshot_at_master(setup: &Setup, m: &TestServer, d: &mut Daemon, after: u64) -> Manifest {
    let mut found = None;
    let ok = poll(Duration::from_secs(90), || {
        d.assert_running();
        let off = master_offset(m);
        found = setup
            .snapshots()
            .into_iter()
            .next()
            .filter(|s| s.source.offset == off && off > after);
        found.is_some()
    });
    assert!(
        ok,
        "no snapshot at the master's offset {}:\n{}",
        master_offset(m),
        d.log_text()
    );
    found.expect("found")
}

/// The stored file loads in a fresh server with the master's digest.
fn assert_file_is_master(setup: &Setup, m: &TestServer, s: &Manifest) {
    let digest = m.digest();
    assert_eq!(s.digest, digest, "manifest digest");
    let file = setup.storage_path().join(s.id.as_str()).join("dump.rdb");
    let fresh = TestServer::start_with_rdb(m.bin(), &file, &[]).expect("load snapshot");
    assert_eq!(fresh.digest(), digest, "digest of the loaded file");
}

#[derive(Clone, Copy, PartialEq)]
enum Stop {
    Term,
    Kill,
}

fn resume(name: &str, how: Stop) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    for i in 0..300 {
        m.must(&["SET", &format!("k:{i}"), &format!("v{i}")]);
    }
    m.must(&["HSET", "h", "a", "1"]);
    // The stream is left in database 2: after the restart the master sends no SELECT
    // before the next command there, and the replica must know where it is.
    let mut c = m.connect().expect("client");
    cmd(&mut c, &["SELECT", "2"]);
    cmd(&mut c, &["SET", "before", "1"]);

    let setup = Setup::new(&m.addr(), "* * * * * *", "keep_last = 3");
    // The stored snapshot is what is tested here (tests/checkpoint.rs: the checkpoint).
    setup.replica_line("checkpoint_on_shutdown = false");
    let mut d = setup.start("first.log");
    let first = snapshot_at_master(&setup, &m, &mut d, 0);
    assert_file_is_master(&setup, &m, &first);
    match how {
        Stop::Term => {
            let (st, log) = d.terminate(Duration::from_secs(60));
            assert!(st.success(), "exit {st}:\n{log}");
            assert!(log.contains("SIGTERM"), "{log}");
            assert!(log.contains("stopped"), "{log}");
        }
        Stop::Kill => {
            d.kill9();
        }
    }
    let (full, partial) = (stat(&m, "sync_full"), stat(&m, "sync_partial_ok"));
    let stored = setup.snapshots().len();
    assert!(stored >= 1);

    for i in 0..50 {
        cmd(&mut c, &["SET", &format!("after:{i}"), "x"]);
    }
    cmd(&mut c, &["INCR", "before"]);
    cmd(&mut c, &["DEL", "k:1"]); // in db 2: k:1 in db 0 stays

    let mut d = setup.start("second.log");
    let second = snapshot_at_master(&setup, &m, &mut d, first.source.offset);
    let log = d.log_text();
    assert!(log.contains("warm restart: loaded"), "{log}");
    assert!(log.contains("partial resync: continuing"), "{log}");
    assert_eq!(stat(&m, "sync_full"), full, "no full sync:\n{log}");
    assert!(
        stat(&m, "sync_partial_ok") > partial,
        "a partial resync:\n{log}"
    );
    assert_eq!(second.source.replid, first.source.replid);
    assert_file_is_master(&setup, &m, &second);
    let (st, log) = d.terminate(Duration::from_secs(60));
    assert!(st.success(), "exit {st}:\n{log}");
}

#[test]
fn sigterm_then_partial_resync_redis_7_0() {
    resume("redis-7.0", Stop::Term);
}
#[test]
fn sigterm_then_partial_resync_valkey_9_1() {
    resume("valkey-9.1", Stop::Term);
}
#[test]
fn kill9_then_partial_resync_redis_6_2() {
    resume("redis-6.2", Stop::Kill);
}
#[test]
fn kill9_then_partial_resync_redis_8_2() {
    resume("redis-8.2", Stop::Kill);
}

/// The master's backlog no longer reaches back to the snapshot: a full sync, logged.
#[test]
fn backlog_overrun_means_a_logged_full_sync() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(
        &bin,
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--repl-backlog-size",
            "16384",
        ],
    )
    .expect("master");
    m.must(&["SET", "a", "1"]);
    let setup = Setup::new(&m.addr(), "* * * * * *", "");
    setup.replica_line("checkpoint_on_shutdown = false");
    let mut d = setup.start("first.log");
    let first = snapshot_at_master(&setup, &m, &mut d, 0);
    let (st, _) = d.terminate(Duration::from_secs(60));
    assert!(st.success());
    let full = stat(&m, "sync_full");
    let pad = "p".repeat(200);
    for i in 0..2000 {
        m.must(&["SET", &format!("fill:{i}"), &pad]);
    }
    let mut d = setup.start("second.log");
    let second = snapshot_at_master(&setup, &m, &mut d, first.source.offset);
    let log = d.log_text();
    assert!(log.contains("warm restart: loaded"), "{log}");
    assert!(
        log.contains("master refused to continue from our data: full resync"),
        "{log}"
    );
    assert_eq!(stat(&m, "sync_full"), full + 1, "{log}");
    assert_file_is_master(&setup, &m, &second);
}

/// kill -9 while the RDB is being written: no snapshot appears, `list` does not show it,
/// and the next start removes the temporary file and the directory.
#[test]
fn kill9_during_a_snapshot_write_leaves_nothing_visible() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    // Large enough that writing it takes a while (values compress poorly enough).
    m.must(&["DEBUG", "POPULATE", "300000", "key", "300"]);
    let setup = Setup::new(&m.addr(), "*/2 * * * * *", "");
    let d = setup.start("first.log");
    let mut temps = Vec::new();
    let ok = poll(Duration::from_secs(120), || {
        temps = files_named(&setup.storage_path(), ".dump.rdb.tmp-");
        !temps.is_empty()
    });
    assert!(ok, "no snapshot write seen:\n{}", d.log_text());
    let log = d.kill9();
    assert!(
        temps.iter().any(|t| t.exists()),
        "the write finished before the kill; make the dataset larger:\n{log}"
    );
    let killed_dir = temps[0].parent().expect("snapshot dir").to_path_buf();
    let killed_id = killed_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(
        setup.snapshots().iter().all(|s| s.id.as_str() != killed_id),
        "a partial snapshot is listed"
    );
    let (code, out, err) = setup.verb(&["list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("list --json");
    assert!(
        v.as_array()
            .is_some_and(|a| a.iter().all(|s| s["id"] != killed_id.as_str())),
        "{out}"
    );

    // Restart with a schedule that will not fire during the test: only the cleanup runs.
    setup.write_config(&m.addr(), "0 0 0 1 1 *", "");
    let mut d = setup.start("second.log");
    // The directory goes before the log line naming it is written: wait for both.
    let cleaned = poll(Duration::from_secs(60), || {
        d.assert_running();
        !killed_dir.exists() && d.log_text().contains("cleanup: removed")
    });
    assert!(
        !killed_dir.exists(),
        "leftover not cleaned:\n{}",
        d.log_text()
    );
    assert!(cleaned, "cleanup not logged:\n{}", d.log_text());
    assert!(files_named(&setup.storage_path(), ".dump.rdb.tmp-").is_empty());
    d.terminate(Duration::from_secs(60));
}
