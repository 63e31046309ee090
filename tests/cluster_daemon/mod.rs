//! `replisnap run` with `cluster = true`, driven over HTTP by the cluster tests: take a set
//! and wait for it, wait until every shard caught up. Include with `mod cluster_daemon;`
//! after `mod daemon;`, `mod support;` and `mod http_support;`.
#![allow(dead_code)]

use std::fs;
use std::time::Duration;

use super::daemon::{poll, Daemon, Setup};
use super::http_support::req;
use super::support::cluster::TestCluster;
use replisnap::storage::set::SetManifest;

/// POST /snapshot, then wait for the set to be stored; its manifest.
pub fn take_set(setup: &Setup, d: &mut Daemon) -> SetManifest {
    let http = setup.http_addr();
    let mut id = String::new();
    // A shard still finishing the previous set's snapshot answers 409: ask again.
    let taken = poll(Duration::from_secs(60), || {
        let r = req(http, "POST", "/snapshot");
        if r.status == 202 {
            id = r.json()["id"].as_str().unwrap_or_default().to_string();
            return true;
        }
        false
    });
    assert!(taken, "no set taken: {}", d.log_text());
    let stored = poll(Duration::from_secs(120), || {
        let r = req(http, "GET", &format!("/snapshot/{id}"));
        r.status == 200 && r.body.contains("stored")
    });
    d.assert_running();
    assert!(stored, "set {id} not stored: {}", d.log_text());
    let path = setup
        .storage_path()
        .join(format!("sets/{id}/manifest.json"));
    serde_json::from_slice(&fs::read(&path).expect("set manifest")).expect("set manifest JSON")
}

/// Every shard's replica has applied what its primary has (writes stopped): each
/// primary's `master_repl_offset` is some shard's `replication_offset_bytes`.
pub fn caught_up(setup: &Setup, c: &TestCluster) -> bool {
    let text = req(setup.http_addr(), "GET", "/metrics").body;
    c.primaries().iter().all(|p| {
        let off: Option<f64> = p
            .info_field("replication", "master_repl_offset")
            .and_then(|v| v.parse().ok());
        text.lines()
            .filter(|l| l.starts_with("replisnap_replication_offset_bytes{"))
            .any(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()) == off)
    })
}
