//! Acting on the retention policy: list what storage holds, ask [`crate::retention::apply`]
//! which to keep, delete the rest, and log every decision with the rules that kept it.
//!
//! Owns the link between the pure policy and the storage backend, for the daemon (after
//! each snapshot) and for `replisnap retention`. It must never delete anything the policy
//! did not condemn, nor anything storage did not list as a complete snapshot: a snapshot
//! being written has no manifest yet, so it is not listed and cannot be touched, and the
//! newest listed one is always kept by the policy's own guard.

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::retention::{self, Decision, Policy, Verdict};
use crate::storage::{Manifest, SnapshotId, Storage, StorageError};

/// What one retention pass decided and did.
#[derive(Debug, Default)]
pub struct RetentionOutcome {
    /// Every listed snapshot, newest first, with its decision.
    pub verdicts: Vec<Verdict>,
    /// Ids deleted (none on a dry run).
    pub deleted: Vec<String>,
    /// Deletions that failed, with the error.
    pub failed: Vec<(String, String)>,
    /// The snapshots kept, newest first.
    pub kept: Vec<Manifest>,
    /// Snapshots whose manifest was refused: neither kept nor deleted (a human must look).
    pub problems: Vec<(String, String)>,
    /// Stream archive segments no kept snapshot needs (condemned, and deleted unless a
    /// dry run; see [`prune_archive`]); `None` before that step or when the archive could
    /// not be listed.
    pub archive: Option<crate::archive::Pruned>,
}

impl RetentionOutcome {
    /// Creation time of the oldest snapshot kept.
    pub fn oldest_kept(&self) -> Option<DateTime<Utc>> {
        self.kept.iter().map(|m| m.created_at).min()
    }
}

/// One pass: list, decide, and unless `dry_run`, delete.
pub fn apply(
    storage: &dyn Storage,
    policy: &Policy,
    dry_run: bool,
) -> Result<RetentionOutcome, StorageError> {
    let listing = storage.list()?;
    let snaps: Vec<retention::Snapshot> = listing
        .snapshots
        .iter()
        .map(|m| retention::Snapshot {
            id: m.id.to_string(),
            created_at: m.created_at,
            in_progress: false,
        })
        .collect();
    let verdicts = retention::apply(policy, &snaps);
    let mut out = RetentionOutcome {
        problems: listing
            .problems
            .iter()
            .map(|p| (p.id.to_string(), p.error.to_string()))
            .collect(),
        ..Default::default()
    };
    for (id, error) in &out.problems {
        warn!(id = %id, error = %error, "retention: snapshot with an unusable manifest left alone");
    }
    for v in &verdicts {
        match &v.decision {
            Decision::Keep { reasons } => {
                let why = reasons
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                info!(id = %v.id, decision = "keep", reasons = %why, dry_run, "retention");
                if let Some(m) = listing.snapshots.iter().find(|m| m.id.as_str() == v.id) {
                    out.kept.push(m.clone());
                }
            }
            Decision::Delete => {
                info!(id = %v.id, decision = "delete", dry_run, "retention");
                if dry_run {
                    continue;
                }
                let r = SnapshotId::parse(&v.id)
                    .map_err(StorageError::from)
                    .and_then(|id| storage.delete(&id));
                match r {
                    Ok(()) => out.deleted.push(v.id.clone()),
                    Err(e) => {
                        warn!(id = %v.id, error = %e, "retention: delete failed");
                        out.failed.push((v.id.clone(), e.to_string()));
                    }
                }
            }
        }
    }
    out.verdicts = verdicts;
    Ok(out)
}

/// After a pass: the stream archive's segments no snapshot the pass kept replays from
/// (before the oldest kept snapshot of their history) go too. A separate step so the
/// snapshots' outcome is reported first; a failure is logged and never undoes anything.
pub fn prune_archive(storage: &dyn Storage, outcome: &mut RetentionOutcome, dry_run: bool) {
    let complete = outcome.problems.is_empty();
    outcome.archive = match crate::archive::prune(storage, &outcome.kept, complete, dry_run) {
        Ok(p) => Some(p),
        Err(e) => {
            warn!(error = %e, "archive retention: cannot list the archive; no segment deleted");
            None
        }
    };
}
