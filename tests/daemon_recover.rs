//! A wedged part recovers (issue 13 item 10), with the real binary: the snapshot writer
//! made to panic once (`REPLISNAP_TEST_WRITER_PANIC=1`, read by debug builds only) is one
//! failed snapshot — `snapshots_total{result="error"}` counted, logged, no snapshot left
//! in storage — and the next snapshot is stored; refused requests are counted by reason
//! (`snapshot_refusals_total{reason="not_ready"}` before the first sync); storage that
//! cannot take a snapshot (its directory replaced by a file: root ignores modes) is
//! counted as `storage_error` and as a failed snapshot, and the next one, once the
//! directory is back, is stored.

mod daemon;
mod support;

#[path = "http/support.rs"]
#[allow(dead_code)]
mod http_support;

use std::time::Duration;

use daemon::{poll, Setup};
use http_support::{req, sample};
use support::TestServer;

const NEVER: &str = "0 0 0 1 1 *";

/// The status of `GET path`, 0 while the daemon does not listen yet.
fn status(http: std::net::SocketAddr, path: &str) -> u16 {
    if std::net::TcpStream::connect(http).is_err() {
        return 0;
    }
    req(http, "GET", path).status
}

#[test]
fn a_writer_panic_is_a_failed_snapshot_and_the_next_one_runs() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    for i in 0..100 {
        m.must(&["SET", &format!("k:{i}"), "v"]);
    }
    let setup = Setup::new(&m.addr(), NEVER, "");
    let http = setup.http_addr();
    let mut d = setup.start_with_env("panic.log", &[("REPLISNAP_TEST_WRITER_PANIC", "1")]);
    let ready = poll(Duration::from_secs(60), || {
        d.assert_running();
        status(http, "/readyz") == 200
    });
    assert!(ready, "{}", d.log_text());

    let (code, out, err) = setup.verb(&["snapshot", "--wait"]);
    assert_eq!(code, 1, "the first snapshot fails: {out}{err}");
    assert!(err.contains("panicked"), "{err}");
    let page = req(http, "GET", "/metrics").body;
    assert_eq!(
        sample(&page, "replisnap_snapshots_total{result=\"error\"}"),
        Some(1.0),
        "{page}"
    );
    assert!(setup.snapshots().is_empty());
    assert!(d.log_text().contains("snapshot failed"), "{}", d.log_text());

    let (code, out, err) = setup.verb(&["snapshot", "--wait"]);
    assert_eq!(
        code,
        0,
        "the next snapshot runs: {out}{err}\n{}",
        d.log_text()
    );
    assert_eq!(setup.snapshots().len(), 1);
    assert_eq!(setup.snapshots()[0].digest, m.digest());
    let page = req(http, "GET", "/metrics").body;
    assert_eq!(
        sample(&page, "replisnap_snapshots_total{result=\"ok\"}"),
        Some(1.0),
        "{page}"
    );
    for r in ["busy", "storage_error", "shutting_down"] {
        let series = format!("replisnap_snapshot_refusals_total{{reason=\"{r}\"}}");
        assert_eq!(sample(&page, &series), Some(0.0), "{page}");
    }
    let (st, log) = d.terminate(Duration::from_secs(60));
    assert!(st.success(), "{log}");
}

#[test]
fn a_refusal_before_the_first_sync_is_counted() {
    // Nothing listens there: the daemon never syncs.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let setup = Setup::new(&closed.to_string(), NEVER, "");
    let http = setup.http_addr();
    let mut d = setup.start("refused.log");
    let up = poll(Duration::from_secs(30), || {
        d.assert_running();
        status(http, "/healthz") == 200
    });
    assert!(up, "{}", d.log_text());
    let (code, _, err) = setup.verb(&["snapshot"]);
    assert_eq!(code, 1, "{err}");
    let page = req(http, "GET", "/metrics").body;
    assert_eq!(
        sample(
            &page,
            "replisnap_snapshot_refusals_total{reason=\"not_ready\"}"
        ),
        Some(1.0),
        "{page}"
    );
    let (st, log) = d.terminate(Duration::from_secs(30));
    assert!(st.success(), "{log}");
}

#[test]
fn broken_storage_is_counted_and_the_next_snapshot_is_stored() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    m.must(&["SET", "k", "v"]);
    let setup = Setup::new(&m.addr(), NEVER, "");
    let http = setup.http_addr();
    let mut d = setup.start("storage.log");
    let ready = poll(Duration::from_secs(60), || {
        d.assert_running();
        status(http, "/readyz") == 200
    });
    assert!(ready, "{}", d.log_text());
    let (code, out, err) = setup.verb(&["snapshot", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");

    let away = setup.dir.path().join("backups.away");
    std::fs::rename(setup.storage_path(), &away).expect("move storage away");
    std::fs::write(setup.storage_path(), b"not a directory").expect("a file in its place");
    let (code, out, err) = setup.verb(&["snapshot", "--wait"]);
    assert_eq!(code, 1, "{out}{err}");
    let page = req(http, "GET", "/metrics").body;
    assert_eq!(
        sample(
            &page,
            "replisnap_snapshot_refusals_total{reason=\"storage_error\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "replisnap_snapshots_total{result=\"error\"}"),
        Some(1.0),
        "{page}"
    );

    std::fs::remove_file(setup.storage_path()).expect("remove the file");
    std::fs::rename(&away, setup.storage_path()).expect("storage back");
    m.must(&["SET", "k2", "v"]);
    let (code, out, err) = setup.verb(&["snapshot", "--wait"]);
    assert_eq!(code, 0, "{out}{err}\n{}", d.log_text());
    assert_eq!(setup.snapshots().len(), 2);
    let (st, log) = d.terminate(Duration::from_secs(60));
    assert!(st.success(), "{log}");
}
