//! Why the daemon stopped or could not start: one [`DaemonError`] for every part.
//!
//! Owns the wording of the daemon's failures: each names what failed and where (the config
//! file, the storage, the part that could not start), with the part's own error as its
//! source, so `error: {e:#}` prints the whole chain on one line. It must never hold a
//! secret (a password, a token) in a message, and never import another file of the daemon.

use crate::http::HttpError;
use crate::metrics::MetricsError;
use crate::snapshot::checkpoint::CheckpointError;
use crate::snapshot::schedule::ScheduleError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A value of the config file refused before anything attached; `file` is the config
    /// file, the source names the key.
    #[error("{file}")]
    Config {
        file: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another writer holds the storage.
    #[error("{location}")]
    Claim {
        location: String,
        #[source]
        source: StorageError,
    },
    /// Removing leftovers or reading the newest snapshot failed at start.
    #[error("{location}: startup cleanup")]
    Cleanup {
        location: String,
        #[source]
        source: StorageError,
    },
    /// `[replica] state_dir` cannot hold the checkpoint, or another daemon uses it.
    #[error("{file}: [replica] state_dir")]
    StateDir {
        file: String,
        #[source]
        source: CheckpointError,
    },
    /// A thread or runtime of one part could not be started ("the replica thread").
    #[error("cannot start the {part}")]
    Start {
        part: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the metrics")]
    Metrics(#[source] MetricsError),
    /// `[http] listen` could not be bound.
    #[error("{file}: [http] listen")]
    Listen {
        file: String,
        #[source]
        source: HttpError,
    },
    /// A schedule could not be started on the runtime.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("cannot handle {signal}")]
    Signal {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The replica thread panicked, or ended without being asked to.
    #[error("the replica thread failed")]
    ReplicaFailed,
}

impl DaemonError {
    /// A config refusal naming the file.
    pub(crate) fn config(
        file: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> DaemonError {
        DaemonError::Config {
            file: file.to_string(),
            source: Box::new(source),
        }
    }

    pub(crate) fn start(part: &'static str) -> impl FnOnce(std::io::Error) -> DaemonError {
        move |source| DaemonError::Start { part, source }
    }
}
