//! Differential test of the apply layer: a seeded workload runs on a real master with our
//! replica attached; afterwards our digest must equal the master's `DEBUG DIGEST`, no full
//! resync may have been forced, and our snapshot loaded into a fresh server of that version
//! must give the same digest. On a mismatch the test names the first differing key (the
//! master's `DEBUG DIGEST-VALUE` against ours) and the commands that touched it.
//!
//! `DIFF_SEEDS` (default 20) and `DIFF_COMMANDS` (default 20 000) scale it up for long runs.
//! `DIFF_BIG_SEEDS` (default 1) more seeds run the big-collection workload (gen_big.rs).
//! On a big sorted set that differs, the differing pairs and the commands that named the key
//! and its first differing member are shown; `DIFF_DUMP_CMDS=FILE` writes those commands
//! (RESP) to FILE, to replay them against a server and its own replica.

mod support;

#[path = "differential/diagnose.rs"]
mod diagnose;
#[path = "differential/gen.rs"]
mod gen;
#[path = "differential/gen_big.rs"]
mod gen_big;
#[path = "differential/gen_more.rs"]
mod gen_more;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diagnose::{diagnose, step, touched};
use replisnap::keyspace::{digest_snapshot_as_held, write_snapshot};
use replisnap::rdb::writer::{Target, WriteOptions};
use replisnap::replication::{Replica, Settings};
use support::{encode_command, read_reply, wait_for, ServerBin, TestServer};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn target(bin: &ServerBin) -> String {
    let (a, b) = bin.major_minor();
    format!("{}-{a}.{b}", bin.kind)
}

/// Send the commands pipelined, in batches; replies (errors included) are read and dropped.
fn run_pipelined(port: u16, cmds: &[Vec<Vec<u8>>]) -> std::io::Result<()> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    let mut r = BufReader::new(s.try_clone()?);
    for batch in cmds.chunks(500) {
        let mut out = Vec::new();
        for c in batch {
            let args: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
            out.extend(encode_command(&args));
        }
        s.write_all(&out)?;
        for _ in batch {
            read_reply(&mut r)?;
        }
    }
    Ok(())
}

fn offset(m: &TestServer) -> i64 {
    m.info_field("replication", "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

/// A reply as text for messages.
fn show(r: &support::Reply) -> String {
    match r.as_bytes() {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => format!("{r:?}"),
    }
}

/// The stream metadata XINFO STREAM reports (the fields that describe the whole stream).
/// `read_counter`: compare the groups' entries-read (Redis before 7.4 do not propagate the
/// counter an XREADGROUP moves, so no replica of theirs can hold it: redis#12898).
fn stream_info(s: &TestServer, key: &[u8], read_counter: bool) -> Vec<(String, String)> {
    let r = s.cmd(&[b"XINFO", b"STREAM", key]).unwrap();
    let a = r.as_array().unwrap();
    let wanted = [
        "length",
        "last-generated-id",
        "max-deleted-entry-id",
        "entries-added",
        "recorded-first-entry-id",
    ];
    let mut out: Vec<(String, String)> = a
        .chunks(2)
        .filter_map(|p| {
            let name = p[0].as_string()?;
            wanted.contains(&name.as_str()).then(|| (name, show(&p[1])))
        })
        .collect();
    // Consumer groups: position, read counter and the pending list (ID, owner, delivery
    // count). Idle times and consumers without pending entries are left out: a replica
    // takes those times from its own clock, and a consumer an XREADGROUP made without
    // reading anything is never propagated (real replicas lack it too).
    let groups = s.cmd(&[b"XINFO", b"GROUPS", key]).unwrap();
    for g in groups.as_array().unwrap() {
        let g = g.as_array().unwrap();
        let mut gname = Vec::new();
        for p in g.chunks(2) {
            let field = p[0].as_string().unwrap_or_default();
            if field == "name" {
                gname = p[1].as_bytes().unwrap().to_vec();
            }
            let wanted = ["name", "last-delivered-id", "pending"].contains(&field.as_str())
                || (read_counter && field == "entries-read");
            if wanted {
                out.push((
                    format!("group {} {field}", String::from_utf8_lossy(&gname)),
                    show(&p[1]),
                ));
            }
        }
        let pending = s
            .cmd(&[b"XPENDING", key, &gname, b"-", b"+", b"100000"])
            .unwrap();
        for e in pending.as_array().unwrap() {
            let e = e.as_array().unwrap();
            out.push((
                format!("pending in {}", String::from_utf8_lossy(&gname)),
                format!("{} {} count {}", show(&e[0]), show(&e[1]), show(&e[3])),
            ));
        }
    }
    out
}

/// The master's libraries' code, sorted.
fn function_codes(m: &TestServer) -> Vec<Vec<u8>> {
    let r = m.must(&["FUNCTION", "LIST", "WITHCODE"]);
    let mut out = Vec::new();
    for lib in r.as_array().unwrap_or(&[]) {
        let fields = lib.as_array().unwrap();
        for pair in fields.chunks(2) {
            if pair[0].as_string().as_deref() == Some("library_code") {
                out.push(pair[1].as_bytes().unwrap().to_vec());
            }
        }
    }
    out.sort();
    out
}

fn check(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let seeds = env("DIFF_SEEDS", 20);
    let n = env("DIFF_COMMANDS", 20_000) as usize;
    let mut seeds_with_functions = 0;
    let mut streams_compared = 0;
    // DIFF_SEED_FROM / DIFF_PREFIX narrow a failure down: start at a seed, cut its workload.
    let big_seeds = env("DIFF_BIG_SEEDS", 1);
    for seed in env("DIFF_SEED_FROM", 1)..=seeds + big_seeds {
        // Seeds past DIFF_SEEDS grow a few collections past 100 k members.
        let big = seed > seeds;
        let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
        let (r, h) = Replica::new(Settings {
            address: m.addr(),
            username: None,
            password: None,
            announce_port: 6394,
            psync_command: "PSYNC".into(),
            connect_timeout: Duration::from_secs(5),
            tls: None,
        });
        let t = std::thread::spawn(move || r.run());
        // DIFF_REAL_REPLICA=1: a replica of the same server beside ours, to tell our
        // mistakes from what the server's own replication cannot carry.
        let real = (env("DIFF_REAL_REPLICA", 0) == 1).then(|| {
            let port = m.port().to_string();
            TestServer::start(&bin, &["--replicaof", "127.0.0.1", &port]).expect("real replica")
        });
        wait_for("first sync", Duration::from_secs(20), || {
            h.status.ready.load(Ordering::Relaxed)
        });
        let mut rng = gen::Rng(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x1000_0000_01b3));
        let (major, minor) = bin.major_minor();
        let caps = gen_more::Caps {
            major,
            minor,
            valkey: bin.is_valkey(),
        };
        // HSETEX came with Redis 8.0 and Valkey 9.0 (Redis 7.4 has field TTLs without it).
        let field_ttl = if bin.is_valkey() {
            major >= 9
        } else {
            major >= 8
        };
        let mut cmds = Vec::with_capacity(n);
        if big {
            let size = env("DIFF_BIG_MEMBERS", 110_000);
            cmds = gen_big::workload(&mut rng, caps, field_ttl, size, n);
        }
        while cmds.len() < n {
            if rng.below(30) == 0 {
                // A transaction of a few commands.
                cmds.push(vec![b"MULTI".to_vec()]);
                for _ in 0..2 + rng.below(4) {
                    cmds.push(gen::command(&mut rng, caps, field_ttl));
                }
                cmds.push(vec![b"EXEC".to_vec()]);
            } else {
                cmds.push(gen::command(&mut rng, caps, field_ttl));
            }
        }
        cmds.truncate(env("DIFF_PREFIX", u64::MAX) as usize);
        let open = cmds
            .iter()
            .rev()
            .find(|c| c[0] == b"MULTI" || c[0] == b"EXEC");
        if open.is_some_and(|c| c[0] == b"MULTI") {
            cmds.push(vec![b"EXEC".to_vec()]);
        }
        // DIFF_STEP=1: one command at a time on one connection; after each one outside
        // MULTI, every argument that names a key is compared (DEBUG DIGEST-VALUE against
        // ours), to find the first command we apply differently.
        if env("DIFF_STEP", 0) == 1 {
            step(&m, &h, &bin, &cmds, name, seed);
        }
        if let Err(e) = run_pipelined(m.port(), &cmds) {
            let log = m.log();
            let crash: Vec<&str> = log
                .lines()
                .filter(|l| {
                    l.contains("crashed by signal")
                        || l.contains("argv[")
                        || l.contains("cmd=")
                        || l.contains("ASSERTION")
                        || l.contains("Guru")
                })
                .take(20)
                .collect();
            panic!(
                "{name} seed {seed}: the master dropped the workload ({e}); from its log:\n{}",
                crash.join("\n")
            );
        }
        let caught_up = support::wait_until(Duration::from_secs(60), || {
            h.status.offset.load(Ordering::Relaxed) == offset(&m)
        });
        if !caught_up {
            let file = m.save();
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_replisnap"))
                .arg("inspect")
                .arg(&file)
                .output()
                .unwrap();
            let log = m.log();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            eprintln!(
                "master log tail:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            eprintln!(
                "the master's own RDB through `replisnap inspect`: {}{}",
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .last()
                    .unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            caught_up,
            "{name} seed {seed}: replica not caught up: ours {} master {}, link up {}, full syncs {}, forced {} ({})",
            h.status.offset.load(Ordering::Relaxed),
            offset(&m),
            h.status.link_up.load(Ordering::Relaxed),
            h.status.full_syncs.load(Ordering::Relaxed),
            h.status.forced_resyncs.load(Ordering::Relaxed),
            h.status.last_forced_reason.lock().unwrap()
        );
        if let Ok(k) = std::env::var("DIFF_DUMP_KEY") {
            let (snap, _, _, _) = h.snapshot(Duration::from_secs(5)).expect("snapshot");
            snap.walk(|db, e| {
                if e.key() == k.as_bytes() {
                    let v = e.decode();
                    eprintln!("ours: db {db} {k}: {v:?}");
                }
            });
        }
        let forced = h.status.forced_resyncs.load(Ordering::Relaxed);
        let (snap, _, _, _) = h.snapshot(Duration::from_secs(5)).expect("snapshot");
        let ours = digest_snapshot_as_held(snap, target(&bin).parse().unwrap(), now_ms()).unwrap();
        let theirs = m.digest();
        if forced != 0 || ours != theirs {
            let why = diagnose(&m, &h, &bin, &cmds);
            let reason = h.status.last_forced_reason.lock().unwrap().clone();
            panic!("{name} seed {seed}: forced resyncs {forced} ({reason}), digest ours {ours} master {theirs}\n{why}");
        }
        // Function libraries are not in DEBUG DIGEST: compare them directly.
        if bin.major_minor().0 >= 7 {
            let (_, _, _, ours) = h.snapshot(Duration::from_secs(5)).expect("snapshot");
            let mut ours: Vec<Vec<u8>> = ours;
            ours.sort();
            assert_eq!(
                ours,
                function_codes(&m),
                "{name} seed {seed}: function libraries"
            );
            seeds_with_functions += usize::from(!ours.is_empty());
        }
        // Our snapshot, written for this server and loaded by a fresh one, has the digest too.
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("snap.rdb");
        let (snap, _, _, functions) = h.snapshot(Duration::from_secs(5)).expect("snapshot");
        let t_target = Target::for_server(target(&bin).parse().unwrap()).unwrap();
        write_snapshot(
            snap,
            &functions,
            std::fs::File::create(&file).unwrap(),
            t_target,
            &[],
            WriteOptions::default(),
        )
        .unwrap();
        let loaded =
            TestServer::start_with_rdb(&bin, &file, &[]).expect("fresh server loads our snapshot");
        // A file cannot hold everything a running server does (a sorted set that shrank
        // below the listpack thresholds is rebuilt compact on load, and loses -0 scores
        // there), so the oracle is the master after a round trip through its own RDB.
        m.must(&["DEBUG", "RELOAD"]);
        assert_eq!(
            loaded.digest(),
            m.digest(),
            "{name} seed {seed}: our snapshot loaded into a fresh server vs the master reloaded"
        );
        // Stream metadata is not in DEBUG DIGEST: compare what XINFO STREAM says.
        for db in ["0", "1", "3"] {
            m.must(&["SELECT", db]);
            loaded.must(&["SELECT", db]);
            let keys = m.must(&["KEYS", "*"]);
            for k in keys.as_array().unwrap() {
                let k = k.as_bytes().unwrap();
                if m.cmd(&[b"TYPE", k]).unwrap().as_string().as_deref() != Some("stream") {
                    continue;
                }
                streams_compared += 1;
                let read_counter = bin.is_valkey() || bin.major_minor() >= (7, 4);
                let (a, b) = (
                    stream_info(&m, k, read_counter),
                    stream_info(&loaded, k, read_counter),
                );
                if a != b {
                    if let Some(real) = &real {
                        wait_for("real replica caught up", Duration::from_secs(30), || {
                            real.info_field("replication", "slave_repl_offset")
                                .and_then(|v| v.parse::<i64>().ok())
                                == Some(offset(&m))
                        });
                        real.must(&["SELECT", db]);
                        let c = stream_info(real, k, read_counter);
                        eprintln!(
                            "the server's own replica {} the master",
                            if c == a {
                                "agrees with"
                            } else {
                                "differs from"
                            }
                        );
                    }
                    let only = |x: &[(String, String)], y: &[(String, String)]| {
                        x.iter()
                            .filter(|e| !y.contains(e))
                            .map(|(f, v)| format!("{f} {v}"))
                            .collect::<Vec<_>>()
                            .join("\n    ")
                    };
                    panic!(
                        "{name} seed {seed}: XINFO of stream {:?} in db {db} differs\n  master only:\n    {}\n  ours only:\n    {}\n  last commands that named it:\n  {}",
                        String::from_utf8_lossy(k),
                        only(&a, &b),
                        only(&b, &a),
                        touched(&cmds, k, 25)
                    );
                }
            }
        }
        h.stop();
        t.join().unwrap();
    }
    if seeds >= 10 {
        assert!(
            streams_compared > 0,
            "{name}: the workload never left a stream to compare"
        );
    }
    if bin.major_minor().0 >= 7 && seeds >= 10 {
        assert!(
            seeds_with_functions > 0,
            "{name}: the workload never left a function library to compare"
        );
    }
}

#[test]
fn redis_6_2() {
    check("redis-6.2");
}
#[test]
fn redis_7_0() {
    check("redis-7.0");
}
#[test]
fn redis_8_2() {
    check("redis-8.2");
}
#[test]
fn redis_8_6() {
    check("redis-8.6");
}
#[test]
fn valkey_8_1() {
    check("valkey-8.1");
}
#[test]
fn valkey_9_1() {
    check("valkey-9.1");
}
