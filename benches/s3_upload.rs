//! Benchmark (not a test): getting a ≥ 1 GB dataset into S3, side by side on the same data
//! and the same S3 server (SeaweedFS, as the tests run it).
//!
//! - The seed's recipe: a redis-server replica of the master, `SAVE` on it, then
//!   `aws s3 cp dump.rdb` (the AWS CLI from PyPI, `awscli`).
//! - replisnap: a replica of the same master in this process, snapshots streamed to S3
//!   (multipart, default part size and concurrency), no local file: the first after the
//!   full sync (every key hashed for the manifest's digest), then, after the master
//!   rewrote one key in a hundred, the next one (only those keys hashed: the daemon's
//!   steady state, snapshot after snapshot), and one more into a local directory.
//!
//! Prints wall time and peak RSS of each and their ratios. `cargo bench --bench s3_upload`;
//! BENCH_S3_GB (default 1) picks the dataset (`benches/common`, kept in $BENCH_DATA);
//! the CLI is `$REPLISNAP_AWS` or `$REPLISNAP_TEST_SERVERS/awscli/bin/aws`
//! (`scripts/install-test-servers.sh` installs it with WITH_AWSCLI=1).

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "../tests/storage_s3/seaweed.rs"]
mod seaweed;

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::rss_kb;
use replisnap::replication::{Replica, Settings};
use replisnap::snapshot::{JobState, NoEvents, Options, Reason, Snapshotter};
use support::TestServer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn aws_cli() -> PathBuf {
    if let Some(p) = std::env::var_os("REPLISNAP_AWS").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    support::servers_dir().join("awscli/bin/aws")
}

/// VmHWM of a process, in KiB.
fn hwm_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let aws = aws_cli();
    assert!(
        aws.is_file(),
        "AWS CLI not found at {} (WITH_AWSCLI=1 scripts/install-test-servers.sh, or set REPLISNAP_AWS)",
        aws.display()
    );
    let sw = seaweed::server().expect("SeaweedFS");
    let gb: f64 = std::env::var("BENCH_S3_GB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let data = common::dataset(&bin, gb);
    let t = Instant::now();
    let m = TestServer::start_with_rdb(&bin, &data, &["--repl-diskless-sync-delay", "0"])
        .expect("master");
    let keys = m.dbsize_all();
    eprintln!(
        "master loaded {} ({keys} keys) in {:.1} s",
        data.display(),
        t.elapsed().as_secs_f64()
    );
    let bucket = sw.new_bucket("bench");

    // --- the seed's recipe ---------------------------------------------------------------
    let port = m.port().to_string();
    let replica = TestServer::start(&bin, &["--replicaof", "127.0.0.1", &port]).expect("replica");
    support::wait_for("redis replica sync", Duration::from_secs(900), || {
        replica
            .info_field("replication", "master_link_status")
            .as_deref()
            == Some("up")
    });
    let t = Instant::now();
    replica.must(&["SAVE"]);
    let save_s = t.elapsed().as_secs_f64();
    let dump = replica.dir().join("dump.rdb");
    let dump_bytes = std::fs::metadata(&dump).expect("dump.rdb").len();
    let replica_hwm = hwm_kb(replica.pid());
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "MAXRSS %M"])
        .arg(&aws)
        .args(["s3", "cp", "--only-show-errors"])
        .arg(&dump)
        .arg(format!("s3://{bucket}/seed/dump.rdb"))
        .args(["--endpoint-url", &sw.endpoint])
        .env("AWS_ACCESS_KEY_ID", seaweed::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", seaweed::SECRET_KEY)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("aws s3 cp");
    let cp_s = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "aws s3 cp: {err}");
    let aws_hwm: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("MAXRSS "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    drop(replica);

    // --- replisnap -----------------------------------------------------------------------
    let base_kb = rss_kb();
    let (r, h) = Replica::new(Settings {
        address: m.addr(),
        username: None,
        password: None,
        announce_port: 6398,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    });
    let replica_thread = std::thread::spawn(move || r.run());
    support::wait_for("replisnap full sync", Duration::from_secs(900), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    let steady_kb = rss_kb();
    let storage = sw.storage_in(&bucket, "replisnap/", |_| {});
    let snap = Snapshotter::start(
        h.clone(),
        Arc::new(storage),
        Options {
            address: m.addr(),
            compress: true,
            retention: None,
        },
        Arc::new(NoEvents),
    )
    .expect("snapshotter");
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(steady_kb));
    let sampler = {
        let (sampling, peak) = (sampling.clone(), peak.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // The first snapshot after the full sync hashes every key for the manifest's digest;
    // a later one hashes only the keys written since (the others remember theirs). Between
    // snapshots the master rewrites one key in a hundred, and replisnap catches up first.
    let catch_up = |what: &str| {
        let t = Instant::now();
        let written = common::touch(&m, gb, 100);
        let want = support::replica::offset(&m);
        support::wait_for(what, Duration::from_secs(900), || {
            h.status.offset.load(Ordering::Relaxed) >= want
        });
        eprintln!(
            "{what}: {written} keys rewritten on the master and applied in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        written
    };
    let take = |snap: &Snapshotter| {
        let t = Instant::now();
        let id = snap.take(Reason::Manual).expect("take");
        let st = snap.wait(&id, Duration::from_secs(3600)).expect("status");
        assert_eq!(st.state, JobState::Stored, "{st:?}");
        t.elapsed().as_secs_f64()
    };
    let first_s = take(&snap);
    let touched = catch_up("1 % of keys rewritten before the next S3 snapshot");
    let ours_s = take(&snap);
    sampling.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let peak_kb = peak.load(Ordering::Relaxed).max(steady_kb);
    snap.shutdown();
    let dir = tempfile::tempdir().expect("temp dir");
    let local = Snapshotter::start(
        h.clone(),
        Arc::new(replisnap::storage::LocalStorage::new(dir.path())),
        Options {
            address: m.addr(),
            compress: true,
            retention: None,
        },
        Arc::new(NoEvents),
    )
    .expect("snapshotter");
    catch_up("1 % of keys rewritten before the local snapshot");
    let local_s = take(&local);
    local.shutdown();
    drop(dir);
    h.stop();
    replica_thread.join().expect("replica");

    let mb = |kb: u64| kb as f64 / 1024.0;
    let seed_s = save_s + cp_s;
    let seed_peak = replica_hwm.max(aws_hwm);
    let ours_peak = peak_kb.saturating_sub(base_kb);
    println!(
        "dataset: {keys} keys, RDB {:.2} GB (redis-server {} SAVE)",
        dump_bytes as f64 / 1e9,
        bin.version
    );
    println!(
        "seed recipe: replica SAVE {save_s:.1} s + aws s3 cp {cp_s:.1} s = {seed_s:.1} s; \
         peak RSS: redis-server replica {:.0} MB, aws cli {:.0} MB; local disk {:.0} MB",
        mb(replica_hwm),
        mb(aws_hwm),
        dump_bytes as f64 / 1048576.0
    );
    println!(
        "replisnap: first snapshot after the full sync streamed to S3 {first_s:.1} s \
         (every key hashed for the digest): {:.2}x the seed's time",
        first_s / seed_s
    );
    println!(
        "replisnap: next snapshot ({touched} keys, 1 %, rewritten since) streamed to S3 \
         {ours_s:.1} s; peak RSS {:.0} MB (keyspace {:.0} MB + {:.0} MB while writing and \
         uploading); local disk 0 MB",
        mb(ours_peak),
        mb(steady_kb.saturating_sub(base_kb)),
        mb(peak_kb.saturating_sub(steady_kb))
    );
    println!(
        "replisnap: a next snapshot (1 % rewritten) into a local directory {local_s:.1} s \
         (S3 adds {:.1} s)",
        ours_s - local_s
    );
    println!(
        "ratios (replisnap's next snapshot / seed): time {:.2}x, peak RSS {:.2}x (replica alone: {:.2}x)",
        ours_s / seed_s,
        mb(ours_peak) / mb(seed_peak).max(1.0),
        mb(ours_peak) / mb(replica_hwm).max(1.0)
    );
}
