//! An in-process replica against a real master, and the checks tests make of it: the
//! master's offset and stats, and "in sync" (same offset, same `DEBUG DIGEST`).
#![allow(dead_code)]

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use replisnap::keyspace::digest_snapshot;
use replisnap::replication::{Replica, ReplicaHandle, Settings};

use super::server::{wait_for, ServerBin, TestServer};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The master's `master_repl_offset` (-1 if it does not say).
pub fn offset(m: &TestServer) -> i64 {
    m.info_field("replication", "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

/// A counter of `INFO stats` (`sync_full`, `sync_partial_ok`, …).
pub fn stat(m: &TestServer, field: &str) -> u64 {
    m.info_field("stats", field)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A replica of `addr` on its own thread.
pub fn replica(addr: &str) -> (ReplicaHandle, std::thread::JoinHandle<()>) {
    let (r, h) = Replica::new(Settings {
        address: addr.to_string(),
        username: None,
        password: None,
        announce_port: 6391,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    });
    (h, std::thread::spawn(move || r.run()))
}

/// Waits until the replica holds the master's offset, then compares digests.
pub fn assert_in_sync(m: &TestServer, h: &ReplicaHandle, bin: &ServerBin, step: &str) {
    wait_for(step, Duration::from_secs(30), || {
        h.status.link_up.load(Ordering::Relaxed)
            && h.status.offset.load(Ordering::Relaxed) == offset(m)
    });
    let (snap, _, _, _) = h.snapshot(Duration::from_secs(5)).expect("snapshot");
    let (a, b) = bin.major_minor();
    let ours = digest_snapshot(
        snap,
        format!("{}-{a}.{b}", bin.kind).parse().unwrap(),
        now_ms(),
    )
    .unwrap();
    assert_eq!(ours, m.digest(), "{step}: digest");
}
