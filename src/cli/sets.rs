//! `list` and `fetch` for a cluster's storage (`[source] cluster = true`): snapshot sets
//! (`sets/<id>/manifest.json`) instead of single snapshots.
//!
//! Owns the presentation of sets and the fetch of a whole set: one RDB per shard, named by
//! its slot ranges (`OUT/<slots>.rdb`), each checked against its own manifest (length,
//! SHA-256, CRC-64; `--verify`: parsed and its digest compared) before it is put in place,
//! ready to seed the shards of a new cluster. It must never fetch an incomplete set
//! without saying which shards are missing, and never write outside OUT.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::config::Config;
use crate::storage::set::{self, SetManifest};
use crate::storage::{SnapshotId, Storage};

/// The sets in `root`, newest first: a table or, with `json`, one JSON array.
pub fn list(root: &dyn Storage, json: bool) -> Result<ExitCode> {
    let (sets, problems) = set::list(root).with_context(|| root.describe())?;
    for (key, e) in &problems {
        eprintln!("warning: {key}: not listed: {e}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&sets)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<24} {:<10} {:>6} {:>12} {:>14}",
        "SET", "CREATED", "COMPLETE", "SHARDS", "KEYS", "BYTES"
    );
    for s in &sets {
        let stored = s.shards.iter().filter(|x| x.snapshot.is_some()).count();
        println!(
            "{:<20} {:<24} {:<10} {:>6} {:>12} {:>14}",
            s.id.as_str(),
            s.created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            if s.complete { "yes" } else { "NO" },
            format!("{stored}/{}", s.shards.len()),
            s.shards.iter().map(|x| x.keys_total).sum::<u64>(),
            s.shards.iter().map(|x| x.bytes).sum::<u64>(),
        );
    }
    if sets.is_empty() {
        println!("(no snapshot sets)");
    }
    Ok(ExitCode::SUCCESS)
}

/// An error naming what `s` lacks (each shard without a snapshot, with why, and the slots
/// no shard owned) and ending with `then`, unless the set is complete.
pub fn refuse_incomplete(s: &SetManifest, then: &str) -> Result<()> {
    let missing: Vec<String> = s
        .shards
        .iter()
        .filter(|x| x.snapshot.is_none())
        .map(|x| {
            format!(
                "{} ({})",
                x.shard,
                x.error.as_deref().unwrap_or("no snapshot")
            )
        })
        .collect();
    if s.complete && missing.is_empty() {
        return Ok(());
    }
    let unowned = if s.missing_slots.is_empty() {
        String::new()
    } else {
        format!("; slots owned by no shard: {:?}", s.missing_slots)
    };
    bail!(
        "snapshot set {}: incomplete (missing: {}{unowned}); {then}",
        s.id,
        missing.join(", ")
    )
}

/// The set `arg` names (`latest`: the newest complete one).
pub fn resolve(root: &dyn Storage, arg: &str) -> Result<SetManifest> {
    let where_ = root.describe();
    if arg == "latest" {
        let (sets, _) = set::list(root).with_context(|| where_.clone())?;
        return sets
            .into_iter()
            .find(|s| s.complete)
            .ok_or_else(|| anyhow::anyhow!("{where_}: no complete snapshot set"));
    }
    let id = SnapshotId::parse(arg).with_context(|| format!("set {arg:?}"))?;
    set::get(root, &id)
        .with_context(|| where_.clone())?
        .ok_or_else(|| anyhow::anyhow!("{where_}: snapshot set {arg} not found"))
}

#[derive(Serialize)]
struct FetchedShard {
    shard: String,
    slots: Vec<(u16, u16)>,
    snapshot: String,
    out: String,
    bytes: u64,
    sha256: String,
    digest: String,
    verified: bool,
}

/// Fetch every shard's snapshot of set `arg` into the directory `out` (created 0700 if
/// absent), as `<slots>.rdb`.
pub fn fetch(
    cfg: &Config,
    root: &dyn Storage,
    arg: &str,
    out: &Path,
    verify: bool,
    json: bool,
) -> Result<ExitCode> {
    let s = resolve(root, arg)?;
    refuse_incomplete(&s, "fetch its shards' snapshots one by one")?;
    let Some(storage_cfg) = cfg.storage.as_ref() else {
        bail!("no [storage] section");
    };
    if !out.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(out)
            .with_context(|| format!("{}: cannot create", out.display()))?;
    }
    let mut done = Vec::new();
    let mut bad = 0;
    for x in &s.shards {
        let Some(sid) = &x.snapshot else { continue };
        let shard_storage = crate::storage::open(&set::shard_storage(storage_cfg, &x.shard))
            .with_context(|| format!("shard {}", x.shard))?;
        let where_ = shard_storage.describe();
        let m = shard_storage
            .get_manifest(sid)
            .with_context(|| format!("{where_}: snapshot {sid}"))?;
        if m.digest != x.digest || m.source.offset != x.offset {
            bail!(
                "{where_}: snapshot {sid}: its manifest (digest {}, offset {}) is not what set {} recorded (digest {}, offset {})",
                m.digest, m.source.offset, s.id, x.digest, x.offset
            );
        }
        // The shard name is checked to be slot ranges when the set is read: no path tricks.
        let path = out.join(format!("{}.rdb", x.shard));
        let stored = super::download::copy_checked(shard_storage.as_ref(), &m, &path)?;
        let mut verified = false;
        if verify {
            let problems = super::download::verify_file(&m, &path, &stored)?;
            for p in &problems {
                eprintln!(
                    "error: set {} shard {} ({}): {p}",
                    s.id,
                    x.shard,
                    path.display()
                );
            }
            bad += problems.len();
            verified = problems.is_empty();
        }
        done.push(FetchedShard {
            shard: x.shard.clone(),
            slots: x.slots.clone(),
            snapshot: sid.to_string(),
            out: path.display().to_string(),
            bytes: stored.bytes,
            sha256: stored.sha256,
            digest: m.digest.clone(),
            verified,
        });
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "set": s.id, "shards": done }))?
        );
    } else {
        for d in &done {
            println!(
                "set {} shard {}: {} ({} bytes, sha256 and CRC-64 checked{})",
                s.id,
                d.shard,
                d.out,
                d.bytes,
                if d.verified { ", digest verified" } else { "" }
            );
        }
    }
    Ok(if bad > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `retention` for a cluster: each shard's snapshots under the policy (the shards every
/// set names), then the sets that name a deleted snapshot. Exit 1 when a deletion failed.
pub fn retention(
    cfg: &Config,
    root: &dyn Storage,
    policy: &crate::retention::Policy,
    dry_run: bool,
) -> Result<ExitCode> {
    use crate::retention::Decision;
    let Some(storage_cfg) = cfg.storage.as_ref() else {
        bail!("no [storage] section");
    };
    let (sets, _) = set::list(root).with_context(|| root.describe())?;
    let mut names: Vec<String> = sets
        .iter()
        .flat_map(|s| s.shards.iter().map(|x| x.shard.clone()))
        .collect();
    names.sort();
    names.dedup();
    let mut shards = Vec::new();
    let mut failures = 0usize;
    for name in &names {
        let st = crate::storage::open(&set::shard_storage(storage_cfg, name))
            .with_context(|| format!("shard {name}"))?;
        let outcome = crate::snapshot::retain::apply(st.as_ref(), policy, dry_run)
            .with_context(|| st.describe())?;
        for (id, error) in &outcome.problems {
            eprintln!("warning: shard {name}: snapshot {id}: left alone: {error}");
        }
        for v in &outcome.verdicts {
            match &v.decision {
                Decision::Keep { reasons } => {
                    let why: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                    println!("shard {name}: keep          {}  {}", v.id, why.join(", "));
                }
                Decision::Delete if dry_run => println!("shard {name}: would delete  {}", v.id),
                Decision::Delete if outcome.deleted.contains(&v.id) => {
                    println!("shard {name}: deleted       {}", v.id)
                }
                Decision::Delete => {}
            }
        }
        for (id, error) in &outcome.failed {
            eprintln!("error: shard {name}: snapshot {id}: delete failed: {error}");
        }
        failures += outcome.failed.len();
        shards.push((name.clone(), st));
    }
    if names.is_empty() {
        println!("(no snapshot sets)");
    }
    if !dry_run {
        let exists = |shard: &str, id: &SnapshotId| {
            shards
                .iter()
                .find(|(n, _)| n == shard)
                .is_none_or(|(_, st)| {
                    !matches!(
                        st.get_manifest(id),
                        Err(crate::storage::StorageError::NotFound { .. })
                    )
                })
        };
        let (deleted, failed) = set::prune(root, exists).with_context(|| root.describe())?;
        for d in &deleted {
            println!("set {d}: deleted (one of its snapshots was)");
        }
        for (d, e) in &failed {
            eprintln!("error: set {d}: delete failed: {e}");
        }
        failures += failed.len();
    }
    Ok(if failures > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
