//! `replisnap retention --config F [--dry-run]`: apply (or only show) the retention policy
//! of `[retention]` to the configured storage.
//!
//! Owns the presentation of the verdicts: one line per snapshot, newest first, `keep` with
//! every rule that keeps it (restic's wording: "daily snapshot, weekly snapshot"), or
//! `delete` (`would delete` on a dry run). Without a `[retention]` section everything is
//! kept ("no policy"). It must never delete on a dry run; a deletion that fails makes
//! the command exit 1 after the others were tried.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::retention::{Decision, Policy};
use crate::snapshot::retain;

#[derive(Args, Debug)]
pub struct RetentionArgs {
    /// The configuration file.
    #[arg(long, value_name = "F", env = "REPLISNAP_CONFIG", default_value = super::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Show what would be kept and deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(a: RetentionArgs) -> Result<ExitCode> {
    let (cfg, storage) = super::list::open_storage(&a.config)?;
    let policy = match &cfg.retention {
        Some(r) => Policy::from_config(r).with_context(|| a.config.display().to_string())?,
        None => Policy::default(),
    };
    if cfg.source.cluster {
        return super::sets::retention(&cfg, storage.as_ref(), &policy, a.dry_run);
    }
    let mut outcome =
        retain::apply(storage.as_ref(), &policy, a.dry_run).with_context(|| storage.describe())?;
    retain::prune_archive(storage.as_ref(), &mut outcome, a.dry_run);
    for (id, error) in &outcome.problems {
        eprintln!("warning: snapshot {id}: left alone: {error}");
    }
    for v in &outcome.verdicts {
        match &v.decision {
            Decision::Keep { reasons } => {
                let why: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                println!("keep          {}  {}", v.id, why.join(", "));
            }
            Decision::Delete if a.dry_run => println!("would delete  {}", v.id),
            Decision::Delete => {
                if outcome.deleted.contains(&v.id) {
                    println!("deleted       {}", v.id);
                }
            }
        }
    }
    if outcome.verdicts.is_empty() {
        println!("(no snapshots)");
    }
    if let Some(p) = outcome.archive.as_ref().filter(|p| !p.keys.is_empty()) {
        println!(
            "{} {} archive segments ({} bytes) that no kept snapshot replays from",
            if a.dry_run { "would delete" } else { "deleted" },
            p.keys.len() - p.failed.len(),
            p.bytes
        );
        if let Some((key, error)) = p.failed.first() {
            anyhow::bail!(
                "{key}: delete failed: {error} ({} of {} segment deletions failed)",
                p.failed.len(),
                p.keys.len()
            );
        }
    }
    if let Some((id, error)) = outcome.failed.first() {
        anyhow::bail!(
            "snapshot {id}: delete failed: {error} ({} of {} deletions failed)",
            outcome.failed.len(),
            outcome.failed.len() + outcome.deleted.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
