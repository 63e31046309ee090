//! What a soak run found: faults injected and recovered per kind, the quiet points
//! (time, offset, digest: for a point-in-time restore check), resyncs, snapshots, lag,
//! RSS, and the violations. It owns the printed tables; it never decides what a
//! violation is (the callers do).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// A moment with no writes in flight and replisnap caught up: what the master held then.
#[derive(Debug, Clone)]
pub struct QuietPoint {
    pub unix_ms: i64,
    /// The master's `master_repl_offset` (== replisnap's offset then).
    pub offset: i64,
    pub replid: String,
    /// The master's `DEBUG DIGEST`.
    pub digest: String,
    /// The snapshot taken there (its manifest holds the same digest).
    pub snapshot: String,
}

#[derive(Debug, Default, Clone)]
pub struct KindStats {
    pub injected: u32,
    pub recovered: u32,
    /// Time from the fault clearing to a lag under 1 MB (max over this kind).
    pub max_recovery: Duration,
    /// Kind-specific: how many hit their aim (a cut inside a handshake or a payload, a kill
    /// while the snapshot was unfinished).
    pub on_target: u32,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct RssMinute {
    pub min: u64,
    pub max: u64,
    pub used: u64,
    pub restarted: bool,
}

#[derive(Debug, Default)]
pub struct Report {
    pub kinds: BTreeMap<&'static str, KindStats>,
    pub quiet: Vec<QuietPoint>,
    /// Quiet points at which the S3 daemon's snapshot agreed with the master.
    pub s3_quiet: u32,
    /// S3 faults the proxy injected (requests answered with a fault).
    pub s3_injected: u32,
    pub violations: Vec<String>,
    pub max_lag_bytes: i64,
    pub rss_min: u64,
    pub rss_max: u64,
    /// Per process: RSS level in its second minute (long runs), and the highest ratio seen.
    pub rss_ratio_max: f64,
    /// The same ratio divided by the master's used_memory growth since then (≥ 1).
    pub rss_beyond_data_max: f64,
    /// Per minute of the run: the daemon's lowest and highest RSS sampled, the master's
    /// used_memory at the last sample, and whether the daemon restarted in that minute.
    pub rss_minutes: BTreeMap<u64, RssMinute>,
    pub digest_retries: u32,
    /// Quiet points whose manifest digest matched only the master's own file loaded (a
    /// shrunk skiplist sorted set with a -0 score: no RDB carries it as held).
    pub digest_as_loaded: u32,
    /// Of those, quiet points after the second failover whose encodings differed too.
    pub digest_not_held: u32,
    pub counters: Vec<(String, f64)>,
    /// Load sent: commands of the mix, completed redis-benchmark runs.
    pub load: (u64, u64),
}

impl Report {
    pub fn kind(&mut self, name: &'static str) -> &mut KindStats {
        self.kinds.entry(name).or_default()
    }

    pub fn violation(&mut self, what: String) {
        eprintln!("soak: VIOLATION {what}");
        self.violations.push(what);
    }

    pub fn rss(&mut self, bytes: u64, minute: u64, used: u64) {
        if self.rss_min == 0 || bytes < self.rss_min {
            self.rss_min = bytes;
        }
        self.rss_max = self.rss_max.max(bytes);
        let m = self.rss_minutes.entry(minute).or_insert(RssMinute {
            min: bytes,
            ..RssMinute::default()
        });
        m.min = m.min.min(bytes);
        m.max = m.max.max(bytes);
        m.used = used;
    }

    /// The daemon restarted (a kill -9 or an exit) in this minute: its level starts anew.
    pub fn rss_restart(&mut self, minute: u64) {
        self.rss_minutes.entry(minute).or_default().restarted = true;
    }

    /// The daemon's RSS per minute of the run, to tell a leak (a level that climbs) from
    /// swings (full syncs, snapshots, archive segments).
    pub fn rss_table(&self) -> String {
        let mib = |b: u64| b as f64 / 1048576.0;
        let mut s = String::from("RSS per minute (MiB): minute min max master-used_memory\n");
        for (m, r) in &self.rss_minutes {
            let _ = writeln!(
                s,
                "  {m:>3} {:>7.1} {:>7.1} {:>7.1}{}",
                mib(r.min),
                mib(r.max),
                mib(r.used),
                if r.restarted { "  (restarted)" } else { "" }
            );
        }
        s
    }

    pub fn quiet_table(&self) -> String {
        let mut s = String::from(
            "quiet points:\n  unix_ms        replid                                    offset        digest                                    snapshot\n",
        );
        for q in &self.quiet {
            let _ = writeln!(
                s,
                "  {:<14} {:<41} {:<13} {:<41} {}",
                q.unix_ms, q.replid, q.offset, q.digest, q.snapshot
            );
        }
        s
    }

    pub fn table(&self, minutes: f64, seed: u64, server: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "soak: {server}, {minutes:.1} min, SOAK_SEED={seed}");
        let _ = writeln!(
            s,
            "  fault                    injected  recovered  on-target  max recovery (lag < 1 MB)"
        );
        for (k, v) in &self.kinds {
            // Restarts and failovers have no aim inside them to hit or miss.
            let aim = if [
                "master-restart",
                "failover",
                "s3 after master-restart",
                "s3 after failover",
            ]
            .contains(k)
            {
                "-".to_string()
            } else {
                v.on_target.to_string()
            };
            let _ = writeln!(
                s,
                "  {k:<24} {:>8}  {:>9}  {:>9}  {:>8.2} s",
                v.injected,
                v.recovered,
                aim,
                v.max_recovery.as_secs_f64()
            );
        }
        for (k, v) in &self.counters {
            let _ = writeln!(s, "  {k:<48} {v}");
        }
        let mib = |b: u64| b as f64 / 1048576.0;
        let _ = writeln!(
            s,
            "  load: {} mix commands, {} redis-benchmark runs",
            self.load.0, self.load.1
        );
        let _ = writeln!(s, "  max lag under load: {} bytes", self.max_lag_bytes);
        let _ = writeln!(
            s,
            "  RSS: min {:.1} MiB, max {:.1} MiB, max ratio to the level in the second minute {:.2} \
             ({:.2} beyond the master's data growth)",
            mib(self.rss_min),
            mib(self.rss_max),
            self.rss_ratio_max,
            self.rss_beyond_data_max
        );
        let _ = writeln!(
            s,
            "  quiet points: {}, digest re-checks (an expiry settling): {}, matched as loaded \
             (a shrunk skiplist with -0): {} ({} with other encodings after a 2nd failover)",
            self.quiet.len(),
            self.digest_retries,
            self.digest_as_loaded,
            self.digest_not_held
        );
        let _ = writeln!(
            s,
            "  S3 daemon: {} of {} quiet points checked, {} faulted requests",
            self.s3_quiet,
            self.quiet.len(),
            self.s3_injected
        );
        let _ = writeln!(s, "  violations: {}", self.violations.len());
        for v in &self.violations {
            let _ = writeln!(s, "    - {v}");
        }
        s
    }
}
