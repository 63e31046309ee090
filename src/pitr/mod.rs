//! Point-in-time recovery (SPEC §6): the state of the master at any archived offset or
//! second, built from the newest snapshot of the same history before it and the archived
//! stream after it, replayed through our own keyspace.
//!
//! Owns the restore side of the stream archive: choosing the history, the exact point and
//! the base snapshot (`plan.rs`), and the replay that writes the RDB file (`replay.rs`).
//! It must never produce a file for a point it cannot vouch for: a point in a gap, before
//! any snapshot of its history, or past the archive's end is an error naming the nearest
//! restorable points, never a silently different state.

mod plan;
mod replay;

use std::path::Path;

use chrono::{DateTime, NaiveDateTime};

pub use plan::Plan;
pub use replay::Built;

use crate::archive::ArchiveError;
use crate::atomic_file::AtomicFile;
use crate::keyspace::RdbIoError;
use crate::snapshot::warm::WarmError;
use crate::storage::{Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum PitrError {
    #[error("the storage holds no stream archive ([archive] enabled = true writes one)")]
    NoArchive,
    #[error("no archived history named {0}")]
    NoHistory(String),
    #[error("{wanted} cannot be restored; {nearest}")]
    Unrestorable { wanted: String, nearest: String },
    #[error("archived stream missing: {0}")]
    Missing(String),
    #[error("the archived stream at offset {offset}: {error}")]
    Stream { offset: i64, error: String },
    #[error("the archived command at offset {offset} ({command}) cannot be applied: {error}")]
    Apply {
        offset: i64,
        command: String,
        error: String,
    },
    #[error("snapshot {0}: {1}")]
    Base(String, WarmError),
    #[error("{0}")]
    Version(String),
    #[error("writing the RDB: {0}")]
    Write(RdbIoError),
    #[error("{path}: {error}")]
    Out { path: String, error: std::io::Error },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The point to restore to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Unix milliseconds: every command applied at or before it.
    At(i64),
    /// A replication offset of the history (rounded down to a command boundary).
    Offset(i64),
}

/// Parse `--at`: RFC 3339 (`2026-12-04T15:04:05.250+01:00`), the same without a zone
/// (UTC; `T` or a space between date and time, seconds optional), or `@<unix seconds>`.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Some(unix) = s.strip_prefix('@') {
        let secs: f64 = unix
            .parse()
            .map_err(|_| format!("{s:?}: not @<unix seconds>"))?;
        if !secs.is_finite() || !(0.0..1e11).contains(&secs) {
            return Err(format!("{s:?}: out of range"));
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    Err(format!(
        "{s:?}: not a time (RFC 3339, `YYYY-MM-DD HH:MM:SS` in UTC, or @<unix seconds>)"
    ))
}

/// Plan the restore of `target` from what `storage` holds.
pub fn plan(
    storage: &dyn Storage,
    target: Target,
    history: Option<&str>,
) -> Result<Plan, PitrError> {
    let listing = crate::archive::list(storage)?;
    if listing.histories.is_empty() {
        return Err(PitrError::NoArchive);
    }
    let snapshots = storage.list()?.snapshots;
    plan::plan(storage, &listing, &snapshots, target, history)
}

/// Replay `plan` into an RDB file at `out` (0600, fsynced, renamed into place only when
/// whole).
pub fn build_file(storage: &dyn Storage, plan: &Plan, out: &Path) -> Result<Built, PitrError> {
    let name = out.display().to_string();
    let io = |error| PitrError::Out {
        path: name.clone(),
        error,
    };
    let file = AtomicFile::create(out).map_err(io)?;
    let (file, built) = replay::build(storage, plan, std::io::BufWriter::new(file))?;
    let file = file.into_inner().map_err(|e| io(e.into_error()))?;
    file.commit().map_err(io)?;
    Ok(built)
}

/// Unix ms as RFC 3339 (UTC, milliseconds).
pub fn time_text(ms: i64) -> String {
    plan::ms_text(ms)
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_parse_in_utc_unless_a_zone_is_given() {
        let utc = parse_time("2026-12-04T15:04:05Z").unwrap();
        assert_eq!(utc, 1_796_396_645_000);
        assert_eq!(parse_time("2026-12-04T15:04:05").unwrap(), utc);
        assert_eq!(parse_time("2026-12-04 15:04:05").unwrap(), utc);
        assert_eq!(parse_time("2026-12-04T16:04:05+01:00").unwrap(), utc);
        assert_eq!(parse_time("2026-12-04 15:04:05.250").unwrap(), utc + 250);
        assert_eq!(parse_time("@1796396645.5").unwrap(), utc + 500);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("@-1").is_err());
        assert!(parse_time("@nan").is_err());
    }
}
