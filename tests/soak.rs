//! The soak (issue 17 items 1–2): the whole daemon (`replisnap run`, the built binary) as a
//! permanent replica of a real master under `redis-benchmark` writes and the differential
//! test's command mix, snapshots on a short schedule and the stream archive on, into
//! local storage on a small tmpfs, while faults fire (tests/soak/faults.rs). At every
//! quiet point and at the end: the snapshot's digest equals the master's, retention kept
//! what it must, nothing partial is visible; after every fault the lag is back under 1 MB
//! within 5 s; counters agree with the faults; RSS stays within 1.2× (long runs).
//!
//! A second daemon replicates the same master into S3 (SeaweedFS behind a fault-injecting
//! HTTP proxy: 500, 503 SlowDown, resets, stalls, 412, kill -9 mid-upload), and the local
//! daemon's wall clock is stepped back an hour and forward again (libfaketime).
//!
//! Default (CI): the short version, under 3 minutes, each fault kind once or twice.
//! `SOAK_MINUTES=N` runs N minutes of random faults (scripts/soak.sh); `SOAK_SEED` repeats
//! a run's choices; `SOAK_SERVER` picks the master (default redis-8.6); `SOAK_SCHEDULE`
//! overrides the snapshot cron. Needs root (tmpfs).
//! See docs/soak.md.

mod daemon;
mod support;

#[path = "http/support.rs"]
#[allow(dead_code)]
mod http_support;

#[path = "differential/gen.rs"]
#[allow(dead_code)]
mod gen;
#[path = "differential/gen_more.rs"]
#[allow(dead_code)]
mod gen_more;

#[path = "soak/cluster.rs"]
mod cluster;
#[path = "soak/diagnose.rs"]
mod diagnose;
#[path = "soak/faults.rs"]
mod faults;
#[path = "soak/load.rs"]
mod load;
#[path = "soak/observe.rs"]
mod observe;
#[path = "soak/oracle.rs"]
mod oracle;
#[path = "soak/report.rs"]
mod report;
#[path = "soak/s3.rs"]
mod s3;
#[path = "soak/s3_faults.rs"]
mod s3_faults;
#[path = "storage_s3/proxy.rs"]
mod s3proxy;
#[path = "storage_s3/seaweed.rs"]
mod seaweed;
#[path = "soak/world.rs"]
mod world;

use std::time::{Duration, Instant};

use faults::{Kind, ALL};
use load::{Load, Rate};
use observe::{Replisnap, COUNTERS};
use world::Soak;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: not a whole number")),
    )
}

#[test]
fn soak() {
    let server = std::env::var("SOAK_SERVER").unwrap_or_else(|_| "redis-8.6".into());
    let Some(bin) = support::require(&server) else {
        return;
    };
    if load::benchmark_bin().is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-benchmark not found"
        );
        eprintln!("skipped: redis-benchmark not found");
        return;
    }
    // SeaweedFS for the S3 daemon (a failure under CI, else a skip) and libfaketime for
    // the local one's clock (likewise).
    let Some(sw) = seaweed::server() else {
        return;
    };
    let minutes = env_u64("SOAK_MINUTES");
    let long = minutes.is_some();
    let seed = env_u64("SOAK_SEED").unwrap_or_else(|| world::now_ms() as u64);
    eprintln!("soak: SOAK_SEED={seed} SOAK_SERVER={server} SOAK_MINUTES={minutes:?}");

    // Short: 20 000 keys of 100 B, a snapshot every 5 s; long: 200 000, every 10 s.
    let (keys, schedule, rate, fs_mib) = if long {
        (
            "200000",
            "*/10 * * * * *",
            Rate {
                bench_n: 3000,
                mix_per_sec: 2000,
            },
            1024,
        )
    } else {
        (
            "20000",
            "*/5 * * * * *",
            Rate {
                bench_n: 300,
                mix_per_sec: 500,
            },
            256,
        )
    };
    // SOAK_SCHEDULE overrides the snapshot cron (e.g. "0 0 0 1 1 *": quiet points only).
    let schedule_env = std::env::var("SOAK_SCHEDULE").ok();
    let schedule = schedule_env.as_deref().unwrap_or(schedule);
    let period = schedule_env
        .is_none()
        .then(|| Duration::from_secs(if long { 10 } else { 5 }));
    // The S3 daemon's own schedule.
    let s3_schedule = if long {
        "*/15 * * * * *"
    } else {
        "*/10 * * * * *"
    };
    let keep_last = 5;
    let cluster = cluster::Cluster::start(&bin, keys.parse().unwrap(), 100);
    // 7 MiB that do not compress: the S3 daemon's snapshots span two 5 MiB parts.
    s3::seed_blob(&cluster.primary, 7 << 20, seed);
    let mut rs = match Replisnap::new(&cluster.proxy.addr, schedule, keep_last, fs_mib) {
        Ok(rs) => rs,
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "{e}");
            eprintln!("skipped: {e}");
            return;
        }
    };
    // Cached for a second: the daemon reads the wall clock for every command it archives.
    let Some(clock) = support::faketime::FakeClock::cached(rs.setup.dir.path(), 1) else {
        return;
    };
    rs.env = clock
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    rs.start().unwrap_or_else(|e| panic!("{e}"));
    let mut s3 = s3::S3Side::new(sw, &cluster.s3_link.addr, s3_schedule, keep_last);
    s3.rs
        .start()
        .unwrap_or_else(|e| panic!("the S3 replisnap: {e}"));
    let load = Load::start(cluster.primary_addr(), &bin, seed ^ 0x5eed, rate);
    let mut s = Soak::new(
        cluster,
        load,
        (rs, s3),
        clock,
        period,
        seed,
        keep_last as usize,
        long,
    );

    let start = Instant::now();
    s.run_load(Duration::from_secs(3));
    s.quiet_point();
    if let Some(m) = minutes {
        let end = Duration::from_secs(m * 60);
        let mut round = 0u64;
        while start.elapsed() < end {
            let period = 10 + s.rng.below(30);
            s.run_load(Duration::from_secs(period));
            let kind = ALL[s.rng.below(ALL.len() as u64) as usize];
            faults::inject(&mut s, kind);
            round += 1;
            if round.is_multiple_of(2) {
                s.quiet_point();
            }
        }
    } else {
        let plan = [
            Kind::CutStream,
            Kind::CutHandshake,
            Kind::CutPayload,
            Kind::MasterRestart,
            Kind::Failover,
            Kind::Kill9,
            Kind::DiskFull,
            Kind::ReadOnly,
            Kind::CutHandshake,
            Kind::Kill9,
            Kind::ClockJump,
        ];
        // The S3 daemon's faults fire during the first six rounds' load (its own
        // snapshots, the local daemon untouched); it is checked at every other quiet point,
        // so each pair of them is followed by a check.
        let s3_plan = [
            Kind::S3Error500,
            Kind::S3SlowDown,
            Kind::S3Reset,
            Kind::S3Stall,
            Kind::S3Precondition,
            Kind::S3Kill9,
        ];
        for (i, kind) in plan.into_iter().enumerate() {
            let t = Instant::now();
            if let Some(&k) = s3_plan.get(i) {
                faults::inject(&mut s, k);
            }
            s.run_load(Duration::from_secs(4).saturating_sub(t.elapsed()));
            faults::inject(&mut s, kind);
            s.quiet_point_with(i % 2 == 1);
        }
    }
    s.run_load(Duration::from_secs(2));
    s.quiet_point();
    finish(&mut s);
    let text = s
        .report
        .table(start.elapsed().as_secs_f64() / 60.0, seed, &server);
    eprintln!(
        "{}\n{}\n{}",
        s.report.quiet_table(),
        s.report.rss_table(),
        text
    );
    assert!(
        s.report.violations.is_empty(),
        "{} violation(s), SOAK_SEED={seed}:\n{text}",
        s.report.violations.len()
    );
}

/// The counters against the faults, then a clean stop: SIGTERM exits 0 and nothing
/// temporary is left in storage.
fn finish(s: &mut Soak) {
    let totals: Vec<(String, f64)> = COUNTERS
        .iter()
        .map(|c| (c.to_string(), s.rs.total(c)))
        .collect();
    let get = |name: &str| totals.iter().find(|(k, _)| k == name).map_or(0.0, |x| x.1);
    let injected = |k: Kind| s.report.kinds.get(k.name()).map_or(0, |x| x.injected);
    let link_faults: u32 = faults::ALL
        .iter()
        .filter(|k| k.cuts_link())
        .map(|&k| injected(k))
        .sum();
    let mut bad = Vec::new();
    if get("replisnap_link_errors_total") < f64::from(link_faults) {
        bad.push(format!(
            "link_errors_total {} < {link_faults} faults that cut the link",
            get("replisnap_link_errors_total")
        ));
    }
    if get("replisnap_full_resyncs_total") < f64::from(injected(Kind::CutPayload)) {
        bad.push(format!(
            "full_resyncs_total {} < {} payload faults (each forces a full sync)",
            get("replisnap_full_resyncs_total"),
            injected(Kind::CutPayload)
        ));
    }
    let errors = get("replisnap_snapshots_total{result=\"error\"}");
    let refused = injected(Kind::DiskFull) + injected(Kind::ReadOnly);
    if errors < f64::from(refused) {
        bad.push(format!(
            "snapshots_total{{result=\"error\"}} {errors} < {refused} disk-full and read-only faults"
        ));
    }
    let ok = get("replisnap_snapshots_total{result=\"ok\"}");
    if ok < s.report.quiet.len() as f64 {
        bad.push(format!(
            "snapshots_total{{result=\"ok\"}} {ok} < {} quiet-point snapshots",
            s.report.quiet.len()
        ));
    }
    // The S3 daemon: an upload error only for an injected fault; every quiet point's
    // snapshot stored and counted.
    let s3 = |name: &'static str| s.s3.rs.total(name);
    let s3_errors = s3("replisnap_uploads_total{result=\"error\"}");
    if s3_errors > f64::from(s.report.s3_injected) {
        bad.push(format!(
            "s3: uploads_total{{result=\"error\"}} {s3_errors} > {} faults injected",
            s.report.s3_injected
        ));
    }
    for name in [
        "replisnap_uploads_total{result=\"ok\"}",
        "replisnap_snapshots_total{result=\"ok\"}",
    ] {
        if s3(name) < f64::from(s.report.s3_quiet) {
            bad.push(format!(
                "s3: {name} {} < {} quiet-point snapshots",
                s3(name),
                s.report.s3_quiet
            ));
        }
    }
    let s3_totals: Vec<(String, f64)> = COUNTERS
        .iter()
        .map(|c| (format!("s3 {c}"), s.s3.rs.total(c)))
        .collect();
    for b in bad {
        s.report.violation(b);
    }
    s.report.counters = totals;
    s.report.counters.extend(s3_totals);
    s.report.load = (s.load.mix_sent(), s.load.bench_runs());
    s.load.pause();
    match s.rs.terminate() {
        Some((st, log)) if !st.success() => s
            .report
            .violation(format!("SIGTERM: exit {st}:\n{}", observe::tail(&log, 30))),
        Some(_) => {}
        None => s.report.violation("no replisnap running at the end".into()),
    }
    for l in s.rs.leftovers(Duration::ZERO) {
        s.report
            .violation(format!("left in storage after the stop: {l}"));
    }
    match s.s3.rs.terminate() {
        Some((st, log)) if !st.success() => s.report.violation(format!(
            "the S3 replisnap on SIGTERM: exit {st}:\n{}",
            observe::tail(&log, 30)
        )),
        Some(_) => {}
        None => s
            .report
            .violation("no S3 replisnap running at the end".into()),
    }
    for l in s.s3.leftovers(Duration::ZERO) {
        s.report
            .violation(format!("left in the bucket after the stop: {l}"));
    }
    points_in_time(s);
}

/// Every quiet point whose snapshot retention kept is restorable from the stream archive
/// by offset in its snapshot's history (`fetch --offset N --history H`), with the digest
/// of that moment: the history each snapshot names survives kill -9, failovers and full
/// syncs.
fn points_in_time(s: &mut Soak) {
    let Ok((kept, _)) = s.rs.listing() else {
        s.report
            .violation("cannot list storage for the point-in-time check".into());
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut checked = 0;
    for q in s.report.quiet.clone() {
        let Some(m) = kept.iter().find(|m| m.id.to_string() == q.snapshot) else {
            continue; // retired by retention, its segments with it
        };
        let Some(history) = m.source.history.clone() else {
            s.report
                .violation(format!("snapshot {} names no archive history", q.snapshot));
            continue;
        };
        let out = dir.path().join(format!("{}.rdb", q.offset));
        let o = q.offset.to_string();
        // The snapshot's digest was checked against the master at the quiet point (live, or
        // as the master's own file loads: tests/soak/oracle.rs); the archive's file of the
        // same moment must load the same.
        match s.rs.fetch(&["--offset", &o, "--history", &history], &out) {
            Ok(v) if v["digest"] == m.digest.as_str() && v["offset"] == q.offset => checked += 1,
            Ok(v) => s.report.violation(format!(
                "fetch --offset {o} --history {history}: digest {} offset {}, the quiet point's snapshot {} has {}",
                v["digest"], v["offset"], q.snapshot, m.digest
            )),
            Err(e) => s
                .report
                .violation(format!("fetch --offset {o} --history {history}: {e}")),
        }
    }
    if checked == 0 {
        s.report
            .violation("no quiet point was left to fetch from the archive".into());
    }
    eprintln!("soak: {checked} quiet points fetched back from the archive by offset");
}
