//! The daemon end to end over HTTP: the real `replisnap run` binary attached to a real
//! master, `/readyz` turning ready after the first sync, `replisnap snapshot --wait`
//! storing a snapshot whose digest is the master's, and `/metrics` showing the link, the
//! offsets, the snapshot and retention; SIGTERM ends it with exit 0.

mod daemon;
mod support;

#[path = "http/support.rs"]
#[allow(dead_code)]
mod http_support;

use std::time::Duration;

use daemon::Setup;
use http_support::{assert_exposition_parses, req, sample};
use support::{wait_for as poll, TestServer};

#[test]
fn snapshot_on_demand_and_metrics_over_http() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &[]).expect("master");
    for i in 0..500 {
        m.must(&["SET", &format!("k:{i}"), &format!("v{i}")]);
    }
    m.must(&["RPUSH", "list", "a", "b", "c"]);
    // A schedule that does not fire during the test: snapshots come from the API only.
    let s = Setup::new(&m.addr(), "0 0 0 1 1 *", "keep_last = 1");
    let addr = s.http_addr();
    let mut d = s.start("daemon.log");

    poll("the HTTP listener", Duration::from_secs(20), || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    assert_eq!(req(addr, "GET", "/healthz").status, 200);
    poll("/readyz 200", Duration::from_secs(30), || {
        req(addr, "GET", "/readyz").status == 200
    });
    d.assert_running();
    let digest = m.digest();

    let (code, out, err) = s.verb(&["snapshot", "--wait"]);
    assert_eq!(code, 0, "snapshot --wait: {out}{err}\n{}", d.log_text());
    let id = out.trim().to_string();
    let snaps = s.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0].id.to_string(), id);
    assert_eq!(
        snaps[0].digest, digest,
        "the stored snapshot's digest is the master's"
    );
    let status = req(addr, "GET", &format!("/snapshot/{id}"));
    assert_eq!(status.status, 200);
    assert!(status.body.contains("stored"), "{}", status.body);

    // A second one: retention (keep_last = 1) deletes the first.
    std::thread::sleep(Duration::from_millis(1100));
    m.must(&["SET", "after", "x"]);
    let posted = req(addr, "POST", "/snapshot");
    assert_eq!(posted.status, 202, "{}", posted.body);
    poll(
        "the second snapshot stored",
        Duration::from_secs(30),
        || {
            s.snapshots()
                .first()
                .is_some_and(|x| x.id.to_string() != id)
        },
    );

    // The metrics saw all of it (the poller copies the replica's status each second).
    poll("metrics catch up", Duration::from_secs(10), || {
        let page = req(addr, "GET", "/metrics").body;
        sample(&page, "replisnap_snapshots_total{result=\"ok\"}") == Some(2.0)
            && sample(&page, "replisnap_master_offset_bytes").is_some_and(|v| v > 0.0)
            && sample(&page, "replisnap_dataset_keys{db=\"db0\"}") == Some(502.0)
    });
    let page = req(addr, "GET", "/metrics").body;
    assert_exposition_parses(&page);
    assert_eq!(sample(&page, "replisnap_master_link_up"), Some(1.0));
    assert_eq!(sample(&page, "replisnap_full_resyncs_total"), Some(1.0));
    assert_eq!(
        sample(&page, "replisnap_retention_deleted_total"),
        Some(1.0)
    );
    assert_eq!(sample(&page, "replisnap_stored_snapshots"), Some(1.0));
    assert!(sample(&page, "replisnap_replication_offset_bytes").is_some_and(|v| v > 0.0));
    // 500 strings, the list, and `after`, set once the link was up (applied from the stream).
    assert_eq!(
        sample(&page, "replisnap_dataset_keys{db=\"db0\"}"),
        Some(502.0),
        "{page}"
    );
    assert!(
        sample(&page, "replisnap_commands_applied_total{command=\"set\"}")
            .is_some_and(|v| v >= 1.0),
        "{page}"
    );
    assert!(
        sample(&page, "replisnap_snapshot_pause_seconds_count").is_some_and(|v| v >= 2.0),
        "{page}"
    );

    let (status, log) = d.terminate(Duration::from_secs(20));
    assert!(status.success(), "SIGTERM exit: {status:?}\n{log}");
}
