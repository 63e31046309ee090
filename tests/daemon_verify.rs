//! Scheduled verification in the real daemon (`[verify] schedule`) against a real master:
//! with snapshots every 2 s and a check every second, `verify_total{result="ok"}` rises and
//! `last_verify_success_timestamp_seconds` is set; after one byte of the newest stored
//! `dump.rdb` is flipped (daemon stopped, restarted with a snapshot schedule that does not
//! fire, so nothing newer appears), `verify_total{result="bad"}` rises, nothing counts as
//! ok, and the log names the snapshot and what differs.

mod daemon;
mod support;

#[path = "http/support.rs"]
#[allow(dead_code)]
mod http_support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use daemon::{poll, Setup};
use http_support::{req, sample};
use support::TestServer;

const VERIFY_EVERY_SECOND: &str = "[verify]\nschedule = \"* * * * * *\"\n";

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// `/metrics` once the listener answers.
fn metrics(addr: SocketAddr) -> String {
    assert!(
        poll(Duration::from_secs(20), || std::net::TcpStream::connect(
            addr
        )
        .is_ok()),
        "no HTTP listener on {addr}"
    );
    req(addr, "GET", "/metrics").body
}

fn verify_counts(page: &str) -> [f64; 3] {
    ["ok", "bad", "error"].map(|r| {
        sample(page, &format!("replisnap_verify_total{{result=\"{r}\"}}"))
            .unwrap_or_else(|| panic!("verify_total{{result={r}}} missing:\n{page}"))
    })
}

#[test]
fn scheduled_verification_counts_good_and_damaged_snapshots() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    for i in 0..300 {
        m.must(&["SET", &format!("k:{i}"), &format!("v{i}")]);
    }
    m.must(&["HSET", "h", "a", "1", "b", "2"]);
    m.must(&["SET", "ttl", "x", "EX", "3600"]);

    let s = Setup::new(&m.addr(), "*/2 * * * * *", "");
    s.append_config(VERIFY_EVERY_SECOND);
    let addr = s.http_addr();
    let before = unix_now().floor();
    let mut d = s.start("first.log");

    let mut page = String::new();
    let ok = poll(Duration::from_secs(60), || {
        d.assert_running();
        page = metrics(addr);
        verify_counts(&page)[0] >= 2.0
    });
    assert!(
        ok,
        "no good verification counted:\n{page}\n{}",
        d.log_text()
    );
    assert_eq!(verify_counts(&page)[1..], [0.0, 0.0], "{page}");
    let at = sample(&page, "replisnap_last_verify_success_timestamp_seconds").expect("timestamp");
    assert!(
        at >= before && at <= unix_now() + 1.0,
        "last success at {at}, test started at {before}"
    );
    let (status, log) = d.terminate(Duration::from_secs(20));
    assert!(status.success(), "SIGTERM exit: {status:?}\n{log}");
    let stored = s.snapshots();
    let newest = stored.first().expect("a stored snapshot").clone();
    // Each ok line names a snapshot storage holds (the newest when it was checked).
    let checked: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("scheduled verification: ok"))
        .collect();
    assert!(checked.len() >= 2, "{log}");
    for line in &checked {
        assert!(
            stored
                .iter()
                .any(|m| line.contains(&format!(" id={} ", m.id))),
            "{line}"
        );
    }

    // One byte of the newest stored file flipped: same size, so storage still lists it.
    let file = s.storage_path().join(newest.id.as_str()).join("dump.rdb");
    let mut bytes = std::fs::read(&file).expect("read dump.rdb");
    let at_byte = bytes.len() / 2;
    bytes[at_byte] ^= 0x01;
    std::fs::write(&file, &bytes).expect("write dump.rdb");

    // Again, with a snapshot schedule that does not fire: the damaged one stays the newest.
    s.write_config(&m.addr(), "0 0 0 1 1 *", "");
    s.append_config(VERIFY_EVERY_SECOND);
    let addr = s.http_addr();
    let mut d = s.start("second.log");
    let bad = poll(Duration::from_secs(60), || {
        d.assert_running();
        page = metrics(addr);
        verify_counts(&page)[1] >= 2.0
    });
    assert!(
        bad,
        "no bad verification counted:\n{page}\n{}",
        d.log_text()
    );
    assert_eq!(verify_counts(&page)[0], 0.0, "{page}");
    assert_eq!(verify_counts(&page)[2], 0.0, "{page}");
    assert_eq!(
        sample(&page, "replisnap_last_verify_success_timestamp_seconds"),
        Some(0.0)
    );
    assert_eq!(s.snapshots()[0].id, newest.id, "a newer snapshot appeared");
    let (status, log) = d.terminate(Duration::from_secs(20));
    assert!(status.success(), "SIGTERM exit: {status:?}\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("scheduled verification: the snapshot is bad"))
        .unwrap_or_else(|| panic!("no bad line:\n{log}"));
    assert!(
        line.contains(&format!(" id={} ", newest.id)) && line.contains("sha256"),
        "{line}"
    );
}
