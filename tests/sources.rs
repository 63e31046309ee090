//! What stock masters send on their own besides data commands must never force a resync:
//! Redis 6.2 propagates `SCRIPT LOAD` and `SCRIPT FLUSH`; scripts and functions arrive as
//! their effects. A 6.2 master set to replicate scripts verbatim (`lua-replicate-commands
//! no`) is the one case replisnap cannot follow: it says so by name.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use replisnap::replication::{Replica, Settings};
use support::replica::{assert_in_sync, offset, replica, stat};
use support::TestServer;

fn scripts_on(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    m.must(&["SET", "before", "1"]);
    let (h, t) = replica(&m.addr());
    support::wait_for("first sync", Duration::from_secs(30), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    let set_script = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('INCR', 'counter'); return 1";
    let sha = m
        .must(&["SCRIPT", "LOAD", set_script])
        .as_string()
        .expect("sha");
    m.must(&["EVALSHA", &sha, "1", "by-evalsha", "x"]);
    m.must(&["EVAL", set_script, "1", "by-eval", "y"]);
    m.must(&["EVAL", "return redis.call('GET', KEYS[1])", "1", "before"]);
    m.must(&["SCRIPT", "FLUSH"]);
    m.must(&["SCRIPT", "LOAD", "return 2"]);
    if bin.major_minor() >= (7, 0) || bin.is_valkey() {
        m.must(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=lib\nredis.register_function('setit', function(keys, args) return redis.call('SET', keys[1], args[1]) end)",
        ]);
        m.must(&["FCALL", "setit", "1", "by-fcall", "z"]);
    }
    assert_in_sync(&m, &h, &bin, &format!("{name}: after scripts"));
    assert_eq!(
        h.status.forced_resyncs.load(Ordering::Relaxed),
        0,
        "{name}: {}",
        h.status.last_forced_reason.lock().unwrap()
    );
    assert_eq!(h.status.full_syncs.load(Ordering::Relaxed), 1);
    assert_eq!(stat(&m, "sync_full"), 1, "{name}: the master forked once");
    h.stop();
    t.join().expect("replica thread");
}

#[test]
fn scripts_and_script_cache_commands_redis_6_2() {
    scripts_on("redis-6.2");
}

#[test]
fn scripts_and_script_cache_commands_redis_7_0() {
    scripts_on("redis-7.0");
}

#[test]
fn scripts_and_script_cache_commands_redis_8_2() {
    scripts_on("redis-8.2");
}

#[test]
fn scripts_and_script_cache_commands_valkey_9_1() {
    scripts_on("valkey-9.1");
}

/// Redis 6.2 can still be told to replicate scripts verbatim; replisnap applies effects
/// only, so it stops applying and says why instead of guessing.
#[test]
fn verbatim_script_replication_is_named() {
    let Some(bin) = support::require("redis-6.2") else {
        return;
    };
    let m = TestServer::start(
        &bin,
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--lua-replicate-commands",
            "no",
        ],
    )
    .expect("master");
    let (h, t) = replica(&m.addr());
    support::wait_for("first sync", Duration::from_secs(30), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    m.must(&["EVAL", "return redis.call('SET', KEYS[1], 'v')", "1", "k"]);
    support::wait_for("a forced resync", Duration::from_secs(30), || {
        h.status.forced_resyncs.load(Ordering::Relaxed) >= 1
    });
    let why = h.status.last_forced_reason.lock().unwrap().clone();
    assert!(
        why.contains("EVAL") && why.contains("lua-replicate-commands"),
        "{why}"
    );
    h.stop();
    t.join().expect("replica thread");
}

/// `psync_commands`: the name given for the address connected to wins over
/// `psync_command`; a map naming only other nodes leaves `psync_command`, and its refusal
/// names the fix.
#[test]
fn a_psync_name_per_node_address_redis_7_0() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(
        &bin,
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--rename-command",
            "PSYNC",
            "nodeapsync",
            "--rename-command",
            "SYNC",
            "",
        ],
    )
    .expect("master");
    for i in 0..200 {
        m.must(&["SET", &format!("k{i}"), "v"]);
    }
    let settings = || Settings {
        address: m.addr(),
        username: None,
        password: None,
        announce_port: 6391,
        psync_command: "nodebpsync".into(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    };
    // Only another node's name: psync_command ("nodebpsync") is sent and refused.
    let (mut r, h) = Replica::new(settings());
    r.set_psync_commands([("10.9.9.9:6379".to_string(), "nodeapsync".to_string())].into());
    let t = std::thread::spawn(move || r.run());
    support::wait_for("a refused handshake", Duration::from_secs(30), || {
        h.status.link_errors.load(Ordering::Relaxed) >= 1
    });
    let why = h.status.last_link_error.lock().unwrap().clone();
    assert!(why.contains("psync_command"), "{why}");
    assert!(!h.status.ready.load(Ordering::Relaxed));
    h.stop();
    t.join().expect("replica thread");
    // This node's name, given for its address (in other case).
    let (mut r, h) = Replica::new(settings());
    r.set_psync_commands(
        [
            ("10.9.9.9:6379".to_string(), "nodebpsync".to_string()),
            (m.addr().to_uppercase(), "nodeapsync".to_string()),
        ]
        .into(),
    );
    let t = std::thread::spawn(move || r.run());
    support::wait_for(
        "first sync through this node's name",
        Duration::from_secs(30),
        || h.status.ready.load(Ordering::Relaxed),
    );
    m.must(&["SET", "after", "1"]);
    assert_in_sync(&m, &h, &bin, "psync_commands");
    assert_eq!(h.status.link_errors.load(Ordering::Relaxed), 0);
    h.stop();
    t.join().expect("replica thread");
}

/// ElastiCache grants a renamed PSYNC per node: a master configured so is followed through
/// full sync and the live stream with `psync_command`.
#[test]
fn a_renamed_psync_redis_7_0() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    for diskless in ["yes", "no"] {
        let m = TestServer::start(
            &bin,
            &[
                "--repl-diskless-sync",
                diskless,
                "--repl-diskless-sync-delay",
                "0",
                "--rename-command",
                "PSYNC",
                "xhma21yfkssync",
            ],
        )
        .expect("master");
        for i in 0..200 {
            m.must(&["SET", &format!("k{i}"), "v"]);
        }
        let (r, h) = Replica::new(Settings {
            address: m.addr(),
            username: None,
            password: None,
            announce_port: 6391,
            psync_command: "xhma21yfkssync".into(),
            connect_timeout: Duration::from_secs(5),
            tls: None,
        });
        let t = std::thread::spawn(move || r.run());
        support::wait_for(
            &format!("first sync through the renamed PSYNC (diskless {diskless})"),
            Duration::from_secs(30),
            || h.status.ready.load(Ordering::Relaxed),
        );
        m.must(&["SET", "after", "1"]);
        assert_in_sync(&m, &h, &bin, &format!("renamed PSYNC, diskless {diskless}"));
        assert_eq!(h.status.link_errors.load(Ordering::Relaxed), 0);
        h.stop();
        t.join().expect("replica thread");
    }
}

/// Handshake refusals a user can fix say what to do, and are kept for the status.
#[test]
fn handshake_refusals_name_their_fix() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(
        &bin,
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--rename-command",
            "PSYNC",
            "renamedpsync",
        ],
    )
    .expect("master");
    m.must(&[
        "ACL",
        "SETUSER",
        "backup",
        "on",
        ">secret",
        "+ping",
        "+replconf",
    ]);
    m.must(&["ACL", "SETUSER", "default", "on", ">masterpass"]);
    let cases: [(Option<&str>, Option<&str>, &str, &str); 3] = [
        (None, None, "PSYNC", "password_file"),
        (None, Some("nope"), "PSYNC", "username/password_file"),
        (
            Some("backup"),
            Some("secret"),
            "renamedpsync",
            "ACL SETUSER",
        ),
    ];
    for (user, pass, cmd, fix) in cases {
        let (r, h) = Replica::new(Settings {
            address: m.addr(),
            username: user.map(str::to_string),
            password: pass.map(str::to_string),
            announce_port: 6391,
            psync_command: cmd.into(),
            connect_timeout: Duration::from_secs(5),
            tls: None,
        });
        let t = std::thread::spawn(move || r.run());
        support::wait_for("a refusal", Duration::from_secs(20), || {
            !h.status.last_link_error.lock().unwrap().is_empty()
        });
        let why = h.status.last_link_error.lock().unwrap().clone();
        assert!(why.contains(fix), "{user:?}/{pass:?}: {why}");
        assert!(!h.status.ready.load(Ordering::Relaxed));
        h.stop();
        t.join().expect("replica thread");
    }
}

fn failover_on(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    let port = m.port().to_string();
    let r = TestServer::start(&bin, &["--replicaof", "127.0.0.1", &port]).expect("replica");
    for i in 0..500 {
        m.must(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    let p = support::proxy::proxy(m.addr());
    let (h, t) = replica(&p.addr);
    support::wait_for("first sync", Duration::from_secs(30), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    m.must(&["RPUSH", "list", "a", "b"]);
    assert_in_sync(&m, &h, &bin, &format!("{name}: before the failover"));
    support::wait_for(
        "the server replica caught up",
        Duration::from_secs(30),
        || offset(&r) == offset(&m),
    );
    // The failover: the replica is promoted and the name now points at it.
    r.must(&["REPLICAOF", "NO", "ONE"]);
    *p.upstream.lock().unwrap() = r.addr();
    p.cut();
    drop(m);
    r.must(&["SET", "after-failover", "1"]);
    r.must(&["LPUSH", "list", "z"]);
    assert_in_sync(&r, &h, &bin, &format!("{name}: after the failover"));
    assert_eq!(
        stat(&r, "sync_full"),
        0,
        "{name}: the new primary never forked"
    );
    assert_eq!(
        stat(&r, "sync_partial_ok"),
        1,
        "{name}: continued with +CONTINUE"
    );
    assert_eq!(h.status.full_syncs.load(Ordering::Relaxed), 1);
    assert_eq!(h.status.partial_syncs.load(Ordering::Relaxed), 1);
    let replid = h.status.replid.lock().unwrap().clone();
    assert_eq!(
        Some(replid),
        r.info_field("replication", "master_replid"),
        "{name}: follows the new primary's replication ID"
    );
    h.stop();
    t.join().expect("replica thread");
}

/// A promoted replica continues us: psync2 keeps the old replication ID as its replid2, so
/// the PSYNC sent after the failover is answered `+CONTINUE <new id>` — no full sync, and
/// the new primary never forks.
#[test]
fn failover_to_a_promoted_replica_redis_7_0() {
    failover_on("redis-7.0");
}

#[test]
fn failover_to_a_promoted_replica_valkey_9_1() {
    failover_on("valkey-9.1");
}

#[test]
fn failover_to_a_promoted_replica_redis_6_2() {
    failover_on("redis-6.2");
}

/// A sentinel process on a free port, monitoring `master` as "mymaster" (quorum 1).
struct Sentinel {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sentinel(bin: &support::ServerBin, master: &TestServer) -> Sentinel {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} 1\nsentinel down-after-milliseconds mymaster 2000\nsentinel failover-timeout mymaster 10000\n",
            dir.path().display(),
            master.port()
        ),
    )
    .unwrap();
    let child = std::process::Command::new(&bin.path)
        .arg(&conf)
        .arg("--sentinel")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the sentinel");
    Sentinel {
        child,
        port,
        _dir: dir,
    }
}

fn sentinel_cmd(port: u16, args: &[&str]) -> String {
    let cli = support::servers_dir().join("bin").join("redis-cli");
    let out = std::process::Command::new(cli)
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sentinel_failover_on(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    let port = m.port().to_string();
    let r = TestServer::start(&bin, &["--replicaof", "127.0.0.1", &port]).expect("replica");
    for i in 0..300 {
        m.must(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    let s = sentinel(&bin, &m);
    support::wait_for(
        "the sentinel knows the replica",
        Duration::from_secs(30),
        || {
            sentinel_cmd(s.port, &["SENTINEL", "replicas", "mymaster"])
                .contains(&r.port().to_string())
        },
    );
    let (mut rep, h) = Replica::new(Settings {
        address: String::new(),
        username: None,
        password: None,
        announce_port: 6391,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    });
    rep.set_sentinel(replisnap::replication::sentinel::SentinelSettings {
        // The first sentinel is down: the next one answers.
        addresses: vec!["127.0.0.1:1".into(), format!("127.0.0.1:{}", s.port)],
        master_name: "mymaster".into(),
        username: None,
        password: None,
        tls: None,
        timeout: Duration::from_secs(2),
    });
    let t = std::thread::spawn(move || rep.run());
    support::wait_for("first sync", Duration::from_secs(30), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    assert_eq!(*h.status.master_address.lock().unwrap(), m.addr());
    m.must(&["SET", "before", "1"]);
    assert_in_sync(&m, &h, &bin, &format!("{name}: before the failover"));
    support::wait_for(
        "the server replica caught up",
        Duration::from_secs(30),
        || offset(&r) == offset(&m),
    );
    let answer = sentinel_cmd(s.port, &["SENTINEL", "FAILOVER", "mymaster"]);
    assert!(answer.contains("OK"), "SENTINEL FAILOVER: {answer}");
    // The promotion kills normal clients (the test's connection too): ask on new ones.
    support::wait_for("the replica promoted", Duration::from_secs(30), || {
        r.cmd_str(&["INFO", "replication"])
            .ok()
            .and_then(|i| i.as_string())
            .is_some_and(|i| i.contains("role:master"))
    });
    r.must(&["SET", "after-failover", "1"]);
    support::wait_for(
        "replisnap on the new master",
        Duration::from_secs(30),
        || *h.status.master_address.lock().unwrap() == r.addr(),
    );
    assert_in_sync(&r, &h, &bin, &format!("{name}: after the failover"));
    // Sentinel promotes without pausing the old master: its own hello PUBLISHes and the
    // master's PINGs reach the old master's replicas after the promotion point, so a
    // replica that was there (replisnap, and the old master itself, as its log shows)
    // cannot continue that history: one resync, full or partial, as a server replica.
    let syncs = h.status.full_syncs.load(Ordering::Relaxed)
        + h.status.partial_syncs.load(Ordering::Relaxed);
    assert_eq!(syncs, 2, "{name}: one resync after the failover");
    h.stop();
    t.join().expect("replica thread");
}

/// `[source] sentinels`: the master is asked of Sentinel before every connection (the first
/// sentinel listed is down, the second answers); after `SENTINEL FAILOVER` the demoted
/// master drops its replicas and replisnap follows the promoted one, digest equal. (A
/// clean promotion continues with a partial resync: `failover_to_a_promoted_replica_*`.)
#[test]
fn sentinel_failover_redis_7_0() {
    sentinel_failover_on("redis-7.0");
}

#[test]
fn sentinel_failover_valkey_9_1() {
    sentinel_failover_on("valkey-9.1");
}
