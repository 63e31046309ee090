//! Waiting for the storage when another writer holds it (`[storage] lease_wait_seconds`).
//!
//! Owns the loop "claim, and while another process holds the lease (S3) or the writer
//! lock (local), say so once and try again every interval until the wait runs out or a
//! stop signal comes". The reason it waits is published for `/readyz` while it does.
//! It must never write or delete anything in storage itself (only [`Storage::claim`]
//! touches it: a conditional write that the holder's lease refuses), never wait past
//! the configured limit, and never keep waiting after a stop signal.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::{Storage as StorageConfig, StorageKind};
use crate::storage::{s3, Storage, StorageError};

/// How long to wait for the holder and how often to try again.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    pub limit: Duration,
    pub interval: Duration,
}

/// Local storage: the writer lock is tried again this often.
pub const LOCAL_INTERVAL: Duration = Duration::from_secs(1);

impl Wait {
    /// From `[storage]`; None when the daemon refuses at once (absent or 0). S3 tries
    /// again every third of the lease's lifetime (its holder renews it as often, and a
    /// holder that died lets it expire), local storage every second.
    pub fn from_config(cfg: &StorageConfig) -> Option<Wait> {
        let limit = Duration::from_secs(cfg.lease_wait_seconds.filter(|s| *s > 0)?);
        let interval = match cfg.kind {
            StorageKind::S3 => {
                Duration::from_secs(cfg.lease_seconds.unwrap_or(s3::DEFAULT_LEASE_SECONDS)) / 3
            }
            StorageKind::Local => LOCAL_INTERVAL,
        };
        Some(Wait { limit, interval })
    }
}

/// How the wait ended, when it did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    Taken,
    /// A stop signal came first (its name).
    Stopped(&'static str),
}

/// Why `/readyz` fails while the daemon waits for the storage; None when it does not.
pub type Waiting = Arc<Mutex<Option<String>>>;

fn publish(waiting: &Waiting, reason: Option<String>) {
    *waiting.lock().unwrap_or_else(|e| e.into_inner()) = reason;
}

/// Claim `storage`, waiting up to `wait.limit` while another writer holds it. `pause(d)`
/// sleeps up to `d` and returns the name of a stop signal received meanwhile, if any;
/// `status` tells systemd. Past the limit the holder's refusal is returned as it is.
pub fn claim_waiting(
    storage: &dyn Storage,
    wait: Wait,
    waiting: &Waiting,
    status: impl Fn(&str),
    mut pause: impl FnMut(Duration) -> Option<&'static str>,
) -> Result<Claimed, StorageError> {
    let started = Instant::now();
    let mut said = false;
    let outcome = loop {
        match storage.claim() {
            Ok(()) => break Ok(Claimed::Taken),
            Err(e @ StorageError::Held { .. }) if started.elapsed() < wait.limit => {
                if !said {
                    said = true;
                    warn!(
                        error = %e, wait_seconds = wait.limit.as_secs(),
                        retry_seconds = wait.interval.as_secs_f64(),
                        "another writer holds the storage; waiting for it ([storage] lease_wait_seconds)"
                    );
                    let reason = format!(
                        "waiting up to {} s for the storage's writer lease: {e}",
                        wait.limit.as_secs()
                    );
                    status(&reason);
                    publish(waiting, Some(reason));
                }
                let left = wait.limit.saturating_sub(started.elapsed());
                if let Some(signal) = pause(wait.interval.min(left)) {
                    break Ok(Claimed::Stopped(signal));
                }
            }
            Err(e) => break Err(e),
        }
    };
    publish(waiting, None);
    if said && matches!(outcome, Ok(Claimed::Taken)) {
        info!(
            waited_seconds = started.elapsed().as_secs_f64(),
            "the storage's writer lease is ours"
        );
    }
    outcome
}
