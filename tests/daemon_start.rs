//! The daemon's start-up order with the real binary and a real master: the HTTP port and
//! the storage are taken before the master is touched, so a daemon that cannot start
//! exits 1 with one `error:` line and costs the master nothing (`sync_full` unchanged):
//! a taken port (and the storage is not even created), a storage another daemon holds.

mod daemon;
mod support;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon::{poll, Setup};
use support::TestServer;

fn sync_full(m: &TestServer) -> u64 {
    m.info_field("stats", "sync_full")
        .and_then(|v| v.parse().ok())
        .expect("sync_full")
}

/// `replisnap run` to its exit (at most 30 s): (exit code, stderr).
fn run_to_exit(setup: &Setup) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_replisnap"))
        .args(["run", "--config"])
        .arg(setup.config())
        .env("RUST_LOG", "warn")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start replisnap run");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("replisnap run did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Replace the line starting with `key = ` in the config.
fn set_key(setup: &Setup, key: &str, value: &str) {
    let text = fs::read_to_string(setup.config()).expect("config");
    let prefix = format!("{key} = ");
    let out: Vec<String> = text
        .lines()
        .map(|l| match l.starts_with(&prefix) {
            true => format!("{prefix}{value}"),
            false => l.to_string(),
        })
        .collect();
    fs::write(setup.config(), out.join("\n") + "\n").expect("write config");
}

#[test]
fn a_taken_port_exits_1_before_the_master_is_touched() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &[]).expect("master");
    m.must(&["SET", "k", "v"]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let setup = Setup::new(&m.addr(), "* * * * * *", "");
    set_key(&setup, "listen", &format!("\"{addr}\""));
    let before = sync_full(&m);

    let (code, stderr) = run_to_exit(&setup);
    assert_eq!(code, 1, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{stderr}");
    let config = setup.config().display().to_string();
    assert!(
        lines[0].starts_with(&format!("error: {config}: [http] listen: "))
            && lines[0].contains(&addr.to_string()),
        "{stderr}"
    );
    // Give a replica that was wrongly started the time to reach the master.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sync_full(&m), before, "the master served a full sync");
    assert!(
        !setup.storage_path().exists(),
        "storage was touched before the port was bound"
    );
}

#[test]
fn a_held_storage_exits_1_before_the_master_is_touched() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &[]).expect("master");
    m.must(&["SET", "k", "v"]);
    let first = Setup::new(&m.addr(), "0 0 * * * *", "");
    let mut d = first.start("first.log");
    let before = sync_full(&m);
    assert!(
        poll(Duration::from_secs(30), || {
            d.assert_running();
            m.info_field("replication", "connected_slaves").as_deref() == Some("1")
                && sync_full(&m) > 0
        }),
        "the first daemon did not sync:\n{}",
        d.log_text()
    );
    let after_first = sync_full(&m);
    assert!(after_first > before);

    let second = Setup::new(&m.addr(), "0 0 * * * *", "");
    set_key(
        &second,
        "path",
        &format!("\"{}\"", first.storage_path().display()),
    );
    let (code, stderr) = run_to_exit(&second);
    assert_eq!(code, 1, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{stderr}");
    assert!(
        lines[0].starts_with("error: ")
            && lines[0].contains(&first.storage_path().display().to_string()),
        "{stderr}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sync_full(&m), after_first, "the master served a full sync");
    d.assert_running();
    let (st, log) = d.terminate(Duration::from_secs(30));
    assert!(st.success(), "{log}");
}
