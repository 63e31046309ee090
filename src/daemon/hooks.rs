//! What the daemon tells the outside after each snapshot (`[notify]`): a GET of
//! `heartbeat_url` (a dead man's switch such as healthchecks.io: silence means trouble) and
//! the user's `on_success` / `on_failure` commands, run with the snapshot's facts in
//! `REPLISNAP_*` environment variables.
//!
//! Owns running them away from every other part: the snapshot writer only queues an event
//! (bounded; when the queue is full the event is dropped, logged and counted as an error of
//! its hook), and one thread of its own calls the URL and runs the command, each bounded
//! by `[notify] timeout` (a command still running then is killed). A hook that cannot
//! start, fails or hangs is logged and counted (`hooks_total`, `heartbeats_total`); it never
//! blocks or stops the daemon. It must never print the heartbeat URL, which is a
//! credential: messages name its host only.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::NotifyConfig;
use crate::metrics::{Metrics, Outcome};
use crate::snapshot::{Reason, RetentionOutcome, SnapshotEvents, TakeError};
use crate::storage::{Manifest, SnapshotId};

/// Events waiting for the hooks thread, at most.
const QUEUE: usize = 16;

/// One snapshot's outcome, as the hooks see it.
enum Event {
    Stored(Box<Manifest>),
    Failed { id: Option<String>, error: String },
}

impl Event {
    fn hook(&self) -> &'static str {
        match self {
            Event::Stored(_) => "on_success",
            Event::Failed { .. } => "on_failure",
        }
    }
}

/// The queue into the hooks thread.
pub struct Hooks {
    tx: SyncSender<Event>,
    metrics: Arc<Metrics>,
}

/// What the hooks thread needs.
struct Runner {
    heartbeat: Option<String>,
    heartbeat_fail: bool,
    on_success: Option<PathBuf>,
    on_failure: Option<PathBuf>,
    timeout: Duration,
    storage: String,
    address: String,
    metrics: Arc<Metrics>,
}

impl Hooks {
    /// Start the hooks thread. `storage` describes where snapshots go, `address` the master.
    pub fn start(
        cfg: &NotifyConfig,
        metrics: Arc<Metrics>,
        storage: String,
        address: String,
    ) -> std::io::Result<Hooks> {
        let (tx, rx) = sync_channel(QUEUE);
        let runner = Runner {
            heartbeat: cfg.heartbeat_url.clone(),
            heartbeat_fail: cfg.heartbeat_fail,
            on_success: cfg.on_success.clone(),
            on_failure: cfg.on_failure.clone(),
            timeout: Duration::from_secs(cfg.timeout),
            storage,
            address,
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name("notify hooks".into())
            .spawn(move || runner.run(rx))?;
        Ok(Hooks { tx, metrics })
    }

    fn send(&self, e: Event) {
        match self.tx.try_send(e) {
            Ok(()) => {}
            Err(TrySendError::Full(e)) => {
                warn!(
                    hook = e.hook(),
                    "notify: {QUEUE} snapshot events already wait for their hooks; this one is dropped"
                );
                self.metrics.hook(e.hook(), "error");
            }
            // The thread is gone only when the daemon stops.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Runner {
    fn run(self, rx: Receiver<Event>) {
        // Pending events in order; the channel closes when the daemon drops its sender.
        let mut pending: VecDeque<Event> = VecDeque::new();
        loop {
            let e = match pending.pop_front() {
                Some(e) => e,
                None => match rx.recv() {
                    Ok(e) => e,
                    Err(_) => return,
                },
            };
            self.handle(&e);
            pending.extend(rx.try_iter());
        }
    }

    fn handle(&self, e: &Event) {
        let ok = matches!(e, Event::Stored(_));
        if let Some(url) = &self.heartbeat {
            if ok || self.heartbeat_fail {
                let url = if ok {
                    url.clone()
                } else {
                    format!("{}/fail", url.trim_end_matches('/'))
                };
                self.heartbeat(&url);
            }
        }
        let hook = if ok {
            &self.on_success
        } else {
            &self.on_failure
        };
        if let Some(path) = hook {
            let result = self.run_hook(path, e);
            self.metrics.hook(e.hook(), result);
        }
    }

    fn heartbeat(&self, url: &str) {
        let host = host_of(url);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .build()
            .into();
        match agent.get(url).call() {
            Ok(_) => self.metrics.heartbeat(Outcome::Ok),
            Err(e) => {
                // ureq's error can quote the URL; name the host only.
                let why = match e {
                    ureq::Error::StatusCode(c) => format!("answered HTTP {c}"),
                    ureq::Error::Timeout(_) => {
                        format!("no answer within {} s", self.timeout.as_secs())
                    }
                    ureq::Error::Io(io) => io.kind().to_string(),
                    _ => "request failed".to_string(),
                };
                warn!("notify: heartbeat to {host} failed: {why}");
                self.metrics.heartbeat(Outcome::Error);
            }
        }
    }

    /// Run `path` with the event's variables; "ok", "error" or "timeout".
    fn run_hook(&self, path: &PathBuf, e: &Event) -> &'static str {
        let mut cmd = Command::new(path);
        // Its own process group: a timeout kills whatever the hook started too.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.stdin(Stdio::null())
            .env("REPLISNAP_STORAGE", &self.storage)
            .env("REPLISNAP_SOURCE", &self.address);
        match e {
            Event::Stored(m) => {
                cmd.env("REPLISNAP_RESULT", "success")
                    .env("REPLISNAP_SNAPSHOT_ID", m.id.to_string())
                    .env("REPLISNAP_CREATED_AT", m.created_at.to_rfc3339())
                    .env("REPLISNAP_BYTES", m.rdb.bytes.to_string())
                    .env("REPLISNAP_SHA256", &m.rdb.sha256)
                    .env("REPLISNAP_DIGEST", &m.digest)
                    .env("REPLISNAP_KEYS", m.keys_total.to_string())
                    .env("REPLISNAP_OFFSET", m.source.offset.to_string());
            }
            Event::Failed { id, error } => {
                cmd.env("REPLISNAP_RESULT", "failure")
                    .env("REPLISNAP_SNAPSHOT_ID", id.as_deref().unwrap_or(""))
                    .env("REPLISNAP_ERROR", error);
            }
        }
        let hook = e.hook();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(err) => {
                warn!("notify: {hook} {}: cannot start: {err}", path.display());
                return "error";
            }
        };
        let deadline = Instant::now() + self.timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => {
                    info!("notify: {hook} {} ran", path.display());
                    return "ok";
                }
                Ok(Some(status)) => {
                    warn!("notify: {hook} {} failed: {status}", path.display());
                    return "error";
                }
                Ok(None) if Instant::now() >= deadline => {
                    kill_group(&child);
                    let _ = child.kill();
                    let _ = child.wait();
                    warn!(
                        "notify: {hook} {} still ran after {} s ([notify] timeout): killed",
                        path.display(),
                        self.timeout.as_secs()
                    );
                    return "timeout";
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(err) => {
                    warn!(
                        "notify: {hook} {}: cannot wait for it: {err}",
                        path.display()
                    );
                    let _ = child.kill();
                    return "error";
                }
            }
        }
    }
}

/// SIGKILL to the hook's process group (it leads one of its own).
fn kill_group(child: &std::process::Child) {
    use rustix::process::{kill_process_group, Pid, Signal};
    let _ = kill_process_group(Pid::from_child(child), Signal::KILL);
}

/// The host (and port) of `url`, for messages.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    // Credentials in the authority are not printed either.
    host.rsplit_once('@').map_or(host, |(_, h)| h)
}

/// Snapshot events to another observer (the metrics), then to the hooks.
pub struct HookedEvents {
    pub metrics: Box<dyn SnapshotEvents>,
    pub hooks: Hooks,
}

impl SnapshotEvents for HookedEvents {
    fn started(&self, id: &SnapshotId, reason: Reason, pause: Duration) {
        self.metrics.started(id, reason, pause);
    }

    fn stored(&self, m: &Manifest, total: Duration) {
        self.metrics.stored(m, total);
        self.hooks.send(Event::Stored(Box::new(m.clone())));
    }

    fn failed(&self, id: &SnapshotId, error: &str) {
        self.metrics.failed(id, error);
        self.hooks.send(Event::Failed {
            id: Some(id.to_string()),
            error: error.to_string(),
        });
    }

    fn upload_failed(&self, id: &SnapshotId, error: &str) {
        self.metrics.upload_failed(id, error);
    }

    fn refused(&self, reason: Reason, error: &TakeError) {
        self.metrics.refused(reason, error);
        // Storage refusing the snapshot is a failed snapshot (see MetricsEvents).
        if matches!(error, TakeError::Storage(_)) {
            self.hooks.send(Event::Failed {
                id: None,
                error: error.to_string(),
            });
        }
    }

    fn retention(&self, outcome: &RetentionOutcome) {
        self.metrics.retention(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn messages_name_the_host_only() {
        assert_eq!(
            host_of("https://hc-ping.com/6f3c-secret-uuid"),
            "hc-ping.com"
        );
        assert_eq!(host_of("http://u:pw@127.0.0.1:8080/x?y"), "127.0.0.1:8080");
        assert_eq!(host_of("no-scheme"), "no-scheme");
    }
}
