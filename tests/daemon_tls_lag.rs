//! The lag metrics with `[source.tls]` (issue 13: they stayed 0 over TLS, because the
//! master-offset poller could not connect): the real binary against a real redis-server 7.0
//! that requires TLS with client certificates. Under a stream of writes,
//! `master_offset_bytes` moves with the master's own `master_repl_offset` (never ahead of
//! it), `replication_lag_bytes` and `replication_lag_seconds` are seen above 0, and once the
//! writes stop both return to 0 and the master offset metric equals the master's.
//!
//! Owns only this end-to-end contract. It must never read a number from anywhere but
//! `/metrics` and the master's `INFO`.

mod daemon;
mod support;

#[path = "http/support.rs"]
#[allow(dead_code)]
mod http_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use daemon::{poll, Setup};
use http_support::{req, sample};
use support::pki::make_pki;
use support::TestServer;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn lag_metrics_move_over_tls_and_return_to_zero() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let pki = tempfile::tempdir().expect("temp dir");
    let d = pki.path();
    make_pki(d, "ca");
    let p = |f: &str| d.join(f).to_string_lossy().into_owned();
    let tls_port = free_port();
    let m = Arc::new(
        TestServer::start(
            &bin,
            &[
                "--tls-port",
                &tls_port.to_string(),
                "--tls-cert-file",
                &p("server.crt"),
                "--tls-key-file",
                &p("server.key"),
                "--tls-ca-cert-file",
                &p("ca.crt"),
                "--tls-auth-clients",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
            ],
        )
        .expect("TLS master"),
    );
    m.must(&["SET", "k", "v"]);
    let master_offset = {
        let m = m.clone();
        move || -> f64 {
            m.info_field("replication", "master_repl_offset")
                .expect("master_repl_offset")
                .parse()
                .expect("a number")
        }
    };

    let setup = Setup::new(&format!("127.0.0.1:{tls_port}"), "0 0 0 1 1 *", "");
    setup.replica_line("checkpoint_on_shutdown = false");
    setup.append_config(&format!(
        "[source.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        p("ca.crt"),
        p("client.crt"),
        p("client.key")
    ));
    let http = setup.http_addr();
    let mut dmn = setup.start("tls.log");
    let metrics = || req(http, "GET", "/metrics").body;
    let get = |page: &str, series: &str| {
        sample(page, series).unwrap_or_else(|| panic!("{series} missing"))
    };
    assert!(
        poll(Duration::from_secs(30), || {
            dmn.assert_running();
            std::net::TcpStream::connect(http).is_ok() && req(http, "GET", "/readyz").status == 200
        }),
        "never ready over TLS:\n{}",
        dmn.log_text()
    );
    // A write after the sync moves the master's offset past 0 (before the first PING): the
    // poller's reading over TLS must come to equal it.
    m.must(&["SET", "after", "sync"]);
    assert!(
        poll(Duration::from_secs(10), || {
            let o = master_offset();
            get(&metrics(), "replisnap_master_offset_bytes") == o && o > 0.0
        }),
        "master_offset_bytes never read over TLS: {} vs the master's {}\n{}\n{}",
        get(&metrics(), "replisnap_master_offset_bytes"),
        metrics()
            .lines()
            .filter(|l| !l.starts_with('#') && (l.contains("offset") || l.contains("link_up")))
            .collect::<Vec<_>>()
            .join("\n"),
        master_offset(),
        dmn.log_text()
    );

    // A stream of writes (4 KB values on 1000 keys) for 8 s, on a connection of its own (not
    // more: the master drops a replica whose output buffer passes 256 MB).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (m, stop) = (m.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut c = m.connect().expect("writer connection");
            let value = vec![b'x'; 4 * 1024];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{}", n % 1000);
                c.cmd(&[b"SET", key.as_bytes(), &value]).expect("SET");
                n += 1;
            }
            n
        })
    };
    let t = Instant::now();
    let (mut max_bytes, mut max_secs) = (0.0f64, 0.0f64);
    let mut seen = Vec::new();
    while t.elapsed() < Duration::from_secs(8) {
        let page = metrics();
        let after = master_offset();
        let mo = get(&page, "replisnap_master_offset_bytes");
        assert!(
            mo <= after,
            "master_offset_bytes {mo} ahead of the master's {after}"
        );
        if seen.last() != Some(&mo) {
            seen.push(mo);
        }
        max_bytes = max_bytes.max(get(&page, "replisnap_replication_lag_bytes"));
        max_secs = max_secs.max(get(&page, "replisnap_replication_lag_seconds"));
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().expect("writer");
    let written = master_offset();
    eprintln!(
        "over TLS: {writes} writes in 8 s, master offset {written}; master_offset_bytes took \
         {} values; max lag {max_bytes} bytes, {max_secs:.3} s",
        seen.len()
    );
    assert!(
        seen.len() >= 5 && seen.windows(2).all(|w| w[0] < w[1]),
        "master_offset_bytes did not follow the master each second: {seen:?}"
    );
    assert!(
        max_bytes > 0.0,
        "replication_lag_bytes stayed 0 under writes"
    );
    assert!(
        max_secs > 0.0,
        "replication_lag_seconds stayed 0 under writes"
    );

    // Writes stopped: caught up, both lags 0, the master's offset as the master says.
    let mut last = String::new();
    assert!(
        poll(Duration::from_secs(15), || {
            let page = metrics();
            let o = master_offset();
            let ok = get(&page, "replisnap_master_offset_bytes") == o
                && get(&page, "replisnap_replication_offset_bytes") == o
                && get(&page, "replisnap_replication_lag_bytes") == 0.0
                && get(&page, "replisnap_replication_lag_seconds") == 0.0;
            last = page
                .lines()
                .filter(|l| l.contains("offset_bytes") || l.contains("lag_"))
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("; ");
            ok
        }),
        "lag did not return to 0 after the writes stopped: {last} (master {})",
        master_offset()
    );
    let (st, log) = dmn.terminate(Duration::from_secs(15));
    assert!(st.success(), "{log}");
}
