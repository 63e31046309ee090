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

/// Wait for SIGTERM or SIGINT, or for `done()` to turn true (checked every 100 ms).
pub async fn until_signal_or(mut done: impl FnMut() -> bool) -> Result<Ended, DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let got: Arc<std::sync::Mutex<Option<&'static str>>> = Arc::default();
    let seen = Arc::new(AtomicBool::new(false));
    for (kind, name) in [
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::interrupt(), "SIGINT"),
    ] {
        let mut s = signal(kind).map_err(|source| DaemonError::Signal {
            signal: name,
            source,
        })?;
        let (got, seen) = (got.clone(), seen.clone());
        tokio::spawn(async move {
            if s.recv().await.is_some() {
                if let Ok(mut g) = got.lock() {
                    g.get_or_insert(name);
                }
                seen.store(true, Ordering::Release);
            }
        });
    }
    loop {
        if seen.load(Ordering::Acquire) {
            let name = got.lock().ok().and_then(|g| *g).unwrap_or("signal");
            return Ok(Ended::Signal(name));
        }
        if done() {
            return Ok(Ended::Part);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
