//! `replisnap run` under systemd's notification protocol, without systemd: the test binds
//! the unix datagram socket systemd would (`NOTIFY_SOCKET`) and reads what the real binary
//! sends while following a real master: `READY=1` once HTTP answers, `STATUS=` lines
//! (streaming with its lag after the sync, then the last snapshot), `WATCHDOG=1` at least
//! as often as `WATCHDOG_USEC` asks and only after `READY=1`, `STOPPING=1` on SIGTERM, then
//! exit 0. Without `WATCHDOG_USEC` no `WATCHDOG=1` is sent.

mod daemon;
mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use daemon::{poll, Setup};
use support::TestServer;

/// Every datagram received, with its arrival time, until dropped.
struct NotifySocket {
    got: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NotifySocket {
    fn bind(path: &Path) -> NotifySocket {
        let sock = UnixDatagram::bind(path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let got: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    g.lock().expect("lock").push((Instant::now(), text));
                }
            }
        });
        NotifySocket {
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn messages(&self) -> Vec<(Instant, String)> {
        self.got.lock().expect("lock").clone()
    }

    /// Arrival times of the messages holding `line` as one of their lines.
    fn times_of(&self, line: &str) -> Vec<Instant> {
        self.messages()
            .into_iter()
            .filter(|(_, m)| m.lines().any(|l| l == line))
            .map(|(t, _)| t)
            .collect()
    }

    /// Every `STATUS=` value, in order.
    fn statuses(&self) -> Vec<String> {
        self.messages()
            .into_iter()
            .flat_map(|(_, m)| {
                m.lines()
                    .filter_map(|l| l.strip_prefix("STATUS="))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn dump(&self) -> String {
        self.messages()
            .iter()
            .map(|(_, m)| format!("{m:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn master() -> Option<TestServer> {
    let bin = support::require("redis-7.0")?;
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    for i in 0..200 {
        m.must(&["SET", &format!("k:{i}"), &format!("v{i}")]);
    }
    Some(m)
}

#[test]
fn ready_status_watchdog_and_stopping_reach_systemd() {
    let Some(m) = master() else {
        return;
    };
    let setup = Setup::new(&m.addr(), "* * * * * *", "keep_last = 2");
    let path = setup.dir.path().join("notify.sock");
    let sock = NotifySocket::bind(&path);
    let path_text = path.to_str().expect("utf-8 path");
    let mut d = setup.start_with_env(
        "run.log",
        &[("NOTIFY_SOCKET", path_text), ("WATCHDOG_USEC", "1000000")],
    );

    // READY=1 arrives, and by then the HTTP port answers.
    assert!(
        poll(Duration::from_secs(30), || !sock
            .times_of("READY=1")
            .is_empty()),
        "no READY=1:\n{}\nlog:\n{}",
        sock.dump(),
        d.log_text()
    );
    let ready_at = sock.times_of("READY=1")[0];
    assert!(
        std::net::TcpStream::connect(setup.http_addr()).is_ok(),
        "READY=1 before the HTTP port answers"
    );

    // STATUS= follows the link: streaming with its lag, then the last snapshot.
    let streaming = |s: &NotifySocket| {
        s.statuses()
            .iter()
            .any(|l| l.starts_with(&format!("streaming from {}, lag ", m.addr())))
    };
    assert!(
        poll(Duration::from_secs(30), || streaming(&sock)),
        "no streaming STATUS=:\n{}",
        sock.dump()
    );
    assert!(
        poll(Duration::from_secs(30), || sock.statuses().iter().any(
            |l| l.contains("; last snapshot ") && l.ends_with(" stored")
        )),
        "no STATUS= with the last snapshot:\n{}\nlog:\n{}",
        sock.dump(),
        d.log_text()
    );
    d.assert_running();

    // WATCHDOG=1 only after READY=1, never more than WATCHDOG_USEC apart.
    let pings = sock.times_of("WATCHDOG=1");
    assert!(pings.len() >= 4, "too few WATCHDOG=1:\n{}", sock.dump());
    assert!(pings[0] >= ready_at, "WATCHDOG=1 before READY=1");
    let widest = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .expect("two pings");
    assert!(
        widest < Duration::from_secs(1),
        "WATCHDOG=1 {widest:?} apart with WATCHDOG_USEC=1000000"
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    let (st, log) = d.terminate(Duration::from_secs(60));
    assert!(st.success(), "exit {st}:\n{log}");
    let stopping = sock.times_of("STOPPING=1");
    assert_eq!(stopping.len(), 1, "{}", sock.dump());
    assert!(
        sock.statuses().iter().any(|l| l.starts_with("stopping")),
        "{}",
        sock.dump()
    );
    // Nothing claims liveness once stopping was announced.
    assert!(
        sock.times_of("WATCHDOG=1").iter().all(|t| *t < stopping[0]),
        "WATCHDOG=1 after STOPPING=1:\n{}",
        sock.dump()
    );
}

#[test]
fn no_watchdog_pings_unless_asked() {
    let Some(m) = master() else {
        return;
    };
    let setup = Setup::new(&m.addr(), "0 0 * * * *", "");
    let path = setup.dir.path().join("notify.sock");
    let sock = NotifySocket::bind(&path);
    let d = setup.start_with_env(
        "run.log",
        &[("NOTIFY_SOCKET", path.to_str().expect("utf-8 path"))],
    );
    assert!(
        poll(Duration::from_secs(30), || sock
            .statuses()
            .iter()
            .any(|l| l.starts_with("streaming from "))),
        "no streaming STATUS=:\n{}\nlog:\n{}",
        sock.dump(),
        d.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sock.times_of("READY=1").len(), 1, "{}", sock.dump());
    assert!(
        sock.times_of("WATCHDOG=1").is_empty(),
        "WATCHDOG=1 without WATCHDOG_USEC:\n{}",
        sock.dump()
    );
    let (st, log) = d.terminate(Duration::from_secs(60));
    assert!(st.success(), "exit {st}:\n{log}");
    assert_eq!(sock.times_of("STOPPING=1").len(), 1, "{}", sock.dump());
}
