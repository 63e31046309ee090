//! How the daemon learns it must stop: SIGTERM or SIGINT, or a part ending by itself.
//!
//! Owns the wait on the daemon's tokio runtime. It must never stop anything itself (the
//! assembly does, in its order), and never return before one of the two happened.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::error::DaemonError;

/// Why the wait ended.
pub enum Ended {
    /// A signal, by name ("SIGTERM").
    Signal(&'static str),
    /// A part ended by itself.
    Part,
}

/// SIGTERM and SIGINT, caught from [`Stop::install`] on: one recorded before the main
/// wait (during a wait for the storage's lease, say) ends that wait at once instead of
/// being lost.
pub struct Stop {
    got: Arc<std::sync::Mutex<Option<&'static str>>>,
    seen: Arc<AtomicBool>,
}

impl Stop {
    /// Catch SIGTERM and SIGINT from now on. Must be called inside a tokio runtime (its
    /// tasks record the signal while that runtime is driven).
    pub fn install() -> Result<Stop, DaemonError> {
        use tokio::signal::unix::{signal, SignalKind};
        let stop = Stop {
            got: Arc::default(),
            seen: Arc::new(AtomicBool::new(false)),
        };
        for (kind, name) in [
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::interrupt(), "SIGINT"),
        ] {
            let mut s = signal(kind).map_err(|source| DaemonError::Signal {
                signal: name,
                source,
            })?;
            let (got, seen) = (stop.got.clone(), stop.seen.clone());
            tokio::spawn(async move {
                if s.recv().await.is_some() {
                    if let Ok(mut g) = got.lock() {
                        g.get_or_insert(name);
                    }
                    seen.store(true, Ordering::Release);
                }
            });
        }
        Ok(stop)
    }

    /// The signal received so far, by name, if any.
    pub fn received(&self) -> Option<&'static str> {
        if !self.seen.load(Ordering::Acquire) {
            return None;
        }
        Some(self.got.lock().ok().and_then(|g| *g).unwrap_or("signal"))
    }

    /// Wait for a signal, or for `done()` to turn true (checked every 100 ms).
    pub async fn until_or(&self, mut done: impl FnMut() -> bool) -> Ended {
        loop {
            if let Some(name) = self.received() {
                return Ended::Signal(name);
            }
            if done() {
                return Ended::Part;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
