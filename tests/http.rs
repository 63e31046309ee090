//! The HTTP endpoint with real requests on loopback: every route and status, the metrics
//! page parsed as Prometheus exposition, hostile and slow clients, a taken port. The
//! daemon's side is a scripted `Control` double (the daemon's end-to-end tests use real
//! servers) and real `Metrics`; the `replisnap snapshot` verb and the bearer token are
//! `tests/http_cli.rs`.

#[path = "http/support.rs"]
mod support;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use replisnap::http::{serve, Control, SnapshotRequestError, SnapshotStatus};
use replisnap::metrics::{LinkErrorReason, Metrics, ResyncReason, COMMANDS};
use support::{assert_exposition_parses, raw, req, sample, start, Fake};

#[test]
fn health_readiness_and_routing() {
    let fake = Fake::ready();
    *fake.ready.lock().unwrap() = Some("no full sync yet:\nconnecting to 10.0.0.5:6379".into());
    let (server, _) = start(&fake);
    let a = server.local_addr();

    let r = req(a, "GET", "/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    assert_eq!(req(a, "HEAD", "/healthz").status, 200);

    let r = req(a, "GET", "/readyz");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body, "no full sync yet: connecting to 10.0.0.5:6379\n",
        "one line"
    );
    *fake.ready.lock().unwrap() = None;
    let r = req(a, "GET", "/readyz");
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));

    for p in [
        "/",
        "/nope",
        "/metrics/x",
        "/healthzz",
        "/snapshots",
        "/snapshot/",
    ] {
        assert_eq!(req(a, "GET", p).status, 404, "{p}");
    }
    for (m, p, allow) in [
        ("POST", "/healthz", "GET, HEAD"),
        ("PUT", "/metrics", "GET, HEAD"),
        ("DELETE", "/readyz", "GET, HEAD"),
        ("GET", "/snapshot", "POST"),
        ("DELETE", "/snapshot/20250101T000000Z", "GET, HEAD"),
    ] {
        let r = req(a, m, p);
        assert_eq!(r.status, 405, "{m} {p}");
        assert_eq!(r.header("allow"), Some(allow), "{m} {p}");
    }
    // A query string does not change the route.
    assert_eq!(req(a, "GET", "/healthz?verbose=1").status, 200);
    server.shutdown();
}

#[test]
fn metrics_page_has_every_spec_series_and_parses() {
    let fake = Fake::ready();
    let (server, metrics) = start(&fake);
    let a = server.local_addr();
    let r = req(a, "GET", "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_exposition_parses(&r.body);
    let spec = [
        "master_link_up",
        "replication_offset_bytes",
        "master_offset_bytes",
        "replication_lag_bytes",
        "replication_lag_seconds",
        "master_last_io_age_seconds",
        "full_resyncs_total",
        "partial_resyncs_total",
        "link_errors_total",
        "resyncs_forced_total",
        "commands_applied_total",
        "dataset_keys",
        "dataset_memory_bytes",
        "snapshot_pause_seconds",
        "snapshot_duration_seconds",
        "snapshots_total",
        "snapshot_size_bytes",
        "last_snapshot_success_timestamp_seconds",
        "uploads_total",
        "upload_bytes_total",
        "upload_duration_seconds",
        "last_upload_success_timestamp_seconds",
        "retention_deleted_total",
        "stored_snapshots",
        "oldest_snapshot_timestamp_seconds",
        "build_info",
    ];
    for name in spec {
        assert!(
            r.body.contains(&format!("# TYPE replisnap_{name} ")),
            "{name}"
        );
    }
    assert!(sample(&r.body, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
    assert!(sample(&r.body, "process_open_fds").is_some());
    // Labelled counters at 0 before any event.
    for reason in LinkErrorReason::ALL {
        let s = format!(
            "replisnap_link_errors_total{{reason=\"{}\"}}",
            reason.as_str()
        );
        assert_eq!(sample(&r.body, &s), Some(0.0), "{s}");
    }
    for reason in ResyncReason::ALL {
        let s = format!(
            "replisnap_resyncs_forced_total{{reason=\"{}\"}}",
            reason.as_str()
        );
        assert_eq!(sample(&r.body, &s), Some(0.0), "{s}");
    }
    for s in [
        "replisnap_snapshots_total{result=\"ok\"}",
        "replisnap_snapshots_total{result=\"error\"}",
        "replisnap_uploads_total{result=\"ok\"}",
        "replisnap_uploads_total{result=\"error\"}",
        "replisnap_commands_applied_total{command=\"other\"}",
    ] {
        assert_eq!(sample(&r.body, s), Some(0.0), "{s}");
    }
    for c in COMMANDS {
        let s = format!("replisnap_commands_applied_total{{command=\"{c}\"}}");
        assert_eq!(sample(&r.body, &s), Some(0.0), "{s}");
    }
    assert_eq!(
        sample(&r.body, "replisnap_snapshot_pause_seconds_count"),
        Some(0.0)
    );

    // Events between two scrapes show up in the second.
    metrics.observe_snapshot_pause(0.000_04);
    metrics.command_applied(b"HSET");
    metrics.set_link_up(true);
    let r = req(a, "GET", "/metrics");
    assert_exposition_parses(&r.body);
    assert_eq!(
        sample(&r.body, "replisnap_snapshot_pause_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &r.body,
            "replisnap_snapshot_pause_seconds_bucket{le=\"0.000025\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &r.body,
            "replisnap_snapshot_pause_seconds_bucket{le=\"0.00005\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &r.body,
            "replisnap_commands_applied_total{command=\"hset\"}"
        ),
        Some(1.0)
    );
    assert_eq!(sample(&r.body, "replisnap_master_link_up"), Some(1.0));
    // HEAD gets the headers and no body.
    let r = req(a, "HEAD", "/metrics");
    assert_eq!((r.status, r.body.as_str()), (200, ""));
}

#[test]
fn snapshot_requests_and_status() {
    let fake = Fake::ready();
    let (server, _) = start(&fake);
    let a = server.local_addr();

    fake.will_start(
        "20250101T000000Z",
        &[SnapshotStatus::Running, SnapshotStatus::Stored],
    );
    let r = req(a, "POST", "/snapshot");
    assert_eq!(r.status, 202);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), serde_json::json!({ "id": "20250101T000000Z" }));
    let r = req(a, "GET", "/snapshot/20250101T000000Z");
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("running"))
    );
    let r = req(a, "GET", "/snapshot/20250101T000000Z");
    assert_eq!(
        r.json(),
        serde_json::json!({ "id": "20250101T000000Z", "status": "stored" })
    );

    fake.will_refuse(SnapshotRequestError::Busy {
        running: Some("20250101T000000Z".into()),
    });
    let r = req(a, "POST", "/snapshot");
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["running"], "20250101T000000Z");
    assert_eq!(
        r.json()["error"],
        "a snapshot is already running (20250101T000000Z)"
    );

    fake.will_refuse(SnapshotRequestError::NotReady("no full sync yet".into()));
    let r = req(a, "POST", "/snapshot");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "not ready: no full sync yet");

    fake.will_refuse(SnapshotRequestError::Other("storage:\nbroken".into()));
    let r = req(a, "POST", "/snapshot");
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (500, Some("storage: broken"))
    );

    fake.will_start(
        "20250101T000100Z",
        &[SnapshotStatus::Failed("disk full\nat /var".into())],
    );
    assert_eq!(req(a, "POST", "/snapshot").status, 202);
    let r = req(a, "GET", "/snapshot/20250101T000100Z");
    assert_eq!(
        r.json(),
        serde_json::json!({ "id": "20250101T000100Z", "status": "failed", "reason": "disk full at /var" })
    );

    // Unknown ids are 404; implausible ones never reach the daemon.
    assert_eq!(req(a, "GET", "/snapshot/20990101T000000Z").status, 404);
    fake.status_calls.lock().unwrap().clear();
    let long = format!("/snapshot/{}", "a".repeat(65));
    for p in [
        "/snapshot/..%2F..%2Fetc",
        "/snapshot/a/b",
        "/snapshot/%00",
        long.as_str(),
    ] {
        let r = req(a, "GET", p);
        assert_eq!(r.status, 404, "{p}");
        assert_eq!(r.json()["error"], "unknown snapshot id");
    }
    assert!(fake.status_calls.lock().unwrap().is_empty());

    // A body is never read: a POST announcing 10 GB is answered at once.
    fake.will_start("20250101T000200Z", &[SnapshotStatus::Running]);
    let r = raw(
        a,
        b"POST /snapshot HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000000\r\n\r\n{",
    );
    assert_eq!(r.status, 202);
}

#[test]
fn hostile_clients_do_not_hurt_the_server() {
    let fake = Fake::ready();
    let (server, _) = start(&fake);
    let a = server.local_addr();

    let r = raw(a, b"\x16\x03\x01\x02\x00garbage that is not HTTP\r\n\r\n");
    assert!(r.status == 400 || r.status == 0, "{}", r.head);
    let r = raw(a, b"GET /healthz HTTP/9.9\r\n\r\n");
    assert_ne!(r.status, 200);
    // 20 KiB of headers: refused, not buffered.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let r = raw(a, big.as_bytes());
    assert_eq!(r.status, 431, "{}", r.head);
    // Thousands of headers.
    let many: String = (0..2000).map(|i| format!("X-{i}: v\r\n")).collect();
    let r = raw(a, format!("GET /healthz HTTP/1.1\r\n{many}\r\n").as_bytes());
    assert!(r.status == 431 || r.status == 400, "{}", r.head);
    // A client that connects and sends half a line, then leaves.
    {
        let mut s = TcpStream::connect(a).unwrap();
        s.write_all(b"GET /met").unwrap();
    }
    // More idle connections than the server serves at once, then all gone.
    let idle: Vec<TcpStream> = (0..80).map(|_| TcpStream::connect(a).unwrap()).collect();
    drop(idle);
    // Their slots free as the server notices each close; wait for that, boundedly.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while req(a, "GET", "/healthz").status != 200 {
        assert!(std::time::Instant::now() < deadline, "slots never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Keep-alive: two requests on one connection.
    let r = raw(
        a,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert!(r.body.matches("ok").count() >= 2, "{}", r.body);

    assert_eq!(req(a, "GET", "/healthz").status, 200, "still serving");
    server.shutdown();
    assert!(
        TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_err(),
        "closed after shutdown"
    );
}

#[test]
fn a_taken_port_is_an_error_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let control: Arc<dyn Control> = Fake::ready();
    let e = serve(addr, metrics, control).err().expect("bind must fail");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}

// ---- issue 13 item 9: health under slow clients, the bearer token ----

/// `GET /healthz` on a fresh connection: (status, how long it took).
fn timed_healthz(a: std::net::SocketAddr) -> (u16, Duration) {
    let t = std::time::Instant::now();
    let r = req(a, "GET", "/healthz");
    (r.status, t.elapsed())
}

#[test]
fn healthz_answers_within_2_s_while_100_slow_clients_hold_connections() {
    let fake = Fake::ready();
    let (server, _) = start(&fake);
    let a = server.local_addr();
    // 100 that send nothing at all.
    let silent: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(a).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (status, took) = timed_healthz(a);
    eprintln!("100 silent clients: /healthz {status} in {took:?}");
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(req(a, "GET", "/readyz").status, 200);
    // 100 that sent the start of a request and stall (slow loris): every general slot
    // is taken, health checks still get theirs.
    let loris: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(a).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (status, took) = timed_healthz(a);
    eprintln!("100 stalled clients: /healthz {status} in {took:?}");
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(req(a, "GET", "/readyz").status, 200);
    drop((silent, loris));
    server.shutdown();
}
