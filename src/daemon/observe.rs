//! The daemon's outward faces, wired: the HTTP `Control` over the replica and the
//! snapshotter ([`DaemonControl`]), the snapshot events feeding the metrics
//! ([`MetricsEvents`]), and the once-a-second poller that copies the replica's status into
//! the metrics and reads the master's own offset on a connection of its own.
//!
//! Owns only translation between parts (status atomics → metric events, snapshot states →
//! HTTP answers). It must never wait for a snapshot to be written, never touch the keyspace,
//! never log a password, and never import another file of the daemon.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{debug, warn};

use crate::http::{Control, SnapshotRequestError, SnapshotStatus};
use crate::metrics::{LinkErrorReason, Metrics, ResyncReason};
use crate::replication::ReplicaHandle;
use crate::snapshot::{JobState, Reason, RetentionOutcome, SnapshotEvents, Snapshotter, TakeError};
use crate::storage::{Manifest, SnapshotId};

/// What `POST /snapshot`, `GET /snapshot/<id>` and `/readyz` ask.
pub struct DaemonControl {
    pub handle: ReplicaHandle,
    pub snapshotter: Option<Snapshotter>,
}

impl Control for DaemonControl {
    fn ready(&self) -> Result<(), String> {
        if !self.handle.status.ready.load(Ordering::Relaxed) {
            return Err("the first full sync has not completed".into());
        }
        if !self.handle.status.link_up.load(Ordering::Relaxed) {
            return Err("the link to the master is down".into());
        }
        Ok(())
    }

    fn request_snapshot(&self) -> Result<String, SnapshotRequestError> {
        let Some(s) = &self.snapshotter else {
            return Err(SnapshotRequestError::Other(
                "no [storage] configured: snapshots are off".into(),
            ));
        };
        // `take` waits for the capture (between two commands, microseconds of pause) and
        // the id's reservation in storage, then returns; the writing happens elsewhere.
        match s.take(Reason::Api) {
            Ok(id) => Ok(id.to_string()),
            Err(TakeError::Busy(id)) => Err(SnapshotRequestError::Busy { running: Some(id) }),
            Err(TakeError::NotReady(why)) => Err(SnapshotRequestError::NotReady(why)),
            Err(e) => Err(SnapshotRequestError::Other(e.to_string())),
        }
    }

    fn snapshot_status(&self, id: &str) -> Option<SnapshotStatus> {
        let id = SnapshotId::parse(id).ok()?;
        let st = self.snapshotter.as_ref()?.status(&id)?;
        Some(match st.state {
            JobState::Running => SnapshotStatus::Running,
            JobState::Stored => SnapshotStatus::Stored,
            JobState::Failed { error } => SnapshotStatus::Failed(error),
        })
    }
}

/// Snapshot events into the metrics.
pub struct MetricsEvents(pub Arc<Metrics>);

impl SnapshotEvents for MetricsEvents {
    fn started(&self, _id: &SnapshotId, _reason: Reason, pause: Duration) {
        self.0.observe_snapshot_pause(pause.as_secs_f64());
    }

    fn stored(&self, m: &Manifest, total: Duration) {
        let at = SystemTime::from(m.created_at) + total;
        self.0.snapshot_ok(total.as_secs_f64(), m.rdb.bytes, at);
        // The write is the upload (local storage; S3 streams parts while writing).
        self.0.upload_ok(
            m.rdb.bytes,
            m.durations.write_seconds + m.durations.upload_seconds,
            at,
        );
    }

    fn failed(&self, _id: &SnapshotId, _error: &str) {
        self.0.snapshot_failed();
    }

    fn upload_failed(&self, _id: &SnapshotId, _error: &str) {
        self.0.upload_failed();
    }

    fn retention(&self, outcome: &RetentionOutcome) {
        self.0.inc_retention_deleted(outcome.deleted.len() as u64);
        let oldest = outcome.kept.last().map(|m| SystemTime::from(m.created_at));
        self.0
            .set_stored_snapshots(outcome.kept.len() as u64, oldest);
    }
}

/// Copy the replica's status into the metrics every second, and read the master's offset
/// on a connection of its own (plain TCP; with TLS the master offset is not polled).
pub fn spawn_poller(
    handle: ReplicaHandle,
    metrics: Arc<Metrics>,
    address: String,
    username: Option<String>,
    password: Option<String>,
    tls: bool,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("metrics-poller".into())
        .spawn(move || {
            let s = &handle.status;
            let (mut full, mut partial, mut forced) = (0u64, 0u64, 0u64);
            let mut errors = [0u64; 8];
            let mut applied = vec![0u64; s.commands.0.len()];
            let mut conn: Option<BufReader<TcpStream>> = None;
            if tls {
                warn!("[source.tls]: the master's own offset is not polled (replication_lag_* stay 0)");
            }
            while !handle.is_stopped() {
                metrics.set_link_up(s.link_up.load(Ordering::Relaxed));
                metrics.set_replication_offset(s.offset.load(Ordering::Relaxed));
                let delta = |now: u64, last: &mut u64| {
                    let d = now.saturating_sub(*last);
                    *last = now;
                    d
                };
                for _ in 0..delta(s.full_syncs.load(Ordering::Relaxed), &mut full) {
                    metrics.inc_full_resyncs();
                }
                for _ in 0..delta(s.partial_syncs.load(Ordering::Relaxed), &mut partial) {
                    metrics.inc_partial_resyncs();
                }
                let new_forced = delta(s.forced_resyncs.load(Ordering::Relaxed), &mut forced);
                if new_forced > 0 {
                    let why = s.last_forced_reason.lock().map(|g| g.clone()).unwrap_or_default();
                    let reason = if why.contains("not supported") || why.contains("propagated verbatim") {
                        ResyncReason::UnknownCommand
                    } else {
                        ResyncReason::ApplyError
                    };
                    for _ in 0..new_forced {
                        metrics.inc_resyncs_forced(reason);
                    }
                }
                for (i, reason) in LinkErrorReason::ALL.iter().enumerate() {
                    let now = s.link_error_kinds[i].load(Ordering::Relaxed);
                    for _ in 0..now.saturating_sub(errors[i]) {
                        metrics.inc_link_errors(*reason);
                    }
                    errors[i] = now;
                }
                for (i, c) in s.commands.0.iter().enumerate() {
                    let now = c.load(Ordering::Relaxed);
                    if now > applied[i] {
                        metrics.commands_applied_at(i, now - applied[i]);
                        applied[i] = now;
                    }
                }
                if let Ok(k) = s.keys_per_db.lock() {
                    metrics.set_dataset_keys(k.iter().copied());
                }
                if s.link_up.load(Ordering::Relaxed) {
                    metrics.note_master_io();
                }
                if !tls {
                    match master_offset(&mut conn, &address, username.as_deref(), password.as_deref()) {
                        Ok(off) => metrics.observe_master_offset(off),
                        Err(e) => {
                            debug!(error = %e, "cannot read the master's offset");
                            conn = None;
                        }
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
}

fn command(w: &mut TcpStream, args: &[&[u8]]) -> std::io::Result<()> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    w.write_all(&out)
}

/// One bounded RESP reply: a simple line, or a bulk string of at most 1 MiB.
fn reply(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    match line.as_bytes().first() {
        Some(b'+') => Ok(line.trim_end().to_string()),
        Some(b'-') => Err(bad(format!("master said {}", line.trim_end()))),
        Some(b'$') => {
            let n: usize = line[1..]
                .trim()
                .parse()
                .map_err(|_| bad("bad bulk length".into()))?;
            if n > 1 << 20 {
                return Err(bad(format!("INFO reply of {n} bytes")));
            }
            let mut buf = vec![0u8; n + 2];
            std::io::Read::read_exact(r, &mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
        }
        _ => Err(bad(format!("unexpected reply {line:?}"))),
    }
}

/// `master_repl_offset` from the master's `INFO replication`, reconnecting as needed.
fn master_offset(
    conn: &mut Option<BufReader<TcpStream>>,
    address: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> std::io::Result<i64> {
    if conn.is_none() {
        let s = TcpStream::connect(address)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.set_write_timeout(Some(Duration::from_secs(2)))?;
        let mut w = s.try_clone()?;
        let mut r = BufReader::new(s);
        if let Some(p) = password {
            match username {
                Some(u) => command(&mut w, &[b"AUTH", u.as_bytes(), p.as_bytes()])?,
                None => command(&mut w, &[b"AUTH", p.as_bytes()])?,
            }
            reply(&mut r)?;
        }
        *conn = Some(r);
    }
    let Some(r) = conn.as_mut() else {
        return Err(std::io::Error::other("no connection"));
    };
    let mut w = r.get_ref().try_clone()?;
    command(&mut w, &[b"INFO", b"replication"])?;
    let info = reply(r)?;
    info.lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "no master_repl_offset")
        })
}
