//! Benchmark (not a test): what a full sync costs the primary, under a steady write load —
//! its peak memory and its longest stall — for (a) a real redis-server 7.0 replica's full
//! sync (the reference), (b) replisnap's classic full sync from the primary, (c) replisnap
//! with `[source] full_sync_from` a real replica of the primary (the primary never forks).
//! Then the same on a redis-server 8.6 primary (`repl-rdb-channel yes`, its default):
//! (d) a real 8.6 replica with `repl-rdb-channel no` (the reference), (e) replisnap classic
//! (`dual_channel = false`), (f) replisnap dual-channel (the RDB on a second connection,
//! the stream buffered on replisnap's side). This group keeps the default 1 MB backlog: with
//! a 256 MB one the writes of the whole window stay in the shared replication buffer
//! whatever the replica does, and the replica's pending output (what dual-channel moves to
//! replisnap) cannot be seen (measured: +7.9 MB dual vs +5.2 MB classic, both the backlog).
//! `BENCH_GROUPS=8.6` runs only this group.
//!
//! Each case gets a fresh primary loaded from the same RDB (`BENCH_RDB_GB`, default 0.2:
//! `common::dataset`), diskless sync with no delay (7.0's default mode) and a 256 MB backlog
//! (what (c) needs: the writes made while the replica's payload loads). During each case:
//! - a writer overwrites random `str:*` keys of the dataset with values of the same size
//!   (`BENCH_WRITES_PER_SEC`, default 5000, paced every 10 ms): the dataset's size stays
//!   put, its pages are touched all over (what copy-on-write costs a fork);
//! - a pinger sends PING after PING (1 ms apart): the stall is the longest gap between
//!   two replies;
//! - a sampler reads `INFO memory` every 20 ms (`used_memory`, which counts the replicas'
//!   output buffers, and `mem_total_replication_buffers`: 7.0's shared replication buffer,
//!   backlog and replicas' pending output together): 7.0 has no way to reset `used_memory_peak`
//!   (`CONFIG RESETSTAT` leaves it), so the peak is the largest sample, against the mean of
//!   one idle second before the sync. The fork's copy-on-write (`rdb_last_cow_size`) is
//!   memory of the child, not in `used_memory`: printed beside it and added for the total.
//!
//! The window: from the sync's start until the primary lists the new replica `online`, plus
//! 500 ms. `total_forks` before and after says whether the primary forked in it
//! (`latest_fork_usec` is printed only then, else 0).
//!
//! `cargo bench --bench source_load` (`BENCH_RDB_GB=1.0` for a 1 GB dataset).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::dataset;
use replisnap::replication::handoff::{Fallback, FullSyncFrom};
use replisnap::replication::{Replica, ReplicaHandle, Settings};
use support::{info_field, Conn, ServerBin, TestServer};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REPLISNAP_PORT: u16 = 6399;

/// What the probes saw: reply instants of the pinger, `(instant, used_memory,
/// mem_total_replication_buffers)` of the sampler.
#[derive(Default)]
struct Seen {
    pongs: Vec<Instant>,
    memory: Vec<(Instant, u64, u64)>,
}

struct Probes {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

fn num(info: &str, field: &str) -> u64 {
    info_field(info, field)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn info(c: &mut Conn, section: &str) -> String {
    c.cmd(&[b"INFO", section.as_bytes()])
        .expect("INFO")
        .as_string()
        .expect("INFO text")
}

/// Writer, pinger and sampler against `m`, running until [`Probes::finish`].
fn probes(m: &TestServer, str_keys: u64, per_sec: u64) -> Probes {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let port = m.port();
    let mut threads = Vec::new();
    {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut c = Conn::connect(port, Duration::from_secs(30)).expect("writer");
            let per_tick = (per_sec / 100).max(1);
            let mut n = 0u64;
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let mut tick = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..per_tick {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = x % str_keys;
                    // The dataset's own shape: 90 'v' then the index.
                    let value = format!("{}{i}", "w".repeat(90));
                    let key = format!("str:{i}");
                    let r = c
                        .cmd(&[b"SET", key.as_bytes(), value.as_bytes()])
                        .expect("SET");
                    assert!(!r.is_error(), "{r:?}");
                    n += 1;
                }
                tick += Duration::from_millis(10);
                if let Some(d) = tick.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
            n
        }));
    }
    {
        let (stop, seen) = (stop.clone(), seen.clone());
        threads.push(std::thread::spawn(move || {
            let mut c = Conn::connect(port, Duration::from_secs(30)).expect("pinger");
            while !stop.load(Ordering::Relaxed) {
                c.cmd(&[b"PING"]).expect("PING");
                seen.lock().unwrap().pongs.push(Instant::now());
                std::thread::sleep(Duration::from_millis(1));
            }
            0
        }));
    }
    {
        let (stop, seen) = (stop.clone(), seen.clone());
        threads.push(std::thread::spawn(move || {
            let mut c = Conn::connect(port, Duration::from_secs(30)).expect("sampler");
            while !stop.load(Ordering::Relaxed) {
                let text = info(&mut c, "memory");
                let s = (
                    Instant::now(),
                    num(&text, "used_memory"),
                    num(&text, "mem_total_replication_buffers"),
                );
                seen.lock().unwrap().memory.push(s);
                std::thread::sleep(Duration::from_millis(20));
            }
            0
        }));
    }
    Probes {
        stop,
        seen,
        threads,
    }
}

impl Probes {
    /// Stops the threads; the writes done.
    fn finish(self) -> (Seen, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let mut writes = 0;
        for t in self.threads {
            writes += t.join().expect("probe thread");
        }
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        (seen, writes)
    }
}

/// The longest gap between two PING replies in `[from, to]` (ms).
fn longest_gap(seen: &Seen, from: Instant, to: Instant) -> f64 {
    let p: Vec<Instant> = seen
        .pongs
        .iter()
        .copied()
        .filter(|t| *t >= from && *t <= to)
        .collect();
    p.windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
        .fold(0.0, f64::max)
}

struct Case {
    name: &'static str,
    sync_s: f64,
    /// Largest `used_memory` in the window minus the idle mean.
    peak_delta: u64,
    /// Largest `mem_total_replication_buffers` in the window minus the idle mean.
    buffers_delta: u64,
    cow: u64,
    fork_usec: u64,
    stall_ms: f64,
    idle_stall_ms: f64,
    sync_full: u64,
    writes_per_sec: f64,
}

impl Case {
    fn memory(&self) -> u64 {
        self.peak_delta + self.cow
    }
}

/// Whether `m` lists a replica announcing `port` as online.
fn online(m: &mut Conn, port: u16) -> bool {
    info(m, "replication")
        .lines()
        .any(|l| l.starts_with("slave") && l.contains(&format!(",port={port},state=online")))
}

/// One case: a fresh primary (and, with `from_replica`, a real replica of it, in sync
/// before anything is measured), probes, an idle second, then `start` begins the sync and
/// the primary must list `port` online.
/// How the primary of a case is set up: with a real replica of it in sync (for
/// `full_sync_from`), and its `repl-backlog-size`.
struct Primary {
    from_replica: bool,
    backlog: &'static str,
}

fn run_case(
    name: &'static str,
    bin: &ServerBin,
    rdb: &std::path::Path,
    str_keys: u64,
    per_sec: u64,
    primary: Primary,
    start: impl FnOnce(&TestServer, Option<&TestServer>) -> (u16, Box<dyn FnOnce()>),
) -> Case {
    let m = TestServer::start_with_rdb(
        bin,
        rdb,
        &[
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
            // Room for the writes made while a replica's payload loads: else the primary
            // cannot continue replisnap after the replica's full sync (the PSYNC it
            // refuses, under full_sync_fallback = "never", is never sent) and (c) never
            // ends. Allocated as written (7.0), so the same for every case.
            "--repl-backlog-size",
            primary.backlog,
        ],
    )
    .expect("primary loads the dataset");
    let from_replica = primary.from_replica;
    let port = m.port().to_string();
    let replica = from_replica.then(|| {
        let r = TestServer::start(
            bin,
            &[
                "--replicaof",
                "127.0.0.1",
                &port,
                "--repl-diskless-sync-delay",
                "0",
            ],
        )
        .expect("replica");
        while !(r.info("replication").contains("master_link_status:up")
            && r.info("replication").contains("master_sync_in_progress:0"))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    });
    let mut ctl = m.connect().expect("control");
    let probes = probes(&m, str_keys, per_sec);
    let idle_from = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let stats0 = info(&mut ctl, "stats");
    eprintln!("{name}: the sync starts");
    let t0 = Instant::now();
    let (watch_port, cleanup) = start(&m, replica.as_ref());
    while !online(&mut ctl, watch_port) {
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "{name}: not online in 5 min"
        );
    }
    let sync_s = t0.elapsed().as_secs_f64();
    eprintln!("{name}: online after {sync_s:.2} s");
    std::thread::sleep(Duration::from_millis(500));
    let t1 = Instant::now();
    let (seen, writes) = probes.finish();
    let stats1 = info(&mut ctl, "stats");
    let persistence = info(&mut ctl, "persistence");
    cleanup();

    let idle: Vec<_> = seen.memory.iter().filter(|s| s.0 < t0).collect();
    let mean = |f: fn(&(Instant, u64, u64)) -> u64| {
        idle.iter().map(|s| f(s)).sum::<u64>() / idle.len().max(1) as u64
    };
    let (idle_used, idle_buf) = (mean(|s| s.1), mean(|s| s.2));
    let window: Vec<_> = seen
        .memory
        .iter()
        .filter(|s| s.0 >= t0 && s.0 <= t1)
        .collect();
    let peak = window.iter().map(|s| s.1).max().unwrap_or(0);
    let peak_buf = window.iter().map(|s| s.2).max().unwrap_or(0);
    let forked = num(&stats1, "total_forks") > num(&stats0, "total_forks");
    Case {
        name,
        sync_s,
        peak_delta: peak.saturating_sub(idle_used),
        buffers_delta: peak_buf.saturating_sub(idle_buf),
        cow: if forked {
            num(&persistence, "rdb_last_cow_size")
        } else {
            0
        },
        fork_usec: if forked {
            num(&stats1, "latest_fork_usec")
        } else {
            0
        },
        stall_ms: longest_gap(&seen, t0, t1),
        idle_stall_ms: longest_gap(&seen, idle_from, t0),
        sync_full: num(&stats1, "sync_full") - num(&stats0, "sync_full"),
        writes_per_sec: writes as f64 / (t1 - idle_from).as_secs_f64(),
    }
}

fn replisnap(
    m: &TestServer,
    from: Option<&TestServer>,
    dual: bool,
) -> (ReplicaHandle, Box<dyn FnOnce()>) {
    let (mut r, h) = Replica::new(Settings {
        address: m.addr(),
        username: None,
        password: None,
        announce_port: REPLISNAP_PORT,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(30),
        tls: None,
    });
    r.set_dual_channel(dual);
    if let Some(from) = from {
        r.set_full_sync_from(FullSyncFrom {
            address: from.addr(),
            fallback: Fallback::Never,
        });
    }
    let t = std::thread::spawn(move || r.run());
    let h2 = h.clone();
    (
        h,
        Box::new(move || {
            h2.stop();
            let _ = t.join();
        }),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let gb: f64 = std::env::var("BENCH_RDB_GB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.2);
    let per_sec: u64 = std::env::var("BENCH_WRITES_PER_SEC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let rdb = dataset(&bin, gb);
    // `str:0 .. str:N-1` (common::dataset: 8 M per GB).
    let str_keys = ((8_000_000.0 * gb) as u64).max(1);

    let groups = std::env::var("BENCH_GROUPS").unwrap_or_default();
    let mut rows = Vec::new();
    if groups != "8.6" {
        let a = run_case(
            "redis-server replica",
            &bin,
            &rdb,
            str_keys,
            per_sec,
            Primary {
                from_replica: false,
                backlog: "256mb",
            },
            |m, _| {
                let r = TestServer::start(&bin, &[]).expect("replica");
                r.must(&["REPLICAOF", "127.0.0.1", &m.port().to_string()]);
                let port = r.port();
                (port, Box::new(move || drop(r)))
            },
        );
        let b = run_case(
            "replisnap classic",
            &bin,
            &rdb,
            str_keys,
            per_sec,
            Primary {
                from_replica: false,
                backlog: "256mb",
            },
            |m, _| {
                let (_, stop) = replisnap(m, None, false);
                (REPLISNAP_PORT, stop)
            },
        );
        let c = run_case(
            "replisnap full_sync_from a replica",
            &bin,
            &rdb,
            str_keys,
            per_sec,
            Primary {
                from_replica: true,
                backlog: "256mb",
            },
            |m, r| {
                let (_, stop) = replisnap(m, r, false);
                (REPLISNAP_PORT, stop)
            },
        );

        rows.push((a, vec![b, c]));
    }
    match support::require("redis-8.6") {
        Some(bin86) => {
            let d = run_case(
                "redis-server 8.6 replica (no rdb-channel)",
                &bin86,
                &rdb,
                str_keys,
                per_sec,
                Primary {
                    from_replica: false,
                    backlog: "1mb",
                },
                |m, _| {
                    let r =
                        TestServer::start(&bin86, &["--repl-rdb-channel", "no"]).expect("replica");
                    r.must(&["REPLICAOF", "127.0.0.1", &m.port().to_string()]);
                    let port = r.port();
                    (port, Box::new(move || drop(r)))
                },
            );
            let e = run_case(
                "replisnap classic (8.6)",
                &bin86,
                &rdb,
                str_keys,
                per_sec,
                Primary {
                    from_replica: false,
                    backlog: "1mb",
                },
                |m, _| {
                    let (_, stop) = replisnap(m, None, false);
                    (REPLISNAP_PORT, stop)
                },
            );
            let f = run_case(
                "replisnap dual-channel (8.6)",
                &bin86,
                &rdb,
                str_keys,
                per_sec,
                Primary {
                    from_replica: false,
                    backlog: "1mb",
                },
                |m, _| {
                    let (_, stop) = replisnap(m, None, true);
                    (REPLISNAP_PORT, stop)
                },
            );
            rows.push((d, vec![e, f]));
        }
        None => println!("dual-channel: no redis-8.6 installed"),
    }
    print_rows(&bin, &rdb, per_sec, &rows);
}

fn print_rows(bin: &ServerBin, rdb: &std::path::Path, per_sec: u64, rows: &[(Case, Vec<Case>)]) {
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "dataset: {} ({:.2} GB RDB), first primary redis-server {}, diskless sync, \
         {per_sec} writes/s asked",
        rdb.display(),
        std::fs::metadata(rdb).map(|m| m.len()).unwrap_or(0) as f64 / 1e9,
        bin.version
    );
    let ratio = |x: f64, y: f64| {
        if y == 0.0 {
            if x == 0.0 {
                "1.00x".to_string()
            } else {
                "inf".to_string()
            }
        } else {
            format!("{:.2}x", x / y)
        }
    };
    for (a, others) in rows {
        for case in std::iter::once(a).chain(others) {
            println!(
                "{:<42} sync {:.2} s; primary peak used_memory +{:.1} MB (replication buffers +{:.1} MB) \
                 + fork COW {:.1} MB = {:.1} MB; latest_fork_usec {}; longest PING gap {:.1} ms \
                 (idle {:.1} ms); sync_full +{}; {:.0} writes/s",
                case.name,
                case.sync_s,
                mb(case.peak_delta),
                mb(case.buffers_delta),
                mb(case.cow),
                mb(case.memory()),
                case.fork_usec,
                case.stall_ms,
                case.idle_stall_ms,
                case.sync_full,
                case.writes_per_sec
            );
        }
        for case in others {
            println!(
                "{} vs {}: peak memory {}, replication buffers {}, longest stall {}, fork time {}",
                case.name,
                a.name,
                ratio(case.memory() as f64, a.memory() as f64),
                ratio(case.buffers_delta as f64, a.buffers_delta as f64),
                ratio(case.stall_ms, a.stall_ms),
                ratio(case.fork_usec as f64, a.fork_usec as f64),
            );
        }
    }
}
