//! Dual-channel full sync against real masters: Valkey 8.1/9.1 with
//! `dual-channel-replication-enabled yes` (`+DUALCHANNELSYNC`, `$ENDOFF`) and Redis 8.2/8.6
//! with `repl-rdb-channel yes` (`+RDBCHANNELSYNC`), under writes that arrive while the
//! RDB is still being sent (`rdb-key-save-delay` stretches it). Proof of the path: the
//! master's own log line for it, and the stream buffered on our side; then the digest of
//! our data equals the master's `DEBUG DIGEST` at the same offset. With `dual_channel`
//! off the classic path is taken on the same master.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use replisnap::replication::{Replica, ReplicaHandle, Settings};
use support::replica::{assert_in_sync, offset, stat};
use support::{Conn, ServerBin, TestServer};

/// The master's log line of a full sync on a second connection.
fn dual_log_line(bin: &ServerBin) -> &'static str {
    if bin.is_valkey() {
        // "Starting BGSAVE for SYNC with target: replicas sockets using: dual-channel"
        "using: dual-channel"
    } else {
        // "Full resync requested by replica 127.0.0.1:6391 (rdb-channel)"
        "(rdb-channel)"
    }
}

fn master(bin: &ServerBin) -> TestServer {
    let mut args = vec![
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
    ];
    if bin.is_valkey() {
        args.extend_from_slice(&["--dual-channel-replication-enabled", "yes"]);
    } else {
        args.extend_from_slice(&["--repl-rdb-channel", "yes"]);
    }
    let m = TestServer::start(bin, &args).expect("master");
    // 20000 keys in two databases, sent at 50 µs a key: about a second of transfer.
    let mut c = m.connect().expect("connect");
    for db in ["0", "2"] {
        c.cmd(&[b"SELECT", db.as_bytes()]).expect("SELECT");
        for i in 0..10_000 {
            let k = format!("k{i}");
            assert!(!c
                .cmd(&[b"SET", k.as_bytes(), b"some value"])
                .expect("SET")
                .is_error());
        }
    }
    m.must(&["CONFIG", "SET", "rdb-key-save-delay", "50"]);
    m
}

fn replisnap(
    addr: &str,
    dual: bool,
    spool: Option<(&std::path::Path, usize)>,
) -> (ReplicaHandle, std::thread::JoinHandle<()>) {
    let (mut r, h) = Replica::new(Settings {
        address: addr.to_string(),
        username: None,
        password: None,
        announce_port: 6391,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    });
    r.set_dual_channel(dual);
    if let Some((dir, memory)) = spool {
        r.set_dual_channel_spool(dir.to_path_buf(), memory);
    }
    (h, std::thread::spawn(move || r.run()))
}

/// Writes on `m` until the flag is set, mostly in database 5 selected once, with
/// transactions among them; returns the number of commands sent.
fn writer(m: &TestServer, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let port = m.port();
    std::thread::spawn(move || {
        let mut c = Conn::connect(port, Duration::from_secs(5)).expect("writer");
        c.cmd(&[b"SELECT", b"5"]).expect("SELECT");
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("w{}", n % 3000);
            let r = match n % 5 {
                0 => c.cmd(&[b"SET", key.as_bytes(), b"0123456789abcdef"]),
                1 => c.cmd(&[b"INCR", b"counter"]),
                2 => c.cmd(&[b"RPUSH", b"list", key.as_bytes()]),
                3 => c.cmd(&[b"HSET", b"hash", key.as_bytes(), b"v"]),
                _ => {
                    c.cmd(&[b"MULTI"]).expect("MULTI");
                    c.cmd(&[b"INCR", b"tx"]).expect("INCR");
                    c.cmd(&[b"SADD", b"set", key.as_bytes()]).expect("SADD");
                    c.cmd(&[b"EXEC"])
                }
            };
            assert!(!r.expect("write").is_error());
            n += 1;
        }
        n
    })
}

/// A full sync under writes; `dual` says whether replisnap offers the second connection,
/// `spool` overrides where and how much of the stream it buffers in memory.
fn full_sync_under_writes(name: &str, dual: bool, spool_memory: Option<usize>) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let m = master(&bin);
    let spool_dir = tempfile::tempdir().expect("spool dir");
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&m, stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    let (h, t) = replisnap(&m.addr(), dual, spool_memory.map(|n| (spool_dir.path(), n)));
    support::wait_for("replisnap synced", Duration::from_secs(60), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let written = w.join().expect("writer");
    assert!(written > 100, "{name}: {written} writes during the sync");
    m.must(&["SET", "after", "1"]);
    assert_in_sync(&m, &h, &bin, &format!("{name}: dual={dual}"));
    let s = &h.status;
    let log = m.log();
    assert_eq!(stat(&m, "sync_full"), 1, "{name}: one full sync");
    assert_eq!(s.full_syncs.load(Ordering::Relaxed), 1, "{name}");
    assert_eq!(
        s.link_errors.load(Ordering::Relaxed),
        0,
        "{name}: {}",
        s.last_link_error.lock().unwrap()
    );
    let buffered = s.dual_channel_buffered_bytes.load(Ordering::Relaxed);
    let spilled = s.dual_channel_spilled_bytes.load(Ordering::Relaxed);
    if dual {
        assert!(
            log.contains(dual_log_line(&bin)),
            "{name}: the master's log shows no dual-channel sync:\n{log}"
        );
        assert_eq!(s.dual_channel_syncs.load(Ordering::Relaxed), 1, "{name}");
        // The writes that came during the RDB's transfer were buffered on our side.
        assert!(buffered > 1000, "{name}: {buffered} bytes buffered");
        match spool_memory {
            Some(limit) => assert!(
                spilled > 0 && buffered > limit as u64,
                "{name}: {buffered} bytes buffered, {spilled} spilled past {limit}"
            ),
            None => assert_eq!(spilled, 0, "{name}: {buffered} bytes fit in 64 MiB"),
        }
        // The buffer file is unlinked as soon as it is made.
        let left = std::fs::read_dir(spool_dir.path()).unwrap().count();
        assert_eq!(left, 0, "{name}: files left in the spool dir");
    } else {
        assert!(
            !log.contains(dual_log_line(&bin)),
            "{name}: dual_channel = false, yet the master took the dual-channel path:\n{log}"
        );
        assert_eq!(s.dual_channel_syncs.load(Ordering::Relaxed), 0, "{name}");
        assert_eq!(buffered, 0, "{name}");
    }
    // The master sees one replica, online, at our offset.
    support::wait_for(
        "the master's replica online",
        Duration::from_secs(10),
        || {
            let info = m.info("replication");
            info.contains("connected_slaves:1") && info.contains("state=online")
        },
    );
    assert_eq!(
        h.status.offset.load(Ordering::Relaxed),
        offset(&m),
        "{name}"
    );
    h.stop();
    t.join().expect("replica thread");
}

#[test]
fn dual_channel_valkey_8_1() {
    full_sync_under_writes("valkey-8.1", true, None);
}

#[test]
fn dual_channel_valkey_9_1() {
    full_sync_under_writes("valkey-9.1", true, None);
}

#[test]
fn dual_channel_redis_8_2() {
    full_sync_under_writes("redis-8.2", true, None);
}

#[test]
fn dual_channel_redis_8_6() {
    full_sync_under_writes("redis-8.6", true, None);
}

#[test]
fn dual_channel_spills_past_its_memory_valkey_9_1() {
    full_sync_under_writes("valkey-9.1", true, Some(4096));
}

#[test]
fn dual_channel_spills_past_its_memory_redis_8_6() {
    full_sync_under_writes("redis-8.6", true, Some(4096));
}

#[test]
fn dual_channel_off_is_classic_valkey_9_1() {
    full_sync_under_writes("valkey-9.1", false, None);
}

#[test]
fn dual_channel_off_is_classic_redis_8_6() {
    full_sync_under_writes("redis-8.6", false, None);
}

/// The second connection gets the main one's TLS (CA verification, client certificate)
/// and ACL user: a TLS-only redis 8.6 master with an ACL user and no default user.
#[test]
fn dual_channel_over_tls_as_an_acl_user_redis_8_6() {
    use replisnap::replication::tls::TlsSettings;
    let Some(bin) = support::require("redis-8.6") else {
        return;
    };
    let pki = tempfile::tempdir().unwrap();
    let d = pki.path();
    support::pki::make_pki(d, "ca");
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = |f: &str| d.join(f).to_string_lossy().into_owned();
    let m = TestServer::start(
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
            "--repl-rdb-channel",
            "yes",
        ],
    )
    .expect("TLS master");
    for i in 0..5000 {
        m.must(&["SET", &format!("k{i}"), "v"]);
    }
    m.must(&["CONFIG", "SET", "rdb-key-save-delay", "100"]);
    m.must(&[
        "ACL",
        "SETUSER",
        "backup",
        "on",
        ">secret",
        "+ping",
        "+replconf",
        "+psync",
        "+sync",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&m, stop.clone());
    let (r, h) = Replica::new(Settings {
        address: format!("127.0.0.1:{tls_port}"),
        username: Some("backup".into()),
        password: Some("secret".into()),
        announce_port: 6391,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(5),
        tls: Some(TlsSettings {
            ca_file: Some(d.join("ca.crt")),
            cert_file: Some(d.join("client.crt")),
            key_file: Some(d.join("client.key")),
            server_name: None,
            insecure_skip_verify: false,
        }),
    });
    let t = std::thread::spawn(move || r.run());
    support::wait_for("synced over TLS", Duration::from_secs(60), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let written = w.join().expect("writer");
    assert!(written > 100, "{written} writes");
    m.must(&["SET", "after", "1"]);
    assert_in_sync(&m, &h, &bin, "dual-channel over TLS");
    let s = &h.status;
    assert_eq!(s.dual_channel_syncs.load(Ordering::Relaxed), 1);
    assert!(s.dual_channel_buffered_bytes.load(Ordering::Relaxed) > 0);
    assert_eq!(
        s.link_errors.load(Ordering::Relaxed),
        0,
        "{}",
        s.last_link_error.lock().unwrap()
    );
    assert!(m.log().contains(dual_log_line(&bin)), "{}", m.log());
    h.stop();
    t.join().expect("replica thread");
}

/// The ids of the master's replica connections, oldest first.
fn replica_client_ids(m: &TestServer) -> Vec<u64> {
    let list = m
        .must(&["CLIENT", "LIST", "TYPE", "replica"])
        .as_string()
        .unwrap_or_default();
    let mut ids: Vec<u64> = list
        .lines()
        .filter_map(|l| l.strip_prefix("id=")?.split(' ').next()?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// One channel of a dual-channel sync killed by the master while the RDB is on its way: a
/// link error, a reconnect, and a complete sync after it.
fn a_channel_lost_mid_transfer(name: &str, rdb_channel: bool) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let m = master(&bin);
    // About 4 s of transfer: room to see both connections and cut one.
    m.must(&["CONFIG", "SET", "rdb-key-save-delay", "200"]);
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&m, stop.clone());
    let (h, t) = replisnap(&m.addr(), true, None);
    support::wait_for("both channels open", Duration::from_secs(30), || {
        replica_client_ids(&m).len() == 2
            && m.info_field("persistence", "rdb_bgsave_in_progress")
                .as_deref()
                == Some("1")
    });
    let ids = replica_client_ids(&m);
    // The rdb channel is the second connection made.
    let victim = if rdb_channel { ids[1] } else { ids[0] };
    m.must(&["CLIENT", "KILL", "ID", &victim.to_string()]);
    support::wait_for("the link error", Duration::from_secs(30), || {
        h.status.link_errors.load(Ordering::Relaxed) >= 1
    });
    assert!(
        !h.status.ready.load(Ordering::Relaxed),
        "{name}: not ready before a whole sync"
    );
    m.must(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    support::wait_for("synced after the retry", Duration::from_secs(60), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    stop.store(true, Ordering::Relaxed);
    w.join().expect("writer");
    m.must(&["SET", "after", "1"]);
    assert_in_sync(&m, &h, &bin, &format!("{name}: rdb_channel={rdb_channel}"));
    let s = &h.status;
    assert_eq!(s.dual_channel_syncs.load(Ordering::Relaxed), 1, "{name}");
    assert_eq!(
        s.full_syncs.load(Ordering::Relaxed),
        1,
        "{name}: one completed"
    );
    h.stop();
    t.join().expect("replica thread");
}

#[test]
fn dual_channel_rdb_channel_lost_valkey_9_1() {
    a_channel_lost_mid_transfer("valkey-9.1", true);
}

#[test]
fn dual_channel_main_channel_lost_valkey_9_1() {
    a_channel_lost_mid_transfer("valkey-9.1", false);
}

#[test]
fn dual_channel_rdb_channel_lost_redis_8_6() {
    a_channel_lost_mid_transfer("redis-8.6", true);
}

#[test]
fn dual_channel_main_channel_lost_redis_8_6() {
    a_channel_lost_mid_transfer("redis-8.6", false);
}
