//! Benchmark (not a test): the stream archive under load and the point-in-time restore,
//! against the tool a user would otherwise use (issue 15).
//!
//! A real master (`BENCH_SERVER`, default redis-7.0) is prefilled (`redis-benchmark -t set`,
//! 100 k keys), then `replisnap run` (the built binary) follows it with `[archive] enabled`
//! (10 s segments, local storage) and takes the base snapshot. Then `redis-benchmark -P 16`
//! writes (`-t set,incr,lpush,sadd,hset`, random keys over 100 k, `BENCH_PITR_COMMANDS`
//! requests, default 2 M) while `/metrics` is read every 100 ms. Printed:
//! - the archive's stored bytes per million commands (and per MB of stream), against the
//!   size of an RDB snapshot of the dataset at the end;
//! - its RPO: `archive_lag_seconds` p50/p99/max over the load (the age of the oldest applied
//!   byte not yet stored);
//! - the time to restore to the end of the load: `replisnap fetch --offset END` (load the
//!   base snapshot, replay every archived command, write the RDB), next to what a user
//!   would do with the same data: a `redis-server` loading the base snapshot, the same stream
//!   bytes piped into it, then `SAVE` — and the ratio. Both results' digests must equal the
//!   master's.
//!
//! "One hour of stream" is this load scaled: the line `per hour at this rate` extrapolates
//! the replay time linearly (replay is linear in the stream).
//!
//! `cargo bench --bench pitr` (`BENCH_PITR_COMMANDS=10000000` for a longer stream).

#[path = "../tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use replisnap::archive::segment::decode;
use replisnap::storage::{LocalStorage, Storage};
use support::TestServer;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn benchmark_bin() -> PathBuf {
    let dir = std::env::var_os("REPLISNAP_TEST_SERVERS").map(PathBuf::from);
    dir.map(|d| d.join("bin/redis-benchmark"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("redis-benchmark"))
}

fn redis_benchmark(port: u16, args: &[&str]) {
    let st = Command::new(benchmark_bin())
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("redis-benchmark (install redis-tools)");
    assert!(st.success(), "redis-benchmark {args:?}");
}

fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn verb(config: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_replisnap"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("replisnap");
    assert!(
        out.status.success(),
        "replisnap {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn master_offset(m: &TestServer) -> i64 {
    m.info_field("replication", "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .expect("offset")
}

/// Pipe `stream` into `port` (replies drained on another thread) and wait for the last.
fn pipe_stream(port: u16, stream: &[u8]) -> Duration {
    let mut w = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut r = w.try_clone().expect("clone");
    let marker = b"replisnap-bench-end";
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let n = r.read(&mut buf).expect("read replies");
            assert!(n > 0, "server closed");
            tail.extend_from_slice(&buf[..n]);
            if tail.windows(marker.len()).any(|w| w == marker) {
                return;
            }
            let keep = tail.len().saturating_sub(marker.len());
            tail.drain(..keep);
        }
    });
    let t = Instant::now();
    w.write_all(stream).expect("send stream");
    let mut echo = Vec::new();
    replisnap::resp::encode_command(&[b"ECHO", marker], &mut echo);
    w.write_all(&echo).expect("send marker");
    reader.join().expect("reader");
    t.elapsed()
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let name = std::env::var("BENCH_SERVER").unwrap_or_else(|_| "redis-7.0".into());
    let bin = support::require(&name).expect("BENCH_SERVER not installed");
    let commands = env_u64("BENCH_PITR_COMMANDS", 2_000_000);
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0", "--save", ""])
        .expect("master");
    redis_benchmark(
        m.port(),
        &[
            "-t", "set", "-n", "100000", "-r", "100000", "-d", "100", "-P", "16",
        ],
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let storage_path = dir.path().join("backups");
    let state = dir.path().join("state");
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let config = dir.path().join("replisnap.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\naddress = \"{}\"\n\n[replica]\nannounce_port = 6396\nstate_dir = \"{}\"\n\n\
             [snapshot]\nschedule = \"0 0 0 1 1 *\"\n\n[storage]\nkind = \"local\"\npath = \"{}\"\n\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n\n[archive]\nenabled = true\n",
            m.addr(),
            state.display(),
            storage_path.display()
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.path().join("run.log")).expect("log");
    let daemon = Command::new(env!("CARGO_BIN_EXE_replisnap"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("replisnap run");
    // Killed however the bench ends (a failed assertion included).
    let _daemon = KillOnDrop(daemon);
    let t = Instant::now();
    while !state.join("archive-state.json").exists() {
        assert!(t.elapsed() < Duration::from_secs(60), "no sync");
        std::thread::sleep(Duration::from_millis(100));
    }
    verb(&config, &["snapshot", "--wait"]);
    let storage = LocalStorage::new(&storage_path);
    let base = storage.list().expect("list").snapshots[0].clone();

    // The load, with /metrics sampled every 100 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let lags = Arc::new(Mutex::new(Vec::<f64>::new()));
    let sampler = {
        let (stop, lags) = (stop.clone(), lags.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let text = http_get(http, "/metrics");
                if let Some(v) = metric(&text, "replisnap_archive_lag_seconds") {
                    lags.lock().unwrap().push(v);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let n = commands.to_string();
    let t = Instant::now();
    redis_benchmark(
        m.port(),
        &[
            "-t",
            "set,incr,lpush,sadd,hset",
            "-n",
            &(commands / 5).to_string(),
            "-r",
            "100000",
            "-P",
            "16",
        ],
    );
    let load_s = t.elapsed().as_secs_f64();
    let end = master_offset(&m);
    let t = Instant::now();
    loop {
        let l = replisnap::archive::list(&storage).expect("list archive");
        if l.histories.last().map(|h| h.end_offset) >= Some(end) {
            break;
        }
        if t.elapsed() > Duration::from_secs(120) {
            let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default();
            let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
            panic!("archive never reached {end}: {l:?}\nlog (newest first):\n{tail}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let master_digest = m.digest();

    // Restore to the end: ours.
    let out = dir.path().join("point.rdb");
    let t = Instant::now();
    let doc = verb(
        &config,
        &[
            "fetch",
            "--json",
            "--offset",
            &end.to_string(),
            out.to_str().unwrap(),
        ],
    );
    let ours = t.elapsed();
    let v: serde_json::Value = serde_json::from_str(&doc).expect("fetch JSON");
    assert_eq!(v["digest"], master_digest.as_str(), "{doc}");

    // The same with a real server: load the base snapshot, pipe the stream, SAVE.
    let l = replisnap::archive::list(&storage).expect("list archive");
    let h = l.histories.last().expect("history");
    let mut stream = Vec::new();
    let mut stored = 0u64;
    let mut from = base.source.offset as i64;
    for key in &h.keys {
        let data = storage
            .get_object(key, 1 << 30)
            .expect("get")
            .expect("segment");
        stored += data.len() as u64;
        let seg = decode(&data, key).expect("decode");
        if seg.header.end_offset <= from {
            continue;
        }
        let skip = (from - seg.header.first_offset).max(0) as usize;
        stream.extend_from_slice(&seg.bytes[skip..]);
        from = seg.header.end_offset;
    }
    let base_rdb = storage_path.join(base.id.to_string()).join("dump.rdb");
    let t = Instant::now();
    let fresh = TestServer::start_with_rdb(&bin, &base_rdb, &["--save", ""]).expect("load base");
    let load = t.elapsed();
    let piped = pipe_stream(fresh.port(), &stream);
    let t = Instant::now();
    fresh.must(&["SAVE"]);
    let save = t.elapsed();
    let theirs = load + piped + save;
    assert_eq!(fresh.digest(), master_digest, "the real server's replay");

    // An RDB of the final dataset, for scale (taken after the fetch: it would be its base).
    verb(&config, &["snapshot", "--wait"]);
    let rdb_bytes = storage.list().expect("list").snapshots[0].rdb.bytes;

    let mut lag = lags.lock().unwrap().clone();
    lag.sort_by(|a, b| a.total_cmp(b));
    let mcmd = commands as f64 / 1e6;
    println!("pitr bench: {name}, {n} commands (redis-benchmark -P 16, 5 types) in {load_s:.1} s ({:.0}/s)", commands as f64 / load_s);
    println!(
        "  archive: {} stream bytes -> {} stored ({:.1}x), {:.1} MB stored per million commands; final RDB {:.1} MB",
        stream.len(),
        stored,
        stream.len() as f64 / stored.max(1) as f64,
        stored as f64 / 1e6 / mcmd,
        rdb_bytes as f64 / 1e6
    );
    println!(
        "  RPO (archive_lag_seconds over {} samples): p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        lag.len(),
        percentile(&lag, 0.5),
        percentile(&lag, 0.99),
        lag.last().copied().unwrap_or(0.0)
    );
    println!(
        "  restore to the end ({} commands after the snapshot): replisnap fetch --offset {:.2} s | redis-server load {:.2} s + pipe {:.2} s + SAVE {:.2} s = {:.2} s | ratio {:.2}x",
        v["commands_replayed"],
        ours.as_secs_f64(),
        load.as_secs_f64(),
        piped.as_secs_f64(),
        save.as_secs_f64(),
        theirs.as_secs_f64(),
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
    let per_hour = 3600.0 / load_s;
    println!(
        "  per hour at this rate ({:.0} M commands): replisnap ~{:.0} s, redis-server ~{:.0} s (everything scaled linearly: an upper bound for both)",
        mcmd * per_hour,
        ours.as_secs_f64() * per_hour,
        theirs.as_secs_f64() * per_hour
    );
}
