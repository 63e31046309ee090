//! Everything a soak run holds (servers, load, the two replisnaps — local storage, with a
//! faked clock, and S3 —, the seeded random source, the report) and the checks made
//! between faults: load periods with lag and RSS sampling, quiet points (each daemon's
//! newest snapshot's digest equals the master's, retention kept what it must, nothing
//! partial visible) and the end-of-run checks. Faults live in faults.rs and s3_faults.rs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use replisnap::storage::SnapshotId;

use crate::cluster::{master_offset, Cluster};
use crate::gen::Rng;
use crate::load::Load;
use crate::observe::Replisnap;
use crate::report::{QuietPoint, Report};
use crate::s3::S3Side;
use crate::support::faketime::FakeClock;

/// Lag limit after a fault, and how fast it must be reached.
pub const LAG_LIMIT: i64 = 1 << 20;
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(5);

pub struct Soak {
    pub cluster: Cluster,
    pub load: Load,
    pub rs: Replisnap,
    /// The second daemon, storing into S3 through the fault proxy.
    pub s3: S3Side,
    /// The local daemon's wall clock.
    pub clock: FakeClock,
    /// The snapshot schedule's period (None: SOAK_SCHEDULE overrides it).
    pub period: Option<Duration>,
    pub rng: Rng,
    pub report: Report,
    pub keep_last: usize,
    /// Long runs check RSS against its level in a process's second minute.
    pub long: bool,
    /// Every snapshot id seen stored: the `keep_last` newest must stay.
    seen: BTreeSet<SnapshotId>,
    /// The same for the S3 daemon.
    seen_s3: BTreeSet<SnapshotId>,
    /// (RSS, the master's used_memory): the current process's level, the highest RSS
    /// sampled over its second minute (one sample is not a level: snapshots and archive
    /// segments swing it by tens of MB within seconds), with the master's used_memory
    /// then. `rss_window` gathers it; checks start when the second minute is over.
    rss_ref: Option<(u64, u64)>,
    rss_window: Option<(u64, u64)>,
    /// The snapshot of the last digest mismatch (diagnosed when it stays).
    mismatch: Option<String>,
    /// Failovers so far. From the second on, the primary may be a node that rebuilt small
    /// plain sorted sets compact in a full sync (as the old standby): encodings are then
    /// not checked (tests/soak/oracle.rs).
    pub failovers: u32,
    /// When the run started (the RSS trace's minutes count from it).
    t0: Instant,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

impl Soak {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cluster: Cluster,
        load: Load,
        (rs, s3): (Replisnap, S3Side),
        clock: FakeClock,
        period: Option<Duration>,
        seed: u64,
        keep_last: usize,
        long: bool,
    ) -> Soak {
        Soak {
            cluster,
            load,
            rs,
            s3,
            clock,
            period,
            rng: Rng(seed | 1),
            report: Report::default(),
            keep_last,
            long,
            seen: BTreeSet::new(),
            seen_s3: BTreeSet::new(),
            rss_ref: None,
            rss_window: None,
            mismatch: None,
            failovers: 0,
            t0: Instant::now(),
        }
    }

    /// A process (re)started: its RSS level is taken anew over its second minute.
    pub fn restarted(&mut self) {
        self.report.rss_restart(self.minute());
        self.rss_ref = None;
        self.rss_window = None;
    }

    /// Let the load run for `d`, sampling lag and RSS every 500 ms; the daemon must stay up.
    pub fn run_load(&mut self, d: Duration) {
        let t = Instant::now();
        while t.elapsed() < d {
            std::thread::sleep(Duration::from_millis(500));
            self.sample();
        }
    }

    fn minute(&self) -> u64 {
        self.t0.elapsed().as_secs() / 60
    }

    pub fn sample(&mut self) {
        if let Some(d) = self.s3.rs.daemon.as_mut() {
            if let Ok(Some(st)) = d.child.try_wait() {
                let log = self.s3.rs.log_tail(40);
                self.report
                    .violation(format!("the S3 replisnap exited ({st}) under load:\n{log}"));
                self.s3.rs.daemon = None;
                let _ = self.s3.rs.start();
            }
        }
        if let Some(d) = self.rs.daemon.as_mut() {
            if let Ok(Some(st)) = d.child.try_wait() {
                let log = self.rs.log_tail(40);
                self.report
                    .violation(format!("replisnap exited ({st}) under load:\n{log}"));
                self.rs.daemon = None;
                let _ = self.rs.start();
                self.restarted();
                return;
            }
        }
        if let Some(l) = self.rs.lag(&self.cluster.primary) {
            self.report.max_lag_bytes = self.report.max_lag_bytes.max(l);
        }
        let Some(rss) = self.rs.rss() else { return };
        let used = self
            .cluster
            .primary
            .info_field("memory", "used_memory")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        self.report.rss(rss, self.minute(), used);
        if !self.long || self.rs.started.elapsed() < Duration::from_secs(60) {
            return;
        }
        let age = self.rs.started.elapsed();
        match self.rss_ref {
            None if age < Duration::from_secs(120) => {
                let w = self.rss_window.get_or_insert((rss, used));
                if rss > w.0 {
                    *w = (rss, used);
                }
            }
            None => self.rss_ref = Some(self.rss_window.take().unwrap_or((rss, used))),
            Some((r, u)) => {
                // RSS growth beyond the data's own growth (the master's used_memory):
                // a dataset that grows is not a leak.
                let ratio = rss as f64 / r as f64;
                let data = (used as f64 / u.max(1) as f64).max(1.0);
                let beyond = ratio / data;
                self.report.rss_ratio_max = self.report.rss_ratio_max.max(ratio);
                self.report.rss_beyond_data_max = self.report.rss_beyond_data_max.max(beyond);
                if beyond > 1.2 {
                    self.report.violation(format!(
                        "RSS {rss} B is {ratio:.2}× its level in its second minute ({r} B) \
                         while the master's used_memory grew {data:.2}× ({u} → {used} B)"
                    ));
                    self.rss_ref = Some((rss, used)); // once per growth step
                }
            }
        }
    }

    /// After a fault cleared: time to a lag under 1 MB, recorded for `kind`; a violation
    /// past [`RECOVERY_LIMIT`] (the wait itself goes on to 120 s, to tell slow from stuck).
    /// `syncs_before`: for a fault that takes the link down, the run's partial + full
    /// resyncs before it; recovery then also needs a resync after it (else a cut the
    /// daemon has not noticed yet would count as recovered at once).
    pub fn recovered(
        &mut self,
        kind: &'static str,
        since: Instant,
        syncs_before: Option<f64>,
    ) -> bool {
        self.recovered_on(false, kind, since, syncs_before)
    }

    /// The local daemon, or the S3 one.
    pub fn daemon(&self, s3: bool) -> &Replisnap {
        if s3 {
            &self.s3.rs
        } else {
            &self.rs
        }
    }

    /// [`Soak::recovered`] of the local daemon (`s3` false) or the S3 one.
    pub fn recovered_on(
        &mut self,
        s3: bool,
        kind: &'static str,
        since: Instant,
        syncs_before: Option<f64>,
    ) -> bool {
        let rs = self.daemon(s3);
        let waited = match syncs_before {
            Some(b) => {
                let synced =
                    crate::support::wait_until(Duration::from_secs(120), || self.syncs(s3) > b);
                synced
                    .then(|| {
                        rs.time_to_lag(&self.cluster.primary, LAG_LIMIT, Duration::from_secs(120))
                    })
                    .flatten()
            }
            None => rs.time_to_lag(&self.cluster.primary, LAG_LIMIT, Duration::from_secs(120)),
        };
        let Some(_) = waited.as_ref() else {
            let log = rs.log_tail(30);
            self.report
                .violation(format!("{kind}: lag not under 1 MB within 120 s:\n{log}"));
            return false;
        };
        let took = since.elapsed();
        let k = self.report.kind(kind);
        k.recovered += 1;
        k.max_recovery = k.max_recovery.max(took);
        if took > RECOVERY_LIMIT {
            // What the daemon did meanwhile (a full sync? its phases' times) and how busy the
            // machine was: a slow recovery must say why.
            let log = self.daemon(s3).log_tail(12);
            let trace = self.daemon(s3).lag_trace();
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            let load: Vec<&str> = load.split_whitespace().take(3).collect();
            self.report.violation(format!(
                "{kind}: lag under 1 MB only {:.2} s after the fault cleared (limit 5 s); \
                 load average {}; the lag once resynced ({:.2} s after the fault cleared): \
                 {trace}; the daemon's log:\n{log}",
                took.as_secs_f64(),
                load.join(" "),
                (took.as_secs_f64() - waited.unwrap_or_default().as_secs_f64()).max(0.0),
            ));
        }
        true
    }

    /// Partial plus full resyncs over the run (killed processes included) of the local
    /// daemon (`s3` false) or the S3 one.
    pub fn syncs(&self, s3: bool) -> f64 {
        let rs = self.daemon(s3);
        rs.total("replisnap_partial_resyncs_total") + rs.total("replisnap_full_resyncs_total")
    }

    /// Pause the load, wait for lag 0, record the master's (time, offset, digest), take a
    /// snapshot on demand and check its digest; then the storage checks. Resumes the load.
    pub fn quiet_point(&mut self) {
        self.quiet_point_with(true);
    }

    /// [`Soak::quiet_point`], the S3 daemon checked too when `s3`.
    pub fn quiet_point_with(&mut self, s3: bool) {
        self.load.pause();
        // The master's own file loaded, computed once per quiet point (tests/soak/oracle.rs).
        let mut round = None;
        for attempt in 0..3 {
            match self.quiet_once(&mut round) {
                Ok(q) => {
                    self.report.quiet.push(q);
                    break;
                }
                // A key's expiry settling between the two digests can differ once; twice
                // in a row is a violation.
                Err((true, why)) if attempt < 2 => {
                    eprintln!("soak: quiet point re-checked: {why}");
                    self.report.digest_retries += 1;
                    round = None;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err((retryable, why)) => {
                    let detail = match (&self.mismatch, retryable) {
                        (Some(id), true) => {
                            let rdb = self.rs.storage_path().join(id).join("dump.rdb");
                            crate::diagnose::differing_keys(
                                &self.cluster.primary,
                                &self.cluster.standby,
                                &rdb,
                                8,
                            )
                        }
                        _ => String::new(),
                    };
                    self.report
                        .violation(format!("quiet point: {why}\n{detail}"));
                    break;
                }
            }
        }
        self.check_storage();
        if s3 {
            self.quiet_s3(round);
        }
        self.load.resume();
    }

    /// The S3 daemon at the same quiet point: its snapshot on demand agrees with the master
    /// (re-checked like the local one's), its `keep_last` newest ids ever seen are listed,
    /// nothing partial older than 20 s is in the bucket.
    fn quiet_s3(&mut self, mut round: Option<String>) {
        let strict_held = self.failovers < 2;
        for attempt in 0..3 {
            match self
                .s3
                .quiet_check(&self.cluster.primary, strict_held, &mut round)
            {
                Ok((id, agreement)) => {
                    eprintln!("soak: s3 quiet point: {id} {agreement:?}");
                    self.report.s3_quiet += 1;
                    break;
                }
                Err(why) if attempt < 2 && why.contains("digest") => {
                    eprintln!("soak: s3 quiet point re-checked: {why}");
                    self.report.digest_retries += 1;
                    round = None;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(why) => {
                    self.report.violation(format!("quiet point: {why}"));
                    break;
                }
            }
        }
        check_kept(
            &self.s3.rs,
            &mut self.seen_s3,
            self.keep_last,
            &mut self.report,
            "s3: ",
        );
        for l in self.s3.leftovers(Duration::from_secs(20)) {
            self.report.violation(format!("left in the bucket: {l}"));
        }
    }

    /// One quiet-point check; Err((retryable, why)).
    fn quiet_once(&mut self, round: &mut Option<String>) -> Result<QuietPoint, (bool, String)> {
        let m = &self.cluster.primary;
        let caught_up =
            crate::support::wait_until(Duration::from_secs(60), || self.rs.lag(m) == Some(0));
        if !caught_up {
            return Err((
                false,
                format!(
                    "lag not 0 within 60 s (lag {:?}):\n{}",
                    self.rs.lag(m),
                    self.rs.log_tail(30)
                ),
            ));
        }
        let digest = m.digest();
        let offset = master_offset(m);
        let replid = m
            .info_field("replication", "master_replid")
            .unwrap_or_default();
        let unix_ms = now_ms();
        let id = self
            .rs
            .snapshot_now()
            .map_err(|e| (false, format!("snapshot on demand: {e}")))?;
        let (list, _) = self
            .rs
            .listing()
            .map_err(|e| (false, format!("list: {e}")))?;
        let man = list
            .iter()
            .find(|x| x.id.as_str() == id)
            .ok_or_else(|| (false, format!("snapshot {id} stored but not listed")))?;
        if let Some(newest) = list.first().filter(|n| n.id < man.id) {
            return Err((
                false,
                format!("the newest listed {} is older than {id}", newest.id),
            ));
        }
        if man.source.offset < offset as u64 {
            return Err((
                false,
                format!(
                    "snapshot {id} at offset {} before the quiet point's {offset}",
                    man.source.offset
                ),
            ));
        }
        // As held, our file must be the master's live data; the manifest's digest (a
        // loader's answer) the master's, or its own file's where no RDB can carry what it
        // holds (tests/soak/oracle.rs).
        let rdb = self.rs.storage_path().join(&id).join("dump.rdb");
        let strict_held = self.failovers < 2;
        match crate::oracle::check_snapshot(m, &rdb, &man.digest, strict_held, round) {
            Ok(crate::oracle::Agreement::Live) => {}
            Ok(crate::oracle::Agreement::AsLoaded) => self.report.digest_as_loaded += 1,
            Ok(crate::oracle::Agreement::AsLoadedNotHeld) => {
                self.report.digest_as_loaded += 1;
                self.report.digest_not_held += 1;
            }
            Err(why) => {
                self.mismatch = Some(id.clone());
                return Err((true, format!("snapshot {id} at offset {offset}: {why}")));
            }
        }
        Ok(QuietPoint {
            unix_ms,
            offset,
            replid,
            digest,
            snapshot: id,
        })
    }

    /// Retention kept the `keep_last` newest snapshots ever seen; no problem in the
    /// listing; no temporary or incomplete snapshot older than 20 s.
    pub fn check_storage(&mut self) {
        check_kept(
            &self.rs,
            &mut self.seen,
            self.keep_last,
            &mut self.report,
            "",
        );
        for l in self.rs.leftovers(Duration::from_secs(20)) {
            self.report.violation(format!("left in storage: {l}"));
        }
    }
}

/// Retention kept the `keep_last` newest snapshots of `rs` ever seen (`seen`, updated) and
/// its listing has no problem; violations are prefixed with `label`.
fn check_kept(
    rs: &Replisnap,
    seen: &mut BTreeSet<SnapshotId>,
    keep_last: usize,
    report: &mut Report,
    label: &str,
) {
    let (list, problems) = match rs.listing() {
        Ok(l) => l,
        Err(e) => return report.violation(format!("{label}list storage: {e}")),
    };
    for p in problems {
        report.violation(format!("{label}listing problem: {p}"));
    }
    let now: BTreeSet<SnapshotId> = list.iter().map(|m| m.id.clone()).collect();
    seen.extend(now.iter().cloned());
    let must: Vec<SnapshotId> = seen.iter().rev().take(keep_last).cloned().collect();
    for id in must {
        if !now.contains(&id) {
            report.violation(format!(
                "{label}snapshot {id} lost: one of the {keep_last} newest (keep_last)"
            ));
            seen.remove(&id);
        }
    }
}
