//! systemd's notification protocol (sd_notify(3), through the `sd-notify` crate) for
//! `replisnap run` under `Type=notify`: `READY=1` once the daemon is up, `STATUS=` with what
//! the replica is doing and its lag (refreshed by a thread of its own), `WATCHDOG=1` while
//! every watched part is moving, `STOPPING=1` when a stop begins.
//!
//! Owns the words systemd shows (`systemctl status`) and the rule for feeding the watchdog:
//! fed only while no [`Watch`] reports its part wedged (busy without a beat past its bound:
//! the replica's apply loop, the snapshot writer, the daemon's main loop), so a wedged part
//! gets the process killed and restarted by systemd. Everything is a no-op when
//! `NOTIFY_SOCKET` is unset. It must never block the daemon (one datagram per message,
//! failures logged once), never send `WATCHDOG=1` while a part is wedged, never change the
//! environment (child processes, threads), and never import another file of the daemon.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tracing::{error, info, warn};

use crate::heartbeat::{Heartbeat, Watch};
use crate::metrics::Metrics;
use crate::replication::{Phase, Status};
use crate::snapshot::{JobState, Snapshotter};

/// How long the replica may be busy without a beat: it beats on every read and every turn
/// of its loops; the longest legitimate silence is one read while a full sync waits for a
/// silent master (60 s, the servers' `repl-timeout`), before it gives up and reconnects.
pub const REPLICA_BOUND: Duration = Duration::from_secs(90);
// The snapshot writer's bound is `[snapshot] timeout` (default 900 s: S3 gives one request
// 120 s of silence, then retries, 5 attempts ≤ 20 s apart).
/// The daemon's main loop (schedules, signals) turns every 100 ms.
pub const MAIN_BOUND: Duration = Duration::from_secs(30);

/// Sends to systemd (or nowhere: no `NOTIFY_SOCKET`).
#[derive(Clone)]
pub struct Systemd {
    on: bool,
    warned: Arc<std::sync::atomic::AtomicBool>,
}

impl Systemd {
    /// Reads `NOTIFY_SOCKET` once, to know whether there is anyone to tell.
    pub fn from_env() -> Systemd {
        let on = std::env::var_os("NOTIFY_SOCKET").is_some();
        if on {
            info!("NOTIFY_SOCKET set: telling systemd when ready, what we do, and that we live");
        }
        Systemd {
            on,
            warned: Arc::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.on
    }

    /// The watchdog interval systemd asked for (`WATCHDOG_USEC`, for this pid).
    pub fn watchdog(&self) -> Option<Duration> {
        if self.on {
            sd_notify::watchdog_enabled()
        } else {
            None
        }
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.on {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            if !self.warned.swap(true, Ordering::Relaxed) {
                warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET); going on without");
            }
        }
    }

    pub fn status(&self, text: &str) {
        self.send(&[NotifyState::Status(text)]);
    }

    pub fn ready(&self, text: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(text)]);
    }

    pub fn stopping(&self, text: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(text)]);
    }

    fn watchdog_ping(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

/// What the status line and the watchdog look at.
pub struct Reporter {
    pub status: Arc<Status>,
    pub address: String,
    pub metrics: Arc<Metrics>,
    pub snapshotter: Option<Snapshotter>,
    /// Each watched part with its heartbeat.
    pub watched: Vec<(Watch, Arc<Heartbeat>)>,
    /// Names of the parts found wedged at the last tick (logged once per episode).
    wedged: Vec<&'static str>,
}

/// One tick's outcome.
#[derive(Debug, PartialEq)]
pub struct Tick {
    pub status: String,
    /// False while a part is wedged.
    pub alive: bool,
}

impl Reporter {
    pub fn new(
        status: Arc<Status>,
        address: String,
        metrics: Arc<Metrics>,
        snapshotter: Option<Snapshotter>,
    ) -> Reporter {
        Reporter {
            status,
            address,
            metrics,
            snapshotter,
            watched: Vec::new(),
            wedged: Vec::new(),
        }
    }

    /// Watch `hb` under `name`: wedged when busy without a beat for longer than `bound`.
    pub fn watch(&mut self, name: &'static str, bound: Duration, hb: Arc<Heartbeat>) {
        self.watched
            .push((Watch::new(name, bound, Instant::now()), hb));
    }

    /// One replica and its snapshot writer (if it has one, bounded by `writer_bound`):
    /// the pair every source and every shard runs.
    pub fn watch_pipeline(
        &mut self,
        (replica, writer): (&'static str, &'static str),
        replica_beat: Arc<Heartbeat>,
        snapshotter: Option<&Snapshotter>,
        writer_bound: Duration,
    ) {
        self.watch(replica, REPLICA_BOUND, replica_beat);
        if let Some(s) = snapshotter {
            self.watch(writer, writer_bound, s.heartbeat());
        }
    }

    /// The status line now, and whether every watched part is moving.
    pub fn tick(&mut self, now: Instant) -> Tick {
        let mut stuck = Vec::new();
        for (w, hb) in &mut self.watched {
            if let Some(d) = w.stalled(hb, now) {
                stuck.push((w.name, d, w.bound));
            }
        }
        for (name, d, bound) in &stuck {
            if !self.wedged.contains(name) {
                error!(
                    part = name, stuck_seconds = d.as_secs(), bound_seconds = bound.as_secs(),
                    "wedged: busy without progress past its bound; systemd's watchdog is no longer fed"
                );
            }
        }
        let names: Vec<&'static str> = stuck.iter().map(|(n, _, _)| *n).collect();
        for name in &self.wedged {
            if !names.contains(name) {
                info!(part = name, "moving again; feeding systemd's watchdog");
            }
        }
        self.wedged = names;
        let mut line = String::new();
        for (name, d, _) in &stuck {
            line.push_str(&format!(
                "WEDGED: the {name} made no progress for {} s; ",
                d.as_secs()
            ));
        }
        line.push_str(&self.link_line());
        if let Some(s) = self.snapshotter.as_ref().and_then(|s| s.last()) {
            let state = match &s.state {
                JobState::Running => "running",
                JobState::Stored => "stored",
                JobState::Failed { .. } => "failed",
            };
            line.push_str(&format!("; last snapshot {} {state}", s.id));
        }
        Tick {
            status: line,
            alive: stuck.is_empty(),
        }
    }

    fn link_line(&self) -> String {
        let a = &self.address;
        let errors = self.status.link_errors.load(Ordering::Relaxed);
        match self.status.phase() {
            Phase::Starting => format!("starting, master {a}"),
            Phase::Connecting if errors == 0 => format!("connecting to {a}"),
            Phase::Connecting => format!("connecting to {a} ({errors} link errors so far)"),
            Phase::FullSync => format!("full sync from {a} in progress"),
            Phase::Streaming => {
                let (bytes, secs) = self.metrics.lag_now();
                format!("streaming from {a}, lag {secs:.1} s ({bytes} bytes)")
            }
            Phase::Reconnecting => {
                format!("link down, reconnecting to {a} ({errors} link errors so far)")
            }
            Phase::Stopped => format!("replica stopped (master {a})"),
        }
    }
}

/// The thread sending `STATUS=` (when it changed) and `WATCHDOG=1` (while alive).
pub struct Notifier {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Notifier {
    /// Start it; `None` when there is no `NOTIFY_SOCKET` (nothing to do).
    pub fn start(sd: Systemd, mut reporter: Reporter) -> std::io::Result<Option<Notifier>> {
        if !sd.enabled() {
            return Ok(None);
        }
        let watchdog = sd.watchdog();
        // systemd asks for a ping at least every half interval; a quarter leaves margin.
        let every = watchdog
            .map_or(Duration::from_secs(2), |w| w / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(2));
        if let Some(w) = watchdog {
            info!(
                watchdog_ms = w.as_millis() as u64,
                ping_ms = every.as_millis() as u64,
                "systemd watchdog on"
            );
        }
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("systemd-notify".into())
            .spawn(move || {
                let mut last = String::new();
                loop {
                    let t = reporter.tick(Instant::now());
                    if t.status != last {
                        sd.status(&t.status);
                        last = t.status;
                    }
                    if watchdog.is_some() && t.alive {
                        sd.watchdog_ping();
                    }
                    match rx.recv_timeout(every) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                }
            })?;
        Ok(Some(Notifier {
            stop: Some(tx),
            thread: Some(thread),
        }))
    }

    /// Stop the thread (the last status stays as it was).
    pub fn shutdown(mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::{Replica, Settings};

    fn reporter() -> (Reporter, crate::replication::ReplicaHandle) {
        let (_replica, handle) = Replica::new(Settings {
            address: "10.0.0.5:6379".into(),
            username: None,
            password: None,
            announce_port: 6379,
            psync_command: "PSYNC".into(),
            connect_timeout: Duration::from_secs(1),
            tls: None,
        });
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let r = Reporter::new(handle.status.clone(), "10.0.0.5:6379".into(), metrics, None);
        (r, handle)
    }

    #[test]
    fn a_wedged_part_stops_the_watchdog_and_says_so() {
        let (mut r, _h) = reporter();
        let hb = Arc::new(Heartbeat::default());
        r.watch("snapshot writer", Duration::from_secs(5), hb.clone());
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let t = r.tick(at(0));
        assert!(t.alive);
        assert_eq!(t.status, "starting, master 10.0.0.5:6379");
        hb.set_busy(true);
        assert!(r.tick(at(1)).alive);
        assert!(r.tick(at(6)).alive);
        let t = r.tick(at(7));
        assert!(!t.alive);
        assert_eq!(
            t.status,
            "WEDGED: the snapshot writer made no progress for 6 s; starting, master 10.0.0.5:6379"
        );
        hb.beat();
        assert!(r.tick(at(8)).alive);
        hb.set_busy(false);
        assert!(r.tick(at(100)).alive);
    }
}
