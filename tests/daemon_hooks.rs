//! `[notify]` with the real binary (issue 13 item 6): after a failed snapshot (the writer
//! made to panic once, `REPLISNAP_TEST_WRITER_PANIC=1`) `on_failure` runs with the error in
//! its environment and `<heartbeat_url>/fail` is called; after a stored one `on_success`
//! runs with the manifest's facts and `heartbeat_url` is called (a local HTTP server here),
//! all counted. A hook that hangs is killed at `[notify] timeout` and a heartbeat nobody
//! answers is counted as an error, without holding up the snapshot. `check-config` refuses
//! a hook that is not an executable file, naming the key.

mod daemon;
mod support;

#[path = "http/support.rs"]
#[allow(dead_code)]
mod http_support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use daemon::{poll, Setup};
use http_support::{req, sample};
use support::TestServer;

const NEVER: &str = "0 0 0 1 1 *";

/// A tiny HTTP server answering 200 to everything; the request paths it saw.
fn heartbeat_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut r = BufReader::new(conn.try_clone().expect("clone"));
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            // Headers up to the blank line.
            let mut h = String::new();
            while r.read_line(&mut h).is_ok_and(|n| n > 2) {
                h.clear();
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            s.lock().unwrap().push(path);
            let mut w = conn;
            let _ =
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
        }
    });
    (port, seen)
}

/// An executable script that writes its REPLISNAP_* variables to `out`, then runs `then`.
fn hook(dir: &Path, name: &str, out: &Path, then: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nenv | grep '^REPLISNAP_' > {}.tmp && mv {0}.tmp {0}\n{then}\n",
            out.display()
        ),
    )
    .expect("write hook");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

fn env_of(file: &Path) -> Option<HashMap<String, String>> {
    let text = std::fs::read_to_string(file).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn status(http: std::net::SocketAddr, path: &str) -> u16 {
    if std::net::TcpStream::connect(http).is_err() {
        return 0;
    }
    req(http, "GET", path).status
}

#[test]
fn hooks_and_heartbeat_run_after_each_snapshot_with_its_facts() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    for i in 0..200 {
        m.must(&["SET", &format!("k:{i}"), "v"]);
    }
    let (port, seen) = heartbeat_server();
    let setup = Setup::new(&m.addr(), NEVER, "");
    let dir = setup.dir.path().to_path_buf();
    let ok_out = dir.join("ok.env");
    let fail_out = dir.join("fail.env");
    let ok = hook(&dir, "ok.sh", &ok_out, "");
    let fail = hook(&dir, "fail.sh", &fail_out, "");
    setup.append_config(&format!(
        "[notify]\nheartbeat_url = \"http://127.0.0.1:{port}/ping/6f3c-uuid\"\nheartbeat_fail = true\n\
         on_success = \"{}\"\non_failure = \"{}\"\ntimeout = 10\n",
        ok.display(),
        fail.display()
    ));
    let http = setup.http_addr();
    let mut d = setup.start_with_env("hooks.log", &[("REPLISNAP_TEST_WRITER_PANIC", "1")]);
    let ready = poll(Duration::from_secs(60), || {
        d.assert_running();
        status(http, "/readyz") == 200
    });
    assert!(ready, "{}", d.log_text());

    // A failed snapshot: on_failure with the error, and the heartbeat's /fail.
    let (code, _, _) = setup.verb(&["snapshot", "--wait"]);
    assert_eq!(code, 1, "the first snapshot fails (test hook)");
    assert!(
        poll(Duration::from_secs(20), || fail_out.exists()),
        "on_failure never ran: {}",
        d.log_text()
    );
    let env = env_of(&fail_out).expect("on_failure's environment");
    assert_eq!(env["REPLISNAP_RESULT"], "failure", "{env:?}");
    assert!(env["REPLISNAP_ERROR"].contains("panicked"), "{env:?}");
    assert!(!env["REPLISNAP_SNAPSHOT_ID"].is_empty(), "{env:?}");
    assert_eq!(env["REPLISNAP_SOURCE"], m.addr(), "{env:?}");
    assert!(!ok_out.exists(), "on_success ran after a failure");
    assert!(poll(Duration::from_secs(20), || seen.lock().unwrap().len() == 1));
    assert_eq!(seen.lock().unwrap()[0], "/ping/6f3c-uuid/fail");

    // A stored snapshot: on_success with the manifest's facts, and the heartbeat.
    let (code, out, err) = setup.verb(&["snapshot", "--wait"]);
    assert_eq!(code, 0, "{out}{err}{}", d.log_text());
    assert!(
        poll(Duration::from_secs(20), || ok_out.exists()),
        "on_success never ran: {}",
        d.log_text()
    );
    let man = setup.snapshots().pop().expect("a stored snapshot");
    let env = env_of(&ok_out).expect("on_success's environment");
    assert_eq!(env["REPLISNAP_RESULT"], "success", "{env:?}");
    assert_eq!(env["REPLISNAP_SNAPSHOT_ID"], man.id.to_string());
    assert_eq!(env["REPLISNAP_DIGEST"], man.digest);
    assert_eq!(env["REPLISNAP_DIGEST"], m.digest());
    assert_eq!(env["REPLISNAP_BYTES"], man.rdb.bytes.to_string());
    assert_eq!(env["REPLISNAP_SHA256"], man.rdb.sha256);
    assert_eq!(env["REPLISNAP_KEYS"], "200");
    assert_eq!(env["REPLISNAP_OFFSET"], man.source.offset.to_string());
    assert!(env["REPLISNAP_STORAGE"].contains(&setup.storage_path().display().to_string()));
    assert!(poll(Duration::from_secs(20), || seen.lock().unwrap().len() == 2));
    assert_eq!(seen.lock().unwrap()[1], "/ping/6f3c-uuid");

    let page = req(http, "GET", "/metrics").body;
    for (series, want) in [
        ("replisnap_heartbeats_total{result=\"ok\"}", 2.0),
        ("replisnap_heartbeats_total{result=\"error\"}", 0.0),
        (
            "replisnap_hooks_total{hook=\"on_failure\",result=\"ok\"}",
            1.0,
        ),
        (
            "replisnap_hooks_total{hook=\"on_success\",result=\"ok\"}",
            1.0,
        ),
        (
            "replisnap_hooks_total{hook=\"on_success\",result=\"timeout\"}",
            0.0,
        ),
    ] {
        assert_eq!(sample(&page, series), Some(want), "{series}\n{page}");
    }
    let log = d.log_text();
    assert!(
        !log.contains("6f3c-uuid"),
        "the heartbeat URL is a credential: {log}"
    );
}

#[test]
fn a_hanging_hook_is_killed_and_a_dead_heartbeat_counted_without_delaying_snapshots() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    m.must(&["SET", "k", "v"]);
    // A port nobody listens on.
    let dead = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let setup = Setup::new(&m.addr(), NEVER, "");
    let dir = setup.dir.path().to_path_buf();
    let out = dir.join("ok.env");
    let ok = hook(&dir, "slow.sh", &out, "sleep 60");
    setup.append_config(&format!(
        "[notify]\nheartbeat_url = \"http://127.0.0.1:{dead}/x\"\non_success = \"{}\"\ntimeout = 2\n",
        ok.display()
    ));
    let http = setup.http_addr();
    let mut d = setup.start("slow.log");
    let ready = poll(Duration::from_secs(60), || {
        d.assert_running();
        status(http, "/readyz") == 200
    });
    assert!(ready, "{}", d.log_text());
    for round in 1..=2 {
        let t = Instant::now();
        let (code, o, e) = setup.verb(&["snapshot", "--wait"]);
        assert_eq!(code, 0, "{o}{e}");
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "snapshot {round} waited for the hook: {:?}",
            t.elapsed()
        );
    }
    let series = "replisnap_hooks_total{hook=\"on_success\",result=\"timeout\"}";
    let killed = poll(Duration::from_secs(30), || {
        sample(&req(http, "GET", "/metrics").body, series) == Some(2.0)
    });
    let page = req(http, "GET", "/metrics").body;
    assert!(killed, "{page}\n{}", d.log_text());
    assert_eq!(
        sample(&page, "replisnap_heartbeats_total{result=\"error\"}"),
        Some(2.0),
        "{page}"
    );
    assert!(d.log_text().contains("killed"), "{}", d.log_text());
}

#[test]
fn check_config_refuses_a_hook_that_cannot_run() {
    let setup = Setup::new("127.0.0.1:6379", NEVER, "");
    let not_exec = setup.dir.path().join("hook.txt");
    std::fs::write(&not_exec, "echo").unwrap();
    setup.append_config(&format!(
        "[notify]\non_failure = \"{}\"\n",
        not_exec.display()
    ));
    let (code, out, err) = setup.verb(&["check-config"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("notify.on_failure"), "{err}");
    assert!(err.contains("not an executable file"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}
