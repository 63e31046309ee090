//! Benchmark (not a test): writing a keyspace snapshot as RDB against redis-server 7.0's own
//! `SAVE` of the same data, and the keyspace's resident memory against the server's
//! `used_memory_rss`.
//!
//! `cargo bench --bench rdb_write` (BENCH_RDB_GB=0.4 by default: about 6 M mixed keys).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::fs::File;
use std::io::BufWriter;
use std::time::Instant;

use common::{dataset, rss_kb};
use replisnap::digest::target::Rules;
use replisnap::keyspace::{export_snapshot, load_rdb, write_snapshot, Entry, Keyspace};
use replisnap::rdb::writer::{Target, WriteOptions};
use replisnap::rdb::{Options, RdbReader};
use support::TestServer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        .unwrap_or(0.4);
    let path = dataset(&bin, gb);

    // The server: load the file, then time a foreground SAVE (compression on, fsync).
    let server = TestServer::start_with_rdb(&bin, &path, &[]).expect("server loads the dataset");
    let used_rss: u64 = server
        .info_field("memory", "used_memory_rss")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let keys = server.dbsize_all();
    let mut save_s = f64::MAX;
    for _ in 0..2 {
        let t = Instant::now();
        server.must(&["SAVE"]);
        save_s = save_s.min(t.elapsed().as_secs_f64());
    }
    let server_bytes = std::fs::metadata(server.rdb_path())
        .expect("server dump")
        .len();
    drop(server);

    // Ours: the dataset loaded into the keyspace (as a replica holds it), then snapshots of
    // it written as RDB for the same server, compression on as the server's default.
    let base_rss = rss_kb();
    let f = File::open(&path).expect("open");
    let len = f.metadata().unwrap().len();
    let mut ks = Keyspace::new();
    let t = Instant::now();
    load_rdb(
        &mut ks,
        &mut RdbReader::new(f, Some(len), Options::default()).expect("header"),
        None,
    )
    .expect("load");
    let load_s = t.elapsed().as_secs_f64();
    let ks_rss = (rss_kb() - base_rss) * 1024;
    let target = Target::for_server("redis-7.0".parse().unwrap()).unwrap();
    let out_path =
        std::env::temp_dir().join(format!("replisnap-bench-write-{}.rdb", std::process::id()));
    let mut write_s = f64::MAX;
    let mut pause_max = 0.0f64;
    let mut bytes = 0;
    for _ in 0..2 {
        let t = Instant::now();
        let snap = ks.snapshot().expect("no snapshot running");
        pause_max = pause_max.max(t.elapsed().as_secs_f64());
        let out = BufWriter::with_capacity(1 << 20, File::create(&out_path).expect("create"));
        let (out, n) = write_snapshot(
            snap,
            &ks.functions,
            out,
            target,
            &[],
            WriteOptions::default(),
        )
        .expect("write");
        out.into_inner().expect("flush").sync_all().expect("fsync");
        bytes = n;
        write_s = write_s.min(t.elapsed().as_secs_f64());
    }
    // What the daemon runs: the same file, plus the digest and counts of the manifest. The
    // first export after a load hashes every key; a later one only the keys rebuilt since
    // (each key remembers its digest): here one key in a hundred is rebuilt in between.
    let mut export_s = [0.0f64; 2];
    for (round, secs) in export_s.iter_mut().enumerate() {
        if round == 1 {
            let mut snap = ks.snapshot().expect("no snapshot running");
            let mut rebuilt = Vec::new();
            let mut n = 0u64;
            while let Some((db, entries)) = snap.next_shard() {
                for e in entries {
                    n += 1;
                    if let (0, Entry::Packed(p)) = (n % 100, &e) {
                        let e = Entry::build(p.key(), &p.hints(), p.rdb_type(), p.payload());
                        rebuilt.push((db, e));
                    }
                }
            }
            drop(snap);
            for (db, e) in rebuilt {
                ks.put(db, e);
            }
        }
        let t = Instant::now();
        let snap = ks.snapshot().expect("no snapshot running");
        let out = BufWriter::with_capacity(1 << 20, File::create(&out_path).expect("create"));
        let e = export_snapshot(
            snap,
            &ks.functions,
            out,
            target,
            &[],
            WriteOptions::default(),
            Rules::for_target("redis-7.0".parse().unwrap()).unwrap(),
            0,
        )
        .expect("export");
        e.out
            .into_inner()
            .expect("flush")
            .sync_all()
            .expect("fsync");
        *secs = t.elapsed().as_secs_f64();
    }
    let _ = std::fs::remove_file(&out_path);
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "dataset: {} ({keys} keys, written by redis-server {})",
        path.display(),
        bin.version
    );
    println!(
        "redis-server {} SAVE: {save_s:.2} s, {:.0} MB/s ({:.0} MB)",
        bin.version,
        mb(server_bytes) / save_s,
        mb(server_bytes)
    );
    println!(
        "replisnap write:      {write_s:.2} s, {:.0} MB/s ({:.0} MB)",
        mb(bytes) / write_s,
        mb(bytes)
    );
    println!(
        "write throughput ratio (ours / SAVE, by time): {:.2}x",
        save_s / write_s
    );
    println!(
        "replisnap export (write + digest + counts, as the daemon), first after the load: {:.2} s: {:.2}x SAVE's time",
        export_s[0],
        export_s[0] / save_s
    );
    println!(
        "replisnap export, next one (1 key in 100 rebuilt since; the rest remembered): {:.2} s: {:.2}x SAVE's time",
        export_s[1],
        export_s[1] / save_s
    );
    println!(
        "snapshot pause (max of 2): {:.1} µs; keyspace load from the file: {load_s:.2} s",
        pause_max * 1e6
    );
    println!(
        "memory: keyspace resident {:.0} MB vs redis used_memory_rss {:.0} MB: {:.2}x",
        mb(ks_rss),
        mb(used_rss),
        ks_rss as f64 / used_rss as f64
    );
}
