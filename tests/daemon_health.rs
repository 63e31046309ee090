//! Honest health (issue 13 item 5) with the real binary: a master frozen by SIGSTOP is
//! declared stalled after `[source] timeout` (3 s here, the master pinging every second):
//! `link_errors_total{reason="timeout"}` counted and `/readyz` 503 within timeout + 2 s,
//! `master_last_io_age_seconds` growing from real traffic; after SIGCONT, `/readyz` is 200
//! again.

mod daemon;
mod support;

#[path = "http/support.rs"]
#[allow(dead_code)]
mod http_support;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use daemon::{poll, Setup};
use http_support::{req, sample};
use support::TestServer;

/// SIGCONTs the master whatever happens, so it can be stopped.
struct Frozen(u32);

impl Frozen {
    fn freeze(pid: u32) -> Frozen {
        assert!(Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .expect("kill")
            .success());
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

#[test]
fn a_frozen_master_is_a_counted_stall_and_readyz_503_until_it_thaws() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(
        &bin,
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--repl-ping-replica-period",
            "1",
        ],
    )
    .expect("master");
    m.must(&["SET", "k", "v"]);
    let setup = Setup::new(&m.addr(), "0 0 0 1 1 *", "");
    let text = fs::read_to_string(setup.config())
        .expect("config")
        .replacen("[source]\n", "[source]\ntimeout = 3\n", 1);
    fs::write(setup.config(), text).expect("config");
    let http = setup.http_addr();
    let mut d = setup.start("health.log");
    assert!(
        poll(Duration::from_secs(30), || {
            d.assert_running();
            std::net::TcpStream::connect(http).is_ok() && req(http, "GET", "/readyz").status == 200
        }),
        "never ready:\n{}",
        d.log_text()
    );
    let timeouts = || {
        sample(
            &req(http, "GET", "/metrics").body,
            "replisnap_link_errors_total{reason=\"timeout\"}",
        )
        .expect("link_errors_total{reason=timeout}")
    };
    let before = timeouts();
    let page = req(http, "GET", "/metrics").body;
    let age = sample(&page, "replisnap_master_last_io_age_seconds").expect("age");
    assert!(age < 2.5, "a pinging master's last I/O is recent: {age}");

    let frozen = Frozen::freeze(m.pid());
    let t = Instant::now();
    assert!(
        poll(Duration::from_secs(10), || req(http, "GET", "/readyz")
            .status
            == 503),
        "/readyz stayed 200"
    );
    let to_503 = t.elapsed();
    let r = req(http, "GET", "/readyz");
    assert!(
        poll(Duration::from_secs(10), || timeouts() > before),
        "no timeout link error:\n{}",
        d.log_text()
    );
    let to_counted = t.elapsed();
    let age = sample(
        &req(http, "GET", "/metrics").body,
        "replisnap_master_last_io_age_seconds",
    )
    .expect("age");
    eprintln!(
        "SIGSTOP: /readyz 503 after {to_503:?} ({}), timeout link error after {to_counted:?}, \
         last I/O age {age:.1} s",
        r.body.trim()
    );
    assert!(to_503 <= Duration::from_secs(5), "{to_503:?}");
    assert!(to_counted <= Duration::from_secs(6), "{to_counted:?}");
    assert!(age >= 3.0, "{age}");

    drop(frozen);
    let t = Instant::now();
    assert!(
        poll(Duration::from_secs(30), || req(http, "GET", "/readyz")
            .status
            == 200),
        "not ready again after SIGCONT:\n{}",
        d.log_text()
    );
    eprintln!("SIGCONT: /readyz 200 after {:?}", t.elapsed());
    let (st, log) = d.terminate(Duration::from_secs(15));
    assert!(st.success(), "{log}");
}
