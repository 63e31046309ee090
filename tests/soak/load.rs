//! The soak's write load on the current master: `redis-benchmark` runs (SET, INCR, LPUSH,
//! HSET, SADD, ZADD, SPOP, LPOP) and the differential test's seeded command mix (every type,
//! MULTI/EXEC, several databases, plus shrunk skiplist sorted sets with -0 scores), each on
//! its own thread. It owns pausing (a quiet point
//! waits until no command of ours is in flight) and following the master's address; it never
//! checks anything: what the master holds is the oracle, whatever the load did.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::gen::{self, Rng};
use crate::gen_more::Caps;
use crate::support::{encode_command, read_reply, ServerBin};

/// `redis-benchmark`: beside the servers (`$REPLISNAP_TEST_SERVERS/bin`), else on `PATH`.
pub fn benchmark_bin() -> Option<PathBuf> {
    let beside = crate::support::servers_dir().join("bin/redis-benchmark");
    if beside.is_file() {
        return Some(beside);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("redis-benchmark"))
        .find(|p| p.is_file())
}

struct Shared {
    /// host:port of the master the load writes to.
    target: Mutex<String>,
    paused: AtomicBool,
    stop: AtomicBool,
    /// Per worker: true while it sends nothing (paused or stopped).
    idle: [AtomicBool; 2],
    /// Commands the mix sent (answered, errors included) and batches that failed.
    pub mix_sent: AtomicU64,
    pub bench_runs: AtomicU64,
}

/// The two load threads.
pub struct Load {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// How hard the load pushes: `bench_n` requests per benchmark test per run (one run is
/// about a second), `mix_per_sec` commands of the mix a second.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub bench_n: u32,
    pub mix_per_sec: u32,
}

impl Load {
    pub fn start(target: String, bin: &ServerBin, seed: u64, rate: Rate) -> Load {
        let shared = Arc::new(Shared {
            target: Mutex::new(target),
            paused: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            idle: [AtomicBool::new(true), AtomicBool::new(true)],
            mix_sent: AtomicU64::new(0),
            bench_runs: AtomicU64::new(0),
        });
        let bench = benchmark_bin().expect("redis-benchmark (beside the servers or on PATH)");
        let (major, minor) = bin.major_minor();
        let caps = Caps {
            major,
            minor,
            valkey: bin.is_valkey(),
        };
        // HSETEX came with Redis 8.0 and Valkey 9.0 (as in tests/differential.rs).
        let field_ttl = if bin.is_valkey() {
            major >= 9
        } else {
            major >= 8
        };
        let s1 = shared.clone();
        let t1 = std::thread::spawn(move || bench_loop(&s1, &bench, rate.bench_n));
        let s2 = shared.clone();
        let t2 = std::thread::spawn(move || {
            mix_loop(&s2, Rng(seed | 1), caps, field_ttl, rate.mix_per_sec)
        });
        let load = Load {
            shared,
            threads: vec![t1, t2],
        };
        load.resume();
        load
    }

    pub fn set_target(&self, addr: String) {
        *self.shared.target.lock().unwrap() = addr;
    }

    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    /// Pause and wait (≤ 30 s) until neither thread has a command in flight.
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::SeqCst);
        let ok = crate::support::wait_until(Duration::from_secs(30), || {
            self.shared.idle.iter().all(|i| i.load(Ordering::SeqCst))
        });
        assert!(ok, "the load did not pause within 30 s");
    }

    pub fn mix_sent(&self) -> u64 {
        self.shared.mix_sent.load(Ordering::Relaxed)
    }

    pub fn bench_runs(&self) -> u64 {
        self.shared.bench_runs.load(Ordering::Relaxed)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.paused.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Wait while paused (saying so through `idle`); false once stopped.
fn wait_resumed(s: &Shared, me: usize) -> bool {
    loop {
        if s.stop.load(Ordering::SeqCst) {
            s.idle[me].store(true, Ordering::SeqCst);
            return false;
        }
        if !s.paused.load(Ordering::SeqCst) {
            s.idle[me].store(false, Ordering::SeqCst);
            // A pause raced with the store above: go round again.
            if !s.paused.load(Ordering::SeqCst) {
                return true;
            }
        }
        s.idle[me].store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn bench_loop(s: &Shared, bench: &std::path::Path, n: u32) {
    while wait_resumed(s, 0) {
        let target = s.target.lock().unwrap().clone();
        let (host, port) = target.rsplit_once(':').expect("host:port");
        let child = Command::new(bench)
            .args([
                "-h", host, "-p", port, "-q", "-c", "4", "-P", "4", "-r", "5000",
            ])
            .args(["-d", "48", "-n", &n.to_string()])
            .args(["-t", "set,incr,lpush,hset,sadd,zadd,spop,lpop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        loop {
            if s.paused.load(Ordering::SeqCst) || s.stop.load(Ordering::SeqCst) {
                kill(&mut child);
                break;
            }
            match child.try_wait() {
                Ok(Some(st)) => {
                    if st.success() {
                        s.bench_runs.fetch_add(1, Ordering::Relaxed);
                    } else {
                        // The master is away (a restart, a failover): try again soon.
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => {
                    kill(&mut child);
                    break;
                }
            }
        }
    }
}

/// One batch of the mix: ~50 commands, a transaction closed within the batch.
fn batch(r: &mut Rng, caps: Caps, field_ttl: bool) -> Vec<Vec<Vec<u8>>> {
    let mut cmds = Vec::new();
    while cmds.len() < 50 {
        if r.below(30) == 0 {
            cmds.push(vec![b"MULTI".to_vec()]);
            for _ in 0..2 + r.below(4) {
                cmds.push(gen::command(r, caps, field_ttl));
            }
            cmds.push(vec![b"EXEC".to_vec()]);
        } else if r.below(40) == 0 {
            cmds.extend(shrunk_skiplist(r));
        } else {
            cmds.push(gen::command(r, caps, field_ttl));
        }
    }
    cmds
}

/// A sorted set the master holds plain with a few short members and a -0 score (a 65-byte
/// member makes it a skiplist, removing it leaves it so): no RDB carries it as held, which
/// the quiet point's oracle must tell from a replica holding it compact (docs/soak.md).
fn shrunk_skiplist(r: &mut Rng) -> Vec<Vec<Vec<u8>>> {
    let key = format!("zshrunk{}", r.below(4)).into_bytes();
    let long = vec![b'y'; 65];
    let zadd = |args: &[&[u8]]| {
        let mut c = vec![b"ZADD".to_vec(), key.clone()];
        c.extend(args.iter().map(|a| a.to_vec()));
        c
    };
    vec![
        zadd(&[b"1", &long, b"2", b"m2"]),
        vec![b"ZREM".to_vec(), key.clone(), long.clone()],
        zadd(&[b"-0", format!("m{}", r.below(6)).as_bytes()]),
    ]
}

fn send(conn: &mut (TcpStream, BufReader<TcpStream>), cmds: &[Vec<Vec<u8>>]) -> bool {
    let mut out = Vec::new();
    for c in cmds {
        let args: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
        out.extend(encode_command(&args));
    }
    if conn.0.write_all(&out).is_err() {
        return false;
    }
    cmds.iter().all(|_| read_reply(&mut conn.1).is_ok())
}

fn mix_loop(s: &Shared, mut r: Rng, caps: Caps, field_ttl: bool, per_sec: u32) {
    let mut conn: Option<(String, (TcpStream, BufReader<TcpStream>))> = None;
    let pause = Duration::from_secs_f64(50.0 / f64::from(per_sec.max(1)));
    while wait_resumed(s, 1) {
        let target = s.target.lock().unwrap().clone();
        if conn.as_ref().is_none_or(|(t, _)| *t != target) {
            let c = TcpStream::connect(&target).and_then(|w| {
                w.set_read_timeout(Some(Duration::from_secs(10)))?;
                let r = BufReader::new(w.try_clone()?);
                Ok((w, r))
            });
            match c {
                Ok(c) => conn = Some((target, c)),
                Err(_) => {
                    conn = None;
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            }
        }
        let cmds = batch(&mut r, caps, field_ttl);
        let (_, c) = conn.as_mut().expect("connected");
        if send(c, &cmds) {
            s.mix_sent.fetch_add(cmds.len() as u64, Ordering::Relaxed);
        } else {
            conn = None;
        }
        std::thread::sleep(pause);
    }
}
