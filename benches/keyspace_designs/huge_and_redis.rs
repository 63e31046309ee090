//! The 1 M-member hash spike test and the redis-server side of the comparison.
#![allow(unused_imports)]

use super::*;

// ---------------------------------------------------------------------------------------------
// The 1 M-member hash: first write after a snapshot
// ---------------------------------------------------------------------------------------------

pub(crate) fn member(i: u64) -> (Vec<u8>, &'static [u8]) {
    let h = mix(i ^ 0xbeef);
    let len = 10 + (h % 21) as usize;
    let off = ((h >> 8) % 256) as usize;
    (
        format!("field:{i:08}").into_bytes(),
        &VALBUF[off..off + len],
    )
}

pub(crate) trait BigHash: Clone + Send + 'static {
    fn new() -> Self;
    fn hset(&mut self, f: &[u8], v: &[u8]);
    fn sum(&self) -> u64;
}
/// One flat hash table behind one Arc: a write after a snapshot copies it whole.
#[derive(Clone)]
pub(crate) struct Flat(Arc<hashbrown::HashMap<IStr, IStr, S>>);
impl BigHash for Flat {
    fn new() -> Self {
        Flat(Arc::new(hashbrown::HashMap::with_hasher(hasher())))
    }
    fn hset(&mut self, f: &[u8], v: &[u8]) {
        Arc::make_mut(&mut self.0).insert(IStr::new(f), IStr::new(v));
    }
    fn sum(&self) -> u64 {
        self.0
            .iter()
            .map(|(k, v)| (k.bytes().len() + v.bytes().len()) as u64)
            .sum()
    }
}
/// Persistent HAMT inside the value: a write copies one path.
#[derive(Clone)]
pub(crate) struct PHamt(imbl::GenericHashMap<IStr, IStr, S, imbl::shared_ptr::ArcK>);
impl BigHash for PHamt {
    fn new() -> Self {
        PHamt(imbl::GenericHashMap::with_hasher(hasher()))
    }
    fn hset(&mut self, f: &[u8], v: &[u8]) {
        self.0.insert(IStr::new(f), IStr::new(v));
    }
    fn sum(&self) -> u64 {
        self.0
            .iter()
            .map(|(k, v)| (k.bytes().len() + v.bytes().len()) as u64)
            .sum()
    }
}
/// 1024 chunks, each its own Arc'd table: a write copies the chunk list (8 KB of handles)
/// and one chunk (~1/1024 of the members).
#[derive(Clone)]
pub(crate) struct Chunked(Arc<Vec<Arc<hashbrown::HashMap<IStr, IStr, S>>>>);
impl BigHash for Chunked {
    fn new() -> Self {
        Chunked(Arc::new(
            (0..1024)
                .map(|_| Arc::new(hashbrown::HashMap::with_hasher(hasher())))
                .collect(),
        ))
    }
    fn hset(&mut self, f: &[u8], v: &[u8]) {
        let c = (hash_bytes(f) >> 40) as usize & 1023;
        Arc::make_mut(&mut Arc::make_mut(&mut self.0)[c]).insert(IStr::new(f), IStr::new(v));
    }
    fn sum(&self) -> u64 {
        self.0
            .iter()
            .flat_map(|c| c.iter())
            .map(|(k, v)| (k.bytes().len() + v.bytes().len()) as u64)
            .sum()
    }
}

pub(crate) fn bighash_child(kind: &str, n: u64) {
    match kind {
        "flat" => bighash::<Flat>(kind, n),
        "hamt" => bighash::<PHamt>(kind, n),
        "chunked" => bighash::<Chunked>(kind, n),
        _ => panic!("unknown big-hash kind {kind}"),
    }
}

pub(crate) fn bighash<H: BigHash>(kind: &str, n: u64) {
    let base = rss();
    let mut h = H::new();
    for i in 0..n {
        let (f, v) = member(i);
        h.hset(&f, v);
    }
    std::thread::sleep(Duration::from_millis(200));
    let rss_load = rss();
    let t = Instant::now();
    let total = h.sum();
    let iter_s = t.elapsed().as_secs_f64();
    std::hint::black_box(total);
    // Warm write with no snapshot.
    let t = Instant::now();
    h.hset(b"field:00000007", b"x");
    let idle_us = t.elapsed().as_secs_f64() * 1e6;
    reset_hwm();
    let before = rss();
    let heap_before = reset_peak();
    let snap = h.clone();
    let t = Instant::now();
    h.hset(b"field:00000003", b"first-write-after-snapshot");
    let first_us = t.elapsed().as_secs_f64() * 1e6;
    let t = Instant::now();
    h.hset(b"field:00000005", b"second-write");
    let second_us = t.elapsed().as_secs_f64() * 1e6;
    let extra = rss().saturating_sub(before);
    let heap_extra = peak_heap().saturating_sub(heap_before);
    drop(snap);
    println!(
        "BIGHASH kind={kind} n={n} base={base} rss={rss_load} iter_s={iter_s:.3} idle_us={idle_us:.1} \
         first_us={first_us:.1} second_us={second_us:.1} extra={extra} heap_extra={heap_extra}"
    );
}

// ---------------------------------------------------------------------------------------------
// redis-server 7.0 with the same data
// ---------------------------------------------------------------------------------------------

pub(crate) fn servers_dir() -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("REPLISNAP_TEST_SERVERS").filter(|d| !d.is_empty()) {
        return d.into();
    }
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-servers");
    if here.exists() {
        here
    } else {
        "/work/main/.test-servers".into()
    }
}

pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new(servers_dir().join("bin/redis-cli"))
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
pub(crate) fn info_field(info: &str, name: &str) -> u64 {
    info.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

pub(crate) fn resp(w: &mut impl Write, parts: &[&[u8]]) {
    write!(w, "*{}\r\n", parts.len()).unwrap();
    for p in parts {
        write!(w, "${}\r\n", p.len()).unwrap();
        w.write_all(p).unwrap();
        w.write_all(b"\r\n").unwrap();
    }
}

/// Returns (used_memory_rss empty, after load, used_memory after load).
pub(crate) fn redis_measure(data: &str, n: u64) -> Option<(u64, u64, u64)> {
    let server = servers_dir().join("redis-7.0/server");
    if !server.exists() {
        eprintln!("(no {}: skipping the redis comparison)", server.display());
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = std::env::temp_dir().join(format!("ksbench-redis-{port}"));
    std::fs::create_dir_all(&dir).ok()?;
    let mut srv = Command::new(&server)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--enable-debug-command", "yes", "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let t = Instant::now();
    while cli(port, &["ping"]).trim() != "PONG" {
        if t.elapsed() > Duration::from_secs(10) {
            let _ = srv.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let empty = info_field(&cli(port, &["info", "memory"]), "used_memory_rss");
    let mut pipe = Command::new(servers_dir().join("bin/redis-cli"))
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, pipe.stdin.take().unwrap());
        let mut kb = [0u8; 24];
        if data == "bighash" {
            for i in 0..n {
                let (f, v) = member(i);
                resp(&mut w, &[b"HSET", b"big", &f, v]);
            }
        } else {
            for i in 0..n {
                let kl = key(i, &mut kb);
                if data == "hash" {
                    let fs = hashval(i, 0);
                    let mut parts: Vec<&[u8]> = vec![b"HSET", &kb[..kl]];
                    for (f, v) in &fs {
                        parts.push(f);
                        parts.push(v);
                    }
                    resp(&mut w, &parts);
                } else {
                    resp(&mut w, &[b"SET", &kb[..kl], strval(i, 0)]);
                }
            }
        }
        w.flush().unwrap();
    }
    let mut last = String::new();
    for l in BufReader::new(pipe.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        last = l;
    }
    let _ = pipe.wait();
    if !last.contains("errors: 0") {
        eprintln!("redis --pipe: {last}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let info = cli(port, &["info", "memory"]);
    let r = (
        empty,
        info_field(&info, "used_memory_rss"),
        info_field(&info, "used_memory"),
    );
    let _ = cli(port, &["shutdown", "nosave"]);
    let _ = srv.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Some(r)
}
