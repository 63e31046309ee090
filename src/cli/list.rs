//! `replisnap list --config F [--json] [--archive]`: the snapshots in the configured
//! storage, newest first; with `--archive`, the stream archive's histories and gaps.
//!
//! Owns the listing's presentation: a table for people, or one JSON array of manifests
//! (the manifest's own fields) with `--json`. Snapshots whose manifest is unusable are
//! not listed; each is named in a `warning:` line on stderr so nobody is left guessing.
//! It must never print anything but the JSON document on stdout with `--json`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::config::Config;
use crate::storage::Manifest;

#[derive(Args, Debug)]
pub struct ListArgs {
    /// The configuration file.
    #[arg(long, value_name = "F", env = "REPLISNAP_CONFIG", default_value = super::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Print one JSON array of manifests.
    #[arg(long)]
    pub json: bool,
    /// List the stream archive instead: histories (offset and time ranges, segments,
    /// bytes) and every gap between and within them.
    #[arg(long)]
    pub archive: bool,
}

/// The storage the config names; an error naming the file when it names none.
pub(crate) fn open_storage(
    config: &std::path::Path,
) -> Result<(Config, Box<dyn crate::storage::Storage>)> {
    let cfg = Config::load(config)?;
    let shown = config.display().to_string();
    let s = cfg
        .storage
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{shown}: no [storage] section"))?;
    let storage = crate::storage::open(s).with_context(|| shown.clone())?;
    Ok((cfg, storage))
}

pub fn run(a: ListArgs) -> Result<ExitCode> {
    let (cfg, storage) = open_storage(&a.config)?;
    if a.archive {
        return archive(&*storage, a.json);
    }
    if cfg.source.cluster {
        return super::sets::list(storage.as_ref(), a.json);
    }
    let listing = storage.list().with_context(|| storage.describe())?;
    for p in &listing.problems {
        eprintln!("warning: snapshot {}: not listed: {}", p.id, p.error);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&listing.snapshots)?);
    } else {
        print!("{}", table(&listing.snapshots));
    }
    Ok(ExitCode::SUCCESS)
}

fn table(snaps: &[Manifest]) -> String {
    let mut out = format!(
        "{:<20} {:<24} {:<14} {:>14} {:>10} {:>12}\n",
        "ID", "CREATED", "SERVER", "OFFSET", "KEYS", "BYTES"
    );
    for m in snaps {
        let server = format!(
            "{}-{}",
            serde_json::to_value(m.source.server)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            m.source.version
        );
        out.push_str(&format!(
            "{:<20} {:<24} {:<14} {:>14} {:>10} {:>12}\n",
            m.id.as_str(),
            m.created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            server,
            m.source.offset,
            m.keys_total,
            m.rdb.bytes
        ));
    }
    if snaps.is_empty() {
        out.push_str("(no snapshots)\n");
    }
    out
}

fn archive(storage: &dyn crate::storage::Storage, json: bool) -> Result<ExitCode> {
    let l = crate::archive::list(storage).with_context(|| storage.describe())?;
    for k in &l.unknown {
        eprintln!("warning: {k}: not an archive segment; ignored");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&l)?);
        return Ok(ExitCode::SUCCESS);
    }
    let time = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| t.to_string())
    };
    println!(
        "{:<62} {:>14} {:>14} {:<20} {:<20} {:>8} {:>12}",
        "HISTORY", "FIRST", "END", "FROM", "TO", "SEGMENTS", "BYTES"
    );
    for h in &l.histories {
        println!(
            "{:<62} {:>14} {:>14} {:<20} {:<20} {:>8} {:>12}",
            h.name,
            h.first_offset,
            h.end_offset,
            time(h.first_time),
            time(h.last_time),
            h.segments,
            h.bytes
        );
    }
    if l.histories.is_empty() {
        println!("(no archive)");
    }
    for g in &l.gaps {
        match &g.next_history {
            Some(n) => println!(
                "gap: history {} ends at {} ({}), {} starts at {} ({})",
                g.history,
                g.from,
                time(g.from_time),
                n,
                g.to,
                time(g.to_time)
            ),
            None => println!(
                "gap: history {}: offsets {}..{} missing ({} bytes, {} to {})",
                g.history,
                g.from,
                g.to,
                g.to - g.from,
                time(g.from_time),
                time(g.to_time)
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}
