//! Hostile and broken masters, played by a test TCP server: garbage replies, absurd
//! lengths, truncated payloads, wrong EOF marks, stalls, garbage in the stream, unknown
//! commands. The replica must never panic, never keep half a dataset, log the cause and
//! reconnect, resuming with PSYNC where its data allows and asking for a full sync when not.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use replisnap::rdb::value::Value;
use replisnap::rdb::writer::{KeyRecord, RdbWriter, Target, WriteOptions};
use replisnap::replication::{Replica, ReplicaHandle, Settings};
use replisnap::resp::{parse_command, Limits, Parsed};

const REPLID: &str = "0123456789abcdef0123456789abcdef01234567";

/// A small valid RDB holding `n` string keys.
fn rdb(n: usize) -> Vec<u8> {
    let t = Target::for_server("redis-7.0".parse().unwrap()).unwrap();
    let mut w = RdbWriter::new(Vec::new(), t, WriteOptions::default()).unwrap();
    w.select_db(0).unwrap();
    for i in 0..n {
        let v = Value::String(format!("v{i}").into_bytes());
        w.key(&KeyRecord {
            key: format!("k{i}").as_bytes(),
            value: &v,
            expire_ms: None,
            idle: None,
            freq: None,
            meta: &[],
            source_type: None,
        })
        .unwrap();
    }
    w.finish().unwrap().0
}

/// Read one command from the replica.
fn read_cmd(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<String>> {
    loop {
        if let Ok(Parsed::Done(args, used)) = parse_command(buf, &Limits::default()) {
            buf.drain(..used);
            return Some(
                args.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
            );
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Answer the handshake up to PSYNC; returns the PSYNC arguments.
fn handshake(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<String>> {
    loop {
        let c = read_cmd(s, buf)?;
        match c[0].to_ascii_uppercase().as_str() {
            "PING" => s.write_all(b"+PONG\r\n").ok()?,
            "REPLCONF" => s.write_all(b"+OK\r\n").ok()?,
            "PSYNC" => return Some(c),
            _ => s.write_all(b"-ERR unexpected\r\n").ok()?,
        }
    }
}

type Script = Box<dyn Fn(usize, &mut TcpStream, &mut Vec<u8>, Vec<String>) + Send + Sync>;

/// A fake master: each connection runs `script(connection number, stream, buffer, psync args)`.
struct Fake {
    addr: String,
    psyncs: Arc<Mutex<Vec<Vec<String>>>>,
}

fn fake(script: Script) -> Fake {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let psyncs = Arc::new(Mutex::new(Vec::new()));
    let seen = psyncs.clone();
    std::thread::spawn(move || {
        for (n, conn) in l.incoming().enumerate() {
            let Ok(mut s) = conn else { continue };
            let mut buf = Vec::new();
            if let Some(p) = handshake(&mut s, &mut buf) {
                seen.lock().unwrap().push(p.clone());
                script(n, &mut s, &mut buf, p);
            }
        }
    });
    Fake { addr, psyncs }
}

fn replica(addr: &str) -> (ReplicaHandle, std::thread::JoinHandle<()>) {
    replica_with(addr, Limits::default())
}

fn replica_with(addr: &str, limits: Limits) -> (ReplicaHandle, std::thread::JoinHandle<()>) {
    let (mut r, h) = Replica::new(Settings {
        address: addr.to_string(),
        username: None,
        password: None,
        announce_port: 1,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_millis(800),
        tls: None,
    });
    r.set_limits(limits);
    (h, std::thread::spawn(move || r.run()))
}

fn wait_for(what: &str, f: impl FnMut() -> bool) {
    support::wait_for(what, Duration::from_secs(20), f);
}

fn full_resync(s: &mut TcpStream, payload: &[u8]) {
    let _ =
        s.write_all(format!("+FULLRESYNC {REPLID} 100\r\n\n\n${}\r\n", payload.len()).as_bytes());
    let _ = s.write_all(payload);
}

/// The replica survives `script` for a few connections: it keeps reconnecting, never
/// becomes ready on broken data, and its thread stops cleanly.
fn survives(script: Script, connections: usize) -> (Fake, ReplicaHandle) {
    let f = fake(script);
    let (h, t) = replica(&f.addr);
    wait_for("reconnections", || {
        f.psyncs.lock().unwrap().len() >= connections
    });
    h.stop();
    t.join().expect("the replica thread must not panic");
    (f, h)
}

#[test]
fn garbage_psync_reply() {
    let (_, h) = survives(
        Box::new(|_, s, _, _| {
            let _ = s.write_all(b"+WHATEVER 42\r\n");
        }),
        3,
    );
    assert!(!h.status.ready.load(Ordering::Relaxed));
    assert!(h.status.link_errors.load(Ordering::Relaxed) >= 2);
}

#[test]
fn absurd_bulk_length_then_close() {
    let (_, h) = survives(
        Box::new(|_, s, _, _| {
            let _ = s.write_all(
                format!("+FULLRESYNC {REPLID} 0\r\n$99999999999999\r\nREDIS0010").as_bytes(),
            );
        }),
        3,
    );
    assert!(
        !h.status.ready.load(Ordering::Relaxed),
        "no dataset from a broken payload"
    );
}

#[test]
fn truncated_payload() {
    let good = rdb(50);
    let (_, h) = survives(
        Box::new(move |_, s, _, _| {
            let _ =
                s.write_all(format!("+FULLRESYNC {REPLID} 0\r\n${}\r\n", good.len()).as_bytes());
            let _ = s.write_all(&good[..good.len() / 2]);
        }),
        3,
    );
    assert!(!h.status.ready.load(Ordering::Relaxed));
    assert_eq!(h.status.full_syncs.load(Ordering::Relaxed), 0);
}

#[test]
fn wrong_diskless_eof_mark() {
    let good = rdb(5);
    let (_, h) = survives(
        Box::new(move |_, s, _, _| {
            let mark = "m".repeat(40);
            let _ = s.write_all(format!("+FULLRESYNC {REPLID} 0\r\n$EOF:{mark}\r\n").as_bytes());
            let _ = s.write_all(&good);
            let _ = s.write_all("x".repeat(40).as_bytes());
        }),
        3,
    );
    assert!(!h.status.ready.load(Ordering::Relaxed));
}

#[test]
fn corrupt_payload_checksum() {
    let mut bad = rdb(20);
    let n = bad.len();
    bad[n - 1] ^= 0x55;
    let (_, h) = survives(Box::new(move |_, s, _, _| full_resync(s, &bad)), 3);
    assert!(
        !h.status.ready.load(Ordering::Relaxed),
        "a bad checksum is not a dataset"
    );
}

#[test]
fn a_stalled_master_times_out() {
    let (_, h) = survives(
        Box::new(|_, _, _, _| std::thread::sleep(Duration::from_secs(3))),
        2,
    );
    assert!(h.status.link_errors.load(Ordering::Relaxed) >= 1);
}

#[test]
fn not_ready_masters_are_retried() {
    let (f, _) = survives(
        Box::new(|_, s, _, _| {
            let _ = s.write_all(b"-LOADING Redis is loading the dataset in memory\r\n");
        }),
        3,
    );
    assert!(f.psyncs.lock().unwrap().iter().all(|p| p[1] == "?"));
}

/// After a good sync, garbage in the stream drops the link; the replica resumes with
/// PSYNC from its offset. An unknown command forces a full resync instead.
#[test]
fn stream_garbage_resumes_and_unknown_commands_resync() {
    let good = rdb(10);
    let f = fake(Box::new(move |n, s, _, _| {
        match n {
            0 => {
                full_resync(s, &good);
                // "*1\r\n$4\r\nPING\r\n" is 14 bytes, then garbage.
                let _ = s.write_all(b"*1\r\n$4\r\nPING\r\n!garbage\r\n");
            }
            1 => {
                let _ = s.write_all(b"+CONTINUE\r\n*2\r\n$9\r\nNOSUCHCMD\r\n$1\r\nx\r\n");
            }
            _ => {
                full_resync(s, &good);
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }));
    let (h, t) = replica(&f.addr);
    wait_for("three connections", || f.psyncs.lock().unwrap().len() >= 3);
    h.stop();
    t.join().expect("no panic");
    let p = f.psyncs.lock().unwrap().clone();
    assert_eq!(p[0][1..], ["?", "-1"]);
    assert_eq!(
        p[1][1..],
        [REPLID, "115"],
        "resume after the 14-byte PING at offset 100 (+1)"
    );
    assert_eq!(
        p[2][1..],
        ["?", "-1"],
        "an unknown command forces a full resync"
    );
    assert_eq!(h.status.forced_resyncs.load(Ordering::Relaxed), 1);
    assert_eq!(h.status.full_syncs.load(Ordering::Relaxed), 2);
    assert_eq!(h.status.partial_syncs.load(Ordering::Relaxed), 1);
}

#[test]
fn a_huge_multibulk_in_the_stream_is_refused_without_allocating_it() {
    let good = rdb(3);
    let (_, h) = survives(
        Box::new(move |_, s, _, _| {
            full_resync(s, &good);
            let _ = s.write_all(b"*2000000000\r\n");
            std::thread::sleep(Duration::from_millis(300));
        }),
        2,
    );
    assert!(h.status.link_errors.load(Ordering::Relaxed) >= 1);
}

/// A master that refuses PSYNC with an error gets the old SYNC, whose payload follows
/// with no +FULLRESYNC; with no replication ID, the next attach asks for a full sync.
#[test]
fn psync_refused_falls_back_to_sync() {
    let good = rdb(7);
    let seen_sync = Arc::new(Mutex::new(0));
    let seen = seen_sync.clone();
    let f = fake(Box::new(move |_, s, buf, _| {
        let _ = s.write_all(b"-ERR unknown command 'PSYNC'\r\n");
        if let Some(c) = read_cmd(s, buf) {
            if c[0].eq_ignore_ascii_case("SYNC") {
                *seen.lock().unwrap() += 1;
                let _ = s.write_all(format!("${}\r\n", good.len()).as_bytes());
                let _ = s.write_all(&good);
                let _ = s.write_all(b"*1\r\n$4\r\nPING\r\n");
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }));
    let (h, t) = replica(&f.addr);
    // The master's side counts a SYNC when it asks; the replica counts a full sync once
    // its payload is loaded, a moment later: wait for both.
    wait_for("two SYNCs loaded", || {
        *seen_sync.lock().unwrap() >= 2 && h.status.full_syncs.load(Ordering::Relaxed) >= 2
    });
    h.stop();
    t.join().expect("no panic");
    assert!(h.status.full_syncs.load(Ordering::Relaxed) >= 2);
    assert!(
        f.psyncs.lock().unwrap().iter().all(|p| p[1] == "?"),
        "no resume without a replication ID"
    );
}

/// A provider's renamed PSYNC (ElastiCache) is used as configured.
#[test]
fn renamed_psync_command() {
    let good = rdb(2);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = Vec::new();
        while let Some(c) = read_cmd(&mut s, &mut buf) {
            match c[0].as_str() {
                "PING" => s.write_all(b"+PONG\r\n").unwrap(),
                "REPLCONF" => s.write_all(b"+OK\r\n").unwrap(),
                _ => {
                    *g.lock().unwrap() = Some(c.clone());
                    full_resync(&mut s, &good);
                    std::thread::sleep(Duration::from_millis(500));
                    return;
                }
            }
        }
    });
    let (r, h) = Replica::new(Settings {
        address: addr,
        username: None,
        password: None,
        announce_port: 1,
        psync_command: "xhma21xfkssync".into(),
        connect_timeout: Duration::from_secs(2),
        tls: None,
    });
    let t = std::thread::spawn(move || r.run());
    wait_for("a sync", || h.status.ready.load(Ordering::Relaxed));
    h.stop();
    t.join().unwrap();
    assert_eq!(
        got.lock().unwrap().clone().unwrap(),
        ["xhma21xfkssync", "?", "-1"]
    );
}

/// A command past `max_command_bytes` would drop every partial resync on the same bytes:
/// it forces a full resync instead, once, with the reason kept.
#[test]
fn a_command_over_the_cap_forces_a_full_resync() {
    let good = rdb(3);
    let f = fake(Box::new(move |n, s, _, _| {
        full_resync(s, &good);
        if n == 0 {
            let big = vec![b'x'; 2 << 20];
            let mut c = Vec::new();
            replisnap::resp::encode_command(&[b"SET", b"k", &big], &mut c);
            let _ = s.write_all(&c);
        }
        std::thread::sleep(Duration::from_millis(300));
    }));
    let (h, t) = replica_with(
        &f.addr,
        Limits {
            max_command_bytes: 1 << 20,
            ..Limits::default()
        },
    );
    wait_for("two connections", || f.psyncs.lock().unwrap().len() >= 2);
    wait_for("ready again", || h.status.ready.load(Ordering::Relaxed));
    h.stop();
    t.join().expect("no panic");
    let p = f.psyncs.lock().unwrap().clone();
    assert_eq!(
        p[1][1..],
        ["?", "-1"],
        "a full resync, not a PSYNC of the same bytes"
    );
    assert_eq!(h.status.forced_resyncs.load(Ordering::Relaxed), 1);
    let why = h.status.last_forced_reason.lock().unwrap().clone();
    assert!(why.contains("command bytes"), "{why}");
}

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

fn digest_of(h: &ReplicaHandle) -> String {
    let (snap, _, _, _) = h.snapshot(Duration::from_secs(5)).expect("capture");
    replisnap::keyspace::digest_snapshot(snap, "redis-7.0".parse().unwrap(), 0).unwrap()
}

/// The digest after a full sync of nothing and then `bytes` of stream.
fn digest_after(bytes: Vec<u8>) -> String {
    let len = bytes.len() as i64;
    let f = fake(Box::new(move |_, s, _, _| {
        full_resync(s, &rdb(0));
        let _ = s.write_all(&bytes);
        std::thread::sleep(Duration::from_secs(5));
    }));
    let (h, t) = replica(&f.addr);
    wait_for("the stream applied", || {
        h.status.offset.load(Ordering::Relaxed) == 100 + len
    });
    let d = digest_of(&h);
    h.stop();
    t.join().expect("no panic");
    d
}

/// The link is cut at every byte of a stream holding a transaction: the replica resumes
/// before MULTI when the cut falls inside it (the master sends it whole again, as the
/// server's replica expects), after the last whole command otherwise, and ends with every
/// write applied once; a capture taken while it is away never holds half a transaction.
#[test]
fn a_link_cut_inside_a_transaction_resumes_before_multi() {
    let parts = [
        cmd(&["SET", "a", "1"]),
        cmd(&["MULTI"]),
        cmd(&["INCR", "a"]),
        cmd(&["SET", "b", "2"]),
        cmd(&["EXEC"]),
        cmd(&["INCR", "a"]),
    ];
    let stream: Vec<u8> = parts.concat();
    let multi_at = parts[0].len();
    let exec_end = parts[..5].iter().map(Vec::len).sum::<usize>();
    // Command boundaries a resume may start from, and the states a capture may show.
    let mut bounds = vec![0usize];
    for p in &parts {
        bounds.push(bounds.last().unwrap() + p.len());
    }
    let consistent: Vec<String> = bounds
        .iter()
        .filter(|&&b| b <= multi_at || b >= exec_end)
        .map(|&b| digest_after(stream[..b].to_vec()))
        .collect();
    let whole = consistent.last().unwrap().clone();
    for cut in 1..stream.len() {
        let first = stream[..cut].to_vec();
        let all = stream.clone();
        let resumed = Arc::new(Mutex::new(None));
        let seen = resumed.clone();
        let f = fake(Box::new(move |n, s, _, psync| {
            if n == 0 {
                full_resync(s, &rdb(0));
                let _ = s.write_all(&first);
                std::thread::sleep(Duration::from_millis(50));
                return; // the link is cut here
            }
            // Offset 100 was the start of the stream; PSYNC asks for the next byte.
            let from = psync[2].parse::<usize>().unwrap() - 101;
            *seen.lock().unwrap() = Some(from);
            // Held a while, so the replica is away when the test captures.
            std::thread::sleep(Duration::from_millis(150));
            let _ = s.write_all(b"+CONTINUE\r\n");
            let _ = s.write_all(&all[from..]);
            std::thread::sleep(Duration::from_secs(5));
        }));
        let (h, t) = replica(&f.addr);
        wait_for("the link cut", || {
            h.status.link_errors.load(Ordering::Relaxed) >= 1
        });
        // While away: a capture holds none or all of the transaction.
        if let Some((snap, _, _, _)) = h.snapshot(Duration::from_millis(100)) {
            let d = replisnap::keyspace::digest_snapshot(snap, "redis-7.0".parse().unwrap(), 0)
                .unwrap();
            assert!(
                consistent.contains(&d),
                "cut at byte {cut}: a capture holds part of the transaction"
            );
        }
        wait_for("the resume", || resumed.lock().unwrap().is_some());
        let from = resumed.lock().unwrap().unwrap();
        let want = if cut > multi_at && cut < exec_end {
            multi_at
        } else {
            *bounds.iter().filter(|&&b| b <= cut).max().unwrap()
        };
        assert_eq!(from, want, "cut at byte {cut}: resumed from {from}");
        wait_for("the whole stream applied", || {
            h.status.offset.load(Ordering::Relaxed) == 100 + stream.len() as i64
        });
        assert_eq!(digest_of(&h), whole, "cut at byte {cut}: every write once");
        h.stop();
        t.join().expect("no panic");
    }
}
