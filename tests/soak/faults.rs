//! The soak's faults, one function per kind: the link cut in the handshake, in the
//! full-sync payload and in the command stream (through the tapped proxy), the master
//! restarted with its data, a failover to the standby, `kill -9` of replisnap while a
//! snapshot is written (then a restart), the storage filled up or made read-only, and the
//! local daemon's wall clock stepped back an hour and forward again (libfaketime); the S3
//! daemon's faults are in s3_faults.rs. Each counts itself injected, says when it cleared, and leaves recovery to
//! `Soak::recovered`. It never checks a snapshot's content (quiet points do).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::wait_until;
use crate::world::Soak;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    CutStream,
    CutHandshake,
    CutPayload,
    MasterRestart,
    Failover,
    Kill9,
    DiskFull,
    ReadOnly,
    ClockJump,
    S3Error500,
    S3SlowDown,
    S3Reset,
    S3Stall,
    S3Precondition,
    S3Kill9,
}

pub const ALL: [Kind; 15] = [
    Kind::CutStream,
    Kind::CutHandshake,
    Kind::CutPayload,
    Kind::MasterRestart,
    Kind::Failover,
    Kind::Kill9,
    Kind::DiskFull,
    Kind::ReadOnly,
    Kind::ClockJump,
    Kind::S3Error500,
    Kind::S3SlowDown,
    Kind::S3Reset,
    Kind::S3Stall,
    Kind::S3Precondition,
    Kind::S3Kill9,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::CutStream => "cut-stream",
            Kind::CutHandshake => "cut-handshake",
            Kind::CutPayload => "cut-payload",
            Kind::MasterRestart => "master-restart",
            Kind::Failover => "failover",
            Kind::Kill9 => "kill9-snapshot",
            Kind::DiskFull => "disk-full",
            Kind::ReadOnly => "read-only",
            Kind::ClockJump => "clock-jump",
            Kind::S3Error500 => "s3-500",
            Kind::S3SlowDown => "s3-503-slowdown",
            Kind::S3Reset => "s3-reset-mid-part",
            Kind::S3Stall => "s3-stall",
            Kind::S3Precondition => "s3-412",
            Kind::S3Kill9 => "s3-kill9-upload",
        }
    }

    /// Faults that take the local daemon's link down (each at least one link error).
    pub fn cuts_link(self) -> bool {
        matches!(
            self,
            Kind::CutStream
                | Kind::CutHandshake
                | Kind::CutPayload
                | Kind::MasterRestart
                | Kind::Failover
        )
    }

    /// Faults of the S3 daemon (its recovery is the one timed).
    pub fn s3(self) -> bool {
        matches!(
            self,
            Kind::S3Error500
                | Kind::S3SlowDown
                | Kind::S3Reset
                | Kind::S3Stall
                | Kind::S3Precondition
                | Kind::S3Kill9
        )
    }
}

/// Inject `kind` and wait for the recovery (lag < 1 MB); violations go to the report.
pub fn inject(s: &mut Soak, kind: Kind) {
    let name = kind.name();
    s.report.kind(name).injected += 1;
    eprintln!("soak: fault {name}");
    // A link cut (and a restart) must be followed by a resync before it counts as over.
    let syncs = (kind.cuts_link() || kind == Kind::Kill9).then(|| s.syncs(false));
    // Restarts and failovers cut the S3 daemon's link too; its kill -9 restarts it.
    let s3_cut = matches!(kind, Kind::MasterRestart | Kind::Failover | Kind::S3Kill9);
    let s3_syncs = s3_cut.then(|| s.syncs(true));
    let cleared = match kind {
        Kind::CutStream => cut_stream(s),
        Kind::CutHandshake => cut_handshake(s),
        Kind::CutPayload => cut_payload(s),
        Kind::MasterRestart => {
            s.cluster.restart_primary();
            s.load.set_target(s.cluster.primary_addr());
            Some(Instant::now())
        }
        Kind::Failover => {
            s.cluster.failover();
            s.failovers += 1;
            s.load.set_target(s.cluster.primary_addr());
            Some(Instant::now())
        }
        Kind::Kill9 => kill9(s),
        Kind::DiskFull => disk_full(s),
        Kind::ReadOnly => read_only(s),
        Kind::ClockJump => clock_jump(s),
        Kind::S3Error500 => crate::s3_faults::error_500(s),
        Kind::S3SlowDown => crate::s3_faults::slow_down(s),
        Kind::S3Reset => crate::s3_faults::reset(s),
        Kind::S3Stall => crate::s3_faults::stall(s),
        Kind::S3Precondition => crate::s3_faults::precondition(s),
        Kind::S3Kill9 => crate::s3_faults::kill9(s),
    };
    let Some(at) = cleared else { return };
    if kind.s3() {
        s.recovered_on(true, name, at, s3_syncs);
        return;
    }
    s.recovered(name, at, syncs);
    if matches!(kind, Kind::DiskFull | Kind::ReadOnly) {
        storage_allowed(s, name);
    }
    if s3_cut {
        // The S3 daemon follows the master too, timed like the local one.
        let also = match kind {
            Kind::MasterRestart => "s3 after master-restart",
            _ => "s3 after failover",
        };
        s.report.kind(also).injected += 1;
        s.recovered_on(true, also, at, s3_syncs);
    }
}

/// The local daemon's wall clock stepped back an hour, later forward again (libfaketime:
/// tests/support/faketime.rs). While back: scheduled snapshots go on (within three
/// periods), an hour behind in `created_at` (the daemon does see the step), their ids
/// above every earlier one; retention keeps the newest; a quiet point's digest agrees.
/// Forward again: a scheduled snapshot at the real time. On target when all of it held.
fn clock_jump(s: &mut Soak) -> Option<Instant> {
    let newest = |s: &Soak| s.rs.listing().ok().and_then(|(l, _)| l.first().cloned());
    let Some(period) = s.period else {
        eprintln!("soak: clock-jump: SOAK_SCHEDULE set, the schedule is not checked");
        s.clock.set_offset(-3600);
        s.quiet_point_with(false);
        s.clock.set_offset(0);
        return Some(Instant::now());
    };
    let wait = period * 3 + Duration::from_secs(5);
    let mut aim = true;
    let mut last = newest(s).map(|m| m.id);
    s.clock.set_offset(-3600);
    // The first scheduled snapshot after the step may have been captured just before it:
    // the next one at the latest must be an hour behind.
    for n in 0..2 {
        let mut next = None;
        wait_until(wait, || {
            next = newest(s).filter(|m| last.as_ref().is_none_or(|l| m.id > *l));
            next.is_some()
        });
        let Some(m) = next else {
            aim = false;
            s.report.violation(format!(
                "clock-jump: no scheduled snapshot {n} within {:.0} s of the step back:\n{}",
                wait.as_secs_f64(),
                s.rs.log_tail(20)
            ));
            break;
        };
        let behind = (chrono::Utc::now() - m.created_at).num_seconds();
        last = Some(m.id.clone());
        if (3590..3660).contains(&behind) {
            break;
        }
        if n == 1 {
            aim = false;
            s.report.violation(format!(
                "clock-jump: snapshot {} created_at {} is {behind} s behind, not an hour",
                m.id, m.created_at
            ));
        }
    }
    s.check_storage();
    // The S3 daemon's clock is not stepped: only the local one is checked here.
    s.quiet_point_with(false);
    s.clock.set_offset(0);
    let mut next = None;
    let back = wait_until(wait, || {
        next = newest(s).filter(|m| {
            last.as_ref().is_none_or(|l| m.id > *l)
                && (chrono::Utc::now() - m.created_at).num_seconds().abs() < 60
        });
        next.is_some()
    });
    if !back {
        aim = false;
        s.report.violation(format!(
            "clock-jump: no scheduled snapshot at the real time within {:.0} s of the step forward",
            wait.as_secs_f64()
        ));
    }
    s.check_storage();
    if aim {
        s.report.kind("clock-jump").on_target += 1;
    }
    Some(Instant::now())
}

fn cut_stream(s: &mut Soak) -> Option<Instant> {
    std::thread::sleep(Duration::from_millis(s.rng.below(1000)));
    s.cluster.proxy.cut();
    s.report.kind("cut-stream").on_target += 1;
    Some(Instant::now())
}

/// Cut, then cut again right after the reconnecting replica's PING, a REPLCONF or its
/// PSYNC reached the master (picked at random): the second cut lands in the handshake.
fn cut_handshake(s: &mut Soak) -> Option<Instant> {
    let aim = ["PING", "REPLCONF", "PSYNC"][s.rng.below(3) as usize];
    let proxy = &s.cluster.proxy;
    let before = proxy.sent.lock().unwrap().len();
    proxy.cut();
    let hit = wait_until(Duration::from_secs(30), || {
        let sent = proxy.sent.lock().unwrap();
        if sent[before.min(sent.len())..].iter().any(|c| c == aim) {
            proxy.cut();
            true
        } else {
            false
        }
    });
    if hit {
        s.report.kind("cut-handshake").on_target += 1;
    } else {
        s.report.violation(format!(
            "cut-handshake: no {aim} from the reconnecting replica in 30 s"
        ));
    }
    Some(Instant::now())
}

/// Hold the link down while 2.5 MB are written (past the 1 MB backlog: a full sync),
/// then let it reconnect with a cut armed inside the payload.
fn cut_payload(s: &mut Soak) -> Option<Instant> {
    let proxy = &s.cluster.proxy;
    let cuts = proxy.payload_cuts.load(Ordering::SeqCst);
    proxy.hold.store(true, Ordering::SeqCst);
    proxy.cut();
    let big = "p".repeat(64 * 1024);
    for i in 0..40 {
        let _ = s
            .cluster
            .primary
            .cmd_str(&["SET", &format!("soak:overflow:{i}"), &big]);
    }
    let after = s.rng.below(1 << 20);
    proxy.cut_in_payload(Some(after));
    proxy.hold.store(false, Ordering::SeqCst);
    let hit = wait_until(Duration::from_secs(60), || {
        proxy.payload_cuts.load(Ordering::SeqCst) > cuts
    });
    proxy.cut_in_payload(None);
    if hit {
        s.report.kind("cut-payload").on_target += 1;
    } else {
        s.report.violation(format!(
            "cut-payload: no full-sync payload passed {after} bytes in 60 s"
        ));
    }
    for i in 0..40 {
        let _ = s
            .cluster
            .primary
            .cmd_str(&["DEL", &format!("soak:overflow:{i}")]);
    }
    Some(Instant::now())
}

/// Ask for a snapshot, SIGKILL replisnap a random moment into it (up to the last
/// snapshot's duration), restart it. On target when the snapshot was not stored.
fn kill9(s: &mut Soak) -> Option<Instant> {
    let last =
        s.rs.scrape()
            .ok()
            .map(|m| {
                let n = m.get("replisnap_snapshot_duration_seconds_count");
                let sum = m.get("replisnap_snapshot_duration_seconds_sum");
                if n > 0.0 {
                    sum / n
                } else {
                    0.2
                }
            })
            .unwrap_or(0.2);
    let pid = s.rs.pid();
    let (code, out, err) = s.rs.verb(&["snapshot"]);
    let id = out.trim().to_string();
    if code != 0 {
        eprintln!("soak: kill9: snapshot request refused ({out}{err}); killing anyway");
    }
    let wait = (last * 1000.0 * s.rng.below(100) as f64 / 100.0) as u64;
    std::thread::sleep(Duration::from_millis(wait));
    s.rs.kill9();
    let stored =
        s.rs.listing()
            .map(|(l, _)| l.iter().any(|m| m.id.as_str() == id))
            .unwrap_or(false);
    if code == 0 && !stored {
        s.report.kind("kill9-snapshot").on_target += 1;
    }
    let t = Instant::now();
    if let Err(e) = s.rs.start() {
        s.report.violation(format!("kill9: restart: {e}"));
        return None;
    }
    s.restarted();
    // The killed process's temporaries are gone once the new one is ready.
    if let Some(pid) = pid {
        let mine = format!(".tmp-{pid}");
        for l in s.rs.leftovers(Duration::ZERO) {
            if l.ends_with(&mine) {
                s.report
                    .violation(format!("kill9: {l} left by the killed process"));
            }
        }
    }
    Some(t)
}

/// Fill the storage's filesystem (a ballast file), then free it.
fn disk_full(s: &mut Soak) -> Option<Instant> {
    let ballast = s.rs.storage_path().with_file_name("ballast");
    storage_refuses(
        s,
        "disk-full",
        |_| fill(&ballast),
        |_| {
            let _ = std::fs::remove_file(&ballast);
        },
    )
}

/// Make the storage directory read-only (a read-only bind mount over it: open files stay
/// writable, every new open or rename through the path fails with EROFS), then undo it.
fn read_only(s: &mut Soak) -> Option<Instant> {
    let dir = s.rs.storage_path();
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("mount")
            .args(args)
            .arg(&dir)
            .arg(&dir)
            .status()
            .is_ok_and(|st| st.success());
        assert!(ok, "mount {args:?} {}", dir.display());
    };
    let undo = dir.clone();
    storage_refuses(
        s,
        "read-only",
        |_| {
            // A snapshot in flight may fail here; its temporary is removed before the next
            // one (it was left until the next start: found by this soak, fixed).
            run(&["--bind"]);
            let ok = std::process::Command::new("mount")
                .args(["-o", "remount,bind,ro"])
                .arg(&dir)
                .status()
                .is_ok_and(|st| st.success());
            assert!(ok, "remount {} read-only", dir.display());
        },
        move |_| {
            let ok = std::process::Command::new("umount")
                .arg(&undo)
                .status()
                .is_ok_and(|st| st.success());
            assert!(ok, "umount the read-only bind mount {}", undo.display());
        },
    )
}

/// The storage refuses writes (`refuse`): a snapshot must fail and be counted as an
/// error, replication go on, retention keep what it must. Recovery (the lag) is timed
/// from `allow`; [`storage_allowed`] then checks that a snapshot is stored again (its
/// own duration is not lag, so it is not in the recovery time: a 4-minute soak counted
/// the snapshot's 7 s as a disk-full recovery of 7.05 s).
fn storage_refuses(
    s: &mut Soak,
    name: &'static str,
    refuse: impl FnOnce(&mut Soak),
    allow: impl FnOnce(&mut Soak),
) -> Option<Instant> {
    let errors = s.rs.total("replisnap_snapshots_total{result=\"error\"}");
    refuse(s);
    let (ok, out) = s.rs.snapshot_once();
    if ok {
        s.report
            .violation(format!("{name}: a snapshot was stored ({out})"));
    } else {
        s.report.kind(name).on_target += 1;
    }
    // The failure is answered before the counter is bumped: give it a moment.
    let counted = wait_until(Duration::from_secs(10), || {
        s.rs.total("replisnap_snapshots_total{result=\"error\"}") > errors
    });
    if !counted {
        s.report.violation(format!(
            "{name}: snapshots_total{{result=\"error\"}} did not grow"
        ));
    }
    let lag = s.rs.time_to_lag(
        &s.cluster.primary,
        crate::world::LAG_LIMIT,
        Duration::from_secs(30),
    );
    if lag.is_none() {
        s.report.violation(format!(
            "{name}: replication stalled while storage refused writes"
        ));
    }
    // Retention kept what it must (a scheduled snapshot stored just before may rightly
    // have retired the oldest); nothing partial is left.
    s.check_storage();
    allow(s);
    Some(Instant::now())
}

/// After [`storage_refuses`]'s `allow`: a snapshot is stored again.
fn storage_allowed(s: &mut Soak, name: &str) {
    if let Err(e) = s.rs.snapshot_now() {
        s.report.violation(format!(
            "{name}: no snapshot stored once writes were allowed: {e}"
        ));
    }
}

/// Write zeros into `path` until the filesystem is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("ballast file");
    let chunk = vec![0u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    let small = vec![0u8; 4096];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
}
