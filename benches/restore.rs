//! Benchmark (not a test): the restore side on the 1 GB mixed dataset of `full_sync`.
//!
//! 1. `restore`: replisnap's restore, the binary as users run it (read the RDB, send each key as SET or a DUMP payload
//!    for the target, pipelined) into an empty redis-server, next to what a user would do
//!    instead: `redis-cli --pipe` fed a file of RESTORE commands with the DUMP payloads a
//!    server gives (LZF-compressed), prepared in advance (its preparation is not counted).
//!    Keys/s of each and the ratio, once into a default-config server (no digest) and once
//!    into one that answers DEBUG (digest computed while sending; the target's DEBUG
//!    DIGEST afterwards timed apart); the targets must end with the same digest. The
//!    default-config comparison is the best of three rounds, each tool into a fresh server;
//!    each round also restores with `--via-sync` (the target loads the snapshot as the
//!    payload of one full sync), printed on a line of its own.
//! 2. `verify`: replisnap's offline check of the file (parse, CRC, SHA-256, digest) in MB/s
//!    next to the time a redis-server takes to load the same file (timed from its start,
//!    and as its log counts the load alone), each the best of three runs; measured first,
//!    before any restore target runs.
//!
//! `cargo bench --bench restore` (`BENCH_GB=1` by default).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use replisnap::rdb::writer::{encode_value, KeyRecord, Target, WriteOptions};
use replisnap::rdb::{Item, Options, RdbReader};
use replisnap::restore::{dump_payload, Conn, TargetUrl};
use support::TestServer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What the benchmark reads back from `restore --json`.
struct Ran {
    send_seconds: f64,
    check_seconds: f64,
    digest_sent: Option<String>,
    target_digest: Option<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let gb: f64 = std::env::var("BENCH_GB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let path = common::dataset(&bin, gb);
    let len = std::fs::metadata(&path).expect("stat").len();
    let open = || {
        RdbReader::new(
            std::fs::File::open(&path).expect("open"),
            Some(len),
            Options::default(),
        )
        .expect("header")
    };

    // verify vs a server's load of the same file, first, on a quiet machine (the file
    // read once before, so neither pays for the disk).
    std::io::copy(
        &mut std::fs::File::open(&path).expect("open"),
        &mut std::io::sink(),
    )
    .expect("read the dataset");
    // Each side's best of three runs, one after the other.
    let (mut verify_s, mut load_s, mut loaded_s) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..3 {
        let t = Instant::now();
        let report = replisnap::verify::check_stream(
            "dataset",
            std::fs::File::open(&path).expect("open"),
            Some(len),
            None,
            now_ms(),
            |_| {},
        )
        .expect("verify");
        verify_s = verify_s.min(t.elapsed().as_secs_f64());
        assert!(report.ok(), "{:?}", report.problems);
        let t = Instant::now();
        let loaded = TestServer::start_with_rdb(&bin, &path, &[]).expect("server loads the file");
        load_s = load_s.min(t.elapsed().as_secs_f64());
        // The server's own count of the load alone ("DB loaded from disk: 5.925 seconds").
        let log = loaded.log();
        let by_log: f64 = log
            .split("DB loaded from disk: ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("the server logs its load time");
        loaded_s = loaded_s.min(by_log);
        drop(loaded);
    }
    let mb = len as f64 / 1e6;
    println!(
        "verify (parse, CRC, sha256, digest), best of 3: {:.0} MB/s ({verify_s:.2} s) vs redis-server 7.0 loading it, best of 3: {:.0} MB/s ({load_s:.2} s incl. start, {loaded_s:.2} s by its log): {:.2}x ({:.2}x by its log)",
        mb / verify_s,
        mb / load_s,
        load_s / verify_s,
        loaded_s / verify_s
    );

    // What a user would pipe: the same RESTORE commands, prepared beforehand.
    let version = format!("{}-{}", bin.kind, bin.version)
        .parse()
        .expect("version");
    let target = Target::for_server(version).expect("target");
    let now = now_ms();
    let pipe_file = path.with_extension("restore-pipe");
    let mut keys = 0u64;
    {
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(&pipe_file).expect("pipe file"));
        let mut r = open();
        let mut db = None;
        let mut buf = Vec::new();
        while let Some(item) = r.next_item().expect("read") {
            let Item::Key(k) = item else { continue };
            if !k.loadable(now) {
                continue;
            }
            let rec = KeyRecord::from(&*k);
            let (ty, v) = encode_value(&rec, &target, WriteOptions::default()).expect("encode");
            let payload = dump_payload(ty, &v, target.rdb_version);
            buf.clear();
            if db != Some(k.db) {
                let d = k.db.to_string();
                replisnap::resp::encode_command(&[b"SELECT", d.as_bytes()], &mut buf);
                db = Some(k.db);
            }
            let ttl = k.expire_ms.unwrap_or(0).to_string();
            let mut args: Vec<&[u8]> = vec![b"RESTORE", &k.key, ttl.as_bytes(), &payload];
            if k.expire_ms.is_some() {
                args.push(b"ABSTTL");
            }
            replisnap::resp::encode_command(&args, &mut buf);
            out.write_all(&buf).expect("write");
            keys += 1;
        }
    }

    // replisnap into a server as users run it (Redis 7's default: DEBUG refused, so no
    // digest is computed or asked for; the key count is checked), then into one that
    // answers DEBUG: the digest of what is sent is computed while sending, and the
    // target's DEBUG DIGEST afterwards is timed apart (redis-cli checks nothing).
    // replisnap as users run it: the binary, its `--json` summary read back.
    let run_with = |extra: &[&str], ours: &[&str]| {
        let srv = TestServer::start(&bin, extra).expect("target for replisnap");
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_replisnap"))
            .args(["restore", "--from", path.to_str().expect("path"), "--json"])
            .args(["--to", &format!("redis://{}", srv.addr())])
            .args(ours)
            .output()
            .expect("run replisnap restore");
        let total = t.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json");
        let summary = Ran {
            send_seconds: v["send_seconds"].as_f64().expect("send_seconds"),
            check_seconds: v["check_seconds"].as_f64().expect("check_seconds"),
            digest_sent: v["digest_sent"].as_str().map(str::to_string),
            target_digest: v["target_digest"].as_str().map(str::to_string),
        };
        assert_eq!(v["keys_restored"].as_u64(), Some(keys));
        assert_eq!(v["target_keys"].as_u64(), Some(keys));
        if !ours.is_empty() {
            assert_eq!(v["via_sync"].as_str(), Some("diskless"), "{v}");
        }
        (srv, summary, total)
    };
    let run = |extra: &[&str]| run_with(extra, &[]);
    let pipe = || {
        let theirs = TestServer::start(&bin, &[]).expect("target for redis-cli");
        let cli = support::servers_dir().join("bin").join("redis-cli");
        let t = Instant::now();
        let status = Command::new(&cli)
            .args(["-p", &theirs.port().to_string(), "--pipe"])
            .stdin(std::fs::File::open(&pipe_file).expect("pipe file"))
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli --pipe");
        assert!(status.success(), "redis-cli --pipe failed");
        (theirs, t.elapsed().as_secs_f64())
    };
    // Three rounds, each tool into a fresh server in turn, each tool's best round counted:
    // a fresh server's first-touch page faults vary by seconds from run to run here.
    // DEBUG DIGEST of a GB takes longer than the test client waits.
    let digest = |addr: String| {
        let url = TargetUrl::parse(&format!("redis://{addr}")).expect("url");
        Conn::connect(&url, None, Duration::from_secs(3600))
            .expect("connect")
            .text(&[b"DEBUG", b"DIGEST"])
            .expect("DEBUG DIGEST")
    };
    // Each run alone on the machine: a server still holding the dataset beside it slowed a
    // restore by a quarter here.
    let mut their_s = f64::MAX;
    let mut their_digest = String::new();
    let mut plain: Option<Ran> = None;
    let mut synced: Option<Ran> = None;
    for round in 0..3 {
        let (srv, secs) = pipe();
        their_s = their_s.min(secs);
        if round == 0 {
            their_digest = digest(srv.addr());
        }
        drop(srv);
        let (plain_srv, p, _) = run(&["--enable-debug-command", "no"]);
        assert!(p.digest_sent.is_none() && p.target_digest.is_none());
        drop(plain_srv);
        if plain
            .as_ref()
            .is_none_or(|b| p.send_seconds < b.send_seconds)
        {
            plain = Some(p);
        }
        let (sync_srv, p, _) = run_with(&["--enable-debug-command", "no"], &["--via-sync"]);
        drop(sync_srv);
        if synced
            .as_ref()
            .is_none_or(|b| p.send_seconds < b.send_seconds)
        {
            synced = Some(p);
        }
    }
    let _ = std::fs::remove_file(&pipe_file);
    let plain = plain.expect("a plain run");
    let synced = synced.expect("a sync run");
    let (ours_srv, checked, checked_total) = run(&[]);
    assert_eq!(
        checked.target_digest, checked.digest_sent,
        "the target holds what was sent"
    );
    assert_eq!(
        their_digest,
        checked.target_digest.clone().expect("digest"),
        "both targets hold the same data"
    );
    drop(ours_srv);

    println!("dataset: {} ({mb:.0} MB, {keys} keys)", path.display());
    println!(
        "restore into redis 7.0 (default config), best of 3 fresh servers each: replisnap {:.0} keys/s ({:.2} s) vs redis-cli --pipe of prepared RESTOREs {:.0} keys/s ({their_s:.2} s): {:.2}x",
        keys as f64 / plain.send_seconds,
        plain.send_seconds,
        keys as f64 / their_s,
        their_s / plain.send_seconds
    );
    println!(
        "restore --via-sync into redis 7.0 (default config), best of 3 fresh servers: replisnap {:.0} keys/s ({:.2} s) vs redis-cli --pipe {their_s:.2} s: {:.2}x (the server's own load of the file: {loaded_s:.2} s by its log)",
        keys as f64 / synced.send_seconds,
        synced.send_seconds,
        their_s / synced.send_seconds
    );
    println!(
        "restore into redis 7.0 answering DEBUG, digest of what is sent computed while sending: {:.0} keys/s ({:.2} s): {:.2}x redis-cli; then its DEBUG DIGEST check {:.2} s (total {checked_total:.2} s)",
        keys as f64 / checked.send_seconds,
        checked.send_seconds,
        their_s / checked.send_seconds,
        checked.check_seconds
    );
}
