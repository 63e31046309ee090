//! Benchmark (not a test): apply throughput of a recorded replication stream of mixed
//! writes, replisnap's apply loop next to a real redis-server replica applying the very
//! same bytes, with the CPU seconds each spent.
//!
//! 1. A redis-server master (7.0 by default, `BENCH_SERVER=redis-8.2` …) is driven with a
//!    seeded mix of writes (strings with and without TTLs, counters, hashes, lists kept
//!    trimmed, sets, sorted sets, deletes, expiries) while a raw replica connection records
//!    what the master propagates.
//! 2. replisnap: the recorded bytes are parsed and applied to a fresh keyspace on this
//!    thread (one core), timed, CPU from /proc/thread-self/stat.
//! 3. redis-server: a fake master serves an empty RDB and then the recorded bytes to a real
//!    `redis-server --replicaof`; timed until its replication offset reaches the end, CPU
//!    from /proc/<pid>/stat.
//!
//! `cargo bench --bench apply` (`BENCH_COMMANDS=1000000` by default; `BENCH_MIX=big` for
//! writes into a few huge collections, held natively: see docs/decisions.md; `BENCH_MIX=stream`
//! for XADD into a few growing streams). `BENCH_STREAM_FILE=path` records the stream once and
//! reuses it; `BENCH_OURS_ONLY=1` skips the redis replica (for a profiler).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use replisnap::commands::{apply, StreamState};
use replisnap::keyspace::Keyspace;
use replisnap::resp::{parse_command, Limits, Parsed};
use support::{encode_command, read_reply, TestServer};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `BENCH_MIX=big`: the same families into a few huge collections (`BENCH_BIG_KEYS` per
/// type, default 1; members drawn from 10 M, so with `BENCH_COMMANDS=4000000` each
/// collection passes 900 k members), where a change that re-encoded a whole value cost the
/// whole collection.
fn big_command(r: &mut Rng) -> Vec<Vec<u8>> {
    let s = |x: &str| x.as_bytes().to_vec();
    let keys = std::env::var("BENCH_BIG_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1u64);
    let key = |r: &mut Rng, p: &str| format!("{p}:{}", r.below(keys)).into_bytes();
    let member = |r: &mut Rng| format!("member:{}", r.below(10_000_000)).into_bytes();
    match r.below(4) {
        0 => vec![s("SADD"), key(r, "bigset"), member(r)],
        1 => vec![s("HSET"), key(r, "bighash"), member(r), s("value")],
        2 => vec![
            s("ZADD"),
            key(r, "bigzset"),
            format!("{}", r.below(1_000_000)).into_bytes(),
            member(r),
        ],
        _ => vec![s("RPUSH"), key(r, "biglist"), member(r)],
    }
}

/// `BENCH_MIX=stream`: XADD into a few streams (`BENCH_BIG_KEYS`, default 1) that grow
/// without bound, one in 64 capped with an exact MAXLEN of 1 M; where a change that re-encoded the whole stream cost its length.
fn stream_command(r: &mut Rng) -> Vec<Vec<u8>> {
    let s = |x: &str| x.as_bytes().to_vec();
    let keys = std::env::var("BENCH_BIG_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1u64);
    let key = format!("stream:{}", r.below(keys)).into_bytes();
    let mut c = vec![s("XADD"), key];
    if r.below(64) == 0 {
        c.extend([s("MAXLEN"), s("1000000")]);
    }
    c.extend([
        s("*"),
        s("sensor"),
        format!("{}", r.below(1000)).into_bytes(),
        s("temp"),
        format!("{}.{}", r.below(100), r.below(10)).into_bytes(),
    ]);
    c
}

/// One write of the mix, as a client sends it.
fn command(r: &mut Rng) -> Vec<Vec<u8>> {
    match std::env::var("BENCH_MIX").as_deref() {
        Ok("big") => return big_command(r),
        Ok("stream") => return stream_command(r),
        _ => {}
    }
    let s = |x: &str| x.as_bytes().to_vec();
    let key = |r: &mut Rng, p: &str, n: u64| format!("{p}:{}", r.below(n)).into_bytes();
    let val = |r: &mut Rng| {
        let len = 16 + r.below(100) as usize;
        let mut v = format!("{:x}", r.next()).into_bytes();
        v.resize(len, b'v');
        v
    };
    match r.below(100) {
        0..=29 => vec![s("SET"), key(r, "str", 200_000), val(r)],
        30..=39 => vec![
            s("SET"),
            key(r, "str", 200_000),
            val(r),
            s("EX"),
            (3600 + r.below(3600)).to_string().into_bytes(),
        ],
        40..=47 => vec![s("INCR"), key(r, "ctr", 50_000)],
        48..=59 => vec![
            s("HSET"),
            key(r, "hash", 20_000),
            format!("f{}", r.below(40)).into_bytes(),
            val(r),
        ],
        60..=67 => vec![s("LPUSH"), key(r, "list", 5_000), val(r)],
        68..=69 => vec![s("LTRIM"), key(r, "list", 5_000), s("0"), s("99")],
        70..=79 => vec![
            s("SADD"),
            key(r, "set", 10_000),
            format!("m{}", r.below(64)).into_bytes(),
        ],
        80..=91 => vec![
            s("ZADD"),
            key(r, "zset", 10_000),
            format!("{}", r.below(1_000_000) as f64 / 7.0).into_bytes(),
            format!("m{}", r.below(100)).into_bytes(),
        ],
        92..=95 => vec![s("DEL"), key(r, "str", 200_000)],
        _ => vec![
            s("EXPIRE"),
            key(r, "hash", 20_000),
            (7200 + r.below(100)).to_string().into_bytes(),
        ],
    }
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).expect("line from the master");
    l
}

/// Record what `master` propagates while `n` commands of the mix run on it.
fn record(master: &TestServer, n: usize) -> Vec<u8> {
    let s = TcpStream::connect(("127.0.0.1", master.port())).expect("replica link");
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::with_capacity(1 << 20, s);
    w.write_all(&encode_command(&[b"PSYNC", b"?", b"-1"]))
        .unwrap();
    let full = line(&mut r);
    assert!(full.starts_with("+FULLRESYNC"), "master said {full:?}");
    let start: i64 = full
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Keepalive newlines, then `$len` and the (empty dataset's) RDB.
    let len = loop {
        let l = line(&mut r);
        if let Some(n) = l.strip_prefix('$') {
            break n.trim().parse::<usize>().unwrap();
        }
    };
    let mut rdb = vec![0u8; len];
    r.read_exact(&mut rdb).unwrap();

    let mut client = TcpStream::connect(("127.0.0.1", master.port())).unwrap();
    let mut creader = BufReader::new(client.try_clone().unwrap());
    let mut rng = Rng(0x5eed_cafe_f00d);
    let mut sent = 0;
    while sent < n {
        let batch = (n - sent).min(1000);
        let mut out = Vec::new();
        for _ in 0..batch {
            let c = command(&mut rng);
            let args: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
            out.extend(encode_command(&args));
        }
        client.write_all(&out).unwrap();
        for _ in 0..batch {
            read_reply(&mut creader).unwrap();
        }
        sent += batch;
    }
    let end: i64 = master
        .info_field("replication", "master_repl_offset")
        .unwrap()
        .parse()
        .unwrap();
    let mut stream = vec![0u8; (end - start) as usize];
    r.read_exact(&mut stream).unwrap();
    stream
}

/// User + system CPU seconds from a `/proc/.../stat` file.
fn cpu_seconds(stat: &str) -> f64 {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 14th field.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    (ticks(11) + ticks(12)) / 100.0
}

/// Serve `rdb` then `stream` to the first replica that connects, as a master would.
fn fake_master(listener: TcpListener, rdb: Vec<u8>, stream: Vec<u8>) {
    let (s, _) = listener.accept().expect("replica connects");
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    loop {
        let Ok(reply) = read_reply(&mut r) else {
            return;
        };
        let words: Vec<String> = reply
            .as_array()
            .unwrap_or(&[])
            .iter()
            .filter_map(|a| {
                a.as_bytes()
                    .map(|b| String::from_utf8_lossy(b).to_uppercase())
            })
            .collect();
        match words.first().map(String::as_str) {
            Some("PING") => w.write_all(b"+PONG\r\n").unwrap(),
            Some("PSYNC") | Some("SYNC") => {
                let id = "8d7a5f0e3c2b1a09f8e7d6c5b4a3928170f6e5d4";
                w.write_all(format!("+FULLRESYNC {id} 0\r\n").as_bytes())
                    .unwrap();
                w.write_all(format!("${}\r\n", rdb.len()).as_bytes())
                    .unwrap();
                w.write_all(&rdb).unwrap();
                w.write_all(&stream).unwrap();
                // Swallow the replica's ACKs until it goes away.
                let mut sink = [0u8; 4096];
                while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
                return;
            }
            _ => w.write_all(b"+OK\r\n").unwrap(),
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let name = std::env::var("BENCH_SERVER").unwrap_or_else(|_| "redis-7.0".into());
    let Some(bin) = support::require(&name) else {
        return;
    };
    let n: usize = std::env::var("BENCH_COMMANDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // `BENCH_STREAM_FILE=path`: reuse a stream recorded by an earlier run (recorded and
    // saved there when the file does not exist yet), so a profiler sees apply alone.
    let saved = std::env::var_os("BENCH_STREAM_FILE").map(std::path::PathBuf::from);
    let stream = match saved.as_ref().and_then(|p| std::fs::read(p).ok()) {
        Some(s) => {
            println!(
                "stream read from {}: {:.1} MB",
                saved.as_ref().unwrap().display(),
                s.len() as f64 / 1e6
            );
            s
        }
        None => {
            let master = TestServer::start(&bin, &["--repl-diskless-sync", "no"]).expect("master");
            let t = Instant::now();
            let stream = record(&master, n);
            println!(
                "recorded {} commands from {name}: {:.1} MB of replication stream in {:.1} s",
                n,
                stream.len() as f64 / 1e6,
                t.elapsed().as_secs_f64()
            );
            if let Some(p) = &saved {
                std::fs::write(p, &stream).expect("BENCH_STREAM_FILE written");
            }
            stream
        }
    };
    // The dataset the stream starts from is empty: serve an empty server's file.
    let empty_rdb = {
        let empty = TestServer::start(&bin, &[]).expect("empty server");
        std::fs::read(empty.save()).expect("an empty server's RDB")
    };

    // replisnap, on this thread.
    let limits = Limits::default();
    let mut ks = Keyspace::new();
    let mut st = StreamState::for_master(Some(name.parse().unwrap()));
    let cpu0 = cpu_seconds("/proc/thread-self/stat");
    let t = Instant::now();
    let mut pos = 0;
    let mut applied = 0usize;
    while pos < stream.len() {
        match parse_command(&stream[pos..], &limits).expect("recorded stream parses") {
            Parsed::Done(argv, used) => {
                apply(&mut ks, &mut st, &argv).expect("recorded stream applies");
                pos += used;
                applied += 1;
            }
            Parsed::Incomplete(_) => panic!("recorded stream ends mid-command"),
        }
    }
    let ours = t.elapsed().as_secs_f64();
    let our_cpu = cpu_seconds("/proc/thread-self/stat") - cpu0;
    if std::env::var_os("BENCH_OURS_ONLY").is_some() {
        println!(
            "replisnap apply: {:.0} commands/s ({ours:.2} s wall, {our_cpu:.2} s CPU); redis replica skipped (BENCH_OURS_ONLY)",
            applied as f64 / ours
        );
        return;
    }

    // redis-server as a replica of a fake master serving the same bytes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let total = stream.len() as i64;
    let feeder = std::thread::spawn(move || fake_master(listener, empty_rdb, stream));
    let replica = TestServer::start(&bin, &[]).expect("replica");
    let stat = format!("/proc/{}/stat", replica.pid());
    let cpu0 = cpu_seconds(&stat);
    let t = Instant::now();
    replica.must(&["REPLICAOF", "127.0.0.1", &port]);
    loop {
        let off: i64 = replica
            .info_field("replication", "slave_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if off >= total {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "redis replica stalled at {off}/{total}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let theirs = t.elapsed().as_secs_f64();
    let their_cpu = cpu_seconds(&stat) - cpu0;
    drop(replica);
    let _ = feeder.join();

    println!("commands in the stream: {applied} (SELECT, MULTI/EXEC and rewrites included)");
    println!(
        "replisnap apply:      {:>9.0} commands/s  ({ours:.2} s wall, {our_cpu:.2} s CPU)",
        applied as f64 / ours
    );
    println!(
        "redis-server replica: {:>9.0} commands/s  ({theirs:.2} s wall incl. connect and RDB load, {their_cpu:.2} s CPU)",
        applied as f64 / theirs
    );
    println!(
        "ratio (ours / redis): throughput {:.2}x, CPU seconds {:.2}x",
        theirs / ours,
        our_cpu / their_cpu.max(1e-9)
    );
}
