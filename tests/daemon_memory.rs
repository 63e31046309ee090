//! `replisnap_dataset_memory_bytes` with the real binary and a real master (issue 13 item 5):
//! the process's resident memory, polled each second. A daemon that fully synced 50 MB of
//! values shows at least half of that more than one that synced an empty master, and after
//! `FLUSHALL` reaches it the gauge falls back by at least half of it again with no write
//! after it: applying FLUSHALL gives the pages back (`mem::return_freed`; without it an idle
//! replica kept 100.7 MB here, mimalloc returning pages only at a later allocation).
//!
//! And a full resync never holds two datasets: the daemon lets go of its data when the
//! master starts sending a new one (the master just refused to continue from it), so its
//! peak resident memory over a second full sync stays near one dataset's. Before, the old
//! data stayed alive until the new had loaded, and the peak was the two together.
//!
//! Owns only these end-to-end contracts. It must never read the gauge from anywhere but
//! `/metrics`, nor the peak from anywhere but the daemon's `/proc/<pid>/status` (VmHWM,
//! the kernel's own peak, reset through `clear_refs` before the second sync).

mod daemon;
mod support;

#[path = "http/support.rs"]
#[allow(dead_code)]
mod http_support;

use std::time::Duration;

use daemon::{poll, Daemon, Setup};
use http_support::{req, sample};
use support::TestServer;

const KEYS: u64 = 500;
const VALUE: u64 = 100_000;
const DATA: f64 = (KEYS * VALUE) as f64;

fn metric(setup: &Setup, series: &str) -> Option<f64> {
    sample(&req(setup.http_addr(), "GET", "/metrics").body, series)
}

fn memory(setup: &Setup) -> f64 {
    metric(setup, "replisnap_dataset_memory_bytes").expect("dataset_memory_bytes")
}

/// 500 values of 100 000 bytes (zeros after "value:N": a small RDB, 50 MB in memory).
fn populate(m: &TestServer) {
    m.must(&[
        "DEBUG",
        "POPULATE",
        &KEYS.to_string(),
        "key",
        &VALUE.to_string(),
    ]);
    assert_eq!(m.dbsize_all(), KEYS);
}

/// Start a daemon on `master` and wait for `/readyz` 200 with `keys` keys in db0.
fn synced(master: &TestServer, keys: f64, log: &str) -> (Setup, Daemon) {
    let setup = Setup::new(&master.addr(), "0 0 0 1 1 *", "");
    setup.replica_line("checkpoint_on_shutdown = false");
    let http = setup.http_addr();
    let mut d = setup.start(log);
    assert!(
        poll(Duration::from_secs(60), || {
            d.assert_running();
            std::net::TcpStream::connect(http).is_ok()
                && req(http, "GET", "/readyz").status == 200
                && metric(&setup, "replisnap_dataset_keys{db=\"db0\"}") == Some(keys)
        }),
        "never ready with {keys} keys:\n{}",
        d.log_text()
    );
    // Past the load's buffers being freed and purged, and a poll after that.
    std::thread::sleep(Duration::from_secs(3));
    (setup, d)
}

#[test]
fn dataset_memory_grows_with_a_full_sync_and_falls_after_flushall() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");

    let (setup, d) = synced(&m, 0.0, "empty.log");
    let empty = memory(&setup);
    let (st, log) = d.terminate(Duration::from_secs(15));
    assert!(st.success(), "{log}");
    assert!(
        empty > 0.0,
        "an empty daemon's allocator holds nothing? {empty}"
    );

    populate(&m);
    let (setup, d) = synced(&m, KEYS as f64, "full.log");
    let full = memory(&setup);
    eprintln!(
        "dataset_memory_bytes: empty {:.1} MB, after a full sync of {:.1} MB of values {:.1} MB \
         (+{:.1} MB)",
        empty / 1e6,
        DATA / 1e6,
        full / 1e6,
        (full - empty) / 1e6
    );
    assert!(
        full - empty >= 0.5 * DATA,
        "grew by {} bytes for {DATA} bytes of values",
        full - empty
    );
    // Not a runaway count either: the values, their keys and our buffers, within 3x.
    assert!(
        full - empty <= 3.0 * DATA,
        "grew by {} bytes for {DATA} bytes of values",
        full - empty
    );

    m.must(&["FLUSHALL"]);
    assert!(
        poll(Duration::from_secs(10), || metric(
            &setup,
            "replisnap_dataset_keys{db=\"db0\"}"
        ) == Some(0.0)),
        "FLUSHALL not applied:\n{}",
        d.log_text()
    );
    // No write after it: the FLUSHALL itself gives the pages back (`mem::return_freed`);
    // before that, an idle replica kept the whole dataset's RSS until the stream moved.
    let mut after = full;
    let fell = poll(Duration::from_secs(10), || {
        after = memory(&setup);
        full - after >= 0.5 * DATA
    });
    eprintln!("after FLUSHALL: {:.1} MB", after / 1e6);
    assert!(
        fell,
        "still {after} bytes after FLUSHALL (was {full}):\n{}",
        d.log_text()
    );
    let (st, log) = d.terminate(Duration::from_secs(15));
    assert!(st.success(), "{log}");
}

/// A `/proc/<pid>/status` field in bytes (the kernel gives kB).
fn status_bytes(pid: u32, field: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kb * 1024.0
}

/// Wait for `/readyz` 200 with `KEYS` keys in db0 after `full_syncs` full syncs.
fn resynced(setup: &Setup, d: &mut Daemon, full_syncs: f64) {
    let http = setup.http_addr();
    assert!(
        poll(Duration::from_secs(60), || {
            d.assert_running();
            std::net::TcpStream::connect(http).is_ok()
                && req(http, "GET", "/readyz").status == 200
                && metric(setup, "replisnap_full_resyncs_total") == Some(full_syncs)
                && metric(setup, "replisnap_dataset_keys{db=\"db0\"}") == Some(KEYS as f64)
        }),
        "never ready with {KEYS} keys after {full_syncs} full syncs:\n{}",
        d.log_text()
    );
}

#[test]
fn a_full_resync_does_not_hold_two_datasets() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    populate(&m);
    let (setup, mut d) = synced(&m, KEYS as f64, "resync.log");
    let pid = d.pid();
    let before = status_bytes(pid, "VmRSS:");
    let first_peak = status_bytes(pid, "VmHWM:");
    // The kernel's peak starts over from here ("5" resets VmHWM to VmRSS, Linux 4.0+).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the daemon's VmHWM");

    // A new replication ID and the link cut: the master cannot continue from our offset.
    // Its payload is slowed (2 ms a key, about a second) so the load runs for a while.
    m.must(&["CONFIG", "SET", "rdb-key-save-delay", "2000"]);
    m.must(&["DEBUG", "CHANGE-REPL-ID"]);
    m.must(&["CLIENT", "KILL", "TYPE", "replica"]);
    resynced(&setup, &mut d, 2.0);
    let peak = status_bytes(pid, "VmHWM:");
    let after = status_bytes(pid, "VmRSS:");
    eprintln!(
        "daemon RSS {:.1} MB with {:.1} MB of values; peak {:.1} MB over the first full sync, \
         {:.1} MB after the second (+{:.1} MB over the level before it); {:.1} MB after",
        before / 1e6,
        DATA / 1e6,
        first_peak / 1e6,
        peak / 1e6,
        (peak - before) / 1e6,
        after / 1e6
    );
    assert!(
        peak - before < 0.5 * DATA,
        "the second full sync took the peak {:.1} MB over the level before it ({:.1} MB of \
         values): two datasets held at once?\n{}",
        (peak - before) / 1e6,
        DATA / 1e6,
        d.log_text()
    );
    let (st, log) = d.terminate(Duration::from_secs(15));
    assert!(st.success(), "{log}");
}
