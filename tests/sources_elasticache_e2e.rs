//! An ElastiCache-like master in one piece, against the real `replisnap run` binary: a real
//! server with `rename-command PSYNC <secret>`, `SYNC`, `SAVE`, `BGSAVE`, `REPLICAOF` and
//! `SLAVEOF` renamed to "" (gone), `CONFIG` and `DEBUG` renamed to secret names (gone for
//! everyone but this test, which needs `DEBUG DIGEST` and sets `requirepass`), TLS only
//! towards replisnap, an AUTH token (`requirepass`) or an RBAC user (an ACL user allowed
//! `+psync +replconf +ping +info` and nothing else), and `REPLCONF TIMESTAMP` (and an
//! unknown `REPLCONF`) put into its stream between commands.
//!
//! The link: replisnap → TLS (a front with a certificate of the test CA) → a proxy that
//! sees the plain bytes → TLS → the master's `tls-port`. The proxy in the middle is what
//! can inject between commands and record every command name replisnap sent, on every
//! connection (the replica link and the poller's). The master's plain port stays open on
//! 127.0.0.1 for the test's own control connection only. The valkey installed for the
//! tests is built without TLS: there the last hop (proxy → master) is plain TCP.
//!
//! Asserted: one full sync and no resync (our metrics, the master's `sync_full`, one
//! renamed PSYNC sent); the stored snapshot's manifest digest equal to the master's
//! `DEBUG DIGEST` (asked through the renamed name); replisnap sent nothing but `AUTH`,
//! `PING`, `REPLCONF`, the renamed PSYNC and `INFO`; the master counts no `CONFIG`/`DEBUG`
//! call but the test's own, and (RBAC) its `ACL LOG` holds no refusal of our user.
//!
//! Offsets: the injected bytes are in our offset and not in the master's (on the real
//! service the master writes TIMESTAMP itself, see `sources_elasticache.rs`).

mod daemon;
mod support;

#[path = "http/support.rs"]
#[allow(dead_code)]
mod http_support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use daemon::{poll, Setup};
use http_support::{req, sample};
use support::pki::make_pki;
use support::replica::{now_ms, offset, stat};
use support::{Conn, Reply, TestServer};

const PSYNC: &str = "xhma21yfkssync";
const DEBUG: &str = "dbg-4e1d77c0";
const CONFIG: &str = "cfg-a93b5f02";
const TOKEN: &str = "auth-token-0123456789abcdef";
const USER: &str = "replisnap";
const USER_PASS: &str = "rbac-pass-fedcba9876543210";

#[derive(Clone, Copy, Debug)]
enum Auth {
    /// `requirepass`: replisnap sends `AUTH <token>`.
    Token,
    /// An ACL user with only what replication needs; the default user has the token.
    Rbac,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn timestamp() -> Vec<u8> {
    let ms = now_ms().to_string();
    assert_eq!(ms.len(), 13);
    format!("*3\r\n$8\r\nREPLCONF\r\n$9\r\nTIMESTAMP\r\n$13\r\n{ms}\r\n").into_bytes()
}

const UNKNOWN: &[u8] = b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nFOO\r\n$3\r\nbar\r\n";

/// The master's digest through its renamed DEBUG.
fn master_digest(m: &TestServer) -> String {
    let r = m.must(&[DEBUG, "DIGEST"]);
    r.as_string()
        .unwrap_or_else(|| panic!("{DEBUG} DIGEST answered {r:?}"))
}

/// `calls=` of `cmdstat_<name>` in `INFO commandstats` (0 when absent).
fn calls(m: &TestServer, name: &str) -> u64 {
    let text = m.info("commandstats");
    text.lines()
        .filter(|l| {
            l.strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
                .is_some_and(|(n, _)| n == name || n.starts_with(&format!("{name}|")))
        })
        .filter_map(|l| {
            support::info_kv(l.split_once(':').unwrap().1, "calls")
                .and_then(|c| c.parse::<u64>().ok())
        })
        .sum()
}

/// A connection of the default user (the token).
fn authed(m: &TestServer) -> Conn {
    let mut c = m.connect().expect("connection");
    let r = c.cmd(&[b"AUTH", TOKEN.as_bytes()]).expect("AUTH");
    assert!(r.is_ok(), "AUTH: {r:?}");
    c
}

/// Sum of every sample of a labelled series (`name{…} v` lines).
fn sum_series(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

fn elasticache_like(name: &str, auth: Auth) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let pki = tempfile::tempdir().expect("temp dir");
    let d = pki.path();
    make_pki(d, "ca");
    let p = |f: &str| d.join(f).to_string_lossy().into_owned();
    // The installed valkey is built without TLS: its last hop (proxy → master) is plain;
    // replisnap's own link is TLS either way.
    let master_tls = bin.is_redis();
    let tls_port = free_port();
    let tls_port_s = tls_port.to_string();
    let (cert, key, ca) = (p("server.crt"), p("server.key"), p("ca.crt"));
    let mut args: Vec<&str> = Vec::new();
    if master_tls {
        args.extend([
            "--tls-port",
            &tls_port_s,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ]);
    }
    args.extend([
        "--repl-diskless-sync-delay",
        "0",
        "--rename-command",
        "PSYNC",
        PSYNC,
        "--rename-command",
        "SYNC",
        "",
        "--rename-command",
        "CONFIG",
        CONFIG,
        "--rename-command",
        "DEBUG",
        DEBUG,
        "--rename-command",
        "SAVE",
        "",
        "--rename-command",
        "BGSAVE",
        "",
        "--rename-command",
        "REPLICAOF",
        "",
        "--rename-command",
        "SLAVEOF",
        "",
    ]);
    let m = TestServer::start(&bin, &args).expect("ElastiCache-like master");
    // The master is what it claims to be: the usual names are gone.
    for args in [
        &["CONFIG", "GET", "port"][..],
        &["DEBUG", "DIGEST"],
        &["SAVE"],
        &["BGSAVE"],
        &["REPLICAOF", "NO", "ONE"],
        &["SLAVEOF", "NO", "ONE"],
        &["SYNC"],
        &["PSYNC", "?", "-1"],
    ] {
        match m.cmd_str(args).expect("a reply") {
            Reply::Error(e) => assert!(e.contains("unknown command"), "{args:?}: {e}"),
            r => panic!("{name}: {args:?} answered {r:?}"),
        }
    }
    // The token (requirepass, through the renamed CONFIG); this connection stays
    // authenticated.
    m.must(&[CONFIG, "SET", "requirepass", TOKEN]);
    let our_config_calls = 1;
    let mut anon = m.connect().expect("connection");
    let r = anon.cmd(&[b"PING"]).expect("PING");
    assert!(
        matches!(&r, Reply::Error(e) if e.starts_with("NOAUTH")),
        "{r:?}"
    );
    if let Auth::Rbac = auth {
        // ACL names the command by its original name; the grant covers the renamed one.
        let pass = format!(">{USER_PASS}");
        m.must(&[
            "ACL",
            "SETUSER",
            USER,
            "on",
            &pass,
            "-@all",
            "+psync",
            "+replconf",
            "+ping",
            "+info",
        ]);
    }

    // The dataset: several types in three databases.
    for db in 0..3 {
        m.must(&["SELECT", &db.to_string()]);
        for i in 0..300 {
            m.must(&["SET", &format!("s{i}"), &format!("v{i}-{db}")]);
        }
        for i in 0..20 {
            let k = format!("l{i}");
            m.must(&["RPUSH", &k, "a", "b", "c", &i.to_string()]);
            m.must(&["HSET", &format!("h{i}"), "f1", "x", "f2", &i.to_string()]);
            m.must(&["SADD", &format!("set{i}"), "m1", "m2", &i.to_string()]);
            m.must(&["ZADD", &format!("z{i}"), "1", "a", "2.5", &i.to_string()]);
        }
    }
    m.must(&["SELECT", "0"]);

    // replisnap → TLS front → watching proxy (plain) → TLS back → the master's tls-port.
    let back = if master_tls {
        support::proxy::tls_back(format!("127.0.0.1:{tls_port}"), &d.join("ca.crt"))
    } else {
        m.addr()
    };
    let px = support::proxy::proxy_tapped(back);
    px.replication_command(PSYNC);
    let front = support::proxy::tls_front(
        px.addr.clone(),
        &d.join("server.crt"),
        &d.join("server.key"),
    );

    let setup = Setup::new(&front, "0 0 0 1 1 *", "");
    setup.replica_line("checkpoint_on_shutdown = false");
    let password_file = setup.dir.path().join("password");
    let mut source = format!(
        "[source]\npsync_command = \"{PSYNC}\"\npassword_file = \"{}\"\n",
        password_file.display()
    );
    match auth {
        Auth::Token => std::fs::write(&password_file, TOKEN).expect("password file"),
        Auth::Rbac => {
            std::fs::write(&password_file, USER_PASS).expect("password file");
            source.push_str(&format!("username = \"{USER}\"\n"));
        }
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
    }
    let text = std::fs::read_to_string(setup.config()).expect("config");
    std::fs::write(setup.config(), text.replacen("[source]\n", &source, 1)).expect("config");
    setup.append_config(&format!("[source.tls]\nca_file = \"{}\"\n", p("ca.crt")));
    let http = setup.http_addr();
    let mut dmn = setup.start("daemon.log");
    let metrics = || req(http, "GET", "/metrics").body;
    assert!(
        poll(Duration::from_secs(60), || {
            dmn.assert_running();
            std::net::TcpStream::connect(http).is_ok() && req(http, "GET", "/readyz").status == 200
        }),
        "{name} {auth:?}: never ready\n{}",
        dmn.log_text()
    );

    // Injections right after the payload and between commands of a quiet stream.
    let mut queued = 0;
    for round in 0..4 {
        px.inject_between_commands(if round == 2 {
            UNKNOWN.to_vec()
        } else {
            timestamp()
        });
        queued += 1;
        m.must(&["SELECT", &(round % 3).to_string()]);
        m.must(&["SET", &format!("r{round}"), "x"]);
        m.must(&["RPUSH", "l0", &format!("e{round}")]);
        m.must(&["HSET", "h0", &format!("f{round}"), "v"]);
    }
    m.must(&["SELECT", "0"]);
    // A busy stream: a writer (as the default user) while injections are queued every 5 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut c = authed(&m);
        let stop = stop.clone();
        std::thread::spawn(move || {
            c.cmd(&[b"SELECT", b"2"]).expect("SELECT");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{}", n % 300);
                let r = match n % 4 {
                    0 => c.cmd(&[b"SET", key.as_bytes(), b"some value"]),
                    1 => c.cmd(&[b"INCR", b"counter"]),
                    2 => c.cmd(&[b"LPUSH", b"wl", key.as_bytes()]),
                    _ => c.cmd(&[b"ZINCRBY", b"wz", b"1", key.as_bytes()]),
                };
                assert!(!r.expect("write").is_error());
                n += 1;
            }
            n
        })
    };
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        px.inject_between_commands(if queued % 5 == 0 {
            UNKNOWN.to_vec()
        } else {
            timestamp()
        });
        queued += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    // This last write carries out whatever is still queued.
    m.must(&["SET", "last", "1"]);
    let unknown = (0..queued)
        .filter(|q| *q == 2 || (*q >= 4 && q % 5 == 0))
        .count() as i64;
    let expected =
        unknown * UNKNOWN.len() as i64 + (queued as i64 - unknown) * timestamp().len() as i64;
    assert!(
        poll(Duration::from_secs(10), || px
            .injected
            .load(Ordering::Relaxed)
            == expected),
        "{name}: {} injected bytes, {expected} expected ({queued} queued)",
        px.injected.load(Ordering::Relaxed)
    );
    assert!(
        queued > 50 && written > 500,
        "{name}: {queued} injections, {written} writes"
    );
    let injected = px.injected.load(Ordering::Relaxed) as f64;
    let mut last = String::new();
    assert!(
        poll(Duration::from_secs(30), || {
            let ours = sample(&metrics(), "replisnap_replication_offset_bytes").unwrap_or(-1.0);
            last = format!("ours {ours}, the master's {} + {injected}", offset(&m));
            ours == offset(&m) as f64 + injected
        }),
        "{name} {auth:?}: never caught up: {last}\n{}",
        dmn.log_text()
    );

    // The snapshot, through the real CLI, and its digest against the master's.
    let (code, out, err) = setup.verb(&["snapshot", "--wait"]);
    assert_eq!(code, 0, "{out}{err}\n{}", dmn.log_text());
    let snaps = setup.snapshots();
    assert_eq!(snaps.len(), 1);
    let digest = master_digest(&m);
    let our_debug_calls = 1;
    assert_ne!(digest, "0".repeat(40));
    assert_eq!(
        snaps[0].digest, digest,
        "{name} {auth:?}: the stored snapshot's digest"
    );

    // One full sync, no resync of any kind.
    let page = metrics();
    assert_eq!(
        sample(&page, "replisnap_full_resyncs_total"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "replisnap_partial_resyncs_total"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        sum_series(&page, "replisnap_resyncs_forced_total"),
        0.0,
        "{page}"
    );
    assert_eq!(
        sum_series(&page, "replisnap_link_errors_total"),
        0.0,
        "{page}\n{}",
        dmn.log_text()
    );
    assert_eq!(stat(&m, "sync_full"), 1, "{name}: the master forked once");
    assert_eq!(stat(&m, "sync_partial_ok"), 0);
    assert_eq!(stat(&m, "sync_partial_err"), 0);

    // What replisnap sent, on every connection it made.
    let sent = px.sent.lock().unwrap().clone();
    let psync_upper = PSYNC.to_ascii_uppercase();
    let names: BTreeSet<&str> = sent.iter().map(String::as_str).collect();
    let allowed: BTreeSet<&str> = ["AUTH", "PING", "REPLCONF", "INFO", psync_upper.as_str()]
        .into_iter()
        .collect();
    assert!(
        names.is_subset(&allowed),
        "{name} {auth:?}: replisnap sent {:?}",
        names.difference(&allowed).collect::<Vec<_>>()
    );
    for must in ["AUTH", "INFO", "REPLCONF"] {
        assert!(names.contains(must), "{name}: no {must} in {names:?}");
    }
    assert_eq!(
        sent.iter().filter(|n| **n == psync_upper).count(),
        1,
        "{name} {auth:?}: one replication command, never a second"
    );
    // The master's side: CONFIG and DEBUG only as this test called them.
    assert_eq!(
        calls(&m, "config"),
        our_config_calls,
        "{name}: CONFIG calls"
    );
    assert_eq!(calls(&m, "debug"), our_debug_calls, "{name}: DEBUG calls");
    for gone in ["save", "bgsave", "replicaof", "slaveof", "sync"] {
        assert_eq!(calls(&m, gone), 0, "{name}: {gone}");
    }
    if let Auth::Rbac = auth {
        let log = m.must(&["ACL", "LOG"]);
        assert_eq!(
            log.as_array().map(<[Reply]>::len),
            Some(0),
            "{name}: our user was refused something: {log:?}"
        );
        // The replica link really is our RBAC user's.
        let clients = m.must(&["CLIENT", "LIST"]).as_string().unwrap_or_default();
        assert!(
            clients
                .lines()
                .any(|l| l.contains(&format!("user={USER}")) && l.contains("flags=S")),
            "{name}: no replica of user {USER}:\n{clients}"
        );
    }
    eprintln!(
        "{name} {auth:?} (master TLS {master_tls}): {queued} injections ({injected} bytes), {written} busy writes, \
         digest {digest}; replisnap sent {} commands: {names:?}",
        sent.len()
    );
    let (st, log) = dmn.terminate(Duration::from_secs(30));
    assert!(st.success(), "{log}");
}

#[test]
fn elasticache_like_redis_7_0_auth_token() {
    elasticache_like("redis-7.0", Auth::Token);
}

#[test]
fn elasticache_like_redis_7_0_rbac_user() {
    elasticache_like("redis-7.0", Auth::Rbac);
}

#[test]
fn elasticache_like_valkey_9_1_rbac_user() {
    elasticache_like("valkey-9.1", Auth::Rbac);
}
