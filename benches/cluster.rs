//! Benchmark (not a test): backing up a cluster of N shards on this machine, replisnap
//! (`replisnap run` with `cluster = true`, one process for every shard) next to the
//! recipe it replaces, one `redis-server` replica per shard primary, in the same run.
//!
//! 1. A real cluster of `BENCH_SHARDS` primaries (3 by default, redis 7.0 or
//!    `BENCH_SERVER=…`), each loaded with `BENCH_KEYS` keys (200 k by default) of mixed
//!    small values through `redis-benchmark`.
//! 2. replisnap and the N replicas attach side by side and full-sync; then
//!    `redis-benchmark` writes to every primary for `BENCH_SECONDS` (20): CPU seconds
//!    (utime + stime from /proc/<pid>/stat) and resident memory of each side are read
//!    before and after that window, per shard.
//! 3. A snapshot set (`POST /snapshot`): the time until its manifest is stored.
//!
//! `cargo bench --bench cluster` prints, per shard: CPU over the write window and RSS at
//! its end, replisnap against one redis-server replica, as ratios.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::cluster::TestCluster;
use support::{wait_until, TestServer};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn stat(pid: u32) -> (f64, f64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // `rest` starts at field 3: utime 14, stime 15, rss (pages) 24.
    ((num(11) + num(12)) / 100.0, num(21) * 4096.0 / 1e6)
}

fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (code, body)
}

fn bench_tool() -> std::path::PathBuf {
    support::servers_dir().join("bin/redis-benchmark")
}

/// `redis-benchmark` SETs against one primary, every key under `tag` (a hash tag whose
/// slot this primary owns: redis-benchmark does not follow MOVED).
fn load(p: &TestServer, tag: &str, requests: u64) -> std::process::Child {
    Command::new(bench_tool())
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &p.port().to_string(),
            "-q",
            "-P",
            "16",
            "-c",
            "8",
        ])
        .args(["-r", "1000000", "-n", &requests.to_string()])
        .args([
            "SET",
            &format!("{tag}:key:__rand_int__"),
            "value-__rand_int__",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-benchmark")
}

fn main() {
    let name = std::env::var("BENCH_SERVER").unwrap_or_else(|_| "redis-7.0".into());
    let shards = env_num("BENCH_SHARDS", 3) as usize;
    let keys = env_num("BENCH_KEYS", 200_000);
    let seconds = env_num("BENCH_SECONDS", 20);
    let bin = support::require(&name).expect("server");
    let c = TestCluster::start(&bin, shards, 0).expect("cluster");
    // One hash tag per primary, owned by it: redis-benchmark cannot follow MOVED.
    let tags: Vec<String> = (0..shards)
        .map(|i| {
            let (a, b) = c.ranges[i];
            (0u32..)
                .map(|n| format!("{{b{n}}}"))
                .find(|t| {
                    let s = support::cluster::slot_of(t.as_bytes());
                    a <= s && s <= b
                })
                .unwrap()
        })
        .collect();
    let t = Instant::now();
    let mut loaders: Vec<_> = (0..shards)
        .map(|i| load(c.shard_primary(i), &tags[i], keys))
        .collect();
    for l in &mut loaders {
        l.wait().expect("load");
    }
    let dbsize: u64 = c.primaries().iter().map(|p| p.dbsize_all()).sum();
    println!(
        "cluster: {shards} shards of {name}, {dbsize} keys loaded in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The recipe: one redis-server replica per primary.
    let replicas: Vec<TestServer> = (0..shards)
        .map(|i| {
            let p = c.shard_primary(i);
            TestServer::start(&bin, &["--replicaof", "127.0.0.1", &p.port().to_string()])
                .expect("replica")
        })
        .collect();
    // replisnap: one process for every shard.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\naddress = \"{}\"\ncluster = true\n[replica]\nstate_dir = \"{}\"\n\
             [snapshot]\nschedule = \"0 0 0 1 1 *\"\n[storage]\nkind = \"local\"\npath = \"{}\"\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n",
            c.shard_primary(0).addr(),
            dir.path().join("state").display(),
            dir.path().join("backups").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_replisnap"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("replisnap run");
    let addr = format!("127.0.0.1:{port}");
    let t = Instant::now();
    let synced = wait_until(Duration::from_secs(600), || {
        http(&addr, "GET", "/readyz").0 == 200
            && replicas
                .iter()
                .all(|r| r.info("replication").contains("master_link_status:up"))
    });
    assert!(synced, "not synced");
    println!("both sides synced in {:.1} s", t.elapsed().as_secs_f64());

    let pids: Vec<u32> = replicas.iter().map(|r| r.pid()).collect();
    let ours0 = stat(daemon.id());
    let theirs0: Vec<(f64, f64)> = pids.iter().map(|&p| stat(p)).collect();
    let t = Instant::now();
    let rate_requests = keys.max(100_000) * 10;
    let mut writers: Vec<_> = (0..shards)
        .map(|i| load(c.shard_primary(i), &tags[i], rate_requests))
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    for w in &mut writers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let window = t.elapsed().as_secs_f64();
    // Both sides caught up before the end reading.
    wait_until(Duration::from_secs(60), || {
        let (_, m) = http(&addr, "GET", "/metrics");
        c.primaries().iter().all(|p| {
            let off = p
                .info_field("replication", "master_repl_offset")
                .unwrap_or_default();
            m.lines().any(|l| {
                l.starts_with("replisnap_replication_offset_bytes{")
                    && l.ends_with(&format!(" {off}"))
            })
        })
    });
    let ours1 = stat(daemon.id());
    let theirs1: Vec<(f64, f64)> = pids.iter().map(|&p| stat(p)).collect();
    let ours_cpu = (ours1.0 - ours0.0) / shards as f64;
    let ours_rss = ours1.1 / shards as f64;
    let their_cpu: f64 = theirs1
        .iter()
        .zip(&theirs0)
        .map(|(a, b)| a.0 - b.0)
        .sum::<f64>()
        / shards as f64;
    let their_rss: f64 = theirs1.iter().map(|a| a.1).sum::<f64>() / shards as f64;
    let written: u64 = c.primaries().iter().map(|p| p.dbsize_all()).sum();
    println!("write window: {window:.1} s on {shards} primaries ({written} keys at the end)");
    println!(
        "per shard: CPU replisnap {ours_cpu:.2} s vs redis-server replica {their_cpu:.2} s: {:.2}x",
        ours_cpu / their_cpu.max(1e-9)
    );
    println!(
        "per shard: RSS replisnap {ours_rss:.1} MB vs redis-server replica {their_rss:.1} MB: {:.2}x",
        ours_rss / their_rss.max(1e-9)
    );

    let t = Instant::now();
    let (code, body) = http(&addr, "POST", "/snapshot");
    assert_eq!(code, 202, "{body}");
    let id = body
        .split('"')
        .skip_while(|s| *s != "id")
        .nth(2)
        .unwrap_or_default()
        .to_string();
    let stored = wait_until(Duration::from_secs(600), || {
        http(&addr, "GET", &format!("/snapshot/{id}"))
            .1
            .contains("stored")
    });
    assert!(stored, "set {id} not stored");
    println!(
        "snapshot set {id} of {shards} shards stored in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
}
