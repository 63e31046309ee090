//! `replisnap inspect FILE [--json]`: header, aux fields, per-db counts, checksum.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::progress::Progress;
use crate::summary::{summarize, FileSummary};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The RDB file to read.
    pub file: PathBuf,
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Read RDB versions newer than this build knows, like Valkey's
    /// `rdb-version-check relaxed` (every record is still checked).
    #[arg(long)]
    pub relaxed: bool,
    /// Judge expiries as of this Unix time in milliseconds instead of now.
    #[arg(long, value_name = "UNIX_MS")]
    pub now_ms: Option<i64>,
}

pub fn run(a: InspectArgs) -> Result<ExitCode> {
    let (reader, len, name) = super::open_rdb(&a.file, a.relaxed)?;
    let now_ms = a.now_ms.unwrap_or_else(super::now_ms);
    let mut progress = Progress::bytes(len);
    let s = summarize(reader, now_ms, |pos| progress.set(pos))
        .map_err(|e| anyhow::anyhow!("{name}: {e}"));
    progress.finish();
    let s = s?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print_text(&name, &s);
    }
    if !s.checksum.ok {
        anyhow::bail!(
            "{name}: checksum mismatch: stored {}, computed {}",
            s.checksum.stored.as_deref().unwrap_or("none"),
            s.checksum.computed
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(name: &str, s: &FileSummary) {
    println!("file          {name}");
    println!("format        {} version {}", s.magic, s.rdb_version);
    for (k, v) in &s.aux {
        println!("aux           {k} = {v}");
    }
    for d in &s.databases {
        let types: Vec<String> = d
            .types
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(t, n)| format!("{t}={n}"))
            .collect();
        println!(
            "db {:<10} keys={} expires={} {}",
            d.db,
            d.keys,
            d.expires,
            types.join(" ")
        );
    }
    println!(
        "keys          {} total, {} loadable now",
        s.keys_total, s.keys_loadable
    );
    println!("functions     {}", s.functions);
    if s.module_aux > 0 {
        println!("module aux    {}", s.module_aux);
    }
    let stored = s.checksum.stored.as_deref().unwrap_or("none");
    println!(
        "checksum      stored {stored}, computed {} ({})",
        s.checksum.computed,
        if s.checksum.ok { "ok" } else { "MISMATCH" }
    );
    if s.trailing_bytes > 0 {
        println!(
            "trailing      {} bytes after the trailer (ignored by servers)",
            s.trailing_bytes
        );
    }
}
