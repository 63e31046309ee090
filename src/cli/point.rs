//! The point-in-time options `fetch` and `restore` share (`--at TIME`, `--offset N`,
//! `--history H`) and building the file of such a point (`crate::pitr`).
//!
//! Owns how a point is named on the command line and said back: the exact offset chosen,
//! the snapshot replayed from, and how a time was resolved. It must never print anything
//! on stdout (the verbs own stdout and its `--json` document).

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::pitr::{self, Built, Plan, Target};
use crate::storage::Storage;

#[derive(Args, Debug, Clone, Default)]
pub struct PointArgs {
    /// Restore the state at this time from the stream archive: RFC 3339, or
    /// `YYYY-MM-DD HH:MM:SS[.fff]` in UTC, or `@<unix seconds>`.
    #[arg(long, value_name = "TIME", conflicts_with = "offset")]
    pub at: Option<String>,
    /// Restore the state at this replication offset from the stream archive (a point inside
    /// a command or a MULTI … EXEC rounds down to its start).
    #[arg(long, value_name = "N")]
    pub offset: Option<i64>,
    /// The archive history to use (as `list --archive` names it); default: the newest that
    /// holds the point.
    #[arg(long, value_name = "H")]
    pub history: Option<String>,
}

impl PointArgs {
    /// The point asked for, if any; a bad time is a usage error naming it.
    pub fn target(&self) -> Result<Option<Target>> {
        match (&self.at, self.offset) {
            (Some(t), _) => Ok(Some(Target::At(
                pitr::parse_time(t).map_err(|e| anyhow::anyhow!("--at {e}"))?,
            ))),
            (None, Some(n)) => Ok(Some(Target::Offset(n))),
            (None, None) => {
                if self.history.is_some() {
                    anyhow::bail!("--history needs --at or --offset");
                }
                Ok(None)
            }
        }
    }
}

/// What a point-in-time build says, in `--json` and in words.
#[derive(Debug, Serialize)]
pub struct PointDoc {
    pub history: String,
    /// The offset asked for or resolved from the time.
    pub requested_offset: i64,
    /// The offset the file is the state at (a command boundary).
    pub offset: i64,
    pub at: Option<String>,
    /// The time the state is of (the one asked for, or when the last replayed command was
    /// applied); `digest` is what a server loading the file then answers.
    pub time: String,
    #[serde(skip)]
    pub time_ms: i64,
    pub base_snapshot: String,
    pub base_offset: u64,
    pub commands_replayed: u64,
    pub segments: usize,
    pub bytes: u64,
    pub digest: String,
    pub keys_total: u64,
    pub note: Option<String>,
}

impl PointDoc {
    pub fn new(plan: &Plan, built: &Built, at: Option<i64>) -> PointDoc {
        let rounded = (built.offset != plan.offset).then(|| {
            format!(
                "offset {} is inside a command or a MULTI … EXEC: the state at its start, offset {}",
                plan.offset, built.offset
            )
        });
        PointDoc {
            history: plan.history.clone(),
            requested_offset: plan.offset,
            offset: built.offset,
            at: at.map(pitr::time_text),
            time: pitr::time_text(built.time_ms),
            time_ms: built.time_ms,
            base_snapshot: plan.base.id.to_string(),
            base_offset: plan.base.source.offset,
            commands_replayed: built.commands,
            segments: plan.segments.len(),
            bytes: built.bytes,
            digest: built.digest.clone(),
            keys_total: built.keys_total,
            note: rounded.or_else(|| plan.note.clone()),
        }
    }

    /// One line for people.
    pub fn line(&self, out: &str) -> String {
        format!(
            "history {} offset {}: snapshot {} (offset {}) + {} commands from {} segments, {} bytes to {out}, {} keys, digest {}{}",
            self.history,
            self.offset,
            self.base_snapshot,
            self.base_offset,
            self.commands_replayed,
            self.segments,
            self.bytes,
            self.keys_total,
            self.digest,
            self.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
        )
    }
}

/// Plan and build the file of `target` at `out`.
pub fn build(
    storage: &dyn Storage,
    target: Target,
    history: Option<&str>,
    out: &Path,
) -> Result<PointDoc> {
    let where_ = storage.describe();
    let plan = pitr::plan(storage, target, history).with_context(|| where_.clone())?;
    let built = pitr::build_file(storage, &plan, out)
        .with_context(|| format!("{where_}: history {}", plan.history))?;
    let at = match target {
        Target::At(t) => Some(t),
        Target::Offset(_) => None,
    };
    Ok(PointDoc::new(&plan, &built, at))
}
