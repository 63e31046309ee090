//! Secure by default (issue 13 item 9) with the real binary: what the daemon writes
//! (snapshots, locks, the shutdown checkpoint) is 0600 in 0700 directories whatever the
//! umask it was started with (000 and 022); a
//! black-holed master (a listener that accepts and never answers) leaves `/metrics` live
//! and SIGTERM honoured within 10 s; listening beyond loopback without a token warns.

mod daemon;
mod support;

#[path = "http/support.rs"]
#[allow(dead_code)]
mod http_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon::{poll, Daemon, Setup};
use http_support::{req, sample};
use support::TestServer;

/// `replisnap run` under `sh -c 'umask U; exec …'`.
fn start_with_umask(setup: &Setup, umask: &str) -> Daemon {
    let log = setup.dir.path().join(format!("umask-{umask}.log"));
    let out = fs::File::create(&log).expect("log file");
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" run --config \"$1\""))
        .arg(env!("CARGO_BIN_EXE_replisnap"))
        .arg(setup.config())
        .env("RUST_LOG", "info,tokio_cron_scheduler=warn")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .expect("start replisnap run");
    Daemon { child, log }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn files_are_0600_in_0700_directories_whatever_the_umask() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    for i in 0..100 {
        m.must(&["SET", &format!("k:{i}"), "v"]);
    }
    for umask in ["000", "022"] {
        let setup = Setup::new(&m.addr(), "* * * * * *", "keep_last = 2");
        // The storage root is two levels the daemon creates.
        let root = setup.dir.path().join("deep");
        let text = fs::read_to_string(setup.config()).expect("config").replace(
            &setup.storage_path().display().to_string(),
            &root.join("backups").display().to_string(),
        );
        fs::write(setup.config(), text).expect("config");
        let mut d = start_with_umask(&setup, umask);
        let store = replisnap::storage::LocalStorage::new(root.join("backups"));
        use replisnap::storage::Storage;
        assert!(
            poll(Duration::from_secs(60), || {
                d.assert_running();
                store.list().is_ok_and(|l| !l.snapshots.is_empty())
            }),
            "no snapshot under umask {umask}:\n{}",
            d.log_text()
        );
        let (st, log) = d.terminate(Duration::from_secs(30));
        assert!(st.success(), "{log}");
        for dir in [root.clone(), root.join("backups")] {
            assert_eq!(mode(&dir), 0o700, "umask {umask}: {}", dir.display());
        }
        let mut files = 0;
        for e in fs::read_dir(root.join("backups"))
            .expect("read storage")
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "umask {umask}: {}", p.display());
                for f in fs::read_dir(&p).expect("read snapshot").flatten() {
                    assert_eq!(
                        mode(&f.path()),
                        0o600,
                        "umask {umask}: {}",
                        f.path().display()
                    );
                    files += 1;
                }
            } else {
                // The lock files.
                assert_eq!(mode(&p), 0o600, "umask {umask}: {}", p.display());
            }
        }
        assert!(files >= 2, "umask {umask}: dump.rdb and manifest.json");
        // The shutdown checkpoint: the state dir and its checkpoint/ created 0700, the files
        // and the lock 0600.
        assert!(log.contains("checkpoint written"), "{log}");
        for dir in [setup.state_dir(), setup.checkpoint_dir()] {
            assert_eq!(mode(&dir), 0o700, "umask {umask}: {}", dir.display());
        }
        let mut names = Vec::new();
        for f in fs::read_dir(setup.checkpoint_dir())
            .expect("checkpoint dir")
            .flatten()
        {
            assert_eq!(
                mode(&f.path()),
                0o600,
                "umask {umask}: {}",
                f.path().display()
            );
            names.push(f.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        assert_eq!(
            names,
            [".lock", "checkpoint.json", "dump.rdb"],
            "umask {umask}"
        );
    }
}

#[test]
fn a_black_holed_master_leaves_metrics_live_and_sigterm_prompt() {
    // Accepts, reads nothing, answers nothing; the accepted sockets stay open.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = hole.local_addr().expect("addr");
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in hole.incoming().take(64).flatten() {
            conns.push(c);
        }
        std::thread::sleep(Duration::from_secs(120));
    });
    let setup = Setup::new(&addr.to_string(), "0 0 0 1 1 *", "");
    // Beyond loopback with no token: a warning.
    let port = setup.http_addr().port();
    let text = fs::read_to_string(setup.config())
        .expect("config")
        .replace(&format!("127.0.0.1:{port}"), &format!("0.0.0.0:{port}"));
    fs::write(setup.config(), text).expect("config");
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut d = setup.start("hole.log");
    assert!(
        poll(Duration::from_secs(20), || std::net::TcpStream::connect(
            http
        )
        .is_ok()),
        "no listener"
    );
    // Scrapes stay fast for 6 s, and the age of the master's last I/O keeps growing.
    let mut last_age = -1.0;
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        d.assert_running();
        let t = Instant::now();
        let page = req(http, "GET", "/metrics").body;
        slowest = slowest.max(t.elapsed());
        let age = sample(&page, "replisnap_master_last_io_age_seconds").expect("age");
        assert!(age >= last_age, "{age} < {last_age}");
        last_age = age;
        assert_eq!(req(http, "GET", "/readyz").status, 503);
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("black-holed master: slowest /metrics {slowest:?}, last I/O age {last_age} s");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    assert!(last_age >= 5.0, "{last_age}");
    let t = Instant::now();
    let (st, log) = d.terminate(Duration::from_secs(10));
    eprintln!("black-holed master: SIGTERM to exit {:?}", t.elapsed());
    assert!(st.success(), "{log}");
    assert!(
        log.contains("listening beyond loopback with no token"),
        "{log}"
    );
    drop(held);
}
